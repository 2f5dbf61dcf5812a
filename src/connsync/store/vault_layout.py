"""How the Vault / OpenBao store lays a workspace out: URL, paths, metadata, Airflow's shape.

``vault://HOST[:PORT]/MOUNT[/PREFIX]`` keeps connection NAME of workspace W at
``MOUNT/PREFIX/W/ID`` of a KV version 2 mount (the id as in the Secrets Manager
store: ``metadata.id``, else the name made readable; validate refuses two
connections that share one; never starting with a dot). Names that start with a
dot are connsync's own: ``PREFIX/.connsync`` (the sealed salt),
``PREFIX/W/.lock`` and ``PREFIX/W/.events``.

What a plan needs (spec, fingerprints, versions, source digest, the last audit
entries) is compact JSON in the secret's ``custom_metadata``, cut into values of
at most 512 characters under the keys ``connsync-0``, ``connsync-1``, … (Vault
allows 64 keys of 512 characters; connsync uses at most ``META_KEYS`` of them).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from connsync.errors import StoreError
from connsync.model import connection_id
from connsync.store.awssm_layout import slug, unslug

__all__ = ["META_KEYS", "Target", "airflow_record", "airflow_secrets", "join_meta", "slug", "split_meta",
           "unslug"]

SCHEMES = ("vault", "vault+http")
VALUE_LIMIT = 512  # characters of one custom_metadata value (Vault's and OpenBao's limit)
META_KEYS = 16  # of Vault's 64 custom_metadata keys: 8,192 characters of metadata per secret
META_KEY = "connsync-{}"
_SEGMENT = re.compile(r"[A-Za-z0-9_.@+=-]+")
_EXAMPLE = "e.g. vault://vault.example.com:8200/secret/connsync"


@dataclass(frozen=True)
class Target:
    """Where the store is: the server's address, the KV v2 mount, the prefix, and the options."""

    address: str  # https://host:port (http:// for loopback only)
    mount: str
    prefix: str  # may be empty
    lock_lease_seconds: float = 60.0
    value_format: str = "connsync"  # or "airflow": values in the shape Airflow's VaultBackend reads

    @property
    def shown(self) -> str:
        scheme = "vault+http" if self.address.startswith("http:") else "vault"
        return f"{scheme}://{self.address.split('://', 1)[1]}/{self.base}"

    @property
    def base(self) -> str:
        return f"{self.mount}/{self.prefix}" if self.prefix else self.mount

    @classmethod
    def parse(cls, url: str, address_from_env: str | None) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise StoreError("the store URL is not vault://HOST[:PORT]/MOUNT[/PREFIX]", hint=_EXAMPLE)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if "@" in parts.netloc or {"token", "vault_token", "password", "secret_id", "role_id"} & set(query):
            # Nothing of the URL is repeated: it carries a credential.
            raise StoreError("the store URL carries credentials; connsync never takes them from a URL",
                             hint="remove them from the URL and set VAULT_TOKEN (or CONNSYNC_VAULT_AUTH, see "
                             "the README's 'Vault and OpenBao')")
        unknown = sorted(set(query) - {"format", "lock_lease_seconds", "connections_path"})
        if unknown:
            raise StoreError(f"unknown option {unknown[0][:40]!r} in the store URL",
                             hint="known: format, connections_path, lock_lease_seconds")
        segments = [unquote(s) for s in parts.path.strip("/").split("/") if s]
        if not segments or not all(_SEGMENT.fullmatch(s) and not s.startswith(".") for s in segments):
            raise StoreError("the store URL needs a KV version 2 mount after the host, and path segments "
                             "of letters, digits and _.@+=- only", hint=_EXAMPLE)
        value_format = query.get("format") or "connsync"
        if value_format not in ("connsync", "airflow"):
            raise StoreError(f"format={value_format[:40]!r} in the store URL is not connsync or airflow")
        mount, prefix = segments[0], "/".join(segments[1:])
        if "connections_path" in query:
            if value_format != "airflow" or prefix:
                raise StoreError("connections_path is for format=airflow with no prefix in the URL path",
                                 hint="e.g. vault://HOST/secret?format=airflow&connections_path=connections")
            prefix = query["connections_path"].strip("/")
            if not prefix or not all(_SEGMENT.fullmatch(s) for s in prefix.split("/")):
                raise StoreError("connections_path must be path segments of letters, digits and _.@+=-")
        elif value_format == "airflow" and not prefix:
            prefix = "connections"  # Airflow's default connections_path
        try:
            lease = float(query.get("lock_lease_seconds") or 60)
        except ValueError:
            raise StoreError("lock_lease_seconds in the store URL is not a number") from None
        if not 1 <= lease <= 3600:
            raise StoreError("lock_lease_seconds must be from 1 to 3600")
        return cls(_address(parts.scheme, parts.hostname, parts.port, parts.netloc, address_from_env), mount,
                   prefix, lease, value_format)

    # --- paths (relative to the mount) -------------------------------------------

    def meta_path(self) -> str:
        return f"{self.prefix}/.connsync" if self.prefix else ".connsync"

    def workspace_path(self, workspace: str) -> str:
        """The folder of a workspace; with format=airflow the connections_path itself (one workspace)."""
        if self.value_format == "airflow":
            return f"{self.prefix}/"
        return f"{self.prefix}/{slug(workspace)}/" if self.prefix else f"{slug(workspace)}/"

    def secret_path(self, workspace: str, name: str, conn_id: str | None = None) -> str:
        """Where connection ``name`` lives: at its id (``metadata.id``, else the name made readable),
        which is the conn_id Airflow reads with format=airflow."""
        return self.workspace_path(workspace) + connection_id(name, conn_id)

    def api(self, kind: str, path: str) -> str:
        """The API path of ``path`` under the mount: kind is data, metadata, delete or detailed-metadata."""
        return f"{self.mount}/{kind}/{path}"


