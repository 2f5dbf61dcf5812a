"""``connsync rotate`` on an Azure connection, against Microsoft Graph in tests/fake_azure.py over HTTPS.

The fake issues a token only for a secret the application holds, so "the new
secret works" means Entra ID (the fake) signed it in; secrets are random and
never leave the fake but through addPassword's answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connsync import sops
from connsync.model import Declaration
from connsync.store.sqlite import SqliteStore
from connsync.validate import loader
from tests.conftest import CANARY, Result, Run
from tests.fake_azure import CLIENT, SUBSCRIPTION, TENANT, App, FakeAzure, serve
from tests.test_outputs import checked

ADMIN = "99999999-2222-3333-4444-555555555555"
ADMIN_SECRET = "AdminSecret~0123456789abcdefghijklmnop"
FILE = Path("connections/azure-prod.yaml")


@pytest.fixture
def azure(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAzure]:
    fake = FakeAzure(apps={CLIENT: App(CANARY), ADMIN: App(ADMIN_SECRET)}, graph_admins={ADMIN})
    with serve(fake, tmp_path_factory.mktemp("tls")) as served:
        monkeypatch.setenv("CONNSYNC_CA_BUNDLE", served.ca_bundle)
        for variable in ("AUTHORITY_HOST", "MANAGEMENT_ENDPOINT", "GRAPH_ENDPOINT"):
            monkeypatch.setenv(f"CONNSYNC_AZURE_{variable}", served.url)
        monkeypatch.setenv("CONNSYNC_AZURE_INSTANCE_DISCOVERY", "false")
        monkeypatch.setenv("TEST_AZ_SECRET", CANARY)
        made = run("new", "azure", "--name", "Azure Prod", "--no-input", "--secret-env",
                   "client_secret=TEST_AZ_SECRET", "--set", f"tenant_id={TENANT}",
                   "--set", f"client_id={CLIENT}", "--set", f"subscription_id={SUBSCRIPTION}")
        assert made.code == 0, made.err
        yield served


def in_file(repo: Path) -> str:
    decl = loader.load_file(repo / FILE)
    assert isinstance(decl, Declaration)
    return sops.decrypt(decl, repo / FILE).secrets["client_secret"].reveal()


def clean(results: list[Result], *secrets: str) -> None:
    for result in results:
        for secret in (CANARY, *secrets):
            assert secret not in result.out + result.err


def test_azure_rotation_cycle(repo: Path, azure: FakeAzure, run: Run) -> None:
    app = azure.apps[CLIENT]
    outputs = [run("apply", "--auto-approve")]
    assert outputs[0].code == 0, outputs[0].err
    outputs.append(rotated := run("rotate", "Azure Prod", "--expires-in-days", "30"))
    assert rotated.code == 0, rotated.err
    new = in_file(repo)
    assert new != CANARY and list(app.secrets().values()) == [CANARY, new]  # both work until stored
    assert "(in 30 days)" in rotated.out and "Entra ID accepts" in rotated.out

    outputs.append(early := run("rotate", "--finish", "Azure Prod"))
    assert early.code == 1 and "does not hold the new secret" in early.err
    assert CANARY in app.secrets().values()
    outputs.append(run("apply", "--auto-approve"))
    outputs.append(finished := run("rotate", "--finish", "Azure Prod", "--format", "json"))
    report = checked("rotate", finished, ok=True)
    assert [s["action"] for s in report["rotations"][0]["steps"]] == ["rotate-remove-secret"]
    assert list(app.secrets().values()) == [new]  # the old secret no longer signs in
    outputs.append(verified := run("verify", "--format", "json"))
    [result] = checked("verify", verified, ok=True)["results"]
    # 30 days asked for: the secret is in its last month, which verify says (the key's age, for Azure).
    assert result["status"] == "warning"
    [expiring] = result["messages"]
    assert expiring.startswith("the client secret expires on ")
    assert "in 29 days (client_secret_expires)" in expiring
    spec = loader.load_file(repo / FILE)
    assert isinstance(spec, Declaration)
    [new_id] = app.secrets()
    assert spec.spec["client_secret_id"] == new_id
    assert spec.spec["client_secret_expires"] == azure.apps[CLIENT].details[new_id]["endDateTime"]
    assert "client_secret_expires: \"20" in (repo / FILE).read_text()  # quoted: YAML keeps it text
    actions = [a.action.split(" ")[0] for a in SqliteStore.open(
        f"sqlite:{repo / '.connsync/store.db'}", "default").audit()]
    assert actions == ["create", "rotate-create-key", "rotate-key-accepted", "rotate-write-file", "update",
                       "rotate-remove-secret"]
    clean(outputs, new)


def test_an_app_that_may_not_manage_itself(repo: Path, azure: FakeAzure, run: Run,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    azure.apps[CLIENT].manages_itself = False
    before = (repo / FILE).read_bytes()
    refused = run("rotate", "Azure Prod")
    assert refused.code == 1 and "Authorization_RequestDenied" in refused.err and "--admin-env" in refused.err
    assert (repo / FILE).read_bytes() == before and list(azure.apps[CLIENT].secrets().values()) == [CANARY]
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", ADMIN)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", ADMIN_SECRET)
    result = run("rotate", "Azure Prod", "--admin-env", "--apply", "--auto-approve")
    assert result.code == 0, result.err
    new = in_file(repo)
    assert list(azure.apps[CLIENT].secrets().values()) == [new]
    clean([refused, result], new, ADMIN_SECRET)


def test_an_app_at_its_maximum_of_secrets(repo: Path, azure: FakeAzure, run: Run) -> None:
    azure.max_secrets = 1
    before = (repo / FILE).read_bytes()
    result = run("rotate", "Azure Prod")
    assert result.code == 1 and "addPassword" in result.err and "maximum number of secrets" in result.err
    assert (repo / FILE).read_bytes() == before and list(azure.apps[CLIENT].secrets().values()) == [CANARY]


def test_local_mode_that_cannot_store_names_the_client_secret(repo: Path, azure: FakeAzure, run: Run) -> None:
    from connsync.store import Write

    SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default").put(
        Write(name="Azure Prod", provider="azure", spec={"client_id": CLIENT}, secrets={}, managed=False,
              actor="ui", action="ui-create"), expected_version=None)
    result = run("rotate", "Azure Prod", "--apply", "--auto-approve")
    assert result.code == 1
    new = in_file(repo)
    assert list(azure.apps[CLIENT].secrets().values()) == [CANARY, new]  # written, so kept: both work
    [new_id] = [k for k, v in azure.apps[CLIENT].secrets().items() if v == new]
    err = " ".join(result.err.split())
    assert f"the new client secret {new_id} is in connections/azure-prod.yaml but not in the store" in err
    assert "still signs in" in err and f"az ad app credential delete --id {CLIENT} --key-id {new_id}" in err
    assert "aws iam" not in err and "access key" not in err
    clean([result], new)


def test_the_new_secret_s_age_and_end_are_kept(repo: Path, azure: FakeAzure, run: Run) -> None:
    import sqlite3
    from datetime import UTC, datetime, timedelta

    outputs = [rotated := run("rotate", "Azure Prod", "--apply", "--auto-approve", "--expires-in-days", "10")]
    assert rotated.code == 0, rotated.err
    [new_id] = azure.apps[CLIENT].secrets()
    record = SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default").get("Azure Prod")
    assert record is not None and record.spec["client_secret_id"] == new_id  # stored with the secret
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat(timespec="seconds").replace("+00:00", "Z")
    with sqlite3.connect(repo / ".connsync/store.db") as db:  # as if rotate had made it 40 days ago
        db.execute("UPDATE audit SET at = ? WHERE action LIKE 'rotate-create-key%'", (old,))
    outputs.append(listed := run("list", "--format", "json"))
    assert [c["key_age_days"] for c in checked("list", listed, ok=True)["connections"]] == [40]
    outputs.append(planned := run("plan"))
    assert planned.code == 0
    notes = " ".join(planned.err.split())
    assert f"'Azure Prod': client secret {new_id} is 40 days old, past max_key_age_days (90)" not in notes
    assert "'Azure Prod': the client secret expires on " in notes and "in 9 days" in notes
    assert "connsync rotate 'Azure Prod'" in notes
    outputs.append(reported := run("report", "--format", "json"))
    [row] = [r for r in checked("report", reported, ok=True)["connections"] if r["name"] == "Azure Prod"]
    assert row["key_age_days"] == 40
    clean(outputs, in_file(repo))


def test_older_than_asks_graph_for_the_secret_s_age(repo: Path, azure: FakeAzure, run: Run) -> None:
    from datetime import UTC, datetime, timedelta

    app = azure.apps[CLIENT]
    started = (datetime.now(UTC) - timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
    app.details[app.first_key_id] = {"startDateTime": started}
    result = run("rotate", "--older-than", "120", "--dry-run", "--format", "json")
    assert result.code == 0, result.err
    report = checked("rotate", result, ok=True)
    assert report["rotations"] == []
    assert report["skipped"] == [f"Azure Prod: {app.first_key_id} is 100 days old"]
    result = run("rotate", "--older-than", "90", "--dry-run")
    assert result.code == 0, result.err
    assert f"- add a client secret to app {CLIENT}" in result.out and "dry run" in result.out
    assert list(app.secrets().values()) == [CANARY]
    app.manages_itself = False  # may not even read its own application: the age cannot be known
    result = run("rotate", "--older-than", "90", "--format", "json")
    assert result.code == 0, result.err
    [skipped] = checked("rotate", result, ok=True)["skipped"]
    assert skipped.startswith("Azure Prod: age unknown (") and "Authorization_RequestDenied" in skipped
    assert list(app.secrets().values()) == [CANARY]
    clean([result])


def test_text_from_graph_reaches_the_terminal_escaped(repo: Path, azure: FakeAzure, run: Run) -> None:
    app = azure.apps[CLIENT]
    app.details[app.first_key_id] = {"displayName": "\x1b[2J::error::owned"}  # the old secret's name
    assert run("apply", "--auto-approve").code == 0
    rotated = run("rotate", "Azure Prod")
    assert rotated.code == 0, rotated.err
    assert run("apply", "--auto-approve").code == 0
    finished = run("rotate", "--finish", "Azure Prod")
    assert finished.code == 0, finished.err
    assert "\x1b" not in finished.out + finished.err and "\\x1b[2J::error::owned" in finished.out
    assert not any(line.lstrip().startswith("::") for line in finished.out.splitlines())
    clean([rotated, finished], in_file(repo))
