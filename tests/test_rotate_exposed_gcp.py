"""``connsync rotate --exposed KEY_ID`` with a GCP service-account key id, against tests/fake_gcp.py.

The fake's IAM keys API (over HTTPS) lets only the administrator manage keys, so
the runbook must sign with the environment's Google credentials; the new key
"works" only once it signed in at the fake's token endpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connsync.errors import EXIT_INTERNAL, EXIT_INTERRUPTED
from connsync.model import Secret
from connsync.store.sqlite import SqliteStore
from tests.conftest import Run
from tests.fake_gcp import FakeGcp, Key
from tests.test_outputs import checked
from tests.test_rotate_gcp import (
    ADMIN,
    EMAIL,
    FILE,
    OLD,
    PROJECT,
    gcp,
    in_file,
    key_file,
    no_key_material,
    states,
)

BILLING = Path("connections/gcp-billing.yaml")
_ = gcp  # the fixture, imported


def store_of(repo: Path) -> SqliteStore:
    return SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default")


@pytest.fixture
def exposed(repo: Path, gcp: tuple[FakeGcp, Key], run: Run, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> tuple[FakeGcp, Key]:
    """OLD in two files and both stored; only the administrator (in the environment) may manage keys."""
    fake, old = gcp
    made = run("new", "gcp", "--name", "GCP Billing", "--no-input",
               "--secret-env", "private_key=TEST_GCP_KEY", "--set", f"project_id={PROJECT}",
               "--set", f"client_email={EMAIL}", "--set", f"private_key_id={OLD}")
    assert made.code == 0, made.err
    applied = run("apply", "--auto-approve")
    assert applied.code == 0, applied.err
    fake.key_admins = {ADMIN}
    admin = fake.accounts[ADMIN]["a" * 40]
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", key_file(fake, tmp_path, ADMIN, admin))
    return fake, old


def test_rotate_exposed_contains_a_gcp_key_everywhere(repo: Path, exposed: tuple[FakeGcp, Key],
                                                      run: Run) -> None:
    fake, old = exposed
    typed = f"  {OLD.upper()} \n"  # pasted from Google's notice
    result = run("rotate", "--exposed", typed, "--apply", "--auto-approve", "--format", "json")
    assert result.code == 0, result.out + result.err
    [incident] = checked("rotate", result, ok=True)["exposed"]
    new_id, new_pem = in_file(repo)
    assert new_id != OLD and incident["new_key"] == new_id and incident["user"] == EMAIL
    assert new_pem == fake.accounts[EMAIL][new_id].pem
    assert states(fake) == {OLD: "disabled", new_id: "enabled"}
    assert incident["exposed_key_status"] == "disabled"
    assert sorted(incident["written"]) == sorted([str(FILE), str(BILLING)])
    assert sorted(incident["stored"]) == ["default/GCP Billing", "default/GCP Prod"]
    store = store_of(repo)
    for name in ("GCP Prod", "GCP Billing"):
        record = store.get(name)
        assert record is not None and record.spec["private_key_id"] == new_id
        assert record.fingerprints["private_key"] == store.fingerprint("private_key", Secret(new_pem))
    audit = [e.action for e in store.audit()]
    exposed_entries = [e for e in store.audit() if e.action == f"exposed {OLD}"]
    assert sorted(e.name for e in exposed_entries) == ["GCP Billing", "GCP Prod"]
    steps = [a.split(" ")[0] for a in audit]
    # Google's order: the new key everywhere (and stored), then the exposed one disabled.
    assert steps.index("exposed-create-key") < steps.index("exposed-write-file") < steps.index(
        "exposed-store") < steps.index("exposed-disable-key")
    assert any("gcloud iam service-accounts keys delete " + OLD in line for line in incident["next"])
    assert run("plan", "--detailed-exitcode").code == 0  # the store matches the files
    no_key_material([result], old.pem, new_pem)


def test_dry_run_and_an_unknown_gcp_key_change_nothing(repo: Path, exposed: tuple[FakeGcp, Key],
                                                       run: Run) -> None:
    fake, old = exposed
    files = [(repo / f).read_bytes() for f in (FILE, BILLING)]
    audit = len(store_of(repo).audit())
    dry = run("rotate", "--exposed", OLD, "--dry-run", "--apply")
    assert dry.code == 0, dry.err
    assert "- create a new key for " + EMAIL in dry.out and f"- disable {OLD}" in dry.out
    unknown = run("rotate", "--exposed", "f" * 40, "--auto-approve")
    assert unknown.code == 1 and f"no connection holds the GCP key {'f' * 40}" in unknown.err
    assert "nothing was changed" in unknown.err
    assert states(fake) == {OLD: "enabled"}
    assert [(repo / f).read_bytes() for f in (FILE, BILLING)] == files
    assert len(store_of(repo).audit()) == audit
    no_key_material([dry, unknown], old.pem)


def test_the_exposed_gcp_key_never_signs(repo: Path, exposed: tuple[FakeGcp, Key], run: Run,
                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake, old = exposed
    fake.key_admins = {ADMIN, EMAIL}  # even when it could
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", key_file(fake, tmp_path, EMAIL, old))
    result = run("rotate", "--exposed", OLD, "--auto-approve")
    assert result.code == 1 and "are the exposed key" in result.err
    assert states(fake) == {OLD: "enabled"}
    no_key_material([result], old.pem)


def test_a_store_that_refuses_the_new_key_does_not_keep_the_exposed_one(
        repo: Path, exposed: tuple[FakeGcp, Key], run: Run) -> None:
    fake, old = exposed
    fake.projects[PROJECT] = set()  # the new key's verification fails: apply will not store it
    result = run("rotate", "--exposed", OLD, "--apply", "--auto-approve")
    assert result.code == 1
    new_id, new_pem = in_file(repo)
    assert states(fake) == {OLD: "disabled", new_id: "enabled"}  # contained though storing failed
    err = " ".join(result.err.split())
    assert "storing in workspace 'default' failed" in err and f"the exposed key {OLD} is disabled" in err
    assert f"the new key {new_id} is active and written into" in err and "stored nowhere" in err
    no_key_material([result], old.pem, new_pem)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_a_stop_while_storing_still_disables_the_exposed_key(
        repo: Path, exposed: tuple[FakeGcp, Key], run: Run, monkeypatch: pytest.MonkeyPatch,
        stop: type[BaseException]) -> None:
    import connsync.reconcile.apply

    def stopped(*args: object, **kwargs: object) -> None:
        raise stop()

    fake, old = exposed
    monkeypatch.setattr(connsync.reconcile.apply, "execute", stopped)  # ^C (or a bug) while storing
    result = run("rotate", "--exposed", OLD, "--apply", "--auto-approve")
    assert result.code == (EXIT_INTERRUPTED if stop is KeyboardInterrupt else EXIT_INTERNAL)
    new_id, new_pem = in_file(repo)
    assert states(fake) == {OLD: "disabled", new_id: "enabled"}
    err = " ".join(result.err.split())
    assert f"the exposed key {OLD} is disabled" in err and "stored nowhere" in err
    assert "gcloud iam service-accounts keys delete " + OLD in err  # what is left to do, said on stderr
    no_key_material([result], old.pem, new_pem)
