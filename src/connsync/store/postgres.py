"""The team's store: PostgreSQL, shared by CI runners and laptops.

Same semantics as the embedded store, from the same protocol: compare-and-set
writes (``UPDATE … WHERE version = expected``) with the audit row in the same
transaction, secrets sealed under ``CONNSYNC_STORE_KEY`` (required: a remote
database has no place beside it for a key file), all in one schema of its own.

The workspace lock is a session advisory lock held by the very connection that
writes, plus a row that names the holder. The server drops the advisory lock
when the holder's session ends — a runner killed mid-apply included — so the
next apply sees a row without a live lock and takes it over, saying so. Every
write checks, in its own transaction, that this session still holds the lock:
a holder broken by ``connsync unlock``, or a connection that a transaction-mode
pooler moved to another server session, stops instead of writing unlocked.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from connsync.errors import LockError, LockLost, StoreError, StoreUnavailable, VersionConflict
from connsync.model import Secret, StoredConnection
from connsync.store.base import (
    HISTORY_LIMIT,
    AuditEntry,
    EmptyStore,
    LockInfo,
    Snapshot,
    Verification,
    Write,
    fingerprint,
    new_lock,
    now,
    verifications_from_rows,
)
from connsync.store.pgconnect import ConnectionTarget, Watchdog, connect
from connsync.store.sealing import KEY_VARIABLE, Sealer, key_from_environment
from connsync.store.sql import COLUMNS, record_from_row

SCHEMA_VERSION = 2  # 2: verification history
_LOCK_POLL_SECONDS = 0.25

# Tables of one schema; {s} is the schema, quoted as an identifier.
_TABLES = """
CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.connections (
    workspace text NOT NULL,
    name_key text NOT NULL,
    name text NOT NULL,
    provider text NOT NULL,
    spec jsonb NOT NULL,
    description text,
    labels jsonb NOT NULL DEFAULT '{{}}',
    secrets bytea NOT NULL,
    fingerprints jsonb NOT NULL,
    version integer NOT NULL,
    synced_version integer,
    managed boolean NOT NULL,
    source text,
    source_digest text,
    git_revision text,
    updated_at timestamptz NOT NULL,
    updated_by text NOT NULL,
    PRIMARY KEY (workspace, name_key)
);
CREATE TABLE IF NOT EXISTS {s}.audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    workspace text NOT NULL,
    name text NOT NULL,
    action text NOT NULL,
    version_before integer,
    version_after integer,
    actor text NOT NULL,
    git_revision text,
    source text
);
CREATE INDEX IF NOT EXISTS audit_by_workspace ON {s}.audit (workspace, id);
CREATE TABLE IF NOT EXISTS {s}.locks (
    workspace text PRIMARY KEY,
    id text NOT NULL,
    holder text NOT NULL,
    pid integer NOT NULL,
    ci_run text,
    acquired_at timestamptz NOT NULL,
    backend_pid integer NOT NULL
);
"""

# Schema 2: one row per verification result, the newest N of each connection kept.
_HISTORY_TABLES = """
CREATE TABLE IF NOT EXISTS {s}.verifications (
    id bigserial PRIMARY KEY,
    workspace text NOT NULL,
    name_key text NOT NULL,
    name text NOT NULL,
    at text NOT NULL,
    status text NOT NULL,
    account text,
    messages jsonb NOT NULL,
    key_created text
);
CREATE INDEX IF NOT EXISTS verifications_by_name ON {s}.verifications (workspace, name_key, id);
"""


class PostgresStore:
    def __init__(self, target: ConnectionTarget, workspace: str, conn: psycopg.Connection[Any],
                 sealer: Sealer, salt: bytes, watchdog: Watchdog) -> None:
        self.workspace = workspace
        self._target = target
        self._conn = conn
        self._watchdog = watchdog
        self._spare: psycopg.Connection[Any] | None = None  # reads only, after the first session died
        self._sealer = sealer
        self._salt = salt
        self._schema = sql.Identifier(target.schema)
        self._lock_key = advisory_key(target.schema, workspace)
        self._lock: LockInfo | None = None

    def describe(self) -> str:
        return self._target.shown

    # --- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, url: str, workspace: str, *, create: bool = True) -> PostgresStore | EmptyStore:
        target = ConnectionTarget.parse(url)
        key = key_from_environment(f"the PostgreSQL store {target.shown}")
        conn = connect(target)
        watchdog = Watchdog(conn, target.timeout)
        try:
            with _errors(target, "open the store", watchdog):
                if not create and not _schema_exists(conn, target.schema):
                    conn.close()
                    return EmptyStore(workspace, target.shown)
                salt = _prepare(conn, target, Sealer(key))
        except BaseException:
            watchdog.stop()
            conn.close()
            raise
        return cls(target, workspace, conn, Sealer(key), salt, watchdog)

    def close(self) -> None:
        self._watchdog.stop()
        self._conn.close()
        if self._spare is not None:
            self._spare.close()

    def _guard(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return _errors(self._target, doing, self._watchdog, self._lock)

    def _reader(self) -> psycopg.Connection[Any]:
        """The session for reads: a new one once the first died (a restart, a failover, the bound).

        Writes never move: the workspace lock lived in the first session, and a write checks it.
        """
        if not (self._conn.closed or self._conn.broken):
            return self._conn
        if self._spare is None or self._spare.closed or self._spare.broken:
            self._spare = connect(self._target)
        return self._spare

    # --- reading ---------------------------------------------------------------

    def _query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with _errors(self._target, "read", self._watchdog):
            return self._reader().execute(sql.SQL(statement).format(s=self._schema), params).fetchall()

    def records(self) -> list[StoredConnection]:
        rows = self._query(
            f"SELECT {COLUMNS} FROM {{s}}.connections WHERE workspace = %s ORDER BY name_key",  # noqa: S608 - constant columns
            (self.workspace,))
        return [record_from_row(_texts(row)) for row in rows]

    def workspaces(self) -> list[str]:
        """Every workspace that holds a record (``rotate --exposed`` searches them all)."""
        return [str(row[0]) for row in self._query(
            "SELECT DISTINCT workspace FROM {s}.connections ORDER BY workspace", ())]

    def get(self, name: str) -> StoredConnection | None:
        rows = self._query(
            f"SELECT {COLUMNS} FROM {{s}}.connections WHERE workspace = %s AND name_key = %s",  # noqa: S608
            (self.workspace, name.casefold()))
        return record_from_row(_texts(rows[0])) if rows else None

    def fingerprint(self, field: str, value: Secret) -> str:
        return fingerprint(self._salt, field, value)

    def read_secrets(self, name: str) -> dict[str, Secret]:
        rows = self._query("SELECT secrets FROM {s}.connections WHERE workspace = %s AND name_key = %s",
                           (self.workspace, name.casefold()))
        if not rows:
            raise StoreError(f"no connection named {name!r} in workspace {self.workspace!r}")
        return self._sealer.open_secrets(bytes(rows[0][0]), self._aad(name), name)

    def audit(self) -> list[AuditEntry]:
        rows = self._query(
            "SELECT at, workspace, name, action, version_before, version_after, actor, git_revision, "
            "source FROM {s}.audit WHERE workspace = %s ORDER BY id", (self.workspace,))
        return [AuditEntry(_iso(row[0]), *row[1:]) for row in rows]

    def verifications(self, name: str | None = None, *, per_connection: int | None = None) -> list[
            Verification]:
        key = name.casefold() if name is not None else None
        newest = 2**31 - 1 if per_connection is None else max(1, per_connection)
        rows = self._query(
            "SELECT name, at, status, account, messages, key_created FROM (SELECT *, row_number() OVER "
            "(PARTITION BY name_key ORDER BY id DESC) AS rank FROM {s}.verifications WHERE workspace = %s "
            "AND (%s::text IS NULL OR name_key = %s)) AS h WHERE rank <= %s ORDER BY id DESC",
            (self.workspace, key, key, newest))
        return verifications_from_rows(rows)

    def snapshot(self) -> Snapshot:
        return Snapshot([(r, self.read_secrets(r.name)) for r in self.records()], self.audit())

    # --- writing ---------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._guard("write"), self._conn.transaction(), self._conn.cursor() as cursor:
            self._check_still_locked(cursor)
            yield cursor

    def _run(self, cursor: psycopg.Cursor[Any], statement: str, params: tuple[Any, ...] = ()) -> int:
        cursor.execute(sql.SQL(statement).format(s=self._schema), params)
        return cursor.rowcount

    def _check_still_locked(self, cursor: psycopg.Cursor[Any]) -> None:
        if self._lock is None:
            return
        classid, objid = _lock_ids(self._lock_key)
        self._run(cursor,
                  "SELECT EXISTS (SELECT 1 FROM {s}.locks WHERE workspace = %s AND id = %s), "
                  "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                  "AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 1)",
                  (self.workspace, self._lock.id, classid, objid))
        row_held, session_held = cursor.fetchone() or (False, False)
        if not row_held:
            raise LockLost(f"the workspace lock {self._lock.id} was broken or taken over while this process "
                           "held it; nothing more is written", hint="run plan again")
        if not session_held:
            raise LockLost(
                "this connection no longer holds the workspace's advisory lock; nothing more is written",
                hint="the connection must stay on one server session: connect directly or through a "
                "session-pooled PgBouncer, not transaction pooling",
            )

    def _aad(self, name: str) -> bytes:
        return f"{self.workspace}\0{name.casefold()}".encode()

    def put(self, write: Write, *, expected_version: int | None) -> StoredConnection:
        fingerprints = {k: self.fingerprint(k, v) for k, v in write.secrets.items()}
        sealed = self._sealer.seal_secrets(write.secrets, self._aad(write.name))
        at = now()
        new_version = (expected_version or 0) + 1
        record = StoredConnection(
            name=write.name, provider=write.provider, spec=dict(write.spec), fingerprints=fingerprints,
            version=new_version, managed=write.managed, source=write.source,
            source_digest=write.source_digest, synced_version=new_version if write.managed else None,
            git_revision=write.git_revision, updated_at=at, updated_by=write.actor,
            labels=dict(write.labels), description=write.description,
        )
        with self._write() as cursor:
            if expected_version is None:
                written = self._insert(cursor, record, sealed)
            else:
                written = self._run(cursor, (
                    "UPDATE {s}.connections SET name = %s, provider = %s, spec = %s, description = %s, "
                    "labels = %s, secrets = %s, fingerprints = %s, version = %s, "
                    "synced_version = CASE WHEN %s THEN %s ELSE synced_version END, managed = %s, "
                    "source = %s, source_digest = %s, git_revision = %s, updated_at = %s, updated_by = %s "
                    "WHERE workspace = %s AND name_key = %s AND version = %s RETURNING synced_version"),
                    (record.name, record.provider, _json(record.spec), record.description,
                     _json(record.labels), sealed, _json(fingerprints), new_version, write.managed,
                     new_version, write.managed, record.source, record.source_digest, record.git_revision,
                     at, record.updated_by, self.workspace, write.name.casefold(), expected_version))
                if written:
                    record = replace(record, synced_version=(cursor.fetchone() or (None,))[0])
            if not written:
                current = self.get(write.name)
                raise VersionConflict(
                    f"{write.name!r} changed in the store meanwhile (version "
                    f"{current.version if current else None}, expected {expected_version})",
                    hint="run plan again",
                )
            self._audit(cursor, AuditEntry(at, self.workspace, write.name, write.action, expected_version,
                                           new_version, write.actor, write.git_revision, write.source))
        return record

    def _insert(self, cursor: psycopg.Cursor[Any], record: StoredConnection, sealed: bytes) -> int:
        """Insert unless the name is taken: 0 rows then, for the caller to call a conflict."""
        return self._run(cursor, (
            "INSERT INTO {s}.connections (workspace, name_key, name, provider, spec, description, labels, "
            "secrets, fingerprints, version, synced_version, managed, source, source_digest, git_revision, "
            "updated_at, updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "%s, %s) ON CONFLICT DO NOTHING"),
            (self.workspace, record.name.casefold(), record.name, record.provider, _json(record.spec),
             record.description, _json(record.labels), sealed, _json(record.fingerprints), record.version,
             record.synced_version, record.managed, record.source, record.source_digest,
             record.git_revision, record.updated_at, record.updated_by))

    def delete(self, name: str, *, expected_version: int, actor: str, git_revision: str | None) -> None:
        with self._write() as cursor:
            self._run(cursor, "DELETE FROM {s}.connections WHERE workspace = %s AND name_key = %s "
                      "AND version = %s RETURNING source",
                      (self.workspace, name.casefold(), expected_version))
            deleted = cursor.fetchone()
            if deleted is None:
                raise VersionConflict(f"{name!r} changed in the store meanwhile", hint="run plan again")
            self._audit(cursor, AuditEntry(now(), self.workspace, name, "delete", expected_version, None,
                                           actor, git_revision, deleted[0]))

    def record_source(self, name: str, *, expected_version: int, source: str, source_digest: str) -> None:
        with self._write() as cursor:
            updated = self._run(cursor, (
                "UPDATE {s}.connections SET source = %s, source_digest = %s, synced_version = version "
                "WHERE workspace = %s AND name_key = %s AND version = %s AND managed"),
                (source, source_digest, self.workspace, name.casefold(), expected_version))
            if not updated:
                raise VersionConflict(f"{name!r} changed in the store meanwhile", hint="run plan again")

    def record_event(self, name: str, action: str, *, actor: str, git_revision: str | None,
                     source: str | None) -> None:
        with self._write() as cursor:
            self._run(cursor, "SELECT version FROM {s}.connections WHERE workspace = %s AND name_key = %s",
                      (self.workspace, name.casefold()))
            row = cursor.fetchone()
            version = row[0] if row else None
            self._audit(cursor, AuditEntry(now(), self.workspace, name, action, version, version, actor,
                                           git_revision, source))

    def record_verifications(self, results: Sequence[Verification], *, keep: int = HISTORY_LIMIT) -> None:
        with self._write() as cursor:
            for result in map(Verification.bounded, results):
                key = result.name.casefold()
                self._run(cursor, "INSERT INTO {s}.verifications (workspace, name_key, name, at, status, "
                          "account, messages, key_created) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                          (self.workspace, key, result.name, result.at, result.status, result.account,
                           Jsonb(list(result.messages)), result.key_created))
                self._run(cursor, "DELETE FROM {s}.verifications WHERE workspace = %s AND name_key = %s "
                          "AND id NOT IN (SELECT id FROM {s}.verifications WHERE workspace = %s AND "
                          "name_key = %s ORDER BY id DESC LIMIT %s)",
                          (self.workspace, key, self.workspace, key, max(1, keep)))

    def _audit(self, cursor: psycopg.Cursor[Any], entry: AuditEntry) -> None:
        self._run(cursor, "INSERT INTO {s}.audit (at, workspace, name, action, version_before, "
                  "version_after, actor, git_revision, source) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                  (entry.at, self.workspace, entry.name, entry.action, entry.version_before,
                   entry.version_after, entry.actor, entry.git_revision, entry.source))

    def restore(self, snapshot: Snapshot, *, actor: str, overwrite: bool) -> None:
        sealed = [(r, self._sealer.seal_secrets(s, self._aad(r.name)),
                   {k: self.fingerprint(k, v) for k, v in s.items()}) for r, s in snapshot.records]
        with self._write() as cursor:
            self._run(cursor, "SELECT count(*) FROM {s}.connections WHERE workspace = %s",
                      (self.workspace,))
            held = (cursor.fetchone() or (0,))[0]
            if held and not overwrite:
                raise StoreError(f"workspace {self.workspace!r} of {self.describe()} already holds "
                                 f"{held} record(s); nothing was copied",
                                 hint="pass --replace to overwrite them")
            self._run(cursor, "DELETE FROM {s}.connections WHERE workspace = %s", (self.workspace,))
            self._run(cursor, "DELETE FROM {s}.audit WHERE workspace = %s", (self.workspace,))
            for entry in snapshot.audit:
                self._audit(cursor, entry)
            for record, blob, fingerprints in sealed:
                self._insert(cursor, replace(record, fingerprints=fingerprints), blob)
                self._audit(cursor, AuditEntry(now(), self.workspace, record.name, "copy", record.version,
                                               record.version, actor, record.git_revision, record.source))

    # --- the workspace lock -----------------------------------------------------

    def _current_lock(self) -> tuple[LockInfo, int] | None:
        rows = self._query("SELECT id, workspace, holder, pid, ci_run, acquired_at, backend_pid "
                           "FROM {s}.locks WHERE workspace = %s", (self.workspace,))
        if not rows:
            return None
        row = rows[0]
        return LockInfo(row[0], row[1], row[2], row[3], row[4], _iso(row[5])), row[6]

    def acquire_lock(self, *, timeout: float) -> LockInfo:
        mine = new_lock(self.workspace)
        deadline = time.monotonic() + timeout
        while True:
            with self._guard("take the workspace lock"):
                got = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._lock_key,)).fetchone()
            if got and got[0]:
                try:
                    return self._take_row(mine)
                except BaseException:
                    with contextlib.suppress(psycopg.Error):
                        self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._lock_key,))
                    raise
            if time.monotonic() >= deadline:
                held = self._current_lock()
                holder = held[0].describe() if held else "another session that has not named itself yet"
                raise LockError(
                    f"workspace {self.workspace!r} is still locked after {timeout:g}s by {holder}",
                    hint="wait for it (--lock-timeout); if that apply is alive but stuck: connsync unlock "
                    + (held[0].id if held else "LOCK_ID"),
                )
            time.sleep(_LOCK_POLL_SECONDS)

    def _take_row(self, mine: LockInfo) -> LockInfo:
        """We hold the advisory lock: a row still there belongs to a session that is gone."""
        stale = self._current_lock()
        with self._guard("take the workspace lock"), self._conn.transaction():
            self._conn.execute(sql.SQL("DELETE FROM {s}.locks WHERE workspace = %s").format(s=self._schema),
                               (self.workspace,))
            self._conn.execute(
                sql.SQL("INSERT INTO {s}.locks (workspace, id, holder, pid, ci_run, acquired_at, "
                        "backend_pid) VALUES (%s, %s, %s, %s, %s, %s, pg_backend_pid())"
                        ).format(s=self._schema),
                (mine.workspace, mine.id, mine.holder, mine.pid, mine.ci_run, mine.acquired_at))
        self._lock = replace(mine, replaced=stale[0] if stale else None, replaced_because=(
            "its database session ended (a crash, a lost connection or a server restart); if that "
            "process still runs, it writes nothing more"))
        # A pooler in transaction mode may have run the statements above on other server
        # sessions than the one that took the advisory lock: check before anything is written.
        with self._write():
            pass
        return self._lock

    def release_lock(self, lock: LockInfo) -> None:
        self._lock = None
        with _errors(self._target, "release the workspace lock", self._watchdog):
            # A session that died took the advisory lock with it; its row goes by its id alone.
            conn = self._reader()
            conn.execute(sql.SQL("DELETE FROM {s}.locks WHERE workspace = %s AND id = %s")
                         .format(s=self._schema), (lock.workspace, lock.id))
            if conn is self._conn:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self._lock_key,))

    def break_lock(self, lock_id: str) -> LockInfo | None:
        """End the holder's session (so it can write nothing more), then remove its row."""
        held = self._current_lock()
        if held is None or held[0].id != lock_id:
            return None
        classid, objid = _lock_ids(self._lock_key)
        holders = self._query("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                              "AND classid = %s AND objid = %s AND objsubid = 1", (classid, objid))
        for (backend,) in holders:
            try:
                self._conn.execute("SELECT pg_terminate_backend(%s)", (backend,))
            except psycopg.errors.InsufficientPrivilege:
                raise StoreError(
                    f"the lock holder's database session (pid {backend}) is alive and this role may not "
                    "end it; the lock was left as it is",
                    hint="run unlock as the role that holds the lock, or ask an administrator to run "
                    f"SELECT pg_terminate_backend({backend})",
                ) from None
        with _errors(self._target, "break the workspace lock"):
            self._conn.execute(sql.SQL("DELETE FROM {s}.locks WHERE workspace = %s AND id = %s")
                               .format(s=self._schema), (self.workspace, lock_id))
        return held[0]


def advisory_key(schema: str, workspace: str) -> int:
    """A 64-bit advisory lock key of connsync's own, per schema and workspace.

    Derived from SHA-256 rather than ``hashtext``, whose 32 bits collide easily
    and whose values are not promised to stay the same across PostgreSQL versions.
    """
    digest = hashlib.sha256(f"connsync workspace lock\0{schema}\0{workspace}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lock_ids(key: int) -> tuple[int, int]:
    """How pg_locks shows a bigint advisory key: high and low 32 bits as classid and objid."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def _schema_exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                       (sql.Identifier(schema, "meta").as_string(conn),)).fetchone()
    return bool(row and row[0])


def _prepare(conn: psycopg.Connection[Any], target: ConnectionTarget, sealer: Sealer) -> bytes:
    """Create the schema's tables on first use (once, under a lock), check its version, open the salt."""
    schema = sql.Identifier(target.schema)
    with conn.transaction():
        if not _schema_exists(conn, target.schema):
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(target.schema, "\0init"),))
            namespace = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (target.schema,))
            if namespace.fetchone() is None:  # CREATE SCHEMA needs rights on the database itself
                conn.execute(sql.SQL("CREATE SCHEMA {s}").format(s=schema))
            conn.execute(sql.SQL(_TABLES).format(s=schema))
            conn.execute(sql.SQL(_HISTORY_TABLES).format(s=schema))
            conn.execute(sql.SQL("INSERT INTO {s}.meta (key, value) VALUES ('schema_version', %s), "
                                 "('salt', %s) ON CONFLICT DO NOTHING").format(s=schema),
                         (str(SCHEMA_VERSION).encode(), sealer.new_sealed_salt()))
        meta = dict(conn.execute(sql.SQL("SELECT key, value FROM {s}.meta").format(s=schema)).fetchall())
        if int(bytes(meta.get("schema_version", b"0"))) == 1 and "salt" in meta:
            _upgrade_to_history(conn, target)
            meta["schema_version"] = str(SCHEMA_VERSION).encode()
    version = int(bytes(meta.get("schema_version", b"0")))
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store {target.shown} has schema version {version}; this connsync knows up to "
            f"{SCHEMA_VERSION}", hint="upgrade connsync on this machine to the version that wrote it")
    if version < 1 or "salt" not in meta:
        raise StoreError(f"the schema {target.schema!r} of {target.shown} is not a connsync store",
                         hint="choose another schema with ?schema=NAME in the store URL")
    return sealer.open_salt(bytes(meta["salt"]), target.shown, KEY_VARIABLE)


