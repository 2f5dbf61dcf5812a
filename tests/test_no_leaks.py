"""A canary secret never appears in any output or any file but the encrypted declarations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connsync.model import Secret
from connsync.store import Write
from connsync.store.sqlite import SqliteStore
from tests.conftest import CANARY, Result, Run, make_age_key, new_aws

UI_CANARY = "UiMadeCanary/NeverPrintThis+0123456789ab"
EXTERNAL_ID_CANARY = "ExternalIdCanary/NeverPrintThis=4711"
CANARIES = (CANARY, CANARY[::-1], UI_CANARY, EXTERNAL_ID_CANARY)


def test_canary_never_leaks(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                            tmp_path_factory: pytest.TempPathFactory) -> None:
    temp = tmp_path_factory.mktemp("tmp")
    monkeypatch.setenv("TMPDIR", str(temp))
    outputs: list[Result] = []

    def go(*args: str) -> Result:
        result = run(*args)
        outputs.append(result)
        return result

    outputs.append(new_aws(run, monkeypatch, name="AWS Prod"))
    outputs.append(new_aws(run, monkeypatch, name="AWS Dev", secret="short"))  # fails validation
    monkeypatch.setenv("EXTERNAL_ID", EXTERNAL_ID_CANARY)  # a role connection's secret
    role = go("new", "aws", "--name", "AWS Role", "--no-input", "--set", "account_id=123456789012",
              "--set", "default_region=us-east-1", "--set",
              "role_arn=arn:aws:iam::123456789012:role/platform", "--secret-env", "external_id=EXTERNAL_ID")
    assert role.code == 0, role.err
    SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default").put(
        Write(name="From UI", provider="aws", spec={"account_id": "123456789012", "default_region":
              "us-east-1", "access_key_id": "AKIAIOSFODNN7EXAMPLE"},
              secrets={"secret_access_key": Secret(UI_CANARY)}, managed=False, actor="ui",
              action="ui-create"),
        expected_version=None,
    )
    for fmt in ("text", "json", "github"):
        go("validate", "--format", fmt)
    for fmt in ("text", "json", "markdown"):
        go("plan", "--format", fmt, "--out", f"plan-{fmt}.json")
    go("apply", "--skip-verify")  # refused: no terminal
    go("apply", "--auto-approve", "--skip-verify")
    go("apply", "--auto-approve", "--skip-verify", "--format", "json")
    for fmt in ("text", "json"):
        go("list", "--format", fmt)
    go("import", "--all")
    go("plan", "--adopt")
    go("unlock", "nope")
    # A rotation, then a failure to decrypt.
    outputs.append(new_aws(run, monkeypatch, name="AWS Prod", secret=CANARY[::-1], extra=("--force",)))
    go("plan")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(make_age_key(temp / "wrong").file))
    go("plan")
    go("apply", "--auto-approve", "--skip-verify")

    for result in outputs:
        for canary in CANARIES:
            assert canary not in result.out and canary not in result.err, result
    encrypted = set((repo / "connections").glob("*.yaml"))
    scanned = 0
    for root in (repo, temp, Path(os.environ["HOME"])):
        for path in root.rglob("*"):
            if path.is_file() and path not in encrypted:
                data = path.read_bytes()
                scanned += 1
                for canary in CANARIES:
                    assert canary.encode() not in data, path
    assert scanned > 10
    assert (repo / ".connsync/store.db").exists() and (repo / "connections/from-ui.yaml").exists()
