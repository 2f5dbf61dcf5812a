"""Vault / OpenBao store: one KV version 2 secret per connection, where platforms read credentials.

``vault://HOST[:PORT]/MOUNT[/PREFIX]`` (layout in ``vault_layout``, credentials
and TLS in ``vault_client``, the lock in ``vault_lock``). The secret's value is
JSON with the spec and the secret fields (or, with ``?format=airflow``, the
Connection that Airflow's VaultBackend reads); its ``custom_metadata`` holds
what a plan needs, so a plan of N records is ⌈N/100⌉ paginated
``detailed-metadata`` listings on OpenBao and never a read of a value.

Versions: each connsync write is a KV write with ``cas`` = the KV version read
before it, so of two writers one fails ("changed meanwhile"). The value is
written first, then the metadata that describes it (``kv`` in it names the KV
version it describes); a value newer than its metadata was written outside
connsync (drift, its fingerprints unknown), unless the value itself says
connsync wrote it, which is what a crash between the two writes leaves: that
record is then read from its value, whole.

Verification history: the custom_metadata of ``W/.verified/SLUG`` (a secret with
no value), the newest results that fit; ``report`` reads it with a listing.

Deletes are soft (the latest version is deleted, the versions and the metadata
with the audit entries stay, ``vault kv undelete`` brings it back). The audit
keeps the last entries of each record that fit its metadata; Vault's audit
device is the complete log.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

from connsync.errors import StoreError, VersionConflict
from connsync.model import Secret, StoredConnection, connection_id
from connsync.store.awssm_history import history_entries, history_meta
from connsync.store.awssm_layout import (
    check_id_kept,
    check_restorable,
    conflict,
    copies,
    is_record_segment,
    iso,
    record_meta,
)
from connsync.store.base import (
    HISTORY_LIMIT,
    AuditEntry,
    EmptyStore,
    LockInfo,
    Snapshot,
    Verification,
    Write,
    fingerprint,
    latest_first,
    now,
)
from connsync.store.sealing import KEY_VARIABLE, Sealer, key_from_environment
from connsync.store.vault_client import make_client, request, revoke_login
from connsync.store.vault_kv import Kv, check_mount, foreign, is_live, read_value, write_value
from connsync.store.vault_layout import (
    Target,
    airflow_record,
    airflow_secrets,
    join_meta,
    slug,
    split_history,
    split_meta,
)
from connsync.store.vault_lock import LeaseLock

_LISTING_REUSE_SECONDS = 1.0


class VaultStore:
    def __init__(self, target: Target, workspace: str, client: Any, salt: bytes) -> None:
        self.workspace = workspace
        self._target = target
        self._client = client
        self._kv = Kv(client, target)
        self._salt = salt
        self._folder = target.workspace_path(workspace)
        self._lock = LeaseLock(client, target, workspace)
        self.destroy_deletes = False  # apply --destroy: a delete removes every version
        self._listing: tuple[float, dict[str, dict[str, Any]]] | None = None

    def describe(self) -> str:
        return self._target.shown

    @classmethod
    def open(cls, url: str, workspace: str, *, create: bool = True) -> VaultStore | EmptyStore:
        target = Target.parse(url, os.environ.get("VAULT_ADDR"))
        sealer = Sealer(key_from_environment(f"the Vault store {target.shown}"))
        client = make_client(target.address, target.shown)
        check_mount(client, target)
        path = target.meta_path()
        meta = read_value(client, target, path)
        if meta is None:
            if not create:
                return EmptyStore(workspace, target.shown)
            sealed = base64.b64encode(sealer.new_sealed_salt()).decode()
            body = {"connsync": "1", "kind": "store", "salt": sealed,
                    **({"workspace": workspace} if target.value_format == "airflow" else {})}
            # cas=0: of two processes creating the store at once one wins, and both use its salt.
            write_value(client, target, path, body, cas=0, name="the store's own secret",
                         quiet_conflict=True)
            meta = read_value(client, target, path) or {}
        if meta.get("kind") != "store" or not isinstance(meta.get("salt"), str):
            raise StoreError(f"{target.mount}/{path} exists and is not a connsync store's own secret",
                             hint="choose another prefix in the store URL")
        if target.value_format == "airflow" and meta.get("workspace") not in (None, workspace):
            raise StoreError(f"{target.shown} holds the Airflow connections of workspace "
                             f"{str(meta['workspace'])[:60]!r}; Airflow reads one set per connections_path",
                             hint="give this workspace its own connections_path")
        salt = sealer.open_salt(base64.b64decode(meta["salt"]), target.shown, KEY_VARIABLE)
        return cls(target, workspace, client, salt)

    def close(self) -> None:
        self._lock.close()
        revoke_login(self._client)

    def _entries(self) -> dict[str, dict[str, Any]]:
        """KV metadata of every secret in the workspace folder by segment, deleted ones included.

        One listing serves the reads of one command (records, then audit); it is reused for up to
        a second and forgotten as soon as this store writes or locks.
        """
        if self._listing is not None and time.monotonic() - self._listing[0] < _LISTING_REUSE_SECONDS:
            return self._listing[1]
        entries = self._kv.listing(self._folder)
        self._listing = (time.monotonic(), entries)
        return entries

    def _record(self, segment: str, entry: dict[str, Any]) -> StoredConnection | None:
        """The record a secret holds; None when its latest version is deleted."""
        current = int(entry.get("current_version") or 0)
        if not current or not is_live((entry.get("versions") or {}).get(str(current))):
            return None
        meta = self._meta(segment, entry)
        if meta is None:
            return foreign(segment, entry)
        return StoredConnection(
            name=meta["n"], provider=meta["p"], spec=dict(meta["s"]), fingerprints=dict(meta["f"]),
            version=int(meta["v"]), managed=bool(meta["m"]), source=meta.get("src"),
            source_digest=meta.get("dg"), synced_version=meta.get("sv"), git_revision=meta.get("g"),
            updated_at=meta["at"], updated_by=meta["by"], labels=dict(meta.get("l") or {}),
            description=meta.get("d"), conn_id=meta.get("id"))

    def _meta(self, segment: str, entry: dict[str, Any]) -> dict[str, Any] | None:
        """connsync's metadata of the secret's current KV version; None for a secret not connsync's.

        Metadata older than the value means a crash between the two writes (the value says connsync
        wrote it: its record is taken from there) or a write outside connsync (its fingerprints are
        unknown, its version one more for each write: drift).
        """
        current = int(entry.get("current_version") or 0)
        meta, _ = join_meta(entry.get("custom_metadata"))
        if meta is not None and meta.get("kind"):
            return None  # the lock's or the events' own
        if meta is None or meta.get("kv") != current:
            repaired = self._written_by_connsync(segment, current) if current else None
            if repaired is not None:
                meta = {**repaired, "h": [*((meta or {}).get("h") or []), *(repaired.get("h") or [])]}
            elif meta is not None:
                meta = {**meta, "v": int(meta["v"]) + current - int(meta.get("kv") or 0), "f": {},
                        "kv": current}
        if meta is None or connection_id(str(meta.get("n", "")), meta.get("id")) != segment:
            return None  # connsync's metadata copied to another path: not the record it describes
        return meta

    def _written_by_connsync(self, segment: str, version: int) -> dict[str, Any] | None:
        """The metadata a crash left unwritten, from the value connsync wrote (connsync format only)."""
        if self._target.value_format == "airflow":
            return None  # Airflow's shape has no room for it: the record reads as changed outside
        value = self._kv.read_value(self._folder + segment) or {}
        meta = value.get("record")
        return meta if isinstance(meta, dict) and meta.get("kv") == version else None

    def records(self) -> list[StoredConnection]:
        found = (self._record(s, e) for s, e in self._entries().items() if is_record_segment(s))
        return sorted((r for r in found if r is not None), key=lambda r: r.name.casefold())

    def _find(self, name: str, conn_id: str | None = None) -> tuple[str, dict[str, Any] | None]:
        """The path of connection ``name`` and its metadata: at its id, else wherever a record of that
        name is (written under another metadata.id); (its id's path, what is there) when none is."""
        home = self._target.secret_path(self.workspace, name, conn_id)
        entry = self._kv.metadata(home)
        if entry is not None and self._names(home, entry, name):
            return home, entry
        cached = self._listing  # a lookup before a write must not leave a listing that write makes stale
        try:
            for segment, listed in self._entries().items():
                if is_record_segment(segment) and self._names(self._folder + segment, listed, name):
                    return self._folder + segment, self._kv.metadata(self._folder + segment)
        finally:
            self._listing = cached
        return home, entry

    def _names(self, path: str, entry: dict[str, Any], name: str) -> bool:
        record = self._record(path[len(self._folder):], entry)
        return record is not None and record.version > 0 and record.name.casefold() == name.casefold()

    def get(self, name: str) -> StoredConnection | None:
        path, entry = self._find(name)
        return self._record(path[len(self._folder):], entry) if entry else None

    def fingerprint(self, field: str, value: Secret) -> str:
        return fingerprint(self._salt, field, value)

    def read_secrets(self, name: str) -> dict[str, Secret]:
        path, entry = self._find(name)
        record = self._record(path[len(self._folder):], entry) if entry else None
        if record is None:
            raise StoreError(f"no connection named {name!r} in workspace {self.workspace!r}")
        return self._secrets_at(path, record)

    def _secrets_at(self, path: str, record: StoredConnection) -> dict[str, Secret]:
        name = record.name
        value = self._kv.read_value(path)
        if value is None:
            raise StoreError(f"no connection named {name!r} in workspace {self.workspace!r}")
        if self._target.value_format == "airflow" and "conn_type" in value:
            return {k: Secret(v) for k, v in airflow_secrets(record.provider, value).items()}
        found = value.get("secrets")
        if not isinstance(found, dict):
            raise StoreError(f"the secret of {name!r} does not hold a connsync value")
        return {k: Secret(str(v)) for k, v in found.items()}

    def audit(self) -> list[AuditEntry]:
        rows: list[tuple[float, int, AuditEntry]] = []
        for segment, entry in self._entries().items():
            if not is_record_segment(segment) and segment != ".events":
                continue
            meta, _ = join_meta(entry.get("custom_metadata"))
            for h in (meta or {}).get("h") or []:
                action, before, after, actor, at, git_revision, source, *named = h
                name = named[0] if named else (meta or {}).get("n", "")
                rows.append((float(at), len(rows), AuditEntry(iso(float(at)), self.workspace, name, action,
                                                              before, after, actor, git_revision, source)))
        return [row[2] for row in sorted(rows, key=lambda r: (r[0], r[1]))]

    # --- verification history ----------------------------------------------------

    def verifications(self, name: str | None = None, *, per_connection: int | None = None) -> list[
            Verification]:
        """From the custom_metadata of ``W/.verified/SLUG``: the listing, never a value."""
        folder = self._folder + ".verified/"
        if name is not None:
            entries = {slug(name.casefold()): self._kv.metadata(folder + slug(name.casefold())) or {}}
        else:
            entries = self._kv.listing(folder)
        found: list[Verification] = []
        for entry in entries.values():
            found += history_entries(join_meta(entry.get("custom_metadata"))[0])
        newest = sorted(found, key=lambda v: v.at, reverse=True)  # stable: each one's own are in order
        return newest if per_connection is None else latest_first(newest, max(1, per_connection))

    def record_verifications(self, results: Sequence[Verification], *, keep: int = HISTORY_LIMIT) -> None:
        self._writing()
        by_name: dict[str, list[Verification]] = {}
        for result in results:
            by_name.setdefault(result.name.casefold(), []).append(result.bounded())
        for newest_last in by_name.values():
            name = newest_last[-1].name
            path = f"{self._folder}.verified/{slug(name.casefold())}"
            meta, others = join_meta((self._kv.metadata(path) or {}).get("custom_metadata"))
            kept = [*reversed(newest_last), *history_entries(meta)][:max(1, keep)]
            # Metadata only: no value versions pile up, and report reads it with the listing.
            self._kv.set_metadata(path, split_history(history_meta(name, kept), others),
                               f"record the verification of {name[:80]!r}")

    def snapshot(self) -> Snapshot:
        # Each record is where its id says (records() read it there): no search by name per record.
        return Snapshot([(r, self._secrets_at(self._target.secret_path(self.workspace, r.name, r.conn_id), r))
                         for r in self.records() if r.version], self.audit())

    # --- writing ---------------------------------------------------------------

    def _writing(self) -> None:
        """Before any write: the listing is stale from now on, and the lock must still be ours."""
        self._listing = None
        self._lock.check()

    def put(self, write: Write, *, expected_version: int | None) -> StoredConnection:
        self._writing()
        path = self._target.secret_path(self.workspace, write.name, write.conn_id)
        if expected_version is None:
            # The common create needs no read first: cas=0 fails when anything is there.
            try:
                return self._write(path, write, None, cas=0, entry=None)
            except VersionConflict:
                entry = self._kv.metadata(path)
                if entry is None or self._record(path[len(self._folder):], entry) is not None:
                    raise conflict(write.name, None, None) from None
                meta, _ = join_meta(entry.get("custom_metadata"))
                if meta is None and int(entry.get("current_version") or 0):
                    raise StoreError(f"{self._target.mount}/{path} holds deleted versions that are not "
                                     "connsync's; nothing was written",
                                     hint="undelete or destroy them in Vault, or rename the connection") \
                        from None
                return self._write(path, write, None, cas=int(entry.get("current_version") or 0), entry=entry)
        found, entry = self._find(write.name, write.conn_id)
        current = self._record(found[len(self._folder):], entry) if entry else None
        check_id_kept(write, current, found, path, "Vault's KV engine")
        path = found
        if entry is None or current is None or current.version != expected_version:
            raise conflict(write.name, current, expected_version)
        if not current.version and write.action != "adopt":
            raise StoreError(f"{self._target.mount}/{path} was not written by connsync; nothing was written",
                             hint="pass --adopt to take it over")
        return self._write(path, write, expected_version, cas=int(entry["current_version"]), entry=entry)

    def _write(self, path: str, write: Write, expected_version: int | None, *, cas: int,
               entry: dict[str, Any] | None, version: int | None = None, synced: int | None = None,
               history: list[Any] | None = None) -> StoredConnection:
        self._listing = None
        _, others = join_meta((entry or {}).get("custom_metadata"))
        old = self._meta(path[len(self._folder):], entry) if entry else None
        at, stamp = now(), time.time()
        new_version = version or (expected_version or 0) + 1
        synced_version = synced if version else new_version if write.managed else (old or {}).get("sv")
        record = StoredConnection(
            name=write.name, provider=write.provider, spec=dict(write.spec),
            fingerprints={k: self.fingerprint(k, v) for k, v in write.secrets.items()}, version=new_version,
            managed=write.managed, source=write.source, source_digest=write.source_digest,
            synced_version=synced_version, git_revision=write.git_revision, updated_at=at,
            updated_by=write.actor, labels=dict(write.labels), description=write.description,
            conn_id=write.conn_id)
        row = [write.action, expected_version, new_version, write.actor, stamp, write.git_revision,
               write.source]
        earlier = history if history is not None else list((old or {}).get("h") or [])
        meta = {**record_meta(record, "", [*earlier, row], write.conn_id), "kv": cas + 1}
        meta.pop("life")
        custom = split_meta(meta, write.name, others)  # checked before anything is written
        revealed = {k: v.reveal() for k, v in write.secrets.items()}
        if self._target.value_format == "airflow":
            value = airflow_record(write.provider, write.name, write.spec, revealed, write.description)
        else:
            value = {"connsync": 1, "name": write.name, "provider": write.provider, "spec": dict(write.spec),
                     "secrets": revealed, "record": {**meta, "h": [row]}, "nonce": uuid.uuid4().hex}
        written = self._kv.write_value(path, value, cas=cas, name=write.name)
        if written != cas + 1:  # versions deleted by max_versions do not change this; say so if it ever does
            meta["kv"] = written
            custom = split_meta(meta, write.name, others)
        self._kv.set_metadata(path, custom, f"write {write.name[:80]!r}")
        return record

    def _checked(self, name: str, expected_version: int, *, managed: bool) -> tuple[str, dict[str, Any],
                                                                                     dict[str, Any],
                                                                                     dict[str, str]]:
        """Check-then-act under the lock: the record is still there, at that version, and connsync's."""
        self._writing()
        path, entry = self._find(name)
        current = self._record(path[len(self._folder):], entry) if entry else None
        meta = self._meta(path[len(self._folder):], entry) if entry else None
        _, others = join_meta((entry or {}).get("custom_metadata"))
        if entry is None or meta is None or current is None or current.version != expected_version \
                or (managed and not current.managed):
            raise conflict(name, current, expected_version)
        return path, entry, meta, others

    def delete(self, name: str, *, expected_version: int, actor: str, git_revision: str | None) -> None:
        path, entry, meta, others = self._checked(name, expected_version, managed=False)
        if not meta.get("m"):
            raise StoreError(f"{name!r} is not managed by connsync; it was not deleted")
        if self.destroy_deletes:
            self._destroy(path, name, meta, ["destroy", expected_version, None, actor, time.time(),
                                             git_revision, meta.get("src"), name])
            return
        row = ["delete", expected_version, None, actor, time.time(), git_revision, meta.get("src")]
        before = split_meta(meta, name, others)
        self._kv.set_metadata(path, split_meta({**meta, "h": [*(meta.get("h") or []), row]}, name, others),
                           f"delete {name[:80]!r}")
        # The entry goes first; should the delete itself fail, it is taken back, so the audit never
        # shows a delete that was not. Only the version that was read is deleted: a newer one stays.
        try:
            self._kv.soft_delete(path, int(entry["current_version"]), name)
        except StoreError:
            with contextlib.suppress(StoreError):
                self._kv.set_metadata(path, before, f"take back the audit entry of {name[:80]!r}")
            raise

    def _destroy(self, path: str, name: str, meta: dict[str, Any], row: list[Any]) -> None:
        """Every version and the metadata go; the record's audit entries move to ``W/.events`` first."""
        events = self._folder + ".events"
        kept, others = join_meta((self._kv.metadata(events) or {}).get("custom_metadata"))
        kept = kept or {"connsync": 1, "kind": "events"}
        moved = [[*h[:7], h[7] if len(h) > 7 else name] for h in meta.get("h") or []]
        self._kv.set_metadata(events, split_meta({**kept, "h": [*(kept.get("h") or []), *moved, row]}, name,
                                                 others), f"record the destroy of {name[:80]!r}")
        with self._kv.errors(f"destroy {name[:80]!r}", "metadata", path, "delete"):
            request(self._client, "delete", self._target.api("metadata", path))

    def record_source(self, name: str, *, expected_version: int, source: str, source_digest: str) -> None:
        path, _, meta, others = self._checked(name, expected_version, managed=True)
        meta.update(src=source, dg=source_digest, sv=meta["v"])
        self._kv.set_metadata(path, split_meta(meta, name, others), f"record the source of {name[:80]!r}")

    def record_event(self, name: str, action: str, *, actor: str, git_revision: str | None,
                     source: str | None) -> None:
        self._writing()
        path, entry = self._find(name)
        record = self._record(path[len(self._folder):], entry) if entry else None
        meta, others = join_meta((entry or {}).get("custom_metadata"))
        version = record.version if record is not None and meta is not None else None
        row = [action, version, version, actor, time.time(), git_revision, source, name]
        if record is None or meta is None:
            path = self._folder + ".events"
            meta, others = join_meta((self._kv.metadata(path) or {}).get("custom_metadata"))
            meta = meta or {"connsync": 1, "kind": "events"}
        meta["h"] = [*(meta.get("h") or []), row]
        self._kv.set_metadata(path, split_meta(meta, name, others), f"record an event of {name[:80]!r}")

    def restore(self, snapshot: Snapshot, *, actor: str, overwrite: bool) -> None:
        """Write each record at its version, with its audit entries; not one transaction."""
        held = self.records()
        check_restorable(held, self.workspace, self.describe(), overwrite, "Vault")
        for record in held:  # soft-deleted: the versions stay in Vault, as for any delete
            path, held_entry = self._find(record.name)
            self._kv.soft_delete(path, int((held_entry or {}).get("current_version") or 0), record.name)
        for record, write, history in copies(snapshot, actor):
            path = self._target.secret_path(self.workspace, record.name, record.conn_id)
            there = self._kv.metadata(path)
            self._write(path, write, record.version, cas=int((there or {}).get("current_version") or 0),
                        entry=None, version=record.version, synced=record.synced_version, history=history)

    # --- the workspace lock -----------------------------------------------------

    def acquire_lock(self, *, timeout: float) -> LockInfo:
        self._listing = None  # what is read under the lock is read afresh
        return self._lock.acquire(timeout)

    def release_lock(self, lock: LockInfo) -> None:
        self._lock.release(lock)

    def break_lock(self, lock_id: str) -> LockInfo | None:
        return self._lock.break_(lock_id)
