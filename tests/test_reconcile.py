"""plan, apply, list, import and unlock through the CLI, with real sops and a real SQLite file."""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connsync.model import Secret
from connsync.store import Write
from connsync.store.sqlite import SqliteStore
from tests.conftest import CANARY, Run, new_aws, run_in_terminal, run_process

SECRET_2 = "AnotherSecretValue/ForRotation+abcdef012"


def store_of(repo: Path) -> SqliteStore:
    return SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default")


def plan_json(run: Run, *args: str) -> dict[str, Any]:
    result = run("plan", "--format", "json", *args)
    assert result.code == 0, result.err
    report: dict[str, Any] = json.loads(result.out)
    return report


def actions(run: Run, *args: str) -> list[tuple[str, str]]:
    return [(c["action"], c["name"]) for c in plan_json(run, *args)["changes"]]


@pytest.fixture
def two(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> Path:
    assert new_aws(run, monkeypatch, name="AWS Prod").code == 0
    assert new_aws(run, monkeypatch, name="AWS Dev", default_region="eu-west-1").code == 0
    return repo


def apply(run: Run, *args: str) -> tuple[int, dict[str, Any]]:
    result = run("apply", "--auto-approve", "--skip-verify", "--format", "json", *args)
    return result.code, json.loads(result.out) if result.out.strip() else {}


def test_create_then_noop_without_decrypting(two: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    assert actions(run) == [("create", "AWS Dev"), ("create", "AWS Prod")]
    code, report = apply(run)
    assert code == 0 and report["ok"] is True
    assert report["applied"] == [{"action": "create", "name": "AWS Dev", "version": 1},
                                 {"action": "create", "name": "AWS Prod", "version": 1}]
    # With only a sops that always fails, any decryption would fail the plan.
    broken = tmp_path / "sops"
    broken.write_text("#!/bin/sh\nexit 99\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CONNSYNC_SOPS", str(broken))
    monkeypatch.setenv("CONNSYNC_SOPS_ENGINE", "binary")
    assert actions(run) == [("noop", "AWS Dev"), ("noop", "AWS Prod")]
    assert run("plan", "--detailed-exitcode").code == 0


def test_update_clear_and_secret_fields(two: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    assert apply(run)[0] == 0
    path = two / "connections/aws-prod.yaml"
    path.write_text(path.read_text().replace("us-east-1", "us-west-2"))
    assert new_aws(run, monkeypatch, name="AWS Dev", secret=SECRET_2, default_region="eu-west-1",
                   extra=("--force",)).code == 0
    changes = {c["name"]: c for c in plan_json(run)["changes"]}
    assert changes["AWS Prod"]["fields"] == {"default_region": {"before": "us-east-1", "after": "us-west-2"}}
    assert changes["AWS Dev"]["fields"] == {"secret_access_key": {"sensitive": True, "changed": True}}
    assert run("plan", "--detailed-exitcode").code == 2
    code, report = apply(run)
    assert code == 0 and {a["name"]: a["version"] for a in report["applied"]} == {
        "AWS Dev": 2, "AWS Prod": 2}
    assert store_of(two).read_secrets("AWS Dev") == {"secret_access_key": Secret(SECRET_2)}
    assert actions(run) == [("noop", "AWS Dev"), ("noop", "AWS Prod")]


def test_comment_only_edit_is_noop_and_remembered(two: Path, run: Run) -> None:
    apply(run)
    path = two / "connections/aws-prod.yaml"
    path.write_text(path.read_text() + "# a trailing comment\n")
    assert actions(run) == [("noop", "AWS Dev"), ("noop", "AWS Prod")]
    apply(run)
    record = store_of(two).get("AWS Prod")
    assert record is not None and record.version == 1
    assert record.source_digest == __import__("hashlib").sha256(path.read_bytes()).hexdigest()


def test_drift_from_the_ui(two: Path, run: Run) -> None:
    apply(run)
    db = sqlite3_connect(two)
    db.execute("UPDATE connections SET spec = json_set(spec, '$.default_region', 'ap-south-1'), "
               "version = version + 1 WHERE name = 'AWS Prod'")
    db.commit()
    (change,) = [c for c in plan_json(run)["changes"] if c["name"] == "AWS Prod"]
    assert change["action"] == "update" and change["drift"] is True
    assert "changed outside connsync" in run("plan").out
    apply(run)
    assert actions(run) == [("noop", "AWS Dev"), ("noop", "AWS Prod")]


def sqlite3_connect(repo: Path) -> sqlite3.Connection:
    return sqlite3.connect(repo / ".connsync/store.db")


def test_conflict_and_adopt(two: Path, run: Run) -> None:
    store_of(two).put(Write(name="aws prod", provider="aws", spec={"account_id": "000000000000"},
                            secrets={"secret_access_key": Secret("x" * 40)}, managed=False,
                            actor="ui", action="ui-create"), expected_version=None)
    assert ("conflict", "AWS Prod") in actions(run)
    code, report = apply(run)
    assert code == 1
    assert report["failed"][0]["name"] == "AWS Prod" and "--adopt" in report["failed"][0]["error"]
    assert [a["name"] for a in report["applied"]] == ["AWS Dev"]
    code, report = apply(run, "--adopt")
    assert code == 0 and report["applied"] == [{"action": "update", "name": "AWS Prod", "version": 2}]
    record = store_of(two).get("AWS Prod")
    assert record is not None and record.managed and record.spec["account_id"] == "123456789012"
    assert [a.action for a in store_of(two).audit()][-1] == "adopt"


def test_orphans_prune_and_max_deletes(two: Path, run: Run) -> None:
    apply(run)
    store_of(two).put(Write(name="UI only", provider="aws", spec={}, secrets={}, managed=False,
                            actor="ui", action="ui-create"), expected_version=None)
    (two / "connections/aws-dev.yaml").unlink()
    assert actions(run) == [("orphan", "AWS Dev"), ("noop", "AWS Prod")]
    assert "1 unmanaged record not in any file, ignored" in run("plan").out
    assert apply(run)[0] == 0 and store_of(two).get("AWS Dev") is not None  # orphans stay
    code = run("apply", "--auto-approve", "--skip-verify", "--prune", "--max-deletes", "0").code
    assert code == 1 and store_of(two).get("AWS Dev") is not None
    code, report = apply(run, "--prune")
    assert code == 0 and report["applied"] == [{"action": "delete", "name": "AWS Dev"}]
    assert store_of(two).get("AWS Dev") is None and store_of(two).get("UI only") is not None


def test_saved_plan_and_staleness(two: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("plan", "--out", "plan.json").code == 0
    saved = (two / "plan.json").read_text()
    assert CANARY not in saved and "secret_access_key" in saved
    assert run("apply", "plan.json", "--skip-verify", "--auto-approve").code == 0
    assert actions(run) == [("noop", "AWS Dev"), ("noop", "AWS Prod")]

    path = two / "connections/aws-prod.yaml"
    path.write_text(path.read_text().replace("us-east-1", "us-west-2"))
    assert run("plan", "--out", "plan.json").code == 0
    path.write_text(path.read_text().replace("us-west-2", "us-west-1"))
    result = run("apply", "plan.json", "--skip-verify", "--auto-approve")
    assert result.code == 1
    assert "stale plan: the file connections/aws-prod.yaml of 'AWS Prod' changed" in result.err

    assert run("plan", "--out", "plan.json").code == 0
    db = sqlite3_connect(two)
    db.execute("UPDATE connections SET version = version + 1 WHERE name = 'AWS Prod'")
    db.commit()
    result = run("apply", "plan.json", "--skip-verify", "--auto-approve")
    assert result.code == 1 and "'AWS Prod' changed in the store since the plan" in result.err
    (two / "junk.json").write_text("{}")
    assert run("apply", "junk.json").code == 1


def test_detailed_exitcode_on_error(two: Path, run: Run) -> None:
    (two / "connections/broken.yaml").write_text("a: [")
    result = run("plan", "--detailed-exitcode")
    assert result.code == 1
    assert "connections/broken.yaml:" in result.err and "nothing was planned" in result.err


def test_apply_refuses_without_a_terminal(two: Path, run: Run) -> None:
    result = run("apply", "--skip-verify")
    assert result.code == 1 and "--auto-approve" in result.err
    assert store_of(two).records() == []


def test_apply_asks_on_a_terminal(two: Path) -> None:
    question = b"Apply these changes?"
    code, transcript = run_in_terminal("apply", "--skip-verify", answers=((question, b"n\n"),))
    assert code == 1 and b"nothing was changed" in transcript and store_of(two).records() == []
    code, transcript = run_in_terminal("apply", "--skip-verify", answers=((question, b"y\n"),))
    assert code == 0 and b"Apply complete: 2 created" in transcript


def test_list_never_shows_secrets(two: Path, run: Run) -> None:
    apply(run)
    listed = json.loads(run("list", "--format", "json").out)["connections"]
    assert [r["name"] for r in listed] == ["AWS Dev", "AWS Prod"]
    assert listed[0]["spec"] == {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "account_id": "123456789012",
                                 "default_region": "eu-west-1"}
    assert listed[0]["managed"] is True and listed[0]["version"] == 1
    assert listed[0]["source"] == "connections/aws-dev.yaml"
    text = run("list").out
    assert "AWS Prod" in text and CANARY not in text


def test_import_writes_encrypted_files_then_noop(repo: Path, run: Run) -> None:
    store_of(repo).put(Write(name="Made In UI", provider="aws",
                             spec={"account_id": "123456789012", "default_region": "us-east-1",
                                   "access_key_id": "AKIAIOSFODNN7EXAMPLE"},
                             secrets={"secret_access_key": Secret(CANARY)}, managed=False, actor="ui",
                             action="ui-create", description="from the UI"), expected_version=None)
    assert run("import").code == 64
    result = run("import", "--all")
    assert result.code == 0, result.err
    path = repo / "connections/made-in-ui.yaml"
    text = path.read_text()
    assert CANARY not in text and "ENC[AES256_GCM" in text
    assert text.startswith("# yaml-language-server: $schema=../schemas/connection.schema.json")
    assert run("validate").code == 0
    assert actions(run) == [("noop", "Made In UI")]
    assert run("import", "--all").out.startswith("Nothing to import")
    assert run("import", "Nope").code == 1


def test_two_applies_never_interleave(two: Path) -> None:
    env = {"CONNSYNC_STORE": f"sqlite:{two / '.connsync/store.db'}"}
    procs = [subprocess.Popen([sys.executable, "-m", "connsync", "apply", "--auto-approve", "--skip-verify",
                               "--format", "json"], cwd=two, env={**os.environ, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    applied = sorted(len(r["applied"]) for r in reports)
    assert applied == [0, 2]  # the second waited, planned afresh, and found nothing to do
    assert [(a.name, a.version_after) for a in store_of(two).audit()] == [("AWS Dev", 1), ("AWS Prod", 1)]


CRASH_SCRIPT = """
import os, signal, sys
from connsync.store import sqlite as backend
original = backend.SqliteStore._audit
calls = {"n": 0}
crash_at = int(sys.argv[1])
def crash_after_row(self, *args, **kwargs):
    calls["n"] += 1
    if calls["n"] == crash_at:
        os.kill(os.getpid(), signal.SIGKILL)  # the row is written, its transaction not committed
    return original(self, *args, **kwargs)
backend.SqliteStore._audit = crash_after_row
from connsync.cli import main
sys.argv = ["connsync", "apply", "--auto-approve", "--skip-verify"]
raise SystemExit(main())
"""


def test_kill_9_mid_apply_leaves_records_whole_and_converges(two: Path, run: Run,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    apply(run)
    path = two / "connections/aws-prod.yaml"
    path.write_text(path.read_text().replace("us-east-1", "us-west-2"))
    assert new_aws(run, monkeypatch, name="AWS Dev", secret=SECRET_2, default_region="ca-central-1",
                   extra=("--force",)).code == 0
    # Dies inside the second write: the first is committed, the second must not show at all.
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, "2"], cwd=two, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL
    store = store_of(two)
    dev, prod = store.get("AWS Dev"), store.get("AWS Prod")
    assert dev is not None and prod is not None
    assert (dev.version, dev.spec["default_region"]) == (2, "ca-central-1")
    assert store.read_secrets("AWS Dev") == {"secret_access_key": Secret(SECRET_2)}
    assert (prod.version, prod.spec["default_region"]) == (1, "us-east-1")  # fully old
    assert store.read_secrets("AWS Prod") == {"secret_access_key": Secret(CANARY)}

    # The dead holder's lock is taken over at once, and said so; no one has to run unlock.
    taken = run("apply", "--auto-approve", "--skip-verify", "--format", "json", "--lock-timeout", "0")
    assert taken.code == 0, taken.err
    assert json.loads(taken.out)["applied"] == [{"action": "update", "name": "AWS Prod", "version": 2}]
    assert "took over the workspace lock" in taken.err and "that process is gone" in taken.err
    assert actions(run) == [("noop", "AWS Dev"), ("noop", "AWS Prod")]


def make_read_only(path: Path, request: pytest.FixtureRequest) -> None:
    """chmod binds only other users; root needs the immutable attribute."""
    if os.geteuid() != 0:
        path.chmod(0o400)
        path.parent.chmod(0o500)
        request.addfinalizer(lambda: path.parent.chmod(0o700))
        return
    def immutable(target: Path, flag: str) -> int:
        return subprocess.run(["chattr", flag, str(target)], capture_output=True, check=False).returncode

    for target in (path, path.parent):
        assert immutable(target, "+i") == 0, f"chattr +i {target} failed"
        request.addfinalizer(functools.partial(immutable, target, "-i"))


@pytest.mark.parametrize("problem", ["not-a-directory", "read-only", "corrupt", "wrong-key"])
def test_store_that_cannot_be_opened(two: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                                     problem: str, request: pytest.FixtureRequest) -> None:
    apply(run)
    db = two / ".connsync/store.db"
    before = db.read_bytes()
    if problem == "not-a-directory":
        (two / "blocker").write_text("")
        monkeypatch.setenv("CONNSYNC_STORE", f"sqlite:{two / 'blocker/store.db'}")
    elif problem == "read-only":
        run("list")  # checkpoint nothing pending: the read-only file is the whole store
        make_read_only(db, request)
    elif problem == "corrupt":
        (two / "corrupt.db").write_bytes(b"garbage" * 1000)
        monkeypatch.setenv("CONNSYNC_STORE", f"sqlite:{two / 'corrupt.db'}")
    else:
        import base64

        (two / ".connsync/store.db.key").write_text(base64.b64encode(b"k" * 32).decode())
    path = two / "connections/aws-prod.yaml"
    path.write_text(path.read_text().replace("us-east-1", "us-west-2"))
    for args in (["plan"], ["apply", "--auto-approve", "--skip-verify"], ["list"]):
        result = run(*args)
        assert result.code == 1, (args, result)
        assert len(result.err.strip().splitlines()) <= 2 and "Traceback" not in result.err
        assert result.err.startswith("connsync: error: ")
    assert db.read_bytes() == before


def test_internal_error_points_at_a_log(two: Path) -> None:
    (two / "connsync.yaml").write_text("store: 'sqlite:'\n")
    result = run_process("list", cwd=two)
    assert result.code == 1 and "names no file" in result.err


def test_decryption_failures_name_each_file(two: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    from tests.conftest import make_age_key

    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(make_age_key(tmp_path / "other").file))
    both = run("plan")
    assert both.code == 1 and "cannot decrypt 2 files" in both.err
    assert "connections/aws-dev.yaml: no key could decrypt" in both.err
    one = run("plan", "connections/aws-prod.yaml")
    assert one.code == 1
    assert one.err.startswith("connsync: error: connections/aws-prod.yaml: no key could decrypt")
    assert "hint: sops looked in SOPS_AGE_KEY (not set); SOPS_AGE_KEY_FILE=" in one.err


def test_a_store_failure_on_one_write_spares_the_others(two: Path, run: Run) -> None:
    store_of(two).close()  # creates the schema
    db = sqlite3_connect(two)
    db.execute("CREATE TRIGGER full BEFORE INSERT ON connections WHEN NEW.name = 'AWS Dev' "
               "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    db.commit()
    code, report = apply(run)
    assert code == 1
    assert [a["name"] for a in report["applied"]] == ["AWS Prod"]
    assert report["failed"] == [{"name": "AWS Dev", "action": "create",
                                 "error": "the store refused the write: database or disk is full"}]
    assert [(a.name, a.version_after) for a in store_of(two).audit()] == [("AWS Prod", 1)]
    db.execute("DROP TRIGGER full")
    db.commit()
    code, report = apply(run)
    assert code == 0 and [a["name"] for a in report["applied"]] == ["AWS Dev"]
    assert actions(run) == [("noop", "AWS Dev"), ("noop", "AWS Prod")]


def test_a_secret_of_the_wrong_shape_is_never_planned_or_written(repo: Path, run: Run) -> None:
    """validate cannot see inside ENC[...]; plan and apply check the decrypted shape."""
    from connsync.sops import encrypt

    wrong = CANARY + "xyz"  # 43 characters: not an AWS secret access key
    document = ("apiVersion: connsync/v1\nprovider: aws\nmetadata:\n  name: Long\nspec:\n"
                '  account_id: "123456789012"\n  default_region: us-east-1\n'
                f"  access_key_id: AKIAIOSFODNN7EXAMPLE\n  secret_access_key: {wrong}\n")
    target = repo / "connections" / "long.yaml"
    target.write_bytes(encrypt(document.encode(), target))
    assert run("validate").code == 0  # offline, it is a well-formed encrypted value
    for args in (["plan"], ["apply", "--auto-approve", "--skip-verify"]):
        result = run(*args)
        assert result.code == 1, (args, result)
        assert "connections/long.yaml:9:" in result.err and "must be 40 characters (got 43)" in result.err
        assert wrong not in result.out + result.err and CANARY not in result.out + result.err
    assert store_of(repo).records() == []


@pytest.mark.parametrize("where", ["other-repository", "repository-root"])
def test_every_command_acts_only_on_the_connections_directory(two: Path, run: Run, tmp_path: Path,
                                                               where: str) -> None:
    if where == "other-repository":
        elsewhere = tmp_path.parent / f"{tmp_path.name}-other"
        elsewhere.mkdir()
    else:  # in the repository, beside connections/: a stored record would be an orphan of it
        elsewhere = two / "other"
        elsewhere.mkdir()
    outside = elsewhere / "aws-prod.yaml"
    outside.write_bytes((two / "connections/aws-prod.yaml").read_bytes().replace(b"AWS Prod", b"Other"))
    for args in (["validate"], ["verify"], ["plan"], ["plan", "--out", "x.plan"]):
        result = run(*args, str(outside), "--format", "json")
        assert result.code == 1, (args, result)
        assert "outside-connections" in result.out + result.err, (args, result)
        assert "outside the connections directory connections" in result.out + result.err, (args, result)
    assert not (two / "x.plan").exists()
    finding = json.loads(run("validate", str(outside), "--format", "json").out)["findings"][0]
    assert (finding["rule"], finding["line"], finding["column"]) == ("outside-connections", 1, 1)
    assert run("validate", "connections/aws-prod.yaml").code == 0  # the rule is the directory, not PATHS


def test_apply_given_a_connection_file_says_it_takes_a_plan(two: Path, run: Run) -> None:
    result = run("apply", "connections/aws-prod.yaml")
    assert result.code == 64
    assert "apply takes a plan file, not a connection file" in result.err
    assert "connsync apply" in result.err and "--out" in result.err
