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
from typing import Any

from connsync.errors import StoreError, VersionConflict
from connsync.model import Secret, StoredConnection
from connsync.store.awssm_layout import conflict, epoch, foreign_record, is_record_segment, iso, record_meta
from connsync.store.base import AuditEntry, EmptyStore, LockInfo, Snapshot, Write, fingerprint, now
from connsync.store.sealing import KEY_VARIABLE, Sealer, key_from_environment
from connsync.store.vault_client import http_errors, make_client, request, revoke_login, token_works
from connsync.store.vault_layout import Target, airflow_record, airflow_secrets, join_meta, split_meta
from connsync.store.vault_lock import LeaseLock

_PAGE = 100
_LISTING_REUSE_SECONDS = 1.0


class VaultStore:
    def __init__(self, target: Target, workspace: str, client: Any, salt: bytes) -> None:
        self.workspace = workspace
        self._target = target
        self._client = client
        self._salt = salt
        self._folder = target.workspace_path(workspace)
        self._lock = LeaseLock(client, target, workspace)
        self._listing: tuple[float, dict[str, dict[str, Any]]] | None = None
        self._detailed = True  # OpenBao's detailed-metadata listing; HashiCorp Vault lacks it

    def describe(self) -> str:
        return self._target.shown

    @classmethod
    def open(cls, url: str, workspace: str, *, create: bool = True) -> VaultStore | EmptyStore:
        target = Target.parse(url, os.environ.get("VAULT_ADDR"))
        sealer = Sealer(key_from_environment(f"the Vault store {target.shown}"))
        client = make_client(target.address, target.shown)
        _check_mount(client, target)
        path = target.meta_path()
        meta = _read_value(client, target, path)
        if meta is None:
            if not create:
                return EmptyStore(workspace, target.shown)
            sealed = base64.b64encode(sealer.new_sealed_salt()).decode()
            body = {"connsync": "1", "kind": "store", "salt": sealed,
                    **({"workspace": workspace} if target.value_format == "airflow" else {})}
            # cas=0: of two processes creating the store at once one wins, and both use its salt.
            _write_value(client, target, path, body, cas=0, name="the store's own secret",
                         quiet_conflict=True)
            meta = _read_value(client, target, path) or {}
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

    def _errors(self, doing: str, kind: str, path: str, capability: str) -> Any:
        return http_errors(self._target.shown, doing, self._target.api(kind, path), capability,
                           client=self._client)

    # --- reading ---------------------------------------------------------------

    def _entries(self) -> dict[str, dict[str, Any]]:
        """KV metadata of every secret in the workspace folder by segment, deleted ones included.

        One listing serves the reads of one command (records, then audit); it is reused for up to
        a second and forgotten as soon as this store writes or locks.
        """
        if self._listing is not None and time.monotonic() - self._listing[0] < _LISTING_REUSE_SECONDS:
            return self._listing[1]
        entries = self._list_detailed() if self._detailed else None
        if entries is None:
            self._detailed = False
            entries = self._list_then_read()
        self._listing = (time.monotonic(), entries)
        return entries

    def _list_detailed(self) -> dict[str, dict[str, Any]] | None:
        """OpenBao: pages of 100 keys with their metadata; None where the server has no such listing."""
        import hvac

        entries: dict[str, dict[str, Any]] = {}
        after = ""
        path = self._target.api("detailed-metadata", self._folder)
        with self._errors("list the workspace's secrets", "detailed-metadata", self._folder, "list"):
            while True:
                try:
                    page = request(self._client, "list", path, params={"limit": _PAGE, "after": after}) or {}
                except hvac.exceptions.InvalidPath as exc:
                    # {"errors": []}: an empty folder. Anything else (HashiCorp Vault's KV engine
                    # warns "Invalid path for a versioned K/V secrets engine"): no such listing.
                    return entries if isinstance(exc.json, dict) and exc.json.get("errors") == [] else None
                except hvac.exceptions.UnsupportedOperation:
                    return None
                if page.get("data") is None:
                    # HashiCorp Vault: the KV engine answers an unknown endpoint with a warning only.
                    return None
                data = page["data"]
                keys = data.get("keys") or []
                info = data.get("key_info") or {}
                entries.update({k: info[k] for k in keys if not k.endswith("/") and k in info})
                if len(keys) < _PAGE:
                    return entries
                after = keys[-1]

    def _list_then_read(self) -> dict[str, dict[str, Any]]:
        """HashiCorp Vault: one LIST, then the metadata of each key (N+1 calls)."""
        import hvac

        with self._errors("list the workspace's secrets", "metadata", self._folder, "list"):
            try:
                page = request(self._client, "list", self._target.api("metadata", self._folder)) or {}
            except hvac.exceptions.InvalidPath:
                return {}
        keys = [k for k in (page.get("data") or {}).get("keys") or [] if not k.endswith("/")]
        return {k: m for k in keys if (m := self._metadata(self._folder + k)) is not None}

    def _metadata(self, path: str) -> dict[str, Any] | None:
        import hvac

        with self._errors("read the store", "metadata", path, "read"):
            try:
                answer = request(self._client, "get", self._target.api("metadata", path)) or {}
            except hvac.exceptions.InvalidPath:
                return None
        return answer.get("data") or {}

    def _record(self, segment: str, entry: dict[str, Any]) -> StoredConnection | None:
        """The record a secret holds; None when its latest version is deleted."""
        current = int(entry.get("current_version") or 0)
        latest = (entry.get("versions") or {}).get(str(current)) or {}
        if not current or latest.get("deletion_time") or latest.get("destroyed"):
            return None
        meta = self._meta(segment, entry)
        if meta is None:
            return _foreign(segment, entry)
        return StoredConnection(
            name=meta["n"], provider=meta["p"], spec=dict(meta["s"]), fingerprints=dict(meta["f"]),
            version=int(meta["v"]), managed=bool(meta["m"]), source=meta.get("src"),
            source_digest=meta.get("dg"), synced_version=meta.get("sv"), git_revision=meta.get("g"),
            updated_at=meta["at"], updated_by=meta["by"], labels=dict(meta.get("l") or {}),
            description=meta.get("d"))

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
        if meta is None or self._target.secret_path(self.workspace, str(meta.get("n", ""))) != \
                self._folder + segment:
            return None
        return meta

    def _written_by_connsync(self, segment: str, version: int) -> dict[str, Any] | None:
        """The metadata a crash left unwritten, from the value connsync wrote (connsync format only)."""
        if self._target.value_format == "airflow":
            return None  # Airflow's shape has no room for it: the record reads as changed outside
        value = _read_value(self._client, self._target, self._folder + segment) or {}
        meta = value.get("record")
        return meta if isinstance(meta, dict) and meta.get("kv") == version else None

    def records(self) -> list[StoredConnection]:
        found = (self._record(s, e) for s, e in self._entries().items() if is_record_segment(s))
        return sorted((r for r in found if r is not None), key=lambda r: r.name.casefold())

    def get(self, name: str) -> StoredConnection | None:
        path = self._target.secret_path(self.workspace, name)
        entry = self._metadata(path)
        return self._record(path[len(self._folder):], entry) if entry else None

    def fingerprint(self, field: str, value: Secret) -> str:
        return fingerprint(self._salt, field, value)

    def read_secrets(self, name: str) -> dict[str, Secret]:
        record = self.get(name)
        value = _read_value(self._client, self._target, self._target.secret_path(self.workspace, name)) \
            if record is not None else None
        if record is None or value is None:
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

    def snapshot(self) -> Snapshot:
        return Snapshot([(r, self.read_secrets(r.name)) for r in self.records() if r.version], self.audit())

    # --- writing ---------------------------------------------------------------

    def _writing(self) -> None:
        """Before any write: the listing is stale from now on, and the lock must still be ours."""
        self._listing = None
        self._lock.check()

    def put(self, write: Write, *, expected_version: int | None) -> StoredConnection:
        self._writing()
        path = self._target.secret_path(self.workspace, write.name)
        if expected_version is None:
            # The common create needs no read first: cas=0 fails when anything is there.
            try:
                return self._write(path, write, None, cas=0, entry=None)
            except VersionConflict:
                entry = self._metadata(path)
                if entry is None or self._record(path[len(self._folder):], entry) is not None:
                    raise conflict(write.name, None, None) from None
                meta, _ = join_meta(entry.get("custom_metadata"))
                if meta is None and int(entry.get("current_version") or 0):
                    raise StoreError(f"{self._target.mount}/{path} holds deleted versions that are not "
                                     "connsync's; nothing was written",
                                     hint="undelete or destroy them in Vault, or rename the connection") \
                        from None
                return self._write(path, write, None, cas=int(entry.get("current_version") or 0), entry=entry)
        entry = self._metadata(path)
        current = self._record(path[len(self._folder):], entry) if entry else None
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
            updated_by=write.actor, labels=dict(write.labels), description=write.description)
        row = [write.action, expected_version, new_version, write.actor, stamp, write.git_revision,
               write.source]
        earlier = history if history is not None else list((old or {}).get("h") or [])
        meta = {**record_meta(record, "", [*earlier, row]), "kv": cas + 1}
        meta.pop("life")
        custom = split_meta(meta, write.name, others)  # checked before anything is written
        revealed = {k: v.reveal() for k, v in write.secrets.items()}
        if self._target.value_format == "airflow":
            value = airflow_record(write.provider, write.name, write.spec, revealed, write.description)
        else:
            value = {"connsync": 1, "name": write.name, "provider": write.provider, "spec": dict(write.spec),
                     "secrets": revealed, "record": {**meta, "h": [row]}, "nonce": uuid.uuid4().hex}
        written = _write_value(self._client, self._target, path, value, cas=cas, name=write.name)
        if written != cas + 1:  # versions deleted by max_versions do not change this; say so if it ever does
            meta["kv"] = written
            custom = split_meta(meta, write.name, others)
        self._set_metadata(path, custom, f"write {write.name[:80]!r}")
        return record

    def _set_metadata(self, path: str, custom: dict[str, str], doing: str) -> None:
        with self._errors(doing, "metadata", path, "update"):
            request(self._client, "post", self._target.api("metadata", path),
                    json={"custom_metadata": custom})

    def _checked(self, name: str, expected_version: int, *, managed: bool) -> tuple[str, dict[str, Any],
                                                                                     dict[str, Any],
                                                                                     dict[str, str]]:
        """Check-then-act under the lock: the record is still there, at that version, and connsync's."""
        self._writing()
        path = self._target.secret_path(self.workspace, name)
        entry = self._metadata(path)
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
        row = ["delete", expected_version, None, actor, time.time(), git_revision, meta.get("src")]
        before = split_meta(meta, name, others)
        self._set_metadata(path, split_meta({**meta, "h": [*(meta.get("h") or []), row]}, name, others),
                           f"delete {name[:80]!r}")
        # The entry goes first; should the delete itself fail, it is taken back, so the audit never
        # shows a delete that was not. Only the version that was read is deleted: a newer one stays.
        try:
            self._soft_delete(path, int(entry["current_version"]), name)
        except StoreError:
            with contextlib.suppress(StoreError):
                self._set_metadata(path, before, f"take back the audit entry of {name[:80]!r}")
            raise

    def _soft_delete(self, path: str, version: int, name: str) -> None:
        with self._errors(f"delete {name[:80]!r}", "delete", path, "update"):
            request(self._client, "post", self._target.api("delete", path), json={"versions": [version]})

    def record_source(self, name: str, *, expected_version: int, source: str, source_digest: str) -> None:
        path, _, meta, others = self._checked(name, expected_version, managed=True)
        meta.update(src=source, dg=source_digest, sv=meta["v"])
        self._set_metadata(path, split_meta(meta, name, others), f"record the source of {name[:80]!r}")

    def record_event(self, name: str, action: str, *, actor: str, git_revision: str | None,
                     source: str | None) -> None:
        self._writing()
        path = self._target.secret_path(self.workspace, name)
        entry = self._metadata(path)
        record = self._record(path[len(self._folder):], entry) if entry else None
        meta, others = join_meta((entry or {}).get("custom_metadata"))
        version = record.version if record is not None and meta is not None else None
        row = [action, version, version, actor, time.time(), git_revision, source, name]
        if record is None or meta is None:
            path = self._folder + ".events"
            meta, others = join_meta((self._metadata(path) or {}).get("custom_metadata"))
            meta = meta or {"connsync": 1, "kind": "events"}
        meta["h"] = [*(meta.get("h") or []), row]
        self._set_metadata(path, split_meta(meta, name, others), f"record an event of {name[:80]!r}")

    def restore(self, snapshot: Snapshot, *, actor: str, overwrite: bool) -> None:
        """Write each record at its version, with its audit entries; not one transaction."""
        held = self.records()
        if held and not overwrite:
            raise StoreError(f"workspace {self.workspace!r} of {self.describe()} already holds "
                             f"{len(held)} record(s); nothing was copied",
                             hint="pass --replace to overwrite them")
        foreign = [r.name for r in held if not r.version]
        if foreign:
            raise StoreError(f"{len(foreign)} secret(s) in workspace {self.workspace!r} of {self.describe()} "
                             f"are not connsync's (e.g. {foreign[0][:80]!r}); nothing was copied",
                             hint="move or delete them in Vault first: connsync never deletes them")
        for record in held:  # soft-deleted: the versions stay in Vault, as for any delete
            path = self._target.secret_path(self.workspace, record.name)
            held_entry = self._metadata(path) or {}
            self._soft_delete(path, int(held_entry.get("current_version") or 0), record.name)
        order = {id(entry): index for index, entry in enumerate(snapshot.audit)}
        for record, values in snapshot.records:
            history = [[a.action, a.version_before, a.version_after, a.actor,
                        epoch(a.at) + order[id(a)] * 1e-6, a.git_revision, a.source, a.name]
                       for a in snapshot.audit if a.name.casefold() == record.name.casefold()]
            write = Write(record.name, record.provider, record.spec, values, record.managed, actor, "copy",
                          record.source, record.source_digest, record.git_revision, record.description,
                          record.labels)
            path = self._target.secret_path(self.workspace, record.name)
            there = self._metadata(path)
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