def _address(scheme: str, host: str | None, port: int | None, netloc: str, from_env: str | None) -> str:
    if not netloc:
        # vault:///MOUNT/PREFIX: the address comes from VAULT_ADDR, as for the vault CLI.
        if not from_env:
            raise StoreError("the store URL names no host and VAULT_ADDR is not set", hint=_EXAMPLE)
        env = urlsplit(from_env.strip())
        if env.scheme not in ("https", "http") or not env.hostname or "@" in env.netloc:
            raise StoreError("VAULT_ADDR is not an https://HOST[:PORT] address")
        scheme, host, port = ("vault" if env.scheme == "https" else "vault+http"), env.hostname, env.port
    assert host is not None
    if scheme == "vault+http" and not _loopback(host):
        raise StoreError(f"plain HTTP is for a dev server on this machine only, not {host[:60]}",
                         hint="use vault:// (HTTPS, VAULT_CACERT for a private CA)")
    shown_host = f"[{host}]" if ":" in host else host
    return f"{'http' if scheme == 'vault+http' else 'https'}://{shown_host}:{port or 8200}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- connsync's metadata in custom_metadata -----------------------------------------

def split_meta(meta: Mapping[str, Any], name: str, others: Mapping[str, str]) -> dict[str, str]:
    """The custom_metadata to write: ``meta`` in chunks, beside the keys others keep there.

    The oldest audit entries give way first; a record that does not fit alone is a clear error.
    """
    history = list(meta.get("h") or [])
    room = min(META_KEYS, 64 - len(others))
    while True:
        text = json.dumps({**meta, "h": history}, separators=(",", ":"), sort_keys=True)  # ASCII only
        if len(text) <= room * VALUE_LIMIT:
            chunks = [text[i:i + VALUE_LIMIT] for i in range(0, len(text), VALUE_LIMIT)]
            return {**others, **{META_KEY.format(i): chunk for i, chunk in enumerate(chunks)}}
        if not history:
            raise StoreError(
                f"the record of {name[:80]!r} needs {len(text):,} characters of metadata and connsync keeps "
                f"at most {room * VALUE_LIMIT:,} in a secret's custom_metadata ({room} of Vault's 64 "
                f"values of {VALUE_LIMIT} characters); nothing was written",
                hint="shorten its description, labels or clear fields")
        history.pop(0)


