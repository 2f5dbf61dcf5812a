"""AWS Secrets Manager store: one secret per connection, where platforms on AWS read credentials.

``awssm://REGION/PREFIX`` keeps connection NAME of workspace W at ``PREFIX/W/SLUG``
(see ``awssm_layout``): its value is JSON with the spec and the secret fields
(encrypted by Secrets Manager with KMS, readable by Airflow, Dagster or the
External Secrets Operator); its Description holds what a plan needs — spec,
fingerprints under the sealed salt, version, source digest, the last audit
entries — written in the same call as the value. A plan of N records is
⌈N/100⌉ ``ListSecrets`` pages and one ``DescribeSecret`` (the salt), never a
``GetSecretValue``.

Compare-and-set: version V+1 of a record is written with the ClientRequestToken
``uuid5(workspace, name, life, V+1)``; Secrets Manager makes it the VersionId and
refuses the same token with another value, so of two writers of V+1 one fails
(each value carries a nonce: a writer never collides with itself except on a
retry of the very same request, which is idempotent). Before writing, the
secret's current VersionId must be the token of V: a value written outside
connsync (the console, ``PutSecretValue``) shows as version V+1 with unknown
fingerprints, i.e. drift.

Safety: a secret without the tag ``managed-by=connsync`` is never updated or
deleted unless adopted. Deletes are ``DeleteSecret`` with a recovery window
(``?recovery_window_days=``, 7 by default), never forced; creating a name that is
scheduled for deletion restores it and writes the new value over it.

What cannot hold as in a database (the contract suite says so too): writes of
several records are not one transaction (each record is whole, a copy is not
atomic); ``ListSecrets`` is eventually consistent on AWS, so a plan may not see
a write of the last minutes — every write re-checks with ``DescribeSecret``;
the audit keeps the last entries of each record (as many as fit the
Description) and those of records that still exist or are within their
recovery window; CloudTrail is the complete log.

Verification history: one more secret per connection that has been verified,
``PREFIX/W/.verified/SLUG``, whose Description holds the newest results (as
many of the last N as fit its 2,048 characters); the listing that a plan makes
anyway brings them, so ``report`` reads no secret value. Two verify runs at the
same moment may each keep only their own result for a connection.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import time
import uuid
from collections.abc import Sequence
from typing import Any

from connsync.errors import StoreError, VersionConflict
from connsync.model import Secret, StoredConnection, connection_id
from connsync.store.awssm_history import fit_history, history_entries, history_meta
from connsync.store.awssm_layout import (
    MANAGED_TAG,
    WORKSPACE_TAG,
    Target,
    airflow_fields,
    aws_errors,
    check_id_kept,
    check_meta,
    check_restorable,
    compact,
    conflict,
    copies,
    current_version_id,
    describe_secret,
    fit_description,
    foreign_record,
    is_managed,
    is_record_segment,
    iso,
    kms_option,
    parse_meta,
    record_meta,
    slug,
    version_token,
)
from connsync.store.awssm_lock import LeaseLock
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

_LISTING_REUSE_SECONDS = 1.0


def make_client(target: Target) -> Any:
    return _client(target)


def make_renewal_client(target: Target) -> Any:
    """The lock renewals' client: one attempt, timed out within a sixth of the lease (their margin)."""
    return _client(target, within=target.lock_lease_seconds / 6)


def _client(target: Target, *, within: float | None = None) -> Any:
    import boto3
    from botocore.config import Config

    # Adaptive retries: throttling is waited out with backoff and a client-side rate limit.
    # AWS_MAX_ATTEMPTS is botocore's own knob; it wins when set.
    given = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
    attempts = int(given) if given.isdigit() and int(given) > 0 else 10
    config = Config(retries={"mode": "adaptive", "total_max_attempts": attempts}, connect_timeout=5,
                    read_timeout=30, user_agent_extra="connsync")
    if within is not None:
        config = config.merge(Config(retries={"mode": "standard", "total_max_attempts": 1},
                                     connect_timeout=max(0.5, within / 2), read_timeout=max(0.5, within / 2)))
    return boto3.session.Session().client("secretsmanager", region_name=target.region,
                                          endpoint_url=target.endpoint_url, config=config)


