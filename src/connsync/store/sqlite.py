"""The embedded default store: one SQLite file (WAL), secrets sealed with AES-GCM.

Every write is one transaction that also appends its audit entry, so a crash
leaves each record fully old or fully new. The workspace lock is a row that
names its holder; a holder that died leaves it behind, to be broken with
``connsync unlock`` once a person has checked that no apply is running.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from connsync.errors import LockError, StoreError, VersionConflict
from connsync.fsutil import write_atomic
from connsync.identity import ci_run_id, user_at_host
from connsync.model import Secret, StoredConnection
from connsync.store.base import AuditEntry, LockInfo, Write, fingerprint

SCHEMA_VERSION = 1
_KEY_CHECK = b"connsync store key check"
_LOCK_POLL_SECONDS = 0.1
_OPEN_RETRY_SECONDS = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS connections (
    workspace TEXT NOT NULL,
    name_key TEXT NOT NULL,           -- casefolded name: names are unique ignoring case
    name TEXT NOT NULL,
    provider TEXT NOT NULL,
    spec TEXT NOT NULL,               -- JSON of the clear fields
    description TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    secrets BLOB NOT NULL,            -- AES-GCM nonce || ciphertext of a JSON object
    fingerprints TEXT NOT NULL,       -- JSON field -> HMAC-SHA256
    version INTEGER NOT NULL,
    synced_version INTEGER,           -- the version connsync wrote last
    managed INTEGER NOT NULL,
    source TEXT,
    source_digest TEXT,
    git_revision TEXT,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (workspace, name_key)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    version_before INTEGER,
    version_after INTEGER,
    actor TEXT NOT NULL,
    git_revision TEXT,
    source TEXT
);
CREATE TABLE IF NOT EXISTS locks (
    workspace TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    holder TEXT NOT NULL,
    pid INTEGER NOT NULL,
    ci_run TEXT,
    acquired_at TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _load_key(db_path: Path) -> bytes:
    """CONNSYNC_STORE_KEY (base64 of 32 bytes), else a key file beside the database."""
    encoded = os.environ.get("CONNSYNC_STORE_KEY")
    source = "CONNSYNC_STORE_KEY"
    if not encoded:
        key_file = db_path.with_name(db_path.name + ".key")
        source = str(key_file)
        if not key_file.exists():
            with contextlib.suppress(FileExistsError):  # another process made it first
                fresh = base64.b64encode(secrets.token_bytes(32)).decode() + "\n"
                write_atomic(key_file, fresh.encode(), mode=0o600)
        encoded = key_file.read_text().strip()
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise StoreError(
            f"the store key from {source} is not 32 bytes of base64",
            hint="make one with: python -c "
            "'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'",
        )
    return key


class SqliteStore:
    def __init__(self, path: Path, workspace: str, conn: sqlite3.Connection, key: bytes,
                 salt: bytes) -> None:
        self.path = path
        self.workspace = workspace
        self._conn = conn
        self._aead = AESGCM(key)
        self._salt = salt

    # --- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, url: str, workspace: str) -> SqliteStore:
        raw = url.partition(":")[2]
        if not raw:
            raise StoreError(f"store URL {url!r} names no file")
        path = Path(raw).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                # Created 0600 before SQLite sees it (SQLite would use the umask); the
                # -wal and -shm files inherit this mode.
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            key = _load_key(path)
        except OSError as exc:
            raise StoreError(f"cannot open store {path}: {exc.strerror}") from None
        deadline = time.monotonic() + _OPEN_RETRY_SECONDS
        while True:
            conn: sqlite3.Connection | None = None
            try:
                conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                salt = cls._initialise(conn, key, path)
                return cls(path, workspace, conn, key, salt)
            except sqlite3.OperationalError as exc:
                # Switching a new file to WAL can report "locked" at once, without
                # waiting, when two processes create the store together.
                if conn is not None:
                    conn.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise _unopenable(path, exc) from None
                time.sleep(0.05)
            except sqlite3.DatabaseError as exc:
                if conn is not None:
                    conn.close()
                raise _unopenable(path, exc) from None

    @staticmethod
    def _initialise(conn: sqlite3.Connection, key: bytes, path: Path) -> bytes:
        aead = AESGCM(key)
        if not _has_tables(conn):
            conn.executescript(_SCHEMA)  # idempotent; runs in its own transaction
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if "salt" not in rows:
            with _transaction(conn, immediate=True):  # two first opens race here
                rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if "salt" not in rows:
                    nonce = secrets.token_bytes(12)
                    rows = {
                        "schema_version": str(SCHEMA_VERSION),
                        "salt": secrets.token_bytes(32),
                        "key_check": nonce + aead.encrypt(nonce, _KEY_CHECK, None),
                    }
                    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(rows.items()))
        check = bytes(rows["key_check"])
        try:
            aead.decrypt(check[:12], check[12:], None)
        except InvalidTag:
            raise StoreError(
                f"the store key does not open {path}",
                hint="set CONNSYNC_STORE_KEY (or the .key file beside the database) to the key "
                "this store was created with",
            ) from None
        return bytes(rows["salt"])

    def close(self) -> None:
        self._conn.close()

    # --- reading ---------------------------------------------------------------

    def records(self) -> list[StoredConnection]:
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM connections WHERE workspace = ? ORDER BY name_key",  # noqa: S608 - constant columns
            (self.workspace,),
        ).fetchall()
        return [_record(row) for row in rows]

    def get(self, name: str) -> StoredConnection | None:
        row = self._row(name)
        return _record(row) if row else None

    def _row(self, name: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._conn.execute(
            f"SELECT {_COLUMNS} FROM connections WHERE workspace = ? AND name_key = ?",  # noqa: S608
            (self.workspace, name.casefold()),
        ).fetchone()
        return row

    def fingerprint(self, field: str, value: Secret) -> str:
        return fingerprint(self._salt, field, value)

    def read_secrets(self, name: str) -> dict[str, Secret]:
        row = self._conn.execute(
            "SELECT secrets FROM connections WHERE workspace = ? AND name_key = ?",
            (self.workspace, name.casefold()),
        ).fetchone()
        if row is None:
            raise StoreError(f"no connection named {name!r} in workspace {self.workspace!r}")
        blob = bytes(row[0])
        try:
            plain = self._aead.decrypt(blob[:12], blob[12:], self._aad(name))
        except InvalidTag:
            raise StoreError(f"the secrets of {name!r} do not decrypt under this store key") from None
        return {k: Secret(v) for k, v in json.loads(plain).items()}

    def audit(self) -> list[AuditEntry]:
        rows = self._conn.execute(
            "SELECT at, workspace, name, action, version_before, version_after, actor, git_revision, "
            "source FROM audit WHERE workspace = ? ORDER BY id", (self.workspace,)
        ).fetchall()
        return [AuditEntry(*row) for row in rows]

    # --- writing ---------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction; SQLite failures (disk full, I/O, a lock held too long)
        become a StoreError for the connection at hand, not a crash of the whole apply."""
        try:
            with _transaction(self._conn, immediate=True):
                yield
        except sqlite3.Error as exc:
            raise StoreError(f"the store refused the write: {exc}") from None

    def _aad(self, name: str) -> bytes:
        # Binds each sealed blob to its row, so blobs cannot be swapped between records.
        return f"{self.workspace}\0{name.casefold()}".encode()

    def _seal(self, name: str, values: dict[str, Secret]) -> bytes:
        nonce = secrets.token_bytes(12)
        plain = json.dumps({k: v.reveal() for k, v in values.items()}).encode()
        return nonce + self._aead.encrypt(nonce, plain, self._aad(name))

    def put(self, write: Write, *, expected_version: int | None) -> StoredConnection:
        fingerprints = {k: self.fingerprint(k, v) for k, v in write.secrets.items()}
        sealed = self._seal(write.name, dict(write.secrets))
        now = _now()
        with self._write():
            current = self._row(write.name)
            version = current[_VERSION] if current else None
            if version != expected_version:
                raise VersionConflict(
                    f"{write.name!r} changed in the store meanwhile (version {version}, "
                    f"expected {expected_version})",
                    hint="run plan again",
                )
            new_version = (version or 0) + 1
            synced = new_version if write.managed else (current[_SYNCED] if current else None)
            self._conn.execute(
                "INSERT OR REPLACE INTO connections (workspace, name_key, name, provider, spec, "
                "description, labels, secrets, fingerprints, version, synced_version, managed, source, "
                "source_digest, git_revision, updated_at, updated_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.workspace, write.name.casefold(), write.name, write.provider,
                 json.dumps(dict(write.spec), sort_keys=True), write.description,
                 json.dumps(dict(write.labels), sort_keys=True), sealed,
                 json.dumps(fingerprints, sort_keys=True), new_version, synced, int(write.managed),
                 write.source, write.source_digest, write.git_revision, now, write.actor),
            )
            self._audit(now, write.name, write.action, version, new_version, write.actor,
                        write.git_revision, write.source)
        return StoredConnection(
            name=write.name, provider=write.provider, spec=dict(write.spec), fingerprints=fingerprints,
            version=new_version, managed=write.managed, source=write.source,
            source_digest=write.source_digest, synced_version=synced, git_revision=write.git_revision,
            updated_at=now, updated_by=write.actor, labels=dict(write.labels),
            description=write.description,
        )

    def delete(self, name: str, *, expected_version: int, actor: str, git_revision: str | None) -> None:
        now = _now()
        with self._write():
            current = self._row(name)
            if current is None or current[_VERSION] != expected_version:
                raise VersionConflict(f"{name!r} changed in the store meanwhile", hint="run plan again")
            self._conn.execute(
                "DELETE FROM connections WHERE workspace = ? AND name_key = ?",
                (self.workspace, name.casefold()),
            )
            self._audit(now, name, "delete", expected_version, None, actor, git_revision, current[_SOURCE])

    def record_source(self, name: str, *, expected_version: int, source: str, source_digest: str) -> None:
        with self._write():
            updated = self._conn.execute(
                "UPDATE connections SET source = ?, source_digest = ?, synced_version = version "
                "WHERE workspace = ? AND name_key = ? AND version = ? AND managed = 1",
                (source, source_digest, self.workspace, name.casefold(), expected_version),
            ).rowcount
            if not updated:
                raise VersionConflict(f"{name!r} changed in the store meanwhile", hint="run plan again")

    def _audit(self, at: str, name: str, action: str, before: int | None, after: int | None,
               actor: str, git_revision: str | None, source: str | None) -> None:
        self._conn.execute(
            "INSERT INTO audit (at, workspace, name, action, version_before, version_after, actor, "
            "git_revision, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (at, self.workspace, name, action, before, after, actor, git_revision, source),
        )

    # --- the workspace lock -----------------------------------------------------

    def _current_lock(self) -> LockInfo | None:
        row = self._conn.execute(
            "SELECT id, workspace, holder, pid, ci_run, acquired_at FROM locks WHERE workspace = ?",
            (self.workspace,),
        ).fetchone()
        return LockInfo(*row) if row else None

    def acquire_lock(self, *, timeout: float) -> LockInfo:
        mine = LockInfo(uuid.uuid4().hex[:12], self.workspace, user_at_host(), os.getpid(),
                        ci_run_id(), _now())
        deadline = time.monotonic() + timeout
        while True:
            with self._write():
                held = self._current_lock()
                if held is None:
                    self._conn.execute(
                        "INSERT INTO locks (workspace, id, holder, pid, ci_run, acquired_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (mine.workspace, mine.id, mine.holder, mine.pid, mine.ci_run, mine.acquired_at),
                    )
                    return mine
            if time.monotonic() >= deadline:
                raise _lock_error(held, timeout)
            time.sleep(_LOCK_POLL_SECONDS)

    def release_lock(self, lock: LockInfo) -> None:
        with self._write():
            self._conn.execute("DELETE FROM locks WHERE workspace = ? AND id = ?", (lock.workspace, lock.id))

    def break_lock(self, lock_id: str) -> LockInfo | None:
        with self._write():
            held = self._current_lock()
            if held is None or held.id != lock_id:
                return None
            self._conn.execute("DELETE FROM locks WHERE workspace = ? AND id = ?", (self.workspace, lock_id))
            return held