def split_history(meta: Mapping[str, Any], others: Mapping[str, str]) -> dict[str, str]:
    """Verification history as custom_metadata: the oldest results go first, then the last one's
    messages shrink (never the result itself)."""
    history = list(meta["h"])
    room = min(META_KEYS, 64 - len(others)) * VALUE_LIMIT
    while True:
        text = json.dumps({**meta, "h": history}, separators=(",", ":"), sort_keys=True)
        if len(text) <= room or not history:
            chunks = [text[i:i + VALUE_LIMIT] for i in range(0, len(text), VALUE_LIMIT)]
            return {**others, **{META_KEY.format(i): chunk for i, chunk in enumerate(chunks)}}
        if len(history) > 1:
            history.pop()
            continue
        at, status, account, messages, key_created, *spelled = history[0]
        if not messages:
            history = []
            continue
        last = messages[-1]
        cut = len(last) - (len(text) - room) // 6 - 2  # \uXXXX: a character may take six
        messages = [*messages[:-1], last[:cut] + "…"] if cut > 0 else messages[:-1]
        history = [[at, status, account, messages, key_created, *spelled]]


def join_meta(custom: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """connsync's metadata (or None), and the custom_metadata keys that are not connsync's."""
    custom = custom or {}
    others = {k: str(v) for k, v in custom.items() if not k.startswith("connsync-")}
    chunks = []
    for index in range(len(custom)):
        chunk = custom.get(META_KEY.format(index))
        if not isinstance(chunk, str):
            break
        chunks.append(chunk)
    try:
        data = json.loads("".join(chunks)) if chunks else None
    except ValueError:
        return None, others
    return (data if isinstance(data, dict) and data.get("connsync") == 1 else None), others


# --- Airflow's shape ----------------------------------------------------------------

# Airflow's VaultBackend passes every key of the secret to Connection(**value): only Connection's
# own keys may be there. Per card: its conn_type, which spec field is the login, which secret the
# password, and the extras its hook reads.
_GCP_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - Google's token endpoint


def airflow_record(provider: str, name: str, spec: Mapping[str, Any], secrets: Mapping[str, str],
                   description: str | None) -> dict[str, Any]:
    """The value Airflow's VaultBackend turns into a Connection for this connection."""
    base: dict[str, Any] = {"description": description or name}
    if provider == "aws":
        extra: dict[str, Any] = {"region_name": spec.get("default_region")}
        for key in ("role_arn", "session_duration_seconds"):
            if spec.get(key) is not None:
                extra[key] = spec[key]
        if spec.get("role_arn"):
            extra["assume_role_method"] = "assume_role"
            if secrets.get("external_id"):
                extra["assume_role_kwargs"] = {"ExternalId": secrets["external_id"]}
        return {**base, "conn_type": "aws", "login": spec.get("access_key_id"),
                "password": secrets.get("secret_access_key"), "extra": extra}
    if provider == "azure":
        return {**base, "conn_type": "azure", "login": spec.get("client_id"),
                "password": secrets.get("client_secret"),
                "extra": {"tenantId": spec.get("tenant_id"), "subscriptionId": spec.get("subscription_id"),
                          **({"cloud": spec["cloud"]} if spec.get("cloud") else {})}}
    if provider == "gcp":
        keyfile = {"type": "service_account", "project_id": spec.get("project_id"),
                   "private_key_id": spec.get("private_key_id"), "private_key": secrets.get("private_key"),
                   "client_email": spec.get("client_email"), "token_uri": _GCP_TOKEN_URI}
        return {**base, "conn_type": "google_cloud_platform",
                "extra": {"project": spec.get("project_id"), "keyfile_dict": json.dumps(keyfile)}}
    raise StoreError(f"format=airflow has no Airflow connection shape for provider {provider[:40]!r}",
                     hint="use the connsync format for this store")


def airflow_secrets(provider: str, value: Mapping[str, Any]) -> dict[str, str]:
    """The secret fields back from an Airflow-shaped value (for ``import`` and ``store copy``)."""
    extra = value.get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra)
    if provider == "aws":
        found = {"secret_access_key": value.get("password")}
        external = (extra.get("assume_role_kwargs") or {}).get("ExternalId")
        if external:
            found["external_id"] = external
    elif provider == "azure":
        found = {"client_secret": value.get("password")}
    elif provider == "gcp":
        found = {"private_key": json.loads(extra.get("keyfile_dict") or "{}").get("private_key")}
    else:
        found = {}
    return {k: v for k, v in found.items() if isinstance(v, str)}
