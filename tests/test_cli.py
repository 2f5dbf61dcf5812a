"""The CLI's edges: exit codes, internal errors, the Secret type, read-only commands."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from connsync.model import Secret
from tests.conftest import CANARY, Run, new_aws, run_in_terminal


def test_secret_masks_itself_everywhere() -> None:
    secret = Secret(CANARY)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>50}", repr([secret]),
                  repr({"k": secret})):
        assert CANARY not in shown
    assert secret.reveal() == CANARY and secret == Secret(CANARY) and secret != Secret("other")
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_usage_errors_exit_64(run: Run, workdir: Path) -> None:
    for args in (["--no-such-option"], ["plan", "--format", "yaml"], ["frobnicate"], ["new"]):
        result = run(*args)
        assert result.code == 64, (args, result)
        assert "Traceback" not in result.err


def test_internal_error_is_one_line_and_a_log(run: Run, workdir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import connsync.commands.validate

    def explode(*args: object, **kwargs: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(connsync.commands.validate, "validate", explode)
    result = run("validate")
    assert result.code == 3
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "internal error (RuntimeError); details in" in lines[0]
    log = Path(lines[0].rsplit("details in ", 1)[1])
    assert "Traceback" in log.read_text() and log.stat().st_mode & 0o777 == 0o600
    verbose = run("-v", "validate")
    assert verbose.code == 3 and "Traceback" in verbose.err


def test_interrupt_exits_130(run: Run, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import connsync.commands.validate

    def interrupted(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(connsync.commands.validate, "validate", interrupted)
    assert run("validate").code == 130


def test_read_only_commands_create_no_store(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    assert new_aws(run, monkeypatch).code == 0
    assert run("plan").code == 0
    assert run("list").out.startswith("The store holds no connections")
    assert run("unlock", "abc").code == 1
    assert not (repo / ".connsync").exists()


def test_workspaces_are_separate_from_the_cli(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    assert new_aws(run, monkeypatch).code == 0
    assert run("--workspace", "staging", "apply", "--auto-approve", "--skip-verify").code == 0
    assert "AWS Prod" in run("--workspace", "staging", "list").out
    monkeypatch.setenv("CONNSYNC_WORKSPACE", "production")
    assert run("list").out.startswith("The store holds no connections")


def test_colour_only_on_a_terminal_and_never_with_no_color(run: Run, repo: Path) -> None:
    (repo / "connections/x.yaml").write_text("a: [")
    assert "\x1b[" not in run("validate").out  # captured output is not a terminal
    code, transcript = run_in_terminal("validate")
    assert code == 1 and b"\x1b[" in transcript
    for quiet in (run_in_terminal("validate", env={"NO_COLOR": "1"}),
                  run_in_terminal("--no-color", "validate")):
        assert quiet[0] == 1 and b"\x1b[" not in quiet[1]


def test_verify_shows_a_progress_bar_on_a_terminal(repo: Path, run: Run,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(7):  # Azure/GCP-free: AWS keys against an unreachable endpoint fail fast
        assert new_aws(run, monkeypatch, name=f"AWS {index}").code == 0
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    code, transcript = run_in_terminal("verify", env=env)
    assert code == 1 and b"Verifying" in transcript and b"7 connections verified" in transcript
    plain = run("verify")
    assert "Verifying" not in plain.out + plain.err


def test_a_missing_connections_directory_is_an_error(run: Run, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (["validate"], ["plan"], ["apply", "--auto-approve", "--prune"]):
        result = run(*args)
        assert result.code == 1 and "no connections directory at connections" in result.err
    assert not (tmp_path / ".connsync").exists()