def _foreign(segment: str, entry: dict[str, Any]) -> StoredConnection:
    """A secret at our path that connsync did not write: unmanaged, version 0."""
    updated = str(entry.get("updated_time") or entry.get("created_time") or "")
    # Vault gives nanoseconds (2026-12-06T14:07:05.502437283Z); seconds are all a record shows.
    try:
        stamp = epoch(updated[:19] + "Z") if len(updated) >= 19 else 0.0
    except ValueError:
        stamp = 0.0
    return foreign_record(segment, {"LastChangedDate": stamp})


def _check_mount(client: Any, target: Target) -> None:
    """The mount exists and is KV version 2 (Vault lets any token ask this of a mount it may use)."""
    import hvac

    where = f"sys/internal/ui/mounts/{target.mount}"
    with http_errors(target.shown, "read the mount", where, "read", client=client):
        try:
            answer = request(client, "get", where) or {}
        except (hvac.exceptions.InvalidPath, hvac.exceptions.Forbidden) as exc:
            # Vault answers 403 for a mount that does not exist, as for one the token may not use.
            if isinstance(exc, hvac.exceptions.Forbidden) and not token_works(client):
                raise
            answer = {}
    data = answer.get("data") or {}
    if data.get("type") not in ("kv", "generic") or str((data.get("options") or {}).get("version")) != "2":
        raise StoreError(f"{target.mount} at {target.shown} is not a KV version 2 secrets engine that this "
                         "token may use", hint=f"enable one: vault secrets enable -path={target.mount} kv-v2")


