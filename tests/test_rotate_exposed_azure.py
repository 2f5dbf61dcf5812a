"""``connsync rotate --exposed SECRET_ID`` with an Azure client secret's id, against tests/fake_azure.py.

The files hold only the secret; its id (Graph's passwordCredential ``keyId``) is
known to Graph, which the runbook asks with the environment's administrator app
(the only caller the fake lets read and change the applications here). The
exposed secret is the canary: it appears in no output, audit entry or log.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from connsync import sops
from connsync.errors import EXIT_INTERNAL, EXIT_INTERRUPTED
from connsync.model import Declaration, Secret
from connsync.store.sqlite import SqliteStore
from connsync.validate import loader
from tests.conftest import CANARY, Result, Run, make_age_key
from tests.fake_azure import CLIENT, SUBSCRIPTION, TENANT, App, FakeAzure, serve
from tests.test_outputs import checked

ADMIN = "99999999-2222-3333-4444-555555555555"
ADMIN_SECRET = "AdminSecret~0123456789abcdefghijklmnop"
OTHER = "22222222-3333-4444-5555-666666666666"
OTHER_SECRET = "OtherAppSecret~0123456789abcdefghijkl"
EXPOSED = "00000000-0000-0000-0000-0000000000a1"  # the fake's key id of CANARY
FILES = {"Azure Prod": Path("connections/azure-prod.yaml"),
         "Azure Billing": Path("connections/azure-billing.yaml")}
OTHER_FILE = Path("connections/azure-other.yaml")


def store_of(repo: Path) -> SqliteStore:
    return SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default")


def secret_in(repo: Path, path: Path) -> str:
    decl = loader.load_file(repo / path)
    assert isinstance(decl, Declaration)
    return sops.decrypt(decl, repo / path).secrets["client_secret"].reveal()


def clean(results: list[Result], repo: Path, *secrets: str) -> None:
    """No secret in any output, audit entry or log file (the repository's, the crash log)."""
    audit = " ".join(f"{e.action} {e.name} {e.actor} {e.source}" for e in store_of(repo).audit())
    # error_handler writes crash logs under $XDG_CACHE_HOME (conftest points it into the test's home).
    logs = " ".join(p.read_text(errors="replace") for root in (repo, Path(os.environ["XDG_CACHE_HOME"]))
                    for p in root.rglob("*.log"))
    for secret in (CANARY, ADMIN_SECRET, *secrets):
        for result in results:
            assert secret not in result.out + result.err
        assert secret not in audit and secret not in logs


@pytest.fixture
def azure(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAzure]:
    """CANARY (key id EXPOSED) in two files and both stored; another app's connection beside them."""
    fake = FakeAzure(apps={CLIENT: App(CANARY), ADMIN: App(ADMIN_SECRET, first_key_id=ADMIN),
                           OTHER: App(OTHER_SECRET, first_key_id="00000000-0000-0000-0000-0000000000b2")},
                     graph_admins={ADMIN})
    with serve(fake, tmp_path_factory.mktemp("tls")) as served:
        monkeypatch.setenv("CONNSYNC_CA_BUNDLE", served.ca_bundle)
        for variable in ("AUTHORITY_HOST", "MANAGEMENT_ENDPOINT", "GRAPH_ENDPOINT"):
            monkeypatch.setenv(f"CONNSYNC_AZURE_{variable}", served.url)
        monkeypatch.setenv("CONNSYNC_AZURE_INSTANCE_DISCOVERY", "false")
        for name, client, secret in (("Azure Prod", CLIENT, CANARY), ("Azure Billing", CLIENT, CANARY),
                                     ("Azure Other", OTHER, OTHER_SECRET)):
            monkeypatch.setenv("TEST_AZ_SECRET", secret)
            made = run("new", "azure", "--name", name, "--no-input", "--secret-env",
                       "client_secret=TEST_AZ_SECRET", "--set", f"tenant_id={TENANT}",
                       "--set", f"client_id={client}", "--set", f"subscription_id={SUBSCRIPTION}")
            assert made.code == 0, made.err
        applied = run("apply", "--auto-approve")
        assert applied.code == 0, applied.err
        monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
        monkeypatch.setenv("AZURE_CLIENT_ID", ADMIN)
        monkeypatch.setenv("AZURE_CLIENT_SECRET", ADMIN_SECRET)
        yield served


def test_rotate_exposed_contains_an_azure_secret_everywhere(repo: Path, azure: FakeAzure, run: Run) -> None:
    other_before = (repo / OTHER_FILE).read_bytes()
    typed = f"  {{{EXPOSED.upper()}}} \n"  # pasted from the portal, braces and all
    result = run("rotate", "--exposed", typed, "--apply", "--auto-approve", "--format", "json")
    assert result.code == 0, result.out + result.err
    [incident] = checked("rotate", result, ok=True)["exposed"]
    new = secret_in(repo, FILES["Azure Prod"])
    assert new == secret_in(repo, FILES["Azure Billing"]) and new != CANARY
    app = azure.apps[CLIENT]
    assert list(app.secrets().values()) == [new]  # the exposed secret signs in no more
    [new_id] = app.secrets()
    assert incident["key_id"] == EXPOSED and incident["new_key"] == new_id
    assert incident["user"] == f"app {CLIENT}" and incident["exposed_key_status"] == "removed"
    assert sorted(incident["written"]) == sorted(str(f) for f in FILES.values())
    assert sorted(incident["stored"]) == ["default/Azure Billing", "default/Azure Prod"]
    store = store_of(repo)
    for name in FILES:
        record = store.get(name)
        assert record is not None
        assert record.fingerprints["client_secret"] == store.fingerprint("client_secret", Secret(new))
    assert (repo / OTHER_FILE).read_bytes() == other_before  # another app's connection is left alone
    assert list(azure.apps[OTHER].secrets().values()) == [OTHER_SECRET]
    exposed_entries = [e for e in store.audit() if e.action == f"exposed {EXPOSED}"]
    assert sorted(e.name for e in exposed_entries) == ["Azure Billing", "Azure Prod"]
    steps = [e.action.split(" ")[0] for e in store.audit()]
    # A removed Azure secret cannot come back: the new one first, everywhere, then the exposed one goes.
    assert steps.index("exposed-create-key") < steps.index("exposed-write-file") < steps.index(
        "exposed-store") < steps.index("exposed-remove-secret")
    assert any("sign-in logs" in line and EXPOSED in line for line in incident["next"])
    verified = run("verify", "--format", "json")
    assert {r["status"] for r in checked("verify", verified, ok=True)["results"]} == {"ok"}
    assert run("plan", "--detailed-exitcode").code == 0  # the store matches the files
    clean([result, verified], repo, new)


def test_gitops_mode_removes_the_exposed_secret_and_says_to_merge(repo: Path, azure: FakeAzure,
                                                                  run: Run) -> None:
    result = run("rotate", "--exposed", EXPOSED, "--auto-approve")
    assert result.code == 0, result.err
    new = secret_in(repo, FILES["Azure Prod"])
    assert list(azure.apps[CLIENT].secrets().values()) == [new]
    record = store_of(repo).get("Azure Prod")
    assert record is not None  # the store still holds the removed secret until the pull request merges
    assert record.fingerprints["client_secret"] == store_of(repo).fingerprint("client_secret", Secret(CANARY))
    out = " ".join(result.out.split())
    assert "Containing the exposed client secret " + EXPOSED in out
    assert "merge the pull request: its apply job stores the new client secret" in out
    assert "az ad app credential delete" not in out  # removed already
    clean([result], repo, new)


def test_dry_run_and_an_unknown_secret_id_change_nothing(repo: Path, azure: FakeAzure, run: Run) -> None:
    files = {path: (repo / path).read_bytes() for path in (*FILES.values(), OTHER_FILE)}
    audit = len(store_of(repo).audit())
    dry = run("rotate", "--exposed", EXPOSED, "--dry-run", "--apply")
    assert dry.code == 0, dry.err
    assert f"- add a client secret to app {CLIENT}" in dry.out and f"- remove {EXPOSED}" in dry.out
    unknown_id = "ffffffff-ffff-ffff-ffff-ffffffffffff"
    unknown = run("rotate", "--exposed", unknown_id, "--auto-approve")
    assert unknown.code == 1 and f"no connection holds the Azure client secret {unknown_id}" in unknown.err
    assert "nothing was changed" in unknown.err
    assert list(azure.apps[CLIENT].secrets()) == [EXPOSED]
    assert {path: (repo / path).read_bytes() for path in files} == files
    assert len(store_of(repo).audit()) == audit
    clean([dry, unknown], repo)


def test_a_store_that_refuses_the_new_secret_does_not_keep_the_exposed_one(repo: Path, azure: FakeAzure,
                                                                           run: Run) -> None:
    azure.apps[CLIENT].subscriptions = ()  # verification of the new secret fails: apply will not store it
    result = run("rotate", "--exposed", EXPOSED, "--apply", "--auto-approve")
    assert result.code == 1
    new = secret_in(repo, FILES["Azure Prod"])
    [new_id] = azure.apps[CLIENT].secrets()
    assert list(azure.apps[CLIENT].secrets().values()) == [new]  # contained though storing failed
    err = " ".join(result.err.split())
    assert "storing in workspace 'default' failed" in err
    assert f"the exposed client secret {EXPOSED} is removed" in err
    assert f"the new client secret {new_id} is active and written into" in err and "stored nowhere" in err
    clean([result], repo, new)


def test_the_exposed_secret_is_not_the_administrator(repo: Path, azure: FakeAzure, run: Run,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    azure.graph_admins.add(CLIENT)  # even when it could
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CANARY)
    before = (repo / FILES["Azure Prod"]).read_bytes()
    result = run("rotate", "--exposed", EXPOSED, "--auto-approve")
    assert result.code == 1 and "is (by its first characters) the exposed secret" in result.err
    assert list(azure.apps[CLIENT].secrets()) == [EXPOSED]
    assert (repo / FILES["Azure Prod"]).read_bytes() == before
    clean([result], repo)


def test_without_an_administrator_app_nothing_is_searched(repo: Path, azure: FakeAzure, run: Run,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_CLIENT_SECRET")
    result = run("rotate", "--exposed", EXPOSED, "--auto-approve")
    assert result.code == 1 and "AZURE_CLIENT_SECRET" in result.err and "nothing was changed" in result.err
    assert list(azure.apps[CLIENT].secrets()) == [EXPOSED]
    clean([result], repo)


def test_every_workspace_s_records_are_searched_and_replaced(repo: Path, azure: FakeAzure, run: Run) -> None:
    from connsync.store import Write

    staged = run("--workspace", "staging", "apply", "--auto-approve")
    assert staged.code == 0, staged.err
    staging = SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "staging")
    # A record no file declares, holding the exposed secret: found by its secret (read from the store).
    staging.put(Write(name="Legacy Azure", provider="azure", secrets={"client_secret": Secret(CANARY)},
                      spec={"tenant_id": TENANT, "client_id": CLIENT, "subscription_id": SUBSCRIPTION},
                      managed=True, actor="ui", action="ui-create"), expected_version=None)
    result = run("rotate", "--exposed", EXPOSED, "--apply", "--auto-approve", "--format", "json")
    assert result.code == 0, result.out + result.err
    [incident] = checked("rotate", result, ok=True)["exposed"]
    new = secret_in(repo, FILES["Azure Prod"])
    held = {(h["workspace"], h["name"]) for h in incident["holders"] if h["workspace"]}
    assert held == {(w, n) for w in ("default", "staging") for n in FILES} | {("staging", "Legacy Azure")}
    assert sorted(incident["stored"]) == sorted(f"{w}/{n}" for w in ("default", "staging") for n in FILES)
    for name in FILES:
        record = staging.get(name)
        assert record is not None
        assert record.fingerprints["client_secret"] == staging.fingerprint("client_secret", Secret(new))
    assert any("'Legacy Azure' in workspace 'staging' holds the exposed client secret" in line
               for line in incident["next"])
    assert sorted(e.name for e in staging.audit() if e.action == f"exposed {EXPOSED}") == [
        "Azure Billing", "Azure Prod", "Legacy Azure"]
    assert list(azure.apps[CLIENT].secrets().values()) == [new]
    clean([result], repo, new)


def unwritable(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, name: str,
               tmp_path_factory: pytest.TempPathFactory, *, named: bool = True) -> Path:
    """A file of the app (``named``: naming EXPOSED as its ``client_secret_id``, so found without
    decrypting it), re-encrypted by sops for another age key only: sops cannot read or write it here."""
    monkeypatch.setenv("TEST_AZ_SECRET", CANARY)
    made = run("new", "azure", "--name", name, "--no-input", "--secret-env", "client_secret=TEST_AZ_SECRET",
               "--set", f"tenant_id={TENANT}", "--set", f"client_id={CLIENT}",
               "--set", f"subscription_id={SUBSCRIPTION}",
               *(["--set", f"client_secret_id={EXPOSED}"] if named else []))
    assert made.code == 0, made.err
    path = repo / "connections" / f"{name.lower().replace(' ', '-')}.yaml"
    mine = str(loader.load_file(path).data["sops"]["age"][0]["recipient"])  # type: ignore[union-attr]
    other = make_age_key(tmp_path_factory.mktemp("other-age"))
    subprocess.run([sops.binary(), "rotate", "-i", "--add-age", other.public, "--rm-age", mine, str(path)],
                   check=True, capture_output=True)
    return path


def test_a_second_file_that_cannot_be_written_says_how_to_finish(
        repo: Path, azure: FakeAzure, run: Run, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    unwritable(repo, run, monkeypatch, "Azure Zeta", tmp_path_factory)  # after azure-billing.yaml
    result = run("rotate", "--exposed", EXPOSED, "--auto-approve")
    assert result.code == 1
    new = secret_in(repo, FILES["Azure Billing"])
    assert list(azure.apps[CLIENT].secrets().values()) == [new]  # contained: the exposed one is removed
    err = " ".join(result.err.split())
    assert "writing connections/azure-zeta.yaml failed" in err
    [hint] = [line for line in result.err.splitlines() if "hint:" in line]
    # Graph lists the exposed secret no more: re-running the runbook would find nothing to do.
    assert "rotate --exposed" not in hint
    assert ("copy client_secret, client_secret_id, client_secret_expires from connections/azure-billing.yaml"
            in hint and "connsync edit" in hint and "connsync rotate --admin-env 'Azure Zeta'" in hint)
    # What is left to do is said after a failure too.
    out = " ".join(result.out.split())
    assert "What is left to do:" in out and "sign-in logs" in out and "merge the pull request" in out
    clean([result], repo, new)


def test_a_first_file_that_cannot_be_written_takes_the_new_secret_back(
        repo: Path, azure: FakeAzure, run: Run, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    unwritable(repo, run, monkeypatch, "Azure Alpha", tmp_path_factory)  # before azure-billing.yaml
    files = {path: (repo / path).read_bytes() for path in FILES.values()}
    result = run("rotate", "--exposed", EXPOSED, "--auto-approve")
    assert result.code == 1
    assert list(azure.apps[CLIENT].secrets()) == [EXPOSED]  # no new secret left valid and written nowhere
    err = " ".join(result.err.split())
    assert "writing connections/azure-alpha.yaml failed" in err and "was deleted again" in err
    assert "rotate --exposed" in err  # nothing changed: the runbook finds the exposed secret again
    assert {path: (repo / path).read_bytes() for path in files} == files
    clean([result], repo)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_a_stop_while_storing_still_removes_the_exposed_secret(
        repo: Path, azure: FakeAzure, run: Run, monkeypatch: pytest.MonkeyPatch,
        stop: type[BaseException]) -> None:
    import connsync.reconcile.apply

    def stopped(*args: object, **kwargs: object) -> None:
        raise stop()

    monkeypatch.setattr(connsync.reconcile.apply, "execute", stopped)  # ^C (or a bug) while storing
    result = run("rotate", "--exposed", EXPOSED, "--apply", "--auto-approve")
    assert result.code == (EXIT_INTERRUPTED if stop is KeyboardInterrupt else EXIT_INTERNAL)
    new = secret_in(repo, FILES["Azure Prod"])
    assert list(azure.apps[CLIENT].secrets().values()) == [new]
    [new_id] = azure.apps[CLIENT].secrets()
    err = " ".join(result.err.split())
    assert f"the exposed client secret {EXPOSED} is removed" in err
    assert f"the new client secret {new_id} is active and written into" in err and "stored nowhere" in err
    if stop is RuntimeError:  # a bug: its crash log is where clean() looks
        assert list(Path(os.environ["XDG_CACHE_HOME"]).rglob("*.log"))
    clean([result], repo, new)


def test_a_secret_without_a_hint_is_held_by_every_connection_of_its_app(repo: Path, azure: FakeAzure,
                                                                         run: Run) -> None:
    azure.apps[CLIENT].details[EXPOSED] = {"hint": None}  # older secrets: Graph shows no first characters
    result = run("rotate", "--exposed", EXPOSED, "--apply", "--auto-approve", "--format", "json")
    assert result.code == 0, result.out + result.err
    [incident] = checked("rotate", result, ok=True)["exposed"]
    new = secret_in(repo, FILES["Azure Prod"])
    assert new == secret_in(repo, FILES["Azure Billing"])
    assert sorted(incident["written"]) == sorted(str(f) for f in FILES.values())
    assert list(azure.apps[CLIENT].secrets().values()) == [new]
    assert list(azure.apps[OTHER].secrets().values()) == [OTHER_SECRET]  # another app's is left alone
    assert any("no hint" in note and "every connection of app" in note for note in incident["notes"])
    clean([result], repo, new)


def test_a_broken_file_beside_the_holders_is_named_not_fatal(repo: Path, azure: FakeAzure, run: Run) -> None:
    broken = repo / "connections/azure-broken.yaml"  # same app, never encrypted: invalid
    broken.write_text((repo / FILES["Azure Prod"]).read_text().split("sops:")[0]
                      .replace("Azure Prod", "Azure Broken"))
    result = run("rotate", "--exposed", EXPOSED, "--auto-approve", "--format", "json")
    assert result.code == 0, result.out + result.err
    [incident] = checked("rotate", result, ok=True)["exposed"]
    assert sorted(incident["written"]) == sorted(str(f) for f in FILES.values())
    assert any("connections/azure-broken.yaml" in note for note in incident["notes"])
    clean([result], repo, secret_in(repo, FILES["Azure Prod"]))


def test_a_file_that_cannot_be_decrypted_is_named_not_fatal(
        repo: Path, azure: FakeAzure, run: Run, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    path = unwritable(repo, run, monkeypatch, "Azure Locked", tmp_path_factory, named=False)
    before = path.read_bytes()
    result = run("rotate", "--exposed", EXPOSED, "--auto-approve", "--format", "json")
    assert result.code == 0, result.out + result.err
    [incident] = checked("rotate", result, ok=True)["exposed"]
    assert sorted(incident["written"]) == sorted(str(f) for f in FILES.values())
    locked = "connections/azure-locked.yaml could not be read"
    assert any(note.startswith(locked) for note in incident["notes"])
    assert path.read_bytes() == before
    clean([result], repo, secret_in(repo, FILES["Azure Prod"]))


def test_an_application_id_in_another_case_is_the_same_application(
        repo: Path, azure: FakeAzure, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    lettered, key_id = "abcdef01-2222-3333-4444-555555555555", "00000000-0000-0000-0000-0000000000c3"
    secret = "LetteredAppSecret~0123456789abcdefghij"
    azure.apps[lettered] = App(secret, first_key_id=key_id)
    monkeypatch.setenv("TEST_AZ_SECRET", secret)
    for name, client in (("Lettered Lower", lettered), ("Lettered Upper", lettered.upper())):
        made = run("new", "azure", "--name", name, "--no-input", "--secret-env",
                   "client_secret=TEST_AZ_SECRET", "--set", f"tenant_id={TENANT}",
                   "--set", f"client_id={client}", "--set", f"subscription_id={SUBSCRIPTION}")
        assert made.code == 0, made.err
    result = run("rotate", "--exposed", key_id, "--auto-approve", "--format", "json")
    assert result.code == 0, result.out + result.err
    [incident] = checked("rotate", result, ok=True)["exposed"]
    assert sorted(incident["written"]) == [f"connections/lettered-{case}.yaml" for case in ("lower", "upper")]
    new = secret_in(repo, Path("connections/lettered-upper.yaml"))
    assert list(azure.apps[lettered].secrets().values()) == [new]
    clean([result], repo, secret, new)


def test_a_record_s_application_id_that_is_no_guid_is_not_put_into_a_graph_path(
        repo: Path, azure: FakeAzure, run: Run) -> None:
    from connsync.store import Write

    store_of(repo).put(Write(name="Odd Azure", provider="azure", secrets={"client_secret": Secret("x")},
                             spec={"tenant_id": TENANT, "client_id": f"../{CLIENT}",
                                   "subscription_id": SUBSCRIPTION},
                             managed=True, actor="ui", action="ui-create"), expected_version=None)
    result = run("rotate", "--exposed", EXPOSED, "--auto-approve", "--format", "json")
    assert result.code == 0, result.out + result.err
    [incident] = checked("rotate", result, ok=True)["exposed"]
    assert any(f"'../{CLIENT}' is not an application (client) id" in note for note in incident["notes"])
    clean([result], repo, secret_in(repo, FILES["Azure Prod"]))