def _upgrade_to_history(conn: psycopg.Connection[Any], target: ConnectionTarget) -> None:
    """Schema 2 adds the verification history: a new table, nothing else changes (once, under a lock)."""
    schema = sql.Identifier(target.schema)
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(target.schema, "\0init"),))
    conn.execute(sql.SQL(_HISTORY_TABLES).format(s=schema))
    conn.execute(sql.SQL("UPDATE {s}.meta SET value = %s WHERE key = 'schema_version'").format(s=schema),
                 (str(SCHEMA_VERSION).encode(),))


@contextlib.contextmanager
def _errors(target: ConnectionTarget, doing: str, watchdog: Watchdog | None = None,
            lock: LockInfo | None = None) -> Iterator[None]:
    """A database failure mid-command is one line naming the store, never a traceback."""
    try:
        with watchdog.waiting() if watchdog else contextlib.nullcontext():
            yield
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreError(
            f"the role may not {doing} in {target.shown}: {target.scrub(_first_line(exc))}",
            hint=f"grant it the rights on schema {target.schema!r} shown in the README (Teams and CI)",
        ) from None
    except psycopg.OperationalError as exc:
        if watchdog is not None and watchdog.fired:
            what = (f"did not answer for {watchdog.seconds:g}s, and connsync gave up on it (the bound is "
                    "?timeout=SECONDS in the store URL)")
        else:
            what = f"went away ({target.scrub(_first_line(exc))})"
        fenced = (f"; the workspace lock {lock.id} ended with that session, so this process writes nothing "
                  "more" if lock is not None else "")
        # Given up on, the server may still commit what it holds; a session it ended, it rolled back.
        raise StoreUnavailable(f"the store {target.shown} {what} while trying to {doing}{fenced}",
                               in_doubt=bool(watchdog and watchdog.fired)) from None
    except psycopg.Error as exc:
        raise StoreError(f"the store {target.shown} failed to {doing}: "
                         f"{target.scrub(_first_line(exc))}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _json(value: Any) -> Jsonb:
    return Jsonb(dict(value))


def _iso(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _texts(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """updated_at arrives as a datetime; records carry the same ISO text as the embedded store's."""
    return (*row[:10], _iso(row[10]), *row[11:])