def _unopenable(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    return StoreError(
        f"cannot open store {path}: {exc}",
        hint="is it a connsync store, and writable? Check the path and its permissions",
    )


def _lock_error(held: LockInfo, timeout: float) -> LockError:
    dead = held.holder == user_at_host() and not _pid_alive(held.pid)
    if dead:
        return LockError(
            f"workspace {held.workspace!r} is locked by {held.describe()}, "
            "and that process is no longer running",
            hint=f"if no apply is running, break the lock with: connsync unlock {held.id}",
        )
    return LockError(
        f"workspace {held.workspace!r} is still locked after {timeout:g}s by {held.describe()}",
        hint=f"wait for it (--lock-timeout), or if it is stale: connsync unlock {held.id}",
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'connections'").fetchone() is not None


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, *, immediate: bool = False) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_COLUMNS = (
    "name, provider, spec, fingerprints, version, managed, source, source_digest, synced_version, "
    "git_revision, updated_at, updated_by, labels, description"
)
_VERSION, _SOURCE, _SYNCED = 4, 6, 8


def _record(row: tuple[Any, ...]) -> StoredConnection:
    return StoredConnection(
        name=row[0], provider=row[1], spec=json.loads(row[2]), fingerprints=json.loads(row[3]),
        version=row[4], managed=bool(row[5]), source=row[6], source_digest=row[7],
        synced_version=row[8], git_revision=row[9], updated_at=row[10], updated_by=row[11],
        labels=json.loads(row[12]), description=row[13],
    )