class SecretsManagerStore:
    def __init__(self, target: Target, workspace: str, client: Any, salt: bytes) -> None:
        self.workspace = workspace
        self._target = target
        self._client = client
        self._salt = salt
        self._prefix = target.workspace_prefix(workspace)
        self._lock = LeaseLock(client, target, workspace, renewer=lambda: make_renewal_client(target))
        self._listing: tuple[float, list[dict[str, Any]]] | None = None

    def describe(self) -> str:
        return self._target.shown

    @classmethod
    def open(cls, url: str, workspace: str, *, create: bool = True) -> SecretsManagerStore | EmptyStore:
        target = Target.parse(url)
        sealer = Sealer(key_from_environment(f"the Secrets Manager store {target.shown}"))
        client = make_client(target)
        name = target.meta_name()
        entry = describe_secret(client, target, name)
        if entry is None or entry.get("DeletedDate"):
            if not create:
                return EmptyStore(workspace, target.shown)
            if entry is not None:
                raise StoreError(f"the store's own secret {name} is scheduled for deletion",
                                 hint=f"aws secretsmanager restore-secret --secret-id {name}")
            body = compact({"connsync": 1, "kind": "store",
                            "salt": base64.b64encode(sealer.new_sealed_salt()).decode()})
            # ResourceExists: another process created it meanwhile; use theirs.
            with aws_errors(target, "create the store", name), \
                    contextlib.suppress(client.exceptions.ResourceExistsException):
                client.create_secret(Name=name, SecretString=body, Description=body,
                                     Tags=[{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}],
                                     ClientRequestToken=str(uuid.uuid4()), **kms_option(target))
            entry = describe_secret(client, target, name) or {}
        meta = parse_meta(entry.get("Description"))
        if meta is None or meta.get("kind") != "store" or not isinstance(meta.get("salt"), str):
            raise StoreError(f"{name} exists and is not a connsync store's metadata",
                             hint="choose another prefix in the store URL")
        salt = sealer.open_salt(base64.b64decode(meta["salt"]), target.shown, KEY_VARIABLE)
        return cls(target, workspace, client, salt)

    def close(self) -> None:
        self._lock.close()

    # --- reading ---------------------------------------------------------------

    def _entries(self) -> list[dict[str, Any]]:
        """Every secret under the workspace prefix, those scheduled for deletion included.

        One listing serves the reads of one command (records, then audit for plan's notes): it is
        reused for up to a second, and forgotten as soon as this store writes or locks.
        """
        if self._listing is not None and time.monotonic() - self._listing[0] < _LISTING_REUSE_SECONDS:
            return self._listing[1]
        entries: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Filters": [{"Key": "name", "Values": [self._prefix]}], "MaxResults": 100,
                                  "IncludePlannedDeletion": True}
        with aws_errors(self._target, "list the workspace's secrets", self._prefix + "*"):
            while True:
                page = self._client.list_secrets(**kwargs)
                entries += page.get("SecretList") or []
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
        # The name filter is a prefix match that AWS documents as case-insensitive: check it exactly.
        entries = [e for e in entries if e["Name"].startswith(self._prefix)]
        self._listing = (time.monotonic(), entries)
        return entries

    def _list(self, *, deleted: bool) -> list[dict[str, Any]]:
        return [e for e in self._entries() if is_record_segment(e["Name"][len(self._prefix):])
                and (deleted or not e.get("DeletedDate"))]

    def _writing(self) -> None:
        """Before any write: the listing is stale from now on, and the lock must still be ours."""
        self._listing = None
        self._lock.check()

    def _meta(self, entry: dict[str, Any] | None) -> dict[str, Any] | None:
        """connsync's metadata of this very secret (a Description copied from another secret is not)."""
        meta = parse_meta((entry or {}).get("Description"))
        if meta is None or entry is None:
            return None
        name = str(meta.get("n", ""))
        # Records written before names became readable ids live at the name's old slug.
        homes = {connection_id(name, meta.get("id")), slug(name.casefold())}
        if entry["Name"] not in {self._prefix + home for home in homes}:
            return None
        return check_meta(meta, entry["Name"])

    def _find(self, name: str, conn_id: str | None = None) -> tuple[str, dict[str, Any] | None]:
        """The secret of connection ``name`` and its live entry: at its id, else wherever a record of
        that name is (another metadata.id, or an older layout); (its id's secret, None) when none is."""
        home = self._target.secret_name(self.workspace, name, conn_id)
        entry = self._describe(home)
        if entry is not None and str((self._meta(entry) or {}).get("n", "")).casefold() == name.casefold():
            return home, entry
        cached = self._listing  # a lookup before a write must not leave a listing that write makes stale
        try:
            for listed in self._list(deleted=False):
                meta = self._meta(listed)
                if meta is not None and str(meta.get("n", "")).casefold() == name.casefold():
                    return listed["Name"], self._describe(listed["Name"])
        finally:
            self._listing = cached
        return home, entry

    def _record(self, entry: dict[str, Any]) -> StoredConnection:
        meta = self._meta(entry)
        if meta is None:
            return foreign_record(entry["Name"][len(self._prefix):], entry)
        version, fingerprints = int(meta["v"]), dict(meta["f"])
        if current_version_id(entry) != version_token(self.workspace, meta["n"], meta["life"], version):
            version, fingerprints = version + 1, {}  # its value was written outside connsync
        return StoredConnection(
            name=meta["n"], provider=meta["p"], spec=dict(meta["s"]), fingerprints=fingerprints,
            version=version, managed=bool(meta["m"]) and is_managed(entry), source=meta.get("src"),
            source_digest=meta.get("dg"), synced_version=meta.get("sv"), git_revision=meta.get("g"),
            updated_at=meta["at"], updated_by=meta["by"], labels=dict(meta.get("l") or {}),
            description=meta.get("d"), conn_id=meta.get("id"))

    def records(self) -> list[StoredConnection]:
        return sorted((self._record(e) for e in self._list(deleted=False)), key=lambda r: r.name.casefold())

    def _describe(self, name: str) -> dict[str, Any] | None:
        """The live secret at ``name``; None when there is none or it is scheduled for deletion."""
        entry = describe_secret(self._client, self._target, name)
        return None if entry is None or entry.get("DeletedDate") else entry

    def get(self, name: str) -> StoredConnection | None:
        _, entry = self._find(name)
        return self._record(entry) if entry else None

    def fingerprint(self, field: str, value: Secret) -> str:
        return fingerprint(self._salt, field, value)

    def read_secrets(self, name: str) -> dict[str, Secret]:
        import json

        secret, _ = self._find(name)
        with aws_errors(self._target, f"read the secrets of {name[:80]!r}", secret):
            try:
                value = self._client.get_secret_value(SecretId=secret)["SecretString"]
            except (self._client.exceptions.ResourceNotFoundException,
                    self._client.exceptions.InvalidRequestException):
                raise StoreError(f"no connection named {name!r} in workspace {self.workspace!r}") from None
        try:
            data = json.loads(value)
            return {k: Secret(v) for k, v in data["secrets"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise StoreError(f"the secret of {name!r} does not hold a connsync value") from None

    def audit(self) -> list[AuditEntry]:
        rows: list[tuple[float, int, AuditEntry]] = []
        entries = self._list(deleted=True)
        events = next((e for e in self._entries() if e["Name"] == self._events_name()), None)
        metas = [self._meta(e) for e in entries]
        events_meta = parse_meta(events.get("Description")) if events else None
        if events and events_meta:
            metas.append(check_meta(events_meta, events["Name"], record=False))
        for meta in metas:
            for h in (meta or {}).get("h") or []:
                action, before, after, actor, at, git_revision, source, *named = h
                name = named[0] if named else (meta or {}).get("n", "")
                rows.append((float(at), len(rows), AuditEntry(iso(float(at)), self.workspace, name, action,
                                                              before, after, actor, git_revision, source)))
        return [row[2] for row in sorted(rows, key=lambda r: (r[0], r[1]))]

    def _history_name(self, name: str) -> str:
        return f"{self._prefix}.verified/{slug(name.casefold())}"

    def verifications(self, name: str | None = None, *, per_connection: int | None = None) -> list[
            Verification]:
        wanted = self._history_name(name) if name is not None else None
        found: list[Verification] = []
        for entry in self._entries():
            if entry["Name"].startswith(self._prefix + ".verified/") and not entry.get("DeletedDate") \
                    and wanted in (None, entry["Name"]):
                found += history_entries(parse_meta(entry.get("Description")))
        # Stable: within one connection the entries are already newest first.
        newest = sorted(found, key=lambda v: v.at, reverse=True)
        return newest if per_connection is None else latest_first(newest, per_connection)

    def record_verifications(self, results: Sequence[Verification], *, keep: int = HISTORY_LIMIT) -> None:
        self._writing()
        by_name: dict[str, list[Verification]] = {}
        for result in results:
            by_name.setdefault(result.name.casefold(), []).append(result.bounded())
        for newest_last in by_name.values():
            name = newest_last[-1].name
            secret = self._history_name(name)
            entry = describe_secret(self._client, self._target, secret)
            kept = history_entries(parse_meta((entry or {}).get("Description")))
            description = fit_history(history_meta(name, [*reversed(newest_last), *kept][:max(1, keep)]))
            with aws_errors(self._target, f"record the verification of {name[:80]!r}", secret):
                if entry is None:
                    self._client.create_secret(
                        Name=secret, SecretString=compact({"connsync": 1, "kind": "verifications"}),
                        Description=description, Tags=self._tags(True), **kms_option(self._target))
                elif entry.get("DeletedDate"):
                    self._client.restore_secret(SecretId=secret)
                    self._client.update_secret(SecretId=secret, Description=description)
                else:
                    self._client.update_secret(SecretId=secret, Description=description)

    def _events_name(self) -> str:
        """Where events about names without a record are kept (its Description; no value versions)."""
        return self._prefix + ".events"

    def snapshot(self) -> Snapshot:
        return Snapshot([(r, self.read_secrets(r.name)) for r in self.records() if r.version],
                        self.audit())

    # --- writing ---------------------------------------------------------------

    def put(self, write: Write, *, expected_version: int | None) -> StoredConnection:
        self._writing()
        name, entry = self._target.secret_name(self.workspace, write.name, write.conn_id), None
        if expected_version is not None:
            found, entry = self._find(write.name, write.conn_id)
            current = self._record(entry) if entry else None
            check_id_kept(write, current, found, name, "Secrets Manager")
            name = found
            if current is None or current.version != expected_version:
                raise conflict(write.name, current, expected_version)
            if not is_managed(entry or {}) and write.action != "adopt":
                raise StoreError(f"the secret {name} is not tagged managed-by=connsync; nothing was written",
                                 hint="pass --adopt to take it over")
        old = self._meta(entry)
        life = old["life"] if old else secrets.token_hex(6)
        return self._write(name, write, expected_version, life, list((old or {}).get("h") or []), entry)

    def _write(self, name: str, write: Write, expected_version: int | None, life: str,
               history: list[Any], entry: dict[str, Any] | None, *, version: int | None = None,
               synced: int | None = None) -> StoredConnection:
        self._listing = None
        at, stamp = now(), time.time()
        new_version = version or (expected_version or 0) + 1
        previous_synced = (self._meta(entry) or {}).get("sv")
        synced_version = synced if version else new_version if write.managed else previous_synced
        record = StoredConnection(
            name=write.name, provider=write.provider, spec=dict(write.spec),
            fingerprints={k: self.fingerprint(k, v) for k, v in write.secrets.items()}, version=new_version,
            managed=write.managed, source=write.source, source_digest=write.source_digest,
            synced_version=synced_version, git_revision=write.git_revision, updated_at=at,
            updated_by=write.actor, labels=dict(write.labels), description=write.description,
            conn_id=write.conn_id)
        entry_row = [write.action, expected_version, new_version, write.actor, stamp, write.git_revision,
                     write.source]
        description = fit_description(record_meta(record, life, [*history, entry_row], write.conn_id),
                                      write.name)
        revealed = {k: v.reveal() for k, v in write.secrets.items()}
        airflow = airflow_fields(write.provider, write.spec, revealed) \
            if self._target.value_format == "airflow" else {}
        value = compact({"connsync": 1, "name": write.name, "provider": write.provider,
                         "spec": dict(write.spec), "secrets": revealed,
                         "written": {"action": write.action, "actor": write.actor, "at": at,
                                     "git_revision": write.git_revision, "version": new_version},
                         "nonce": uuid.uuid4().hex, **airflow})
        token = version_token(self.workspace, write.name, life, new_version)
        errors = self._client.exceptions
        with aws_errors(self._target, f"write {write.name[:80]!r}", name):
            if entry is None:
                try:
                    self._client.create_secret(Name=name, SecretString=value, Description=description,
                                               ClientRequestToken=token, Tags=self._tags(write.managed),
                                               **kms_option(self._target))
                    return record
                except (errors.ResourceExistsException, errors.InvalidRequestException):
                    entry = self._revive(name, write.name)
                    if (old := self._meta(entry)) is not None:  # a deleted record's history goes on
                        history = [*(old.get("h") or []), entry_row]
                        description = fit_description(record_meta(record, life, history, write.conn_id),
                                                      write.name)
            try:
                self._client.update_secret(SecretId=name, SecretString=value, Description=description,
                                           ClientRequestToken=token, **kms_option(self._target))
            except errors.ResourceExistsException:
                raise conflict(write.name, None, expected_version) from None
            if write.managed != is_managed(entry):
                if write.managed:
                    self._client.tag_resource(SecretId=name, Tags=self._tags(True))
                else:
                    self._client.untag_resource(SecretId=name, TagKeys=[MANAGED_TAG[0]])
        return record

    def _revive(self, name: str, shown: str) -> dict[str, Any]:
        """Creating a name that exists: a deleted record of ours comes back; anything else conflicts."""
        entry = describe_secret(self._client, self._target, name)
        if entry is None or not entry.get("DeletedDate"):
            raise VersionConflict(f"{shown!r} was created in the store meanwhile", hint="run plan again")
        if not is_managed(entry) and self._meta(entry) is None:
            raise StoreError(f"the secret {name} is scheduled for deletion and is not connsync's; nothing "
                             "was written", hint="restore or rename it in Secrets Manager, or rename the "
                             "connection")
        self._client.restore_secret(SecretId=name)
        return entry

    def _tags(self, managed: bool) -> list[dict[str, str]]:
        tags = [{"Key": WORKSPACE_TAG, "Value": slug(self.workspace)}]
        return [{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}, *tags] if managed else tags

    def _checked(self, name: str, expected_version: int, *, managed: bool) -> tuple[str, dict[str, Any],
                                                                                     dict[str, Any]]:
        """Check-then-act under the lock: the secret is still there, at that version, and connsync's."""
        self._writing()
        secret, entry = self._find(name)
        current = self._record(entry) if entry else None
        meta = self._meta(entry)
        if entry is None or meta is None or current is None or current.version != expected_version \
                or (managed and not current.managed):
            raise conflict(name, current, expected_version)
        return secret, entry, meta

    def delete(self, name: str, *, expected_version: int, actor: str, git_revision: str | None) -> None:
        secret, entry, meta = self._checked(name, expected_version, managed=False)
        if not is_managed(entry):
            raise StoreError(f"the secret {secret} is not tagged managed-by=connsync; it was not deleted")
        row = ["delete", expected_version, None, actor, time.time(), git_revision, meta.get("src")]
        before = fit_description(meta, name)
        meta["h"] = [*(meta.get("h") or []), row]
        with aws_errors(self._target, f"delete {name[:80]!r}", secret):
            # The entry goes first (a secret scheduled for deletion takes no update); should the
            # delete itself fail, it is taken back, so the audit never shows a delete that was not.
            self._client.update_secret(SecretId=secret, Description=fit_description(meta, name))
            try:
                self._client.delete_secret(SecretId=secret,
                                           RecoveryWindowInDays=self._target.recovery_window_days)
            except Exception:
                with contextlib.suppress(Exception):
                    self._client.update_secret(SecretId=secret, Description=before)
                raise

    def record_source(self, name: str, *, expected_version: int, source: str, source_digest: str) -> None:
        secret, _, meta = self._checked(name, expected_version, managed=True)
        meta.update(src=source, dg=source_digest, sv=meta["v"])
        with aws_errors(self._target, f"record the source of {name[:80]!r}", secret):
            self._client.update_secret(SecretId=secret, Description=fit_description(meta, name))

    def record_event(self, name: str, action: str, *, actor: str, git_revision: str | None,
                     source: str | None) -> None:
        self._writing()
        secret, entry = self._find(name)
        meta = self._meta(entry)
        version = self._record(entry).version if entry and meta else None
        row = [action, version, version, actor, time.time(), git_revision, source, name]
        if meta is None:
            secret = self._events_name()
            entry = self._describe(secret)
            meta = parse_meta((entry or {}).get("Description")) or {"connsync": 1, "kind": "events"}
            check_meta(meta, secret, record=False)
        meta["h"] = [*(meta.get("h") or []), row]
        description = fit_description(meta, name)
        with aws_errors(self._target, f"record an event of {name[:80]!r}", secret):
            if entry is None:
                self._client.create_secret(
                    Name=secret, SecretString=compact({"connsync": 1, "kind": "events"}),
                    Description=description, Tags=self._tags(True), **kms_option(self._target))
            else:
                self._client.update_secret(SecretId=secret, Description=description)

    def restore(self, snapshot: Snapshot, *, actor: str, overwrite: bool) -> None:
        """Write each record at its version, with its audit entries; not one transaction (see above)."""
        held = self.records()
        check_restorable(held, self.workspace, self.describe(), overwrite, "Secrets Manager")
        for record in held:
            secret, _ = self._find(record.name)
            with aws_errors(self._target, f"replace {record.name[:80]!r}", secret):
                self._client.delete_secret(SecretId=secret,
                                           RecoveryWindowInDays=self._target.recovery_window_days)
        for record, write, history in copies(snapshot, actor):
            name = self._target.secret_name(self.workspace, record.name, record.conn_id)
            self._write(name, write, record.version, secrets.token_hex(6), history, None,
                        version=record.version, synced=record.synced_version)

    # --- the workspace lock -----------------------------------------------------

    def acquire_lock(self, *, timeout: float) -> LockInfo:
        self._listing = None  # what is read under the lock is read afresh
        return self._lock.acquire(timeout)

    def release_lock(self, lock: LockInfo) -> None:
        self._lock.release(lock)

    def break_lock(self, lock_id: str) -> LockInfo | None:
        return self._lock.break_(lock_id)
