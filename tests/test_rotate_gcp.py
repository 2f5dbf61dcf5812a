"""``connsync rotate`` on a GCP connection, against the IAM keys API of tests/fake_gcp.py over HTTPS.

The fake makes real RSA keys and checks every JWT the way Google's token
endpoint does, so "the new key works" means it signed in; it serves over TLS
with a CA made here (``CONNSYNC_CA_BUNDLE``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from connsync import sops
from connsync.model import Declaration
from connsync.store.sqlite import SqliteStore
from connsync.validate import loader
from tests.conftest import Result, Run
from tests.fake_gcp import FakeGcp, Key, new_key, serve
from tests.test_outputs import checked

EMAIL = "platform@analytics-prod-1.iam.gserviceaccount.com"
ADMIN = "admin@analytics-prod-1.iam.gserviceaccount.com"
PROJECT = "analytics-prod-1"
OLD = "0123456789abcdef0123456789abcdef01234567"
FILE = Path("connections/gcp-prod.yaml")


@pytest.fixture
def gcp(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeGcp, Key]]:
    old = new_key(OLD)
    fake = FakeGcp(accounts={EMAIL: {OLD: old}, ADMIN: {"a" * 40: new_key("a" * 40)}},
                   projects={PROJECT: {EMAIL}}, key_readers={EMAIL}, key_admins={EMAIL, ADMIN})
    with serve(fake, tmp_path_factory.mktemp("tls")) as served:
        for variable, path in (("TOKEN_URI", "/token"), ("RESOURCE_MANAGER_ENDPOINT", ""),
                               ("IAM_ENDPOINT", ""), ("CERTIFICATES_ENDPOINT", "/x509")):
            monkeypatch.setenv(f"CONNSYNC_GCP_{variable}", served.url + path)
        monkeypatch.setenv("CONNSYNC_CA_BUNDLE", served.ca_bundle)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", served.ca_bundle)  # google.auth.default's own requests
        monkeypatch.setenv("TEST_GCP_KEY", old.pem)
        made = run("new", "gcp", "--name", "GCP Prod", "--no-input",
                   "--secret-env", "private_key=TEST_GCP_KEY", "--set", f"project_id={PROJECT}",
                   "--set", f"client_email={EMAIL}", "--set", f"private_key_id={OLD}")
        assert made.code == 0, made.err
        yield served, old


def in_file(repo: Path) -> tuple[str, str]:
    decl = loader.load_file(repo / FILE)
    assert isinstance(decl, Declaration)
    desired = sops.decrypt(decl, repo / FILE)
    return str(desired.spec["private_key_id"]), desired.secrets["private_key"].reveal()


def key_file(fake: FakeGcp, directory: Path, email: str, key: Key) -> str:
    """A Google credentials file (what GOOGLE_APPLICATION_CREDENTIALS names) for ``key`` of ``email``."""
    path = directory / f"{key.key_id}.json"
    path.write_text(json.dumps({"type": "service_account", "project_id": PROJECT, "client_email": email,
                                "private_key_id": key.key_id, "private_key": key.pem,
                                "token_uri": f"{fake.url}/token"}))
    return str(path)


def states(fake: FakeGcp) -> dict[str, str]:
    return {kid: "disabled" if kid in fake.disabled else "enabled" for kid in fake.accounts[EMAIL]}


def no_key_material(results: list[Result], *pems: str) -> None:
    for result in results:
        for pem in pems:
            assert pem.splitlines()[1] not in result.out + result.err


def test_gcp_rotation_cycle(repo: Path, gcp: tuple[FakeGcp, Key], run: Run) -> None:
    fake, old = gcp
    outputs = [run("apply", "--auto-approve")]
    assert outputs[0].code == 0, outputs[0].err
    outputs.append(rotated := run("rotate", "GCP Prod"))
    assert rotated.code == 0, rotated.err
    new_id, new_pem = in_file(repo)
    assert new_id != OLD and new_pem == fake.accounts[EMAIL][new_id].pem
    assert states(fake) == {OLD: "enabled", new_id: "enabled"}  # both work until the store has it
    assert "Google accepts" in rotated.out and "rotate --finish" in rotated.out

    outputs.append(early := run("rotate", "--finish", "GCP Prod"))
    assert early.code == 1 and "the store still holds key " + OLD in early.err
    assert states(fake)[OLD] == "enabled"
    outputs.append(run("apply", "--auto-approve"))
    assert outputs[-1].code == 0, outputs[-1].err
    outputs.append(finished := run("rotate", "--finish", "GCP Prod"))
    assert finished.code == 0, finished.err
    assert states(fake) == {OLD: "disabled", new_id: "enabled"}
    outputs.append(verified := run("verify", "--format", "json"))
    assert checked("verify", verified, ok=True)["results"][0]["status"] in ("ok", "warning")
    outputs.append(deleted := run("rotate", "--finish", "--delete", "GCP Prod", "--format", "json"))
    report = checked("rotate", deleted, ok=True)
    assert [s["action"] for s in report["rotations"][0]["steps"]] == ["rotate-delete-key"]
    assert states(fake) == {new_id: "enabled"}
    actions = [a.action.split(" ")[0] for a in SqliteStore.open(
        f"sqlite:{repo / '.connsync/store.db'}", "default").audit()]
    assert actions == ["create", "rotate-create-key", "rotate-key-accepted", "rotate-write-file", "update",
                       "rotate-disable-key", "rotate-delete-key"]
    no_key_material(outputs, old.pem, new_pem)


def test_a_service_account_that_may_not_create_keys(repo: Path, gcp: tuple[FakeGcp, Key], run: Run,
                                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake, old = gcp
    fake.key_admins = {ADMIN}
    before = (repo / FILE).read_bytes()
    refused = run("rotate", "GCP Prod")
    assert refused.code == 1
    assert "serviceAccounts.keys.list" in refused.err and "PERMISSION_DENIED" in refused.err
    assert "--admin-env" in refused.err
    assert (repo / FILE).read_bytes() == before and states(fake) == {OLD: "enabled"}

    admin = fake.accounts[ADMIN]["a" * 40]
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", key_file(fake, tmp_path, ADMIN, admin))
    result = run("rotate", "GCP Prod", "--admin-env", "--apply", "--auto-approve")
    assert result.code == 0, result.err
    new_id, _ = in_file(repo)
    assert states(fake) == {OLD: "disabled", new_id: "enabled"}
    no_key_material([refused, result], old.pem, admin.pem)


def test_a_service_account_at_its_key_limit(repo: Path, gcp: tuple[FakeGcp, Key], run: Run) -> None:
    fake, _ = gcp
    fake.max_keys = 1
    before = (repo / FILE).read_bytes()
    result = run("rotate", "GCP Prod")
    assert result.code == 1 and "serviceAccounts.keys.create" in result.err
    assert "FAILED_PRECONDITION" in result.err
    assert (repo / FILE).read_bytes() == before and states(fake) == {OLD: "enabled"}


def test_local_mode_that_cannot_store_names_the_gcp_key(repo: Path, gcp: tuple[FakeGcp, Key],
                                                        run: Run) -> None:
    from connsync.store import Write

    fake, old = gcp
    SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default").put(
        Write(name="GCP Prod", provider="gcp", spec={"client_email": EMAIL}, secrets={}, managed=False,
              actor="ui", action="ui-create"), expected_version=None)
    result = run("rotate", "GCP Prod", "--apply", "--auto-approve")
    assert result.code == 1
    new_id, new_pem = in_file(repo)
    assert states(fake) == {OLD: "enabled", new_id: "enabled"}  # written, so kept: both work
    err = " ".join(result.err.split())
    assert f"the new GCP key {new_id} is in connections/gcp-prod.yaml but not in the store" in err
    assert f"{OLD} is still enabled" in err
    assert f"gcloud iam service-accounts keys delete {new_id} --iam-account {EMAIL}" in err
    assert "aws iam" not in err and "access key" not in err
    no_key_material([result], old.pem, new_pem)


def test_older_than_asks_google_for_the_key_s_age(repo: Path, gcp: tuple[FakeGcp, Key], run: Run) -> None:
    from datetime import UTC, datetime, timedelta

    fake, old = gcp
    result = run("rotate", "--older-than", "90", "--dry-run", "--format", "json")
    assert result.code == 0, result.err
    report = checked("rotate", result, ok=True)
    assert report["rotations"] == [] and report["skipped"] == [f"GCP Prod: {OLD} is 0 days old"]
    old.created = datetime.now(UTC) - timedelta(days=91)  # validAfterTime, as keys.list reports it
    result = run("rotate", "--older-than", "90", "--dry-run")
    assert result.code == 0, result.err
    assert f"- create a new key for {EMAIL}" in result.out and "dry run" in result.out
    assert states(fake) == {OLD: "enabled"} and in_file(repo)[0] == OLD
    fake.key_readers, fake.key_admins = set(), {ADMIN}  # the key may not list its own keys
    result = run("rotate", "--older-than", "90", "--format", "json")
    assert result.code == 0, result.err
    [skipped] = checked("rotate", result, ok=True)["skipped"]
    assert skipped.startswith("GCP Prod: age unknown (") and "serviceAccounts.keys.list" in skipped
    no_key_material([result], old.pem)
