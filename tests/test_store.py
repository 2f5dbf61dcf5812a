"""The embedded SQLite store: permissions, encryption at rest, versions, audit, lock."""

from __future__ import annotations

import base64
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from connsync.errors import LockError, StoreError, VersionConflict
from connsync.model import Secret
from connsync.store import Write, open_store
from connsync.store.sqlite import SqliteStore
from tests.conftest import CANARY


def write(name: str = "AWS Prod", secret: str = CANARY, managed: bool = True, **spec: object) -> Write:
    return Write(name=name, provider="aws", spec={"account_id": "123456789012", **spec},
                 secrets={"secret_access_key": Secret(secret)}, managed=managed, actor="tester",
                 action="create")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "store.db"


@pytest.fixture
def store(db: Path) -> SqliteStore:
    return SqliteStore.open(f"sqlite:{db}", "default")


def test_files_are_private(store: SqliteStore, db: Path) -> None:
    store.put(write(), expected_version=None)
    assert db.parent.stat().st_mode & 0o777 == 0o700
    assert db.stat().st_mode & 0o777 == 0o600
    assert (db.parent / "store.db.key").stat().st_mode & 0o777 == 0o600
    wal = db.parent / "store.db-wal"
    assert wal.exists() and wal.stat().st_mode & 0o777 == 0o600


def test_secrets_are_encrypted_at_rest(store: SqliteStore, db: Path) -> None:
    store.put(write(), expected_version=None)
    store.put(write(default_region="eu-west-1"), expected_version=1)
    for path in db.parent.iterdir():
        assert CANARY.encode() not in path.read_bytes(), path
    assert store.read_secrets("aws prod") == {"secret_access_key": Secret(CANARY)}


def test_versions_and_optimistic_concurrency(store: SqliteStore) -> None:
    assert store.put(write(), expected_version=None).version == 1
    assert store.put(write(), expected_version=1).version == 2
    with pytest.raises(VersionConflict):
        store.put(write(), expected_version=1)
    with pytest.raises(VersionConflict):
        store.put(write(), expected_version=None)
    with pytest.raises(VersionConflict):
        store.delete("AWS Prod", expected_version=1, actor="t", git_revision=None)
    store.delete("AWS Prod", expected_version=2, actor="t", git_revision=None)
    assert store.get("AWS Prod") is None


def test_names_are_unique_ignoring_case(store: SqliteStore) -> None:
    store.put(write("AWS Prod"), expected_version=None)
    with pytest.raises(VersionConflict):
        store.put(write("aws prod"), expected_version=None)


def test_fingerprints_compare_without_revealing(store: SqliteStore, tmp_path: Path) -> None:
    record = store.put(write(), expected_version=None)
    assert record.fingerprints["secret_access_key"] == store.fingerprint("secret_access_key", Secret(CANARY))
    assert CANARY not in repr(record)
    other = SqliteStore.open(f"sqlite:{tmp_path / 'other.db'}", "default")
    assert other.fingerprint("secret_access_key", Secret(CANARY)) != record.fingerprints["secret_access_key"]


def test_audit_records_every_write_and_no_secret(store: SqliteStore, db: Path) -> None:
    store.put(write(), expected_version=None)
    store.put(write(), expected_version=1)
    store.delete("AWS Prod", expected_version=2, actor="t", git_revision="abc")
    assert [(a.action, a.version_before, a.version_after) for a in store.audit()] == [
        ("create", None, 1), ("create", 1, 2), ("delete", 2, None)]
    rows = sqlite3.connect(db).execute("SELECT * FROM audit").fetchall()
    assert CANARY not in repr(rows)


def test_workspaces_are_separate(db: Path) -> None:
    one = SqliteStore.open(f"sqlite:{db}", "one")
    two = SqliteStore.open(f"sqlite:{db}", "two")
    one.put(write(), expected_version=None)
    assert two.records() == [] and len(one.records()) == 1


def test_wrong_store_key(store: SqliteStore, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put(write(), expected_version=None)
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(StoreError, match="the store key does not open"):
        SqliteStore.open(f"sqlite:{db}", "default")
    monkeypatch.setenv("CONNSYNC_STORE_KEY", "too short")
    with pytest.raises(StoreError, match="not 32 bytes"):
        SqliteStore.open(f"sqlite:{db}", "default")


def test_corrupt_file(db: Path) -> None:
    db.parent.mkdir()
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        SqliteStore.open(f"sqlite:{db}", "default")


def test_unknown_scheme() -> None:
    with pytest.raises(StoreError, match="no store backend for postgres:"):
        open_store("postgres://x", "default")


def test_lock_names_its_holder_and_times_out(store: SqliteStore, db: Path) -> None:
    held = store.acquire_lock(timeout=0)
    other = SqliteStore.open(f"sqlite:{db}", "default")
    with pytest.raises(LockError) as caught:
        other.acquire_lock(timeout=0.3)
    assert held.id in caught.value.message and held.holder in caught.value.message
    assert f"connsync unlock {held.id}" in str(caught.value.hint)
    store.release_lock(held)
    other.release_lock(other.acquire_lock(timeout=0))


def test_lock_of_a_dead_holder_says_so(store: SqliteStore, db: Path) -> None:
    import subprocess
    import sys

    code = ("from connsync.store.sqlite import SqliteStore; import sys; "
            f"print(SqliteStore.open('sqlite:{db}', 'default').acquire_lock(timeout=0).id)")
    lock_id = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip()
    with pytest.raises(LockError) as caught:
        store.acquire_lock(timeout=0)
    assert "no longer running" in caught.value.message and lock_id in caught.value.message
    assert store.break_lock("not-the-id") is None
    broken = store.break_lock(lock_id)
    assert broken is not None and broken.id == lock_id
    store.release_lock(store.acquire_lock(timeout=0))


def test_creating_a_store_retries_an_immediate_lock(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes creating one store: SQLite may answer the WAL switch with "locked" at once."""
    import connsync.store.sqlite as backend

    real_connect = sqlite3.connect
    refusals = {"left": 2}

    class Busy:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self._conn = conn

        def execute(self, sql: str, *args: Any) -> object:
            if sql.startswith("PRAGMA journal_mode") and refusals["left"]:
                refusals["left"] -= 1
                raise sqlite3.OperationalError("database is locked")
            return self._conn.execute(sql, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(self._conn, name)

    monkeypatch.setattr(backend.sqlite3, "connect", lambda *a, **k: Busy(real_connect(*a, **k)))
    store = SqliteStore.open(f"sqlite:{db}", "default")
    assert refusals["left"] == 0
    store.put(write(), expected_version=None)
    monkeypatch.setattr(backend, "_OPEN_RETRY_SECONDS", -1.0)
    refusals["left"] = 1
    with pytest.raises(StoreError, match="database is locked"):
        SqliteStore.open(f"sqlite:{db}", "default")
