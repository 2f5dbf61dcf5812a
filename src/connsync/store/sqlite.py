"""The embedded default store: one SQLite file (WAL), secrets sealed with AES-GCM.

Every write is one transaction that also appends its audit entry, so a crash
leaves each record fully old or fully new. The workspace lock is a row that
names its holder, and the holder keeps an advisory lock (``flock``) on a file
of its own while it lives: the kernel drops that with the process, so the next
apply sees at once that the holder died and takes the lock over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from connsync.errors import LockError, LockLost, StoreError, StoreUnavailable, VersionConflict
from connsync.model import Secret, StoredConnection
from connsync.store.base import (
    HISTORY_LIMIT,
    AuditEntry,
    LockInfo,
    Snapshot,
    Verification,
    Write,
    fingerprint,
    new_lock,
    now,
    verifications_from_rows,
)
from connsync.store.sealing import Sealer
from connsync.store.sql import COLUMNS, record_from_row
from connsync.store.sqlite_file import (
    SCHEMA_VERSION,
    create,
    is_disk_full,
    load_key,
    open_salt,
    read_meta,
    transaction,
)

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

_LOCK_POLL_SECONDS = 0.1


class SqliteStore:
    def __init__(self, path: Path, workspace: str, conn: sqlite3.Connection, sealer: Sealer,
                 salt: bytes) -> None:
        self.path = path
        self.workspace = workspace
        self._conn = conn
        self._sealer = sealer
        self._salt = salt
        self._lock: LockInfo | None = None
        self._lock_fd: int | None = None

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    # --- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, url: str, workspace: str) -> SqliteStore:
        raw = url.partition(":")[2]
        if not raw:
            raise StoreError(f"store URL {url!r} names no file")
        path = Path(raw).expanduser()
        try:
            if not path.exists():
                create(path)
            if path.stat().st_size == 0:
                raise StoreError(
                    f"cannot open store {path}: the file is empty, not a connsync store",
                    hint="restore it from a backup, or remove it to start a new, empty store",
                )
            conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        except OSError as exc:
            raise StoreError(f"cannot open store {path}: {exc.strerror}") from None
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            meta = read_meta(conn, path)
            key, key_source = load_key(path)
            sealer = Sealer(key)
            salt = open_salt(conn, meta, sealer, path, key_source)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _unopenable(path, exc) from None
        except BaseException:
            conn.close()
            raise
        return cls(path, workspace, conn, sealer, salt)

    def close(self) -> None:
        self._conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- reading ---------------------------------------------------------------

    def records(self) -> list[StoredConnection]:
        if self._conn.in_transaction:  # what a ^C left open is not the store's: read what is committed
            self._conn.execute("ROLLBACK")
        rows = self._conn.execute(
            f"SELECT {COLUMNS} FROM connections WHERE workspace = ? ORDER BY name_key",  # noqa: S608 - constant columns
            (self.workspace,),
        ).fetchall()
        return [record_from_row(row) for row in rows]

    def workspaces(self) -> list[str]:
        """Every workspace that holds a record (``rotate --exposed`` searches them all)."""
        return [row[0] for row in self._conn.execute(
            "SELECT DISTINCT workspace FROM connections ORDER BY workspace").fetchall()]

    def get(self, name: str) -> StoredConnection | None:
        row = self._row(name)
        return record_from_row(row) if row else None

    def _row(self, name: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._conn.execute(
            f"SELECT {COLUMNS} FROM connections WHERE workspace = ? AND name_key = ?",  # noqa: S608
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
        return self._sealer.open_secrets(bytes(row[0]), self._aad(name), name)

    def audit(self) -> list[AuditEntry]:
        rows = self._conn.execute(
            "SELECT at, workspace, name, action, version_before, version_after, actor, git_revision, "
            "source FROM audit WHERE workspace = ? ORDER BY id", (self.workspace,)
        ).fetchall()
        return [AuditEntry(*row) for row in rows]

    def verifications(self, name: str | None = None, *, per_connection: int | None = None) -> list[
            Verification]:
        where = "workspace = ?"
        params: list[object] = [self.workspace]
        if name is not None:
            where, params = where + " AND name_key = ?", [*params, name.casefold()]
        newest = "1"
        if per_connection is not None:  # only the newest of each: far fewer rows for a large fleet
            newest, params = "rank <= ?", [*params, max(1, per_connection)]
        rows = self._conn.execute(
            "SELECT name, at, status, account, messages, key_created FROM (SELECT *, row_number() OVER "  # noqa: S608 - constant clauses
            f"(PARTITION BY name_key ORDER BY id DESC) AS rank FROM verifications WHERE {where}) "
            f"WHERE {newest} ORDER BY id DESC", params)
        return verifications_from_rows(rows)  # row by row from the cursor: no list of raw rows

    def snapshot(self) -> Snapshot:
        return Snapshot([(r, self.read_secrets(r.name)) for r in self.records()], self.audit())

    # --- writing ---------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction; SQLite failures (disk full, I/O, a lock held too long)
        become a StoreError for the connection at hand, not a crash of the whole apply."""
        try:
            with transaction(self._conn):
                self._check_still_locked()
                yield
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                raise StoreUnavailable(f"the disk holding {self.path} is full: this write was rolled back "
                                       "whole, and nothing more can be written",
                                       hint=f"free space on the disk that holds {self.path.parent}") from None
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT,
                                                              sqlite3.SQLITE_READONLY):
                raise StoreUnavailable(f"the store {self.path} cannot be written ({exc}): this write was "
                                       "rolled back whole, and nothing more can be written") from None
            raise StoreError(f"the store refused the write: {exc}") from None

    def _check_still_locked(self) -> None:
        """A holder whose lock was broken (``connsync unlock``) writes nothing more."""
        if self._lock is None:
            return
        row = self._conn.execute("SELECT 1 FROM locks WHERE workspace = ? AND id = ?",
                                 (self.workspace, self._lock.id)).fetchone()
        if row is None:
            raise LockLost(f"the workspace lock {self._lock.id} was broken while this process held it; "
                           "nothing more is written", hint="run plan again")

    def _aad(self, name: str) -> bytes:
        # Binds each sealed blob to its row, so blobs cannot be swapped between records.
        return f"{self.workspace}\0{name.casefold()}".encode()

    def put(self, write: Write, *, expected_version: int | None) -> StoredConnection:
        fingerprints = {k: self.fingerprint(k, v) for k, v in write.secrets.items()}
        sealed = self._sealer.seal_secrets(write.secrets, self._aad(write.name))
        at = now()
        with self._write():
            current = self._row(write.name)
            version = current[4] if current else None
            if version != expected_version:
                raise VersionConflict(
                    f"{write.name!r} changed in the store meanwhile (version {version}, "
                    f"expected {expected_version})",
                    hint="run plan again",
                )
            new_version = (version or 0) + 1
            synced = new_version if write.managed else (current[8] if current else None)
            record = StoredConnection(
                name=write.name, provider=write.provider, spec=dict(write.spec), fingerprints=fingerprints,
                version=new_version, managed=write.managed, source=write.source,
                source_digest=write.source_digest, synced_version=synced, git_revision=write.git_revision,
                updated_at=at, updated_by=write.actor, labels=dict(write.labels),
                description=write.description,
            )
            self._insert(record, sealed)
            self._audit(AuditEntry(at, self.workspace, write.name, write.action, version, new_version,
                                   write.actor, write.git_revision, write.source))
        return record

    def _insert(self, record: StoredConnection, sealed: bytes) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO connections (workspace, name_key, name, provider, spec, "
            "description, labels, secrets, fingerprints, version, synced_version, managed, source, "
            "source_digest, git_revision, updated_at, updated_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.workspace, record.name.casefold(), record.name, record.provider,
             json.dumps(dict(record.spec), sort_keys=True), record.description,
             json.dumps(dict(record.labels), sort_keys=True), sealed,
             json.dumps(dict(record.fingerprints), sort_keys=True), record.version, record.synced_version,
             int(record.managed), record.source, record.source_digest, record.git_revision,
             record.updated_at, record.updated_by),
        )

    def delete(self, name: str, *, expected_version: int, actor: str, git_revision: str | None) -> None:
        at = now()
        with self._write():
            current = self._row(name)
            if current is None or current[4] != expected_version:
                raise VersionConflict(f"{name!r} changed in the store meanwhile", hint="run plan again")
            self._conn.execute(
                "DELETE FROM connections WHERE workspace = ? AND name_key = ?",
                (self.workspace, name.casefold()),
            )
            self._audit(AuditEntry(at, self.workspace, name, "delete", expected_version, None, actor,
                                   git_revision, current[6]))

    def record_source(self, name: str, *, expected_version: int, source: str, source_digest: str) -> None:
        with self._write():
            updated = self._conn.execute(
                "UPDATE connections SET source = ?, source_digest = ?, synced_version = version "
                "WHERE workspace = ? AND name_key = ? AND version = ? AND managed = 1",
                (source, source_digest, self.workspace, name.casefold(), expected_version),
            ).rowcount
            if not updated:
                raise VersionConflict(f"{name!r} changed in the store meanwhile", hint="run plan again")

    def record_event(self, name: str, action: str, *, actor: str, git_revision: str | None,
                     source: str | None) -> None:
        with self._write():
            current = self._row(name)
            version = current[4] if current else None
            self._audit(AuditEntry(now(), self.workspace, name, action, version, version, actor,
                                   git_revision, source))

    def record_verifications(self, results: Sequence[Verification], *, keep: int = HISTORY_LIMIT) -> None:
        with self._write():
            for result in map(Verification.bounded, results):
                key = result.name.casefold()
                self._conn.execute(
                    "INSERT INTO verifications (workspace, name_key, name, at, status, account, messages, "
                    "key_created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.workspace, key, result.name, result.at, result.status, result.account,
                     json.dumps(list(result.messages)), result.key_created))
                self._conn.execute(
                    "DELETE FROM verifications WHERE workspace = ? AND name_key = ? AND id NOT IN "
                    "(SELECT id FROM verifications WHERE workspace = ? AND name_key = ? ORDER BY id DESC "
                    "LIMIT ?)", (self.workspace, key, self.workspace, key, max(1, keep)))

    def _audit(self, entry: AuditEntry) -> None:
        self._conn.execute(
            "INSERT INTO audit (at, workspace, name, action, version_before, version_after, actor, "
            "git_revision, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.at, self.workspace, entry.name, entry.action, entry.version_before, entry.version_after,
             entry.actor, entry.git_revision, entry.source),
        )

    def restore(self, snapshot: Snapshot, *, actor: str, overwrite: bool) -> None:
        # Fingerprints are re-made under this store's salt; secrets are sealed under its key.
        sealed = [(r, self._sealer.seal_secrets(s, self._aad(r.name)),
                   {k: self.fingerprint(k, v) for k, v in s.items()}) for r, s in snapshot.records]
        with self._write():
            held = self._conn.execute("SELECT count(*) FROM connections WHERE workspace = ?",
                                      (self.workspace,)).fetchone()[0]
            if held and not overwrite:
                raise StoreError(f"workspace {self.workspace!r} of {self.describe()} already holds "
                                 f"{held} record(s); nothing was copied",
                                 hint="pass --replace to overwrite them")
            self._conn.execute("DELETE FROM connections WHERE workspace = ?", (self.workspace,))
            self._conn.execute("DELETE FROM audit WHERE workspace = ?", (self.workspace,))
            for entry in snapshot.audit:
                self._audit(entry)
            for record, blob, fingerprints in sealed:
                self._insert(replace(record, fingerprints=fingerprints), blob)
                self._audit(AuditEntry(now(), self.workspace, record.name, "copy", record.version,
                                       record.version, actor, record.git_revision, record.source))

    # --- the workspace lock -----------------------------------------------------

    def _current_lock(self) -> LockInfo | None:
        row = self._conn.execute(
            "SELECT id, workspace, holder, pid, ci_run, acquired_at FROM locks WHERE workspace = ?",
            (self.workspace,),
        ).fetchone()
        return LockInfo(*row) if row else None

    def _liveness_file(self, lock_id: str) -> Path:
        return self.path.with_name(f"{self.path.name}.lock-{lock_id}")

    def acquire_lock(self, *, timeout: float) -> LockInfo:
        mine = new_lock(self.workspace)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self._write():
                    held = self._current_lock()
                    stale = held is not None and not self._alive(held)
                    if held is None or stale:
                        # The liveness file is locked before the row is visible, inside the same
                        # transaction: whoever sees the row can trust the flock to say if we live.
                        self._lock_fd = _flock(self._liveness_file(mine.id))
                        self._conn.execute("DELETE FROM locks WHERE workspace = ?", (self.workspace,))
                        self._conn.execute(
                            "INSERT INTO locks (workspace, id, holder, pid, ci_run, acquired_at) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (mine.workspace, mine.id, mine.holder, mine.pid, mine.ci_run, mine.acquired_at),
                        )
                        # Under the write lock, as every liveness file is made: none is swept half-born.
                        self._sweep_liveness_files(mine.id)
            except BaseException:
                self._drop_liveness(mine.id)  # the row never became visible (a full disk fails the commit)
                raise
            if held is None or stale:
                self._lock = LockInfo(mine.id, mine.workspace, mine.holder, mine.pid, mine.ci_run,
                                      mine.acquired_at, replaced=held)
                return self._lock
            if time.monotonic() >= deadline:
                raise _lock_error(held, timeout)
            time.sleep(_LOCK_POLL_SECONDS)

    def _sweep_liveness_files(self, mine: str) -> None:
        """Liveness files of runs that ended without removing theirs (a failed release, a kill)."""
        for path in self.path.parent.glob(f"{self.path.name}.lock-*"):
            lock_id = path.name.rpartition(".lock-")[2]
            if lock_id != mine and not self._alive(LockInfo(lock_id, self.workspace, "", 0, None, "")):
                path.unlink(missing_ok=True)

    def _alive(self, lock: LockInfo) -> bool:
        """Whether the holder still runs: its flock on its liveness file dies with it."""
        try:
            fd = os.open(self._liveness_file(lock.id), os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def release_lock(self, lock: LockInfo) -> None:
        self._lock = None
        try:
            with self._write():
                self._conn.execute("DELETE FROM locks WHERE workspace = ? AND id = ?",
                                   (lock.workspace, lock.id))
        finally:
            self._drop_liveness(lock.id)

    def _drop_liveness(self, lock_id: str) -> None:
        self._liveness_file(lock_id).unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def break_lock(self, lock_id: str) -> LockInfo | None:
        with self._write():
            held = self._current_lock()
            if held is None or held.id != lock_id:
                return None
            self._conn.execute("DELETE FROM locks WHERE workspace = ? AND id = ?", (self.workspace, lock_id))
        # A live holder is fenced off: its next write finds its lock gone and stops.
        return held


def _flock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it
    return fd


def _unopenable(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    return StoreError(
        f"cannot open store {path}: {exc}",
        hint="is it a connsync store, and writable? Check the path and its permissions",
    )


def _lock_error(held: LockInfo | None, timeout: float) -> LockError:
    holder = held.describe() if held else "another process"
    lock_id = held.id if held else "LOCK_ID"
    return LockError(
        f"workspace is still locked after {timeout:g}s by {holder}",
        hint=f"wait for it (--lock-timeout); if that apply is stuck: connsync unlock {lock_id}",
    )
