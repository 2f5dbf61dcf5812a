"""``connsync set`` and ``connsync edit``: in place, through sops, checked before anything is written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from connsync import sops
from connsync.model import Declaration, Desired, Secret
from connsync.validate import loader
from tests.conftest import CANARY, Run, new_aws, run_in_terminal, run_process

FILE = Path("connections/aws-prod.yaml")
NEW_SECRET = "NewSecretValue/0123456789+abcdefghijklmn"
assert len(NEW_SECRET) == 40


def decrypted(path: Path) -> Desired:
    loaded = loader.load_file(path)
    assert isinstance(loaded, Declaration), loaded
    return sops.decrypt(loaded, path)


@pytest.fixture
def conn(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> Path:
    result = new_aws(run, monkeypatch, extra=("--description", "Billing pipeline", "--label", "env=prod"))
    assert result.code == 0, result.err
    path = repo / FILE
    path.write_text(path.read_text().replace("spec:\n", "spec:\n    # owned by team billing\n", 1))
    return path


def test_set_a_clear_field_keeps_everything_else(conn: Path, run: Run) -> None:
    result = run("set", "aws prod", "default_region=eu-west-1")
    assert result.code == 0, result.err
    assert "Updated connections/aws-prod.yaml: default_region; everything else kept." in result.out
    text = conn.read_text()
    assert "# owned by team billing" in text and "description: Billing pipeline" in text
    assert "env: prod" in text
    desired = decrypted(conn)
    assert desired.spec["default_region"] == "eu-west-1" and desired.spec["account_id"] == "123456789012"
    assert desired.secrets["secret_access_key"] == Secret(CANARY)
    assert run("validate").code == 0


def test_set_checks_before_writing(conn: Path, run: Run) -> None:
    before = conn.read_bytes()
    result = run("set", "AWS Prod", "default_region=eu-wset-1", "account_id=42")
    assert result.code == 1
    assert "default_region=…: 'eu-wset-1' is not an AWS region botocore knows; did you mean 'eu-west-1'?" \
        in result.err
    assert "account_id=…: account_id must be exactly 12 digits" in result.err
    assert "Nothing was written to connections/aws-prod.yaml." in result.err
    assert conn.read_bytes() == before
    assert run("set", "AWS Prod", "nonsense=1").code == 64
    assert run("set", "Nope", "default_region=eu-west-1").code == 1


def test_set_a_secret_from_the_environment(conn: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEW_AWS_SECRET", NEW_SECRET)
    result = run("set", "AWS Prod", "--secret-env", "secret_access_key=NEW_AWS_SECRET")
    assert result.code == 0, result.err
    assert "secret_access_key (encrypted)" in result.out
    assert decrypted(conn).secrets["secret_access_key"] == Secret(NEW_SECRET)
    assert NEW_SECRET not in conn.read_text() + result.out + result.err
    assert CANARY not in result.out + result.err


def test_a_secret_is_never_taken_from_the_command_line(conn: Path, run: Run) -> None:
    before = conn.read_bytes()
    result = run("set", "AWS Prod", f"secret_access_key={NEW_SECRET}")
    assert result.code == 64 and "never on the command line" in result.err
    assert NEW_SECRET not in result.out + result.err
    assert conn.read_bytes() == before
    assert run("set", "AWS Prod", "secret_access_key").code == 64  # no terminal to ask on


def test_set_asks_for_a_secret_on_a_terminal(conn: Path) -> None:
    code, transcript = run_in_terminal(
        "set", "AWS Prod", "secret_access_key",
        answers=((b"Secret Access Key (secret_access_key):", b"short\n"),
                 (b"Secret Access Key (secret_access_key):", NEW_SECRET.encode() + b"\n")))
    text = transcript.decode()
    assert code == 0, text
    assert "✗ secret_access_key must be 40 characters (got 5)" in text
    assert NEW_SECRET not in text and "short\r" not in text
    assert decrypted(conn).secrets["secret_access_key"] == Secret(NEW_SECRET)


def test_edit_opens_sops_and_validates_the_result(conn: Path, repo: Path) -> None:
    code, shown = run_in_terminal("edit", "AWS Prod", env={"EDITOR": "sed -i s/us-east-1/eu-west-1/"})
    assert code == 0, shown
    assert b"it validates" in shown
    assert decrypted(conn).spec["default_region"] == "eu-west-1"
    assert "# owned by team billing" in conn.read_text()
    code, shown = run_in_terminal("edit", "AWS Prod", env={"EDITOR": "true"})
    assert code == 0 and b"unchanged" in shown
    # An edit that breaks the file ends once; the file is as it was, the findings say what to fix.
    before = conn.read_bytes()
    code, broken = run_in_terminal("edit", "AWS Prod", env={"EDITOR": "sed -i s/eu-west-1/eu-wset-1/"})
    assert code == 1 and b"did you mean 'eu-west-1'?" in broken, broken
    assert b"was left as it was; nothing was saved" in broken
    assert conn.read_bytes() == before
    assert CANARY.encode() not in shown + broken


def test_edit_without_a_terminal_refuses_at_once(conn: Path, repo: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """vim drew the decrypted file onto standard output (a CI log) and sops waited for a key press."""
    before = conn.read_bytes()
    monkeypatch.delenv("EDITOR", raising=False)
    monkeypatch.delenv("VISUAL", raising=False)
    for env in ({}, {"EDITOR": "cat"}, {"EDITOR": "sed -i s/^spec:$/spec:[/"}):
        result = run_process("edit", "AWS Prod", cwd=repo, env=env, input="", timeout=60)
        assert result.code == 64, result
        assert "connsync edit needs a terminal" in result.err
        assert "connsync set NAME FIELD=VALUE" in result.err
        assert CANARY not in result.out + result.err
        assert conn.read_bytes() == before


def test_an_editor_that_leaves_broken_yaml_ends_the_edit_once(conn: Path, repo: Path, tmp_path: Path) -> None:
    before = conn.read_bytes()
    # "spec: [" opens a flow sequence that never closes: sops's own loop asked to press a key, for ever.
    code, shown = run_in_terminal("edit", "AWS Prod", env={"EDITOR": "sed -i s/^spec:$/spec:[/"}, timeout=60)
    assert code == 1, shown
    assert re.search(rb"connections/aws-prod\.yaml:\d+:\d+: error \[yaml\] \(as edited\) ", shown), shown
    assert b"was left as it was; nothing was saved" in shown
    assert b"Press a key" not in shown and CANARY.encode() not in shown
    assert conn.read_bytes() == before
    # A key twice: located, and what the file says is not quoted.
    editor = tmp_path / "add_key.py"
    editor.write_text("import sys, pathlib\np = pathlib.Path(sys.argv[1])\n"
                      f"p.write_text(p.read_text().replace('spec:\\n', 'spec:\\n    {CANARY[:8]}: x\\n'\n"
                      f"    '    {CANARY[:8]}: y\\n'))\n")
    code, shown = run_in_terminal("edit", "AWS Prod", timeout=60,
                                  env={"EDITOR": f"{sys.executable} {editor}"})
    assert code == 1 and b"[duplicate-key] (as edited) key '\xe2\x80\xa6' appears twice" in shown, shown
    assert CANARY[:8].encode() not in shown and conn.read_bytes() == before


def test_the_editor_draws_on_the_terminal_never_into_connsyncs_output(conn: Path, repo: Path,
                                                                      tmp_path: Path) -> None:
    """Standard output and error sent to files (a log) while a person edits on the terminal."""
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    command = f"exec {sys.executable} -m connsync edit 'AWS Prod' >{out} 2>{err}"
    code, screen = run_shell_in_terminal(command, env={"EDITOR": "cat"})  # cat shows the plaintext
    assert code == 0, screen
    assert CANARY.encode() in screen  # on the screen, where an editor shows it
    assert CANARY not in out.read_text() + err.read_text()
    assert "is unchanged" in out.read_text()


def run_shell_in_terminal(command: str, env: dict[str, str], timeout: float = 60) -> tuple[int, bytes]:
    import os
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe("sh", ["sh", "-c", command], {**os.environ, **env})
    screen = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, screen
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), screen