def _read_value(client: Any, target: Target, path: str) -> dict[str, Any] | None:
    """The latest live value at ``path``; None when there is none (or it is deleted)."""
    import hvac

    with http_errors(target.shown, "read the store", target.api("data", path), "read", client=client):
        try:
            answer = request(client, "get", target.api("data", path)) or {}
        except hvac.exceptions.InvalidPath:
            return None
    value = (answer.get("data") or {}).get("data")
    return value if isinstance(value, dict) else None


def _write_value(client: Any, target: Target, path: str, value: dict[str, Any], *, cas: int, name: str,
                 quiet_conflict: bool = False) -> int:
    """A KV write with check-and-set; its KV version. VersionConflict when cas does not hold."""
    import hvac

    with http_errors(target.shown, f"write {name[:80]!r}", target.api("data", path),
                     "create" if cas == 0 else "update", client=client):
        try:
            answer = request(client, "post", target.api("data", path),
                             json={"options": {"cas": cas}, "data": value}) or {}
        except hvac.exceptions.InvalidRequest as exc:
            if "check-and-set" not in " ".join(str(e) for e in exc.errors or []):
                raise
            if quiet_conflict:
                return 0
            raise VersionConflict(f"{name!r} changed in the store meanwhile", hint="run plan again") from None
    return int((answer.get("data") or {}).get("version") or 0)
