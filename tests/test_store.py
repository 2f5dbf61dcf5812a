"""The embedded SQLite store: what only a file on disk can get wrong.

What every backend must do (versions, lock, audit, sealing, workspaces, crashes)
is in the shared contract suite, tests/test_store_contract.py.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from connsync.errors import StoreError
from connsync.model import Secret
from connsync.store import Write, open_store
from connsync.store.sqlite import SCHEMA_VERSION, SqliteStore
from tests.conftest import CANARY, Run


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


def test_secrets_and_the_salt_are_sealed_at_rest(store: SqliteStore, db: Path) -> None:
    store.put(write(), expected_version=None)
    store.put(write(default_region="eu-west-1"), expected_version=1)
    for path in db.parent.iterdir():
        assert CANARY.encode() not in path.read_bytes(), path
    # With only the database a guessed secret cannot be checked against its fingerprint:
    # the salt it needs is sealed with the key, which is not in the database.
    salt = sqlite3.connect(db).execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()[0]
    assert store._salt not in bytes(salt) and len(bytes(salt)) > 32


def test_a_schema_1_store_gets_its_salt_sealed(db: Path) -> None:
    store = SqliteStore.open(f"sqlite:{db}", "default")
    record = store.put(write(), expected_version=None)
    clear_salt = store._salt
    store.close()
    key = base64.b64decode((db.parent / "store.db.key").read_text())
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    old = sqlite3.connect(db)  # what connsync 0.1 wrote: the salt in clear, and a key check
    old.execute("UPDATE meta SET value = ? WHERE key = 'salt'", (clear_salt,))
    old.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    old.execute("INSERT INTO meta VALUES ('key_check', ?)",
                (nonce + AESGCM(key).encrypt(nonce, b"connsync store key check", None),))
    old.commit()
    old.close()
    upgraded = SqliteStore.open(f"sqlite:{db}", "default")
    fingerprint = upgraded.fingerprint("secret_access_key", Secret(CANARY))
    assert fingerprint == record.fingerprints["secret_access_key"]
    meta = dict(sqlite3.connect(db).execute("SELECT key, value FROM meta").fetchall())
    # Up to the current schema: the salt sealed (2), then the history table (3).
    assert meta["schema_version"] == str(SCHEMA_VERSION) and "key_check" not in meta
    assert bytes(meta["salt"]) != clear_salt


def test_a_newer_schema_is_refused(store: SqliteStore, db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    with pytest.raises(StoreError, match=f"schema version 99; this connsync knows up to {SCHEMA_VERSION}"):
        SqliteStore.open(f"sqlite:{db}", "default")


def test_a_missing_key_file_is_an_error_never_a_new_key(store: SqliteStore, db: Path, run: Run) -> None:
    store.put(write(), expected_version=None)
    (db.parent / "store.db.key").unlink()
    with pytest.raises(StoreError, match=r"store\.db\.key of the store .* is missing"):
        SqliteStore.open(f"sqlite:{db}", "default")
    result = run("--store", f"sqlite:{db}", "list")  # a read-only command makes no key either
    assert result.code == 1 and "is missing" in result.err
    assert not (db.parent / "store.db.key").exists()


def test_a_key_file_that_is_not_a_file_does_not_hang(store: SqliteStore, db: Path) -> None:
    key_file = db.parent / "store.db.key"
    key_file.unlink()
    os.mkfifo(key_file)
    with pytest.raises(StoreError, match="not a regular file"):
        SqliteStore.open(f"sqlite:{db}", "default")


def test_an_empty_or_truncated_database_is_an_error_not_a_fresh_store(store: SqliteStore, db: Path) -> None:
    store.put(write(), expected_version=None)
    store.close()
    data = db.read_bytes()
    db.write_bytes(b"")
    with pytest.raises(StoreError, match="the file is empty"):
        SqliteStore.open(f"sqlite:{db}", "default")
    assert db.stat().st_size == 0  # left as it was found
    db.write_bytes(data[: len(data) // 2])
    (db.parent / "store.db-wal").unlink(missing_ok=True)
    with pytest.raises(StoreError, match="cannot open store"):
        SqliteStore.open(f"sqlite:{db}", "default").records()


def test_corrupt_file(db: Path) -> None:
    db.parent.mkdir()
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        SqliteStore.open(f"sqlite:{db}", "default")


def test_a_damaged_record_is_one_clear_error(store: SqliteStore, db: Path, run: Run) -> None:
    store.put(write(), expected_version=None)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE connections SET spec = '{not json'")
    conn.commit()
    with pytest.raises(StoreError, match="record 'AWS Prod' is damaged"):
        store.records()
    result = run("--store", f"sqlite:{db}", "list")
    assert result.code == 1 and "is damaged" in result.err and "Traceback" not in result.err


def test_a_key_file_is_never_made_unignored_in_a_git_work_tree(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    with pytest.raises(StoreError, match="not git-ignored"):
        SqliteStore.open(f"sqlite:{tmp_path / 'x.db'}", "default")
    assert not (tmp_path / "x.db.key").exists() and not (tmp_path / "x.db").exists()
    (tmp_path / ".gitignore").write_text("*.db*\n")
    SqliteStore.open(f"sqlite:{tmp_path / 'x.db'}", "default").close()
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    SqliteStore.open(f"sqlite:{tmp_path / 'y' / 'y.db'}", "default").close()  # no key file at all
    assert not (tmp_path / "y" / "y.db.key").exists()


def test_stores_created_by_many_processes_at_once_are_one_store(db: Path) -> None:
    code = ("import sys; from connsync.store.sqlite import SqliteStore; from connsync.model import Secret; "
            "s = SqliteStore.open(sys.argv[1], 'default'); "
            "print(s.fingerprint('f', Secret('v')))")
    procs = [subprocess.Popen([sys.executable, "-c", code, f"sqlite:{db}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    assert all(code == 0 for _, _, code in results), [err for _, err, _ in results]
    assert len({out for out, _, _ in results}) == 1  # one salt: one store
    assert not list(db.parent.glob(".store.db.*.new"))


def test_unknown_scheme() -> None:
    with pytest.raises(StoreError, match="no store backend for mysql:"):
        open_store("mysql://x", "default")


def test_spec_json_is_kept_sorted_and_whole(store: SqliteStore, db: Path) -> None:
    store.put(write(z_last="1", a_first="2"), expected_version=None)
    raw = sqlite3.connect(db).execute("SELECT spec FROM connections").fetchone()[0]
    assert json.loads(raw) == {"a_first": "2", "account_id": "123456789012", "z_last": "1"}
