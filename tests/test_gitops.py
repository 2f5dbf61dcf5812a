"""Saved plans, prune through configuration, exit codes that settle, and CLI edges CI relies on."""

from __future__ import annotations

import json
import shutil
import signal
import stat
from pathlib import Path
from typing import Any

import pytest

from connsync.store.sqlite import SqliteStore
from tests.conftest import CANARY, Run, new_aws, run_in_terminal


def store_of(repo: Path) -> SqliteStore:
    return SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default")


@pytest.fixture
def applied(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two connections applied; then AWS Dev's file is deleted (an orphan)."""
    assert new_aws(run, monkeypatch, name="AWS Prod").code == 0
    assert new_aws(run, monkeypatch, name="AWS Dev", default_region="eu-west-1").code == 0
    assert run("apply", "--auto-approve", "--skip-verify").code == 0
    (repo / "connections/aws-dev.yaml").unlink()
    return repo


def prune_on(repo: Path) -> None:
    config = repo / "connsync.yaml"
    config.write_text(config.read_text().replace("prune: false", "prune: true"))


def test_kept_orphans_settle_and_are_reported(applied: Path, run: Run) -> None:
    result = run("plan", "--detailed-exitcode")
    assert result.code == 0  # apply would change nothing: no red label, no drift issue forever
    assert "Warning: 1 managed record(s) no longer declared by any file are kept" in result.err
    assert "'AWS Dev'" in result.err
    assert result.out.startswith("Nothing to change in workspace 'default', but the store and the files")
    report = json.loads(run("plan", "--format", "json").out)
    assert report["pending"] is False and report["summary"]["orphan"] == 1
    assert "prune is off" in report["warnings"][0]
    markdown = run("plan", "--format", "markdown").out
    assert "**Note:** 1 managed record(s) no longer declared" in markdown and '`AWS Dev`' in markdown
    assert run("apply", "--auto-approve", "--skip-verify").code == 0
    assert store_of(applied).get("AWS Dev") is not None


def test_apply_prune_in_connsync_yaml_is_used_by_plan_and_apply(applied: Path, run: Run) -> None:
    prune_on(applied)
    assert run("plan", "--detailed-exitcode").code == 2
    assert run("plan", "--no-prune", "--detailed-exitcode").code == 0
    result = run("apply", "--auto-approve", "--skip-verify", "--format", "json")
    assert json.loads(result.out)["applied"] == [{"action": "delete", "name": "AWS Dev"}]
    assert run("plan", "--detailed-exitcode").code == 0  # settled


def test_a_conflict_stays_pending(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from connsync.store import Write

    store_of(repo).put(Write(name="AWS Prod", provider="aws", spec={}, secrets={}, managed=False,
                             actor="ui", action="ui-create"), expected_version=None)
    assert new_aws(run, monkeypatch).code == 0
    assert run("plan", "--detailed-exitcode").code == 2  # apply would fail on it until adopted


def test_saved_plan_is_private_signed_and_shown(applied: Path, run: Run) -> None:
    missing = run("plan", "--out", "no/such/dir/changes.plan")
    assert missing.code == 64 and "no directory" in missing.err and not (applied / "no").exists()
    assert run("plan", "--prune", "--out", "changes.plan").code == 0
    path = applied / "changes.plan"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["mac"].startswith("hmac-sha256:") and CANARY not in path.read_text()
    text = run("show", "changes.plan")
    assert text.code == 0 and "prune on" in text.out and "- delete   AWS Dev" in text.out
    assert "signed; apply checks the signature against the store" in text.out
    assert "| - | delete | `AWS Dev` |" in run("show", "changes.plan", "--format", "markdown").out
    shown = json.loads(run("show", "changes.plan", "--format", "json").out)
    assert shown["command"] == "show" and shown["prune"] is True and shown["signed"] is True


def edit_plan(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_an_edited_plan_cannot_delete_or_adopt(applied: Path, run: Run) -> None:
    assert run("plan", "--out", "changes.plan").code == 0  # an orphan, kept

    def orphan_to_delete(data: dict[str, Any]) -> None:
        data["prune"] = True
        for change in data["changes"]:
            if change["action"] == "orphan":
                change["action"] = "delete"
        data["summary"]["orphan"], data["summary"]["delete"] = 0, 1

    edit_plan(applied / "changes.plan", orphan_to_delete)
    result = run("apply", "changes.plan", "--auto-approve", "--skip-verify")
    assert result.code == 1 and "plan file was changed after it was made" in result.err
    assert store_of(applied).get("AWS Dev") is not None
    # Without the MAC it would pass for a plan made before the store existed: it is edited all the same.
    edit_plan(applied / "changes.plan", lambda data: data.pop("mac"))
    result = run("apply", "changes.plan", "--auto-approve", "--skip-verify")
    assert result.code == 1 and "plan file was changed after it was made" in result.err
    assert store_of(applied).get("AWS Dev") is not None


def test_an_unsigned_plan_is_applied_only_while_the_store_does_not_exist(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    assert new_aws(run, monkeypatch, name="AWS Prod").code == 0
    for name in ("first.plan", "early.plan"):  # no store yet: nothing to sign with
        assert run("plan", "--out", name).code == 0
        assert "mac" not in json.loads((repo / name).read_text())
    assert run("apply", "first.plan", "--auto-approve", "--skip-verify").code == 0
    assert store_of(repo).get("AWS Prod") is not None
    # The store exists now: the other plan made before it did is refused, like an edited one.
    assert new_aws(run, monkeypatch, name="AWS Dev").code == 0
    (repo / "connections/aws-prod.yaml").unlink()
    late = run("apply", "early.plan", "--auto-approve", "--skip-verify")
    assert late.code == 1 and "plan file was changed after it was made" in late.err, late.err
    # A signed plan whose MAC was removed is refused the same way, and nothing is written.
    assert run("plan", "--out", "signed.plan").code == 0
    edit_plan(repo / "signed.plan", lambda data: data.pop("mac"))
    stripped = run("apply", "signed.plan", "--auto-approve", "--skip-verify")
    assert stripped.code == 1 and "plan file was changed after it was made" in stripped.err
    assert store_of(repo).get("AWS Dev") is None


@pytest.mark.parametrize(("edit", "where"), [
    (lambda d: d.update(paths=[123]), "$.paths[0]: 123 is not of type 'string'"),
    (lambda d: d["changes"][0].update(name=None), "$.changes[0].name: None is not of type 'string'"),
    (lambda d: d.pop("workspace"), "$: 'workspace' is a required property"),
])
def test_malformed_plans_are_one_clear_error(applied: Path, run: Run, edit: Any, where: str) -> None:
    assert run("plan", "--out", "changes.plan").code == 0
    edit_plan(applied / "changes.plan", edit)
    for command in (("apply", "changes.plan", "--auto-approve"), ("show", "changes.plan")):
        result = run(*command)
        assert result.code == 1, result.err
        assert result.err.splitlines()[0] == (f"connsync: error: changes.plan: not a valid connsync plan "
                                              f"file: {where}")
        assert "Traceback" not in result.err


def test_a_saved_plan_refuses_flags_that_would_change_it(applied: Path, run: Run) -> None:
    assert run("plan", "--out", "changes.plan").code == 0
    for flag in ("--prune", "--no-prune", "--adopt"):
        result = run("apply", "changes.plan", flag, "--auto-approve")
        assert result.code == 64 and f"{flag} cannot be used with a saved plan" in result.err
    assert store_of(applied).get("AWS Dev") is not None


def test_reapplying_an_applied_plan_says_the_store_moved(repo: Path, run: Run,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("apply", "--auto-approve", "--skip-verify").code == 0  # creates the (empty) store
    assert new_aws(run, monkeypatch).code == 0
    assert run("plan", "--out", "changes.plan").code == 0
    assert run("apply", "changes.plan", "--auto-approve", "--skip-verify").code == 0
    result = run("apply", "changes.plan", "--auto-approve", "--skip-verify")
    assert result.code == 1
    assert ("stale plan: 'AWS Prod' changed in the store since the plan was made "
            "(no record then, version 1 now)") in result.err


def test_a_saved_plan_asks_like_apply(applied: Path, run: Run) -> None:
    assert run("plan", "--prune", "--out", "changes.plan").code == 0
    result = run("apply", "changes.plan", "--skip-verify")
    assert result.code == 1 and "standard input is not a terminal" in result.err
    assert "- delete   AWS Dev" in result.out  # what it would have done was shown first


def test_deletes_need_a_typed_yes(applied: Path) -> None:
    prune_on(applied)
    question = b"Only 'yes' will be accepted to approve"
    code, transcript = run_in_terminal("apply", "--skip-verify", answers=((question, b"y\n"),))
    assert code == 1 and b"nothing was changed" in transcript
    assert store_of(applied).get("AWS Dev") is not None
    code, transcript = run_in_terminal("apply", "--skip-verify", answers=((question, b"yes\n"),))
    assert code == 0 and b"1 deleted" in transcript
    assert store_of(applied).get("AWS Dev") is None


def test_interrupt_at_the_prompt_says_nothing_was_changed(applied: Path) -> None:
    prune_on(applied)
    question = b"Only 'yes' will be accepted to approve"
    code, transcript = run_in_terminal("apply", "--skip-verify", answers=((question, b"\x03"),))
    assert code == 130 and b"apply cancelled at the prompt; nothing was changed" in transcript
    assert store_of(applied).get("AWS Dev") is not None


def test_sigint_during_apply_reports_what_was_written(repo: Path, run: Run,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS A", "AWS B", "AWS C"):
        assert new_aws(run, monkeypatch, name=name).code == 0
    real_put = SqliteStore.put
    calls = []

    def put_then_sigint(self: SqliteStore, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)  # a real ^C, in the middle of the second write
        return real_put(self, *args, **kwargs)

    monkeypatch.setattr(SqliteStore, "put", put_then_sigint)
    result = run("apply", "--auto-approve", "--skip-verify")
    assert result.code == 130
    assert "AWS A: created (version 1)" in result.out
    assert ("Interrupted (^C) after 1 of 3 writes (as the store holds them); the other 2 were not "
            "written") in result.err
    assert "failed" not in result.out + result.err  # never "0 failed" beside an interrupted write
    assert [r.name for r in store_of(repo).records()] == ["AWS A"]  # the second rolled back, whole
    monkeypatch.setattr(SqliteStore, "put", real_put)
    assert run("apply", "--auto-approve", "--skip-verify").code == 0  # and a re-run converges
    assert len(store_of(repo).records()) == 3


def test_global_options_after_the_command(repo: Path, run: Run, tmp_path: Path) -> None:
    import click

    from connsync.cli import cli

    for name, command in cli.commands.items():  # every command, including ones added later
        if not isinstance(command, click.Group):
            assert {"config_path", "store", "workspace", "no_color", "verbose"} <= {
                p.name for p in command.params}, name
    assert "--no-color" not in run("verify", "--help").out  # documented once, on the group
    assert run("validate", "--no-color").code == 0
    other = tmp_path / "other.db"
    assert run("apply", "--auto-approve", "--store", f"sqlite:{other}", "--workspace", "w2").code == 0
    assert other.exists()
    assert run("list", "-v", "--config", str(repo / "connsync.yaml")).code == 0


def test_plan_against_the_base_branch_needs_no_key_and_no_store(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert new_aws(run, monkeypatch, name="AWS Prod").code == 0
    assert new_aws(run, monkeypatch, name="AWS Dev").code == 0
    base = tmp_path / "base"
    shutil.copytree(repo, base)
    path = repo / "connections/aws-prod.yaml"
    path.write_text(path.read_text().replace("us-east-1", "eu-west-1"))
    (repo / "connections/aws-dev.yaml").unlink()
    assert new_aws(run, monkeypatch, name="AWS Dev", secret=CANARY[::-1]).code == 0  # re-encrypted
    assert new_aws(run, monkeypatch, name="AWS New").code == 0
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")  # a fork's run: no key
    result = run("plan", "--base", str(base), "--format", "markdown", "--detailed-exitcode",
                 "--store", "sqlite:/nonexistent/dir/store.db")
    assert result.code == 2, result.err
    assert "secret fields were not compared" in result.out
    assert "encrypted values of `AWS Dev` differ from the base branch" in result.out
    assert "| + | create | `AWS New` |" in result.out
    assert 'default_region: "us-east-1" -> "eu-west-1"' in result.out
    report = json.loads(run("plan", "--base", str(base), "--format", "json").out)
    assert report["secrets_compared"] is False
    assert {c["name"]: c["action"] for c in report["changes"]} == {
        "AWS Dev": "noop", "AWS New": "create", "AWS Prod": "update"}
