"""The Store protocol: what plan and apply need from the platform's store.

A store never returns a secret for planning: secrets are compared by
fingerprint (HMAC-SHA256 under a per-store salt). Only ``read_secrets`` (for
``import``) returns them, as :class:`Secret` values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from connsync.errors import LockError, StoreError
from connsync.identity import ci_run_id, user_at_host
from connsync.model import Secret, StoredConnection


def fingerprint(salt: bytes, field: str, value: Secret) -> str:
    """HMAC-SHA256 of a secret under the store's salt: comparable, not reversible."""
    message = field.encode() + b"\0" + value.reveal().encode()
    return hmac.new(salt, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Write:
    """Everything a put writes; secrets travel as Secret values."""

    name: str
    provider: str
    spec: Mapping[str, object]
    secrets: Mapping[str, Secret]
    managed: bool
    actor: str
    action: str  # for the audit log: create, update, adopt, import, ui-edit, ...
    source: str | None = None
    source_digest: str | None = None
    git_revision: str | None = None
    description: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    # metadata.id: a store that names records by an id (Secrets Manager) uses it; None: from the name.
    conn_id: str | None = None


@dataclass(frozen=True)
class LockInfo:
    id: str
    workspace: str
    holder: str  # user@host
    pid: int
    ci_run: str | None
    acquired_at: str
    # The lock of a holder that died holding it, which this lock took over.
    replaced: LockInfo | None = field(default=None, compare=False)
    # Why the replaced holder was taken to be gone, in the store's own terms.
    replaced_because: str = field(default="that process is gone (it died, or its runner vanished)",
                                  compare=False)

    def describe(self) -> str:
        ci = f", CI run {self.ci_run}" if self.ci_run else ""
        return f"{self.holder} (pid {self.pid}{ci}) since {self.acquired_at}, lock id {self.id}"

    def takeover_note(self) -> str | None:
        """What to tell the user when this lock replaced the lock of a holder that is gone."""
        if self.replaced is None:
            return None
        return (f"connsync: took over the workspace lock of {self.replaced.describe()}: "
                f"{self.replaced_because}")


def new_lock(workspace: str) -> LockInfo:
    """The lock this process asks for: who, where, which CI run, since when."""
    return LockInfo(uuid.uuid4().hex[:12], workspace, user_at_host(), os.getpid(), ci_run_id(), now())


def take_leased_lock(workspace: str, take: Callable[[LockInfo], LockInfo | None],
                     current: Callable[[], LockInfo | None], *, timeout: float,
                     lease_seconds: float) -> LockInfo:
    """Try ``take`` with this process's lock until it succeeds or ``timeout`` runs out; then name the
    holder (``current``) and how its lock ends. For the stores whose lock is a secret with a lease."""
    mine = new_lock(workspace)
    deadline = time.monotonic() + timeout
    while (taken := take(mine)) is None:
        if time.monotonic() >= deadline:
            held = current()
            holder = held.describe() if held else "another process that is taking or releasing it"
            raise LockError(
                f"workspace {workspace!r} is still locked after {timeout:g}s by {holder}",
                hint=f"wait for it (--lock-timeout); a holder that died loses the lock {lease_seconds:g}s "
                "after its last renewal; if it is alive but stuck: connsync unlock "
                + (held.id if held else "LOCK_ID"))
        time.sleep(0.25)
    return taken


def holder_has_ended(holder: LockInfo) -> bool:
    """Whether ``holder`` ran on this machine, as this user, and its process has ended.

    Only then is it known to be gone before its lease runs out. A pid reused since
    counts as alive: the lease is waited out, as for a holder elsewhere.
    """
    if holder.holder != user_at_host() or holder.ci_run != ci_run_id() or holder.pid <= 0:
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AuditEntry:
    at: str
    workspace: str
    name: str
    action: str
    version_before: int | None
    version_after: int | None
    actor: str
    git_revision: str | None
    source: str | None


# Verification results kept per connection, newest first (verify.history in connsync.yaml).
HISTORY_LIMIT = 20
# What one kept result may hold: verifier messages are short sentences; anything longer is cut.
_MESSAGES_KEPT = 10
_MESSAGE_CHARS = 500


@dataclass(frozen=True, slots=True)  # slots: a report reads hundreds of thousands of them
class Verification:
    """One check of one connection with its provider, as ``verify`` and ``apply`` saw it.

    What ``report`` shows as the last verification. Never a secret: the verifier's
    messages, the account (subscription, project) the provider said the key belongs to,
    and when the key was created where the provider told.
    """

    name: str
    at: str  # ISO-8601, UTC, "...Z"
    status: str  # ok | warning | failed | skipped
    account: str | None = None
    messages: tuple[str, ...] = ()
    key_created: str | None = None  # ISO-8601, when the provider told (IAM's CreateDate, ...)

    def bounded(self) -> Verification:
        """The result as a store keeps it: at most 10 messages of at most 500 characters."""
        messages = tuple(m if len(m) <= _MESSAGE_CHARS else m[:_MESSAGE_CHARS - 1] + "…"
                         for m in self.messages[:_MESSAGES_KEPT])
        return replace(self, messages=messages)


def verifications_from_rows(rows: Iterable[Sequence[Any]]) -> list[Verification]:
    """Rows of (name, at, status, account, messages, key_created), messages as JSON text or a list.

    Equal strings share one object (names, statuses, accounts and messages repeat down a
    history): a large fleet's history takes a fraction of the memory.
    """
    shared: dict[str, str] = {}
    same = shared.setdefault
    found = []
    for name, at, status, account, messages, key_created in rows:
        texts = json.loads(messages) if isinstance(messages, (str, bytes)) else messages
        found.append(Verification(same(name, name), at, same(status, status),
                                  None if account is None else same(account, account),
                                  tuple(same(m, m) for m in texts) if texts else (),
                                  None if key_created is None else same(key_created, key_created)))
    return found


def latest_first(newest_first: Iterable[Verification], keep: int) -> list[Verification]:
    """At most ``keep`` entries per connection (ignoring case), in the order given: newest first."""
    kept: dict[str, int] = {}
    result = []
    for entry in newest_first:
        key = entry.name.casefold()
        if kept.get(key, 0) < keep:
            kept[key] = kept.get(key, 0) + 1
            result.append(entry)
    return result


@dataclass(frozen=True)
class Snapshot:
    """A workspace whole, for ``connsync store copy``: records with their secrets, and the audit."""

    records: list[tuple[StoredConnection, dict[str, Secret]]]
    audit: list[AuditEntry]


class Store(Protocol):
    workspace: str

    def describe(self) -> str:
        """The store for messages: never a password."""
        ...

    def records(self) -> list[StoredConnection]: ...

    def get(self, name: str) -> StoredConnection | None: ...

    def fingerprint(self, field: str, value: Secret) -> str: ...

    def put(self, write: Write, *, expected_version: int | None) -> StoredConnection:
        """Create (``expected_version=None``) or replace a record, atomically, with its audit entry.

        Raises VersionConflict when the record's version is not ``expected_version``.
        """
        ...

    def delete(self, name: str, *, expected_version: int, actor: str,
               git_revision: str | None) -> None: ...

    def record_source(self, name: str, *, expected_version: int, source: str,
                      source_digest: str) -> None:
        """Bookkeeping only (no new version): the file now at ``source`` holds these values."""
        ...

    def read_secrets(self, name: str) -> dict[str, Secret]: ...

    def record_event(self, name: str, action: str, *, actor: str, git_revision: str | None,
                     source: str | None) -> None:
        """An audit entry for something done outside the store (an IAM key created by rotate, ...).

        The record, if any, is not touched: version_before and version_after are its current version.
        """
        ...

    def acquire_lock(self, *, timeout: float) -> LockInfo: ...

    def release_lock(self, lock: LockInfo) -> None: ...

    def break_lock(self, lock_id: str) -> LockInfo | None: ...

    def audit(self) -> list[AuditEntry]: ...

    def record_verifications(self, results: Sequence[Verification], *, keep: int = HISTORY_LIMIT) -> None:
        """Add results to the verification history; each connection keeps its ``keep`` newest.

        Written by ``verify`` and ``apply`` whether or not the store holds a record of that name
        (a connection is verified before it is first applied). Never part of a record's version or
        audit, and needs no workspace lock. Each result is stored :meth:`Verification.bounded`.
        """
        ...

    def verifications(self, name: str | None = None, *, per_connection: int | None = None) -> list[
            Verification]:
        """The history, newest first: of the connection ``name`` (ignoring case), or of the workspace;
        with ``per_connection``, only that many of the newest of each connection.

        ``report`` reads the first entry of each connection as its last verification.
        """
        ...

    def snapshot(self) -> Snapshot: ...

    def restore(self, snapshot: Snapshot, *, actor: str, overwrite: bool) -> None:
        """Make the workspace hold exactly ``snapshot`` (versions, managed flags, audit), atomically.

        Refuses a workspace that holds records unless ``overwrite``.
        """
        ...

    def close(self) -> None: ...


class EmptyStore:
    """A store that does not exist yet, seen by a read-only command: empty, and left uncreated."""

    def __init__(self, workspace: str, where: str) -> None:
        self.workspace = workspace
        self.where = where
        self._salt = secrets.token_bytes(32)  # nothing stored to compare against

    def describe(self) -> str:
        return self.where

    def records(self) -> list[StoredConnection]:
        return []

    def get(self, name: str) -> StoredConnection | None:
        return None

    def fingerprint(self, field: str, value: Secret) -> str:
        return fingerprint(self._salt, field, value)

    def _refuse(self) -> StoreError:
        return StoreError("the store does not exist yet; 'connsync apply' creates it")

    def put(self, write: Write, *, expected_version: int | None) -> StoredConnection:
        raise self._refuse()

    def delete(self, name: str, *, expected_version: int, actor: str, git_revision: str | None) -> None:
        raise self._refuse()

    def record_source(self, name: str, *, expected_version: int, source: str, source_digest: str) -> None:
        raise self._refuse()

    def read_secrets(self, name: str) -> dict[str, Secret]:
        raise self._refuse()

    def record_event(self, name: str, action: str, *, actor: str, git_revision: str | None,
                     source: str | None) -> None:
        raise self._refuse()

    def acquire_lock(self, *, timeout: float) -> LockInfo:
        raise self._refuse()

    def release_lock(self, lock: LockInfo) -> None:
        raise self._refuse()

    def break_lock(self, lock_id: str) -> LockInfo | None:
        return None

    def audit(self) -> list[AuditEntry]:
        return []

    def record_verifications(self, results: Sequence[Verification], *, keep: int = HISTORY_LIMIT) -> None:
        raise self._refuse()

    def verifications(self, name: str | None = None, *, per_connection: int | None = None) -> list[
            Verification]:
        return []

    def snapshot(self) -> Snapshot:
        return Snapshot([], [])

    def restore(self, snapshot: Snapshot, *, actor: str, overwrite: bool) -> None:
        raise self._refuse()

    def close(self) -> None:
        pass
