"""The KV version 2 API as the Vault store uses it: listings, metadata, values, soft deletes.

Every call goes through ``http_errors``, so a failure is one line naming the
API path and the capability; a check-and-set that does not hold is a
:class:`VersionConflict`.
"""

from __future__ import annotations

import time
from typing import Any

from connsync.errors import StoreError, VersionConflict
from connsync.model import StoredConnection
from connsync.store.awssm_layout import epoch, foreign_record
from connsync.store.vault_client import http_errors, request, token_works
from connsync.store.vault_layout import Target

_PAGE = 100


class Kv:
    def __init__(self, client: Any, target: Target) -> None:
        self.client = client
        self.target = target
        self.detailed = True  # OpenBao's detailed-metadata listing; HashiCorp Vault lacks it

    def errors(self, doing: str, kind: str, path: str, capability: str) -> Any:
        return http_errors(self.target.shown, doing, self.target.api(kind, path), capability,
                           client=self.client)

    def listing(self, folder: str) -> dict[str, dict[str, Any]]:
        """The KV metadata of every secret in ``folder`` by its last segment, deleted ones included."""
        entries = self._list_detailed(folder) if self.detailed else None
        if entries is None:
            self.detailed = False
            entries = self._list_then_read(folder)
        return entries

    def _list_detailed(self, folder: str) -> dict[str, dict[str, Any]] | None:
        """OpenBao: pages of 100 keys with their metadata; None where the server has no such listing."""
        import hvac

        entries: dict[str, dict[str, Any]] = {}
        after = ""
        path = self.target.api("detailed-metadata", folder)
        with self.errors("list the workspace's secrets", "detailed-metadata", folder, "list"):
            while True:
                try:
                    page = request(self.client, "list", path, params={"limit": _PAGE, "after": after}) or {}
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

    def _list_then_read(self, folder: str) -> dict[str, dict[str, Any]]:
        """HashiCorp Vault: one LIST, then the metadata of each key (N+1 calls)."""
        import hvac

        with self.errors("list the workspace's secrets", "metadata", folder, "list"):
            try:
                page = request(self.client, "list", self.target.api("metadata", folder)) or {}
            except hvac.exceptions.InvalidPath:
                return {}
        keys = [k for k in (page.get("data") or {}).get("keys") or [] if not k.endswith("/")]
        return {k: m for k in keys if (m := self.metadata(folder + k)) is not None}

    def metadata(self, path: str) -> dict[str, Any] | None:
        import hvac

        with self.errors("read the store", "metadata", path, "read"):
            try:
                answer = request(self.client, "get", self.target.api("metadata", path)) or {}
            except hvac.exceptions.InvalidPath:
                return None
        return answer.get("data") or {}

    def read_value(self, path: str) -> dict[str, Any] | None:
        return read_value(self.client, self.target, path)

    def write_value(self, path: str, value: dict[str, Any], *, cas: int, name: str) -> int:
        return write_value(self.client, self.target, path, value, cas=cas, name=name)

    def set_metadata(self, path: str, custom: dict[str, str], doing: str) -> None:
        with self.errors(doing, "metadata", path, "update"):
            request(self.client, "post", self.target.api("metadata", path), json={"custom_metadata": custom})

    def soft_delete(self, path: str, version: int, name: str) -> None:
        with self.errors(f"delete {name[:80]!r}", "delete", path, "update"):
            request(self.client, "post", self.target.api("delete", path), json={"versions": [version]})


def is_live(version: dict[str, Any] | None) -> bool:
    """Whether a KV version (its entry in the metadata's ``versions``) can be read.

    A mount or secret with ``delete_version_after`` gives every live version a deletion_time in the
    future: only a deletion time that has passed (or a destroyed version) means deleted.
    """
    if not version or version.get("destroyed"):
        return False
    when = str(version.get("deletion_time") or "")
    if not when:
        return True
    try:
        return epoch(when[:19] + "Z") > time.time()
    except ValueError:
        return False  # a deletion time Vault wrote and this cannot read: taken as deleted, as before


def foreign(segment: str, entry: dict[str, Any]) -> StoredConnection:
    """A secret at our path that connsync did not write: unmanaged, version 0."""
    updated = str(entry.get("updated_time") or entry.get("created_time") or "")
    # Vault gives nanoseconds (2026-12-06T14:07:05.502437283Z); seconds are all a record shows.
    try:
        stamp = epoch(updated[:19] + "Z") if len(updated) >= 19 else 0.0
    except ValueError:
        stamp = 0.0
    return foreign_record(segment, {"LastChangedDate": stamp})


def check_mount(client: Any, target: Target) -> None:
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


def read_value(client: Any, target: Target, path: str) -> dict[str, Any] | None:
    """The latest live value at ``path``; None when there is none (or it is deleted)."""
    import hvac

    with http_errors(target.shown, "read the store", target.api("data", path), "read", client=client):
        try:
            answer = request(client, "get", target.api("data", path)) or {}
        except hvac.exceptions.InvalidPath:
            return None
    value = (answer.get("data") or {}).get("data")
    return value if isinstance(value, dict) else None


def write_value(client: Any, target: Target, path: str, value: dict[str, Any], *, cas: int, name: str,
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
