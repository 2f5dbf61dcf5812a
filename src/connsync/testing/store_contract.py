"""The store contract: what every backend must do, as one pytest suite any backend can run.

A backend's test module subclasses :class:`StoreContract` and defines one
fixture, ``new_store_url``: a callable that returns the URL of a new, empty
store each time it is called, with whatever the backend needs in the
environment (``CONNSYNC_STORE_KEY`` is set by the suite itself)::

    from connsync.testing.store_contract import StoreContract

    class TestMyBackend(StoreContract):
        @pytest.fixture
        def new_store_url(self):
            return lambda: f"mybackend://test/{uuid.uuid4().hex}"

The suite runs the real ``sops`` binary and ``connsync`` in child processes
for the concurrency and crash tests; it needs pytest and pyrage only.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connsync.errors import LockError, StoreError, VersionConflict
from connsync.model import Secret
from connsync.store import HISTORY_LIMIT, Store, Verification, Write, open_store, opened

CANARY = "ContractCanary/NeverShown+0123456789abcd"  # 40 characters, as AWS secrets are
ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"


def write(name: str = "AWS Prod", *, secret: str = CANARY, managed: bool = True, action: str = "create",
          **spec: object) -> Write:
    return Write(name=name, provider="aws", spec={"account_id": "123456789012", **spec},
                 secrets={"secret_access_key": Secret(secret)}, managed=managed, actor="contract",
                 action=action, source=f"connections/{name}.yaml", source_digest="d" * 64,
                 git_revision="0" * 40, description="a description", labels={"env": "test"})


def _connsync(*args: str, cwd: Path, env: dict[str, str] | None = None,
              **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload]
        [sys.executable, "-m", "connsync", *args], cwd=cwd, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


class StoreContract:
    """Versions, conflicts, the lock (stale, broken), audit, sealing, fingerprints, workspaces,
    concurrent applies and a crash mid-apply — the same for every backend."""

    # --- fixtures --------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _store_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())

    @pytest.fixture
    def url(self, new_store_url: Callable[[], str]) -> str:
        return new_store_url()

    @pytest.fixture
    def store(self, url: str) -> Iterator[Store]:
        with opened(url, "default") as store:
            yield store

    @pytest.fixture
    def connections_repo(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[int], Path]:
        """A repository with ``count`` encrypted AWS connections, made with the real sops binary."""
        import pyrage

        def make(count: int) -> Path:
            identity = pyrage.x25519.Identity.generate()
            key_file = tmp_path / "age.txt"
            key_file.write_text(f"{identity}\n")
            monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
            repo = tmp_path / "repo"
            repo.mkdir()
            subprocess.run([sys.executable, "-m", "connsync", "init", "--age-recipient",
                            str(identity.to_public())], cwd=repo, check=True, capture_output=True)
            subprocess.run(
                [sys.executable, "-m", "connsync", "new", "aws", "--name", "Template", "--no-input",
                 "--set", "account_id=123456789012", "--set", "default_region=us-east-1",
                 "--set", f"access_key_id={ACCESS_KEY_ID}", "--secret-env", "secret_access_key=CANARY"],
                cwd=repo, check=True, capture_output=True, env={**os.environ, "CANARY": CANARY})
            template_file = repo / "connections" / "template.yaml"
            template = template_file.read_text()
            template_file.unlink()
            for index in range(count):
                # mac_only_encrypted: the clear name can change and the file still decrypts.
                text = template.replace("name: Template", f"name: Conn {index:04d}")
                (repo / "connections" / f"conn-{index:04d}.yaml").write_text(text)
            return repo

        return make

    # --- records ---------------------------------------------------------------

    def test_versions_count_every_write_and_compare_and_set(self, store: Store) -> None:
        assert store.put(write(), expected_version=None).version == 1
        assert store.put(write(default_region="eu-west-1"), expected_version=1).version == 2
        with pytest.raises(VersionConflict):
            store.put(write(), expected_version=1)
        with pytest.raises(VersionConflict):
            store.put(write(), expected_version=None)
        with pytest.raises(VersionConflict):
            store.delete("AWS Prod", expected_version=1, actor="t", git_revision=None)
        record = store.get("aws prod")
        assert record is not None and record.version == 2 and record.spec["default_region"] == "eu-west-1"
        store.delete("AWS Prod", expected_version=2, actor="t", git_revision=None)
        assert store.get("AWS Prod") is None and store.records() == []

    def test_a_record_keeps_every_field(self, store: Store) -> None:
        store.put(write(), expected_version=None)
        [record] = store.records()
        assert (record.name, record.provider, record.managed, record.source, record.source_digest,
                record.git_revision, record.description, dict(record.labels), record.updated_by) == (
            "AWS Prod", "aws", True, "connections/AWS Prod.yaml", "d" * 64, "0" * 40, "a description",
            {"env": "test"}, "contract")
        assert record.updated_at.endswith("Z") and record.synced_version == 1 and not record.drifted

    def test_managed_flag_and_synced_version(self, store: Store) -> None:
        store.put(write(), expected_version=None)
        handed_over = store.put(write(managed=False, action="ui-edit"), expected_version=1)
        assert (handed_over.version, handed_over.managed, handed_over.synced_version) == (2, False, 1)
        with pytest.raises(VersionConflict):  # bookkeeping touches managed records only
            store.record_source("AWS Prod", expected_version=2, source="x.yaml", source_digest="e" * 64)
        adopted = store.put(write(action="adopt"), expected_version=2)
        assert (adopted.version, adopted.managed, adopted.synced_version) == (3, True, 3)
        store.record_source("AWS Prod", expected_version=3, source="x.yaml", source_digest="e" * 64)
        record = store.get("AWS Prod")
        assert record is not None and (record.source, record.version) == ("x.yaml", 3)
        with pytest.raises(VersionConflict):
            store.record_source("AWS Prod", expected_version=2, source="y.yaml", source_digest="e" * 64)

    def test_names_are_unique_ignoring_case(self, store: Store) -> None:
        store.put(write("AWS Prod"), expected_version=None)
        with pytest.raises(VersionConflict):
            store.put(write("aws PROD"), expected_version=None)

    def test_workspaces_are_kept_apart(self, url: str) -> None:
        with opened(url, "one") as one, opened(url, "two") as two:
            one.put(write(), expected_version=None)
            assert two.records() == [] and two.get("AWS Prod") is None and two.audit() == []
            two.put(write(secret="x" * 40), expected_version=None)
            assert one.read_secrets("AWS Prod") == {"secret_access_key": Secret(CANARY)}
            lock = one.acquire_lock(timeout=0)
            two.release_lock(two.acquire_lock(timeout=0))  # another workspace's lock is another lock
            one.release_lock(lock)

    def test_a_role_connection_round_trips(self, url: str) -> None:
        """Every field of every shape: a role's ARN, an integer duration, the external id as a secret."""
        role = Write(name="AWS Role", provider="aws",
                     spec={"account_id": "123456789012", "default_region": "eu-west-1",
                           "role_arn": "arn:aws:iam::123456789012:role/data/platform",
                           "session_duration_seconds": 3600},
                     secrets={"external_id": Secret(CANARY)}, managed=True, actor="contract",
                     action="create", source="connections/aws-role.yaml", source_digest="d" * 64)
        with opened(url, "default") as store:
            written = store.put(role, expected_version=None)
        with opened(url, "default") as again:
            record = again.get("AWS Role")
            assert record is not None and dict(record.spec) == dict(role.spec)
            assert record.spec["session_duration_seconds"] == 3600  # still an integer
            assert record.fingerprints == written.fingerprints == {
                "external_id": again.fingerprint("external_id", Secret(CANARY))}
            assert CANARY not in repr(record) and CANARY not in repr(again.audit())
            assert again.read_secrets("AWS Role") == {"external_id": Secret(CANARY)}

    # --- secrets ---------------------------------------------------------------

    def test_secrets_are_sealed_and_come_back_only_from_read_secrets(self, store: Store) -> None:
        record = store.put(write(), expected_version=None)
        assert CANARY not in repr(record) and CANARY not in repr(store.records())
        assert CANARY not in repr(store.audit())
        assert store.read_secrets("AWS PROD") == {"secret_access_key": Secret(CANARY)}
        with pytest.raises(StoreError):
            store.read_secrets("nobody")

    def test_fingerprints_are_stable_per_store_and_differ_between_stores(
            self, url: str, new_store_url: Callable[[], str]) -> None:
        with opened(url, "default") as store:
            record = store.put(write(), expected_version=None)
        with opened(url, "default") as again:
            assert again.fingerprint("secret_access_key", Secret(CANARY)) == \
                record.fingerprints["secret_access_key"]
            assert again.fingerprint("secret_access_key", Secret("x")) != \
                record.fingerprints["secret_access_key"]
        with opened(new_store_url(), "default") as other:
            assert other.fingerprint("secret_access_key", Secret(CANARY)) != \
                record.fingerprints["secret_access_key"]

    def test_the_wrong_key_is_one_clear_error(self, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        with opened(url, "default") as store:
            store.put(write(), expected_version=None)
        monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
        with pytest.raises(StoreError, match="the store key does not open"):
            open_store(url, "default")
        monkeypatch.setenv("CONNSYNC_STORE_KEY", "too short")
        with pytest.raises(StoreError, match="not 32 bytes"):
            open_store(url, "default")

    # --- audit -----------------------------------------------------------------

    def test_audit_records_every_write_in_order(self, store: Store) -> None:
        store.put(write(), expected_version=None)
        store.put(write(action="update"), expected_version=1)
        store.delete("AWS Prod", expected_version=2, actor="remover", git_revision="abc")
        with pytest.raises(VersionConflict):
            store.put(write(action="update"), expected_version=7)  # a refused write leaves no entry
        assert [(a.action, a.version_before, a.version_after, a.actor) for a in store.audit()] == [
            ("create", None, 1, "contract"), ("update", 1, 2, "contract"), ("delete", 2, None, "remover")]
        assert store.audit()[-1].git_revision == "abc" and store.audit()[-1].source

    def test_an_event_is_audited_without_touching_the_record(self, store: Store) -> None:
        """What rotate does in IAM (a key created, deactivated) is audited beside the writes."""
        store.put(write(), expected_version=None)
        store.record_event("aws prod", "rotate-create-key AKIAIOSFODNN7EXAMPLE", actor="rotator",
                           git_revision="abc", source="connections/x.yaml")
        store.record_event("Gone", "rotate-delete-key AKIAIOSFODNN7EXAMPLE", actor="rotator",
                           git_revision=None, source=None)
        record = store.get("AWS Prod")
        assert record is not None and record.version == 1
        assert [(a.name, a.action, a.version_before, a.version_after, a.actor, a.git_revision, a.source)
                for a in store.audit()[1:]] == [
            ("aws prod", "rotate-create-key AKIAIOSFODNN7EXAMPLE", 1, 1, "rotator", "abc",
             "connections/x.yaml"),
            ("Gone", "rotate-delete-key AKIAIOSFODNN7EXAMPLE", None, None, "rotator", None, None)]

    # --- verification history ---------------------------------------------------

    def test_verification_history_keeps_the_newest_per_connection(self, store: Store) -> None:
        store.put(write(), expected_version=None)
        first = Verification("AWS Prod", "2026-01-01T00:00:00Z", "ok", "123456789012", (), "2025-06-01")
        second = Verification("AWS Prod", "2026-01-02T00:00:00Z", "warning", "123456789012",
                              ("the key is 200 days old",), "2025-06-01")
        third = Verification("aws PROD", "2026-01-03T00:00:00Z", "failed", None, ("key rejected by STS",))
        # A connection is verified before it is first applied: no record needed.
        unapplied = Verification("Not Applied", "2026-01-02T12:00:00Z", "ok", "210987654321")
        store.record_verifications([first, unapplied], keep=2)
        store.record_verifications([second], keep=2)
        store.record_verifications([third], keep=2)
        assert store.verifications("AWS PROD") == [third, second], store.verifications()
        assert store.verifications("not applied") == [unapplied]
        assert store.verifications("nobody") == []
        everything = store.verifications()
        assert sorted(everything, key=lambda v: v.at) == [second, unapplied, third]
        # History is neither a write of the record nor an audit entry.
        record = store.get("AWS Prod")
        assert record is not None and record.version == 1
        assert [a.action for a in store.audit()] == ["create"]

    def test_verification_history_is_bounded_by_default_and_per_workspace(self, url: str) -> None:
        with opened(url, "one") as one, opened(url, "two") as two:
            results = [Verification("AWS Prod", f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z", "ok", "1" * 12,
                                    (f"check {i}",)) for i in range(HISTORY_LIMIT + 5)]
            for result in results:
                one.record_verifications([result])
            kept = one.verifications("AWS Prod")
            assert kept == results[::-1][:HISTORY_LIMIT]
            other = Verification("Other", "2026-01-02T00:00:00Z", "failed", None, ("no",))
            one.record_verifications([other])
            newest = one.verifications(per_connection=2)  # what report reads: the newest of each
            assert sorted(newest, key=lambda v: (v.name, v.at)) == [*sorted(results[-2:], key=lambda v: v.at),
                                                                    other]
            assert one.verifications("other", per_connection=5) == [other]
            assert two.verifications() == [] and two.verifications("AWS Prod") == []

    def test_verification_history_keeps_long_messages_bounded(self, store: Store) -> None:
        long = Verification("AWS Prod", "2026-01-01T00:00:00Z", "failed", None,
                            tuple("x" * 2000 for _ in range(30)))
        store.record_verifications([long])
        [kept] = store.verifications("AWS Prod")
        assert (kept.name, kept.at, kept.status) == ("AWS Prod", long.at, "failed")
        assert 1 <= len(kept.messages) <= 10 and all(len(m) <= 500 for m in kept.messages)
        assert kept.messages[0].startswith("xxx")

    # --- the workspace lock ----------------------------------------------------

    def test_the_lock_names_its_holder_and_times_out(self, url: str) -> None:
        with opened(url, "default") as first, opened(url, "default") as second:
            held = first.acquire_lock(timeout=0)
            assert held.replaced is None
            started = time.monotonic()
            with pytest.raises(LockError) as caught:
                second.acquire_lock(timeout=0.5)
            assert time.monotonic() - started >= 0.5
            assert held.id in caught.value.message and held.holder in caught.value.message
            assert f"connsync unlock {held.id}" in str(caught.value.hint)
            first.release_lock(held)
            second.release_lock(second.acquire_lock(timeout=0))

    def test_a_dead_holders_lock_is_taken_over_at_once(self, url: str, tmp_path: Path) -> None:
        """At once where the server sees the holder's session end (SQLite's flock, PostgreSQL's
        advisory lock). A backend without sessions (AWS Secrets Manager) can only see that the holder
        stopped renewing a lease: it takes over when the lease has run out, so its ``new_store_url``
        asks for a lease of a few seconds to stay within this test's bound."""
        code = ("import sys, time; from connsync.store import open_store; "
                "store = open_store(sys.argv[1], 'default'); lock = store.acquire_lock(timeout=0); "
                "print(lock.id, flush=True); time.sleep(60)")
        holder = subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True,
                                  env=os.environ.copy())
        try:
            assert holder.stdout is not None
            lock_id = holder.stdout.readline().strip()
            with opened(url, "default") as store:
                with pytest.raises(LockError):
                    store.acquire_lock(timeout=0.3)  # alive: never taken
                holder.send_signal(signal.SIGKILL)
                holder.wait(10)
                started = time.monotonic()
                mine = store.acquire_lock(timeout=15)
                assert time.monotonic() - started < 10
                assert mine.replaced is not None and mine.replaced.id == lock_id
                store.put(write(), expected_version=None)  # and it writes under it
                store.release_lock(mine)
        finally:
            holder.kill()
            holder.wait(10)

    def test_unlock_fences_off_a_live_holder(self, url: str) -> None:
        with opened(url, "default") as stuck, opened(url, "default") as operator:
            lock = stuck.acquire_lock(timeout=0)
            assert operator.break_lock("not-the-id") is None
            broken = operator.break_lock(lock.id)
            assert broken is not None and broken.id == lock.id
            mine = operator.acquire_lock(timeout=5)
            with pytest.raises((LockError, StoreError)):
                stuck.put(write(), expected_version=None)  # the broken holder writes nothing more
            operator.put(write(), expected_version=None)
            operator.release_lock(mine)
            assert [a.action for a in operator.audit()] == ["create"]

    # --- moving between stores -------------------------------------------------

    def test_snapshot_and_restore_keep_versions_managed_flags_and_audit(
            self, url: str, new_store_url: Callable[[], str]) -> None:
        with opened(url, "default") as source:
            source.put(write(), expected_version=None)
            source.put(write(), expected_version=1)
            source.put(write("UI made", managed=False, action="ui-create"), expected_version=None)
            snapshot = source.snapshot()
        with opened(new_store_url(), "default") as target:
            target.restore(snapshot, actor="mover", overwrite=False)
            assert [(r.name, r.version, r.managed, r.synced_version) for r in target.records()] == [
                ("AWS Prod", 2, True, 2), ("UI made", 1, False, None)]
            assert target.read_secrets("AWS Prod") == {"secret_access_key": Secret(CANARY)}
            copied = target.get("AWS Prod")
            assert copied is not None and copied.fingerprints["secret_access_key"] == \
                target.fingerprint("secret_access_key", Secret(CANARY))
            assert [a.action for a in target.audit()] == ["create", "create", "ui-create", "copy", "copy"]
            with pytest.raises(StoreError, match="already holds"):
                target.restore(snapshot, actor="mover", overwrite=False)
            target.restore(snapshot, actor="mover", overwrite=True)
            assert len(target.records()) == 2

    # --- many writers, and a crash ---------------------------------------------

    def test_concurrent_applies_write_every_record_once(
            self, url: str, connections_repo: Callable[[int], Path]) -> None:
        repo = connections_repo(20)
        env = {"CONNSYNC_STORE": url}
        procs = [_connsync("apply", "--auto-approve", "--skip-verify", "--lock-timeout", "120", cwd=repo,
                           env=env) for _ in range(4)]
        results = [_finish(p) for p in procs]
        for code, out, err in results:
            assert code == 0, err
            assert CANARY not in out + err
        with opened(url, "default") as store:
            records = store.records()
            assert len(records) == 20 and {r.version for r in records} == {1}
            creates = [a for a in store.audit() if a.action == "create"]
            assert sorted(a.name for a in creates) == sorted(r.name for r in records)

    def test_a_crash_mid_apply_leaves_records_whole_and_a_rerun_converges(
            self, url: str, connections_repo: Callable[[int], Path]) -> None:
        repo = connections_repo(60)
        env = {"CONNSYNC_STORE": url}
        victim = _connsync("apply", "--auto-approve", "--skip-verify", cwd=repo, env=env)
        with opened(url, "default") as store:
            deadline = time.monotonic() + 60
            while not store.audit() and victim.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            victim.send_signal(signal.SIGKILL)
            _finish(victim)
            for record in store.records():  # whatever was written is whole
                assert record.version == 1 and record.fingerprints and record.source
                assert store.read_secrets(record.name) == {"secret_access_key": Secret(CANARY)}
        code, out, err = _finish(_connsync("apply", "--auto-approve", "--skip-verify", "--lock-timeout",
                                           "30", cwd=repo, env=env))
        assert code == 0, err
        code, out, err = _finish(_connsync("plan", "--detailed-exitcode", cwd=repo, env=env))
        assert code == 0, out + err
        with opened(url, "default") as store:
            assert len(store.records()) == 60 and {r.version for r in store.records()} == {1}
