"""The embedded store's file: made whole or not at all, its key, its schema and salt.

What only a database on this machine's disk has to get right, kept apart from the
records and the lock (``sqlite.py``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connsync.errors import StoreError, StoreUnavailable
from connsync.fsutil import write_atomic
from connsync.store.sealing import KEY_VARIABLE, Sealer, decode_key, new_key_text

SCHEMA_VERSION = 3  # 2: the fingerprint salt is sealed with the store key; 3: verification history

# Schema 3: one row per verification result, the newest N of each connection kept.
HISTORY_TABLES = (
    """CREATE TABLE IF NOT EXISTS verifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order: newest is highest
    workspace TEXT NOT NULL,
    name_key TEXT NOT NULL,
    name TEXT NOT NULL,
    at TEXT NOT NULL,
    status TEXT NOT NULL,
    account TEXT,
    messages TEXT NOT NULL,           -- JSON list of strings
    key_created TEXT
)""",
    "CREATE INDEX IF NOT EXISTS verifications_by_name ON verifications (workspace, name_key, id)",
)

SCHEMA = """
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


def create(path: Path) -> None:
    """A new store appears whole or not at all: built under a temporary name, then linked.

    So an empty file at ``path`` is never a store being born, always a broken one. A create
    that fails (a full disk) leaves nothing behind: no temporary file, no -wal/-shm, no key
    file made for a store that never came to be.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_file = _key_file(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.new")
    made_key = False
    try:
        if not os.environ.get(KEY_VARIABLE) and not key_file.exists():
            _refuse_unignored(key_file)
            with contextlib.suppress(FileExistsError):  # another process made it first
                write_atomic(key_file, (new_key_text() + "\n").encode(), mode=0o600)
                made_key = True
        key, _ = load_key(path)
        _build(temp, key)
        with contextlib.suppress(FileExistsError):  # another process created the store first
            os.link(temp, path)
    except (OSError, sqlite3.Error) as exc:
        if made_key and not path.exists():
            key_file.unlink(missing_ok=True)
        if not is_disk_full(exc):
            raise
        raise StoreUnavailable(f"the disk is full: the store {path} could not be created; nothing was "
                               "written", hint=f"free space on the disk that holds {path.parent}, then "
                               "run apply again") from None
    finally:
        _unlink_with_sidecars(temp)


def _build(temp: Path, key: bytes) -> None:
    _unlink_with_sidecars(temp)
    # Created 0600 before SQLite sees it (SQLite would use the umask); -wal and -shm inherit it.
    os.close(os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    conn = sqlite3.connect(temp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
        for statement in HISTORY_TABLES:
            conn.execute(statement)
        sealer = Sealer(key)
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                         [("schema_version", str(SCHEMA_VERSION)), ("salt", sealer.new_sealed_salt())])
    finally:
        conn.close()


def _unlink_with_sidecars(path: Path) -> None:
    """The file and what SQLite keeps beside it (-wal, -shm, -journal): none outlives a failed create."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _refuse_unignored(key_file: Path) -> None:
    """A key file must not land in a git work tree where a `git add .` would commit it."""
    try:
        inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=key_file.parent,
                                capture_output=True, text=True, timeout=10, check=False)
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return
        ignored = subprocess.run(["git", "check-ignore", "-q", key_file.name], cwd=key_file.parent,
                                 capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return  # no git here: nothing to commit the key to
    if ignored.returncode == 1:
        raise StoreError(
            f"the store's key file {key_file} would be created inside a git work tree and is not "
            "git-ignored",
            hint=f"add it to .gitignore (connsync init ignores .connsync/), or set {KEY_VARIABLE}",
        )


def _key_file(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".key")


def load_key(db_path: Path) -> tuple[bytes, str]:
    """The key file beside the database, else CONNSYNC_STORE_KEY; never a new key for old data.

    A key file, where there is one, is the key the store was created with: it wins
    over the environment, so a CONNSYNC_STORE_KEY meant for a shared store (as in
    ``connsync store copy`` from this file to PostgreSQL) never opens this one wrongly.
    """
    key_file = _key_file(db_path)
    try:
        fd = os.open(key_file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        encoded = os.environ.get(KEY_VARIABLE)
        if encoded:
            return decode_key(encoded, KEY_VARIABLE), KEY_VARIABLE
        raise StoreError(
            f"the key file {key_file} of the store {db_path} is missing",
            hint=f"restore it from where you keep it, or set {KEY_VARIABLE}; without the key the "
            "store's secrets cannot be opened (connsync never makes a new key for an existing store)",
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot read the store key file {key_file}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise StoreError(f"the store key file {key_file} is not a regular file")
        text = handle.read(4096).decode("ascii", "replace")
    return decode_key(text, str(key_file)), str(key_file)


def read_meta(conn: sqlite3.Connection, path: Path) -> dict[str, Any]:
    """The store's meta table: what tells a connsync store from any other SQLite file."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
        raise StoreError(f"cannot open store {path}: it is an SQLite database but not a connsync store")
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    version = int(meta.get("schema_version", 0))
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store {path} has schema version {version}; this connsync knows up to {SCHEMA_VERSION}",
            hint="upgrade connsync to the version that wrote it",
        )
    return meta


def open_salt(conn: sqlite3.Connection, meta: dict[str, Any], sealer: Sealer, path: Path,
          key_source: str) -> bytes:
    if int(meta.get("schema_version", 0)) < 2:
        _upgrade_to_sealed_salt(conn, sealer, meta, path, key_source)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if int(meta.get("schema_version", 0)) < 3:
        _upgrade_to_history(conn)
    return sealer.open_salt(bytes(meta["salt"]), str(path), key_source)


def _upgrade_to_history(conn: sqlite3.Connection) -> None:
    """Schema 3 adds the verification history: a new table, nothing else changes."""
    with transaction(conn):
        for statement in HISTORY_TABLES:
            conn.execute(statement)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _upgrade_to_sealed_salt(conn: sqlite3.Connection, sealer: Sealer, meta: dict[str, Any], path: Path,
                            key_source: str) -> None:
    """Schema 1 kept the salt in clear next to the fingerprints; schema 2 seals it."""
    from cryptography.exceptions import InvalidTag

    try:
        check = bytes(meta["key_check"])
        sealer.open(check, b"")
    except (KeyError, InvalidTag):
        raise StoreError(f"the store key does not open {path}",
                         hint=f"set {key_source} to the key this store was created with") from None
    with transaction(conn):
        conn.execute("UPDATE meta SET value = ? WHERE key = 'salt'",
                     (sealer.seal_salt(bytes(meta["salt"])),))
        conn.execute("DELETE FROM meta WHERE key = 'key_check'")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # BEGIN inside the try: a ^C that lands just after it still rolls back, and the
    # connection is never left inside a transaction that the next BEGIN trips over.
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def is_disk_full(exc: BaseException) -> bool:
    return (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or getattr(exc, "errno", None) == errno.ENOSPC)
