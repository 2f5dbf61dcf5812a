"""``connsync set`` and ``connsync edit``: in place, through sops, checked before anything is written."""

from __future__ import annotations

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
    result = run_process("edit", "AWS Prod", cwd=repo, env={"EDITOR": "sed -i s/us-east-1/eu-west-1/"})
    assert result.code == 0, result.err
    assert "it validates" in result.out
    assert decrypted(conn).spec["default_region"] == "eu-west-1"
    assert "# owned by team billing" in conn.read_text()
    unchanged = run_process("edit", "AWS Prod", cwd=repo, env={"EDITOR": "true"})
    assert unchanged.code == 0 and "unchanged" in unchanged.out
    broken = run_process("edit", "AWS Prod", cwd=repo, env={"EDITOR": "sed -i s/eu-west-1/eu-wset-1/"})
    assert broken.code == 1 and "did you mean 'eu-west-1'?" in broken.out
    assert CANARY not in result.out + result.err + broken.out + broken.err
