"""In-process decryption of SOPS YAML files: the fast path.

Handles files whose data key is wrapped for age (X25519 identities, via
pyrage) or AWS KMS (via boto3), values in AES-256-GCM, and verifies the MAC
before any value is returned, with and without ``mac_only_encrypted``.

Anything else -- PGP, GCP KMS, Azure Key Vault, Vault, Shamir key groups,
comment-regex rules, SSH or plugin age identities, SOPS_AGE_KEY_CMD, KMS
with a role or profile -- raises :class:`NeedsBinary`, and so does every
failure here, MAC mismatches included: the sops binary then gives the
authoritative answer (and its error message). This engine is an
accelerator; it never has the last word on a refusal.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import math
import os
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# sops initialises the MAC with these bytes under mac_only_encrypted (sha256 of "sops").
_MAC_ONLY_ENCRYPTED_INIT = hashlib.sha256(b"sops").digest()
_ENC = re.compile(r"^ENC\[AES256_GCM,data:(.*),iv:(.+),tag:(.+),type:(.+)\]$")
_UNSUPPORTED_KEYS = ("pgp", "gcp_kms", "azure_kv", "hc_vault", "key_groups", "shamir_threshold",
                     "unencrypted_comment_regex", "encrypted_comment_regex")


class NeedsBinary(Exception):
    """This file (or this failure) is for the sops binary to handle."""


class _Yaml12Loader(yaml.CSafeLoader):
    """Scalars typed as sops's yaml.v3 types them (YAML 1.2 core schema), not as YAML 1.1.

    PyYAML would read ``yes`` as a bool and ``2024-01-01`` as a date; sops reads
    both as strings, and the MAC is over sops's reading.
    """

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML's class-level registry


def _resolver(tag: str, pattern: str, first: str) -> None:
    _Yaml12Loader.add_implicit_resolver(tag, re.compile(pattern), list(first))


_resolver("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_resolver("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789")
_resolver("tag:yaml.org,2002:float",
          r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
          r"|\.(?:nan|NaN|NAN))$", "-+0123456789.")
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"),
                                    ["~", "n", "N", ""])


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return str(node.value).lower() == "true"


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    value = str(node.value)
    if value.startswith("0o"):
        return int(value[2:], 8)
    return int(value, 0) if value.startswith("0x") else int(value)


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    value = str(node.value).lower()
    if value.endswith("inf"):
        return -math.inf if value.startswith("-") else math.inf
    return math.nan if value.endswith("nan") else float(value)


_Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
def _construct_str(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(node.value)


_Yaml12Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_str)


def go_bytes(value: Any) -> bytes:
    """sops's ToBytes: how a value enters the MAC (Go's formatting of bools and floats)."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return _go_float(value).encode()
    raise NeedsBinary(f"cannot hash a {type(value).__name__}")


def _go_float(value: float) -> str:
    """strconv.FormatFloat(v, 'f', -1, 64): shortest round-trip digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


class _Metadata:
    def __init__(self, meta: Mapping[str, Any]) -> None:
        for key in _UNSUPPORTED_KEYS:
            if meta.get(key):
                raise NeedsBinary(f"{key} is handled by the sops binary")
        mac, lastmodified = meta.get("mac"), meta.get("lastmodified")
        if not isinstance(mac, str) or not isinstance(lastmodified, str):
            raise NeedsBinary("incomplete sops metadata")
        self.mac: str = mac
        self.lastmodified: str = lastmodified
        self.mac_only_encrypted = bool(meta.get("mac_only_encrypted"))
        self.unencrypted_suffix = str(meta.get("unencrypted_suffix") or "")
        self.encrypted_suffix = str(meta.get("encrypted_suffix") or "")
        try:
            self.unencrypted_regex = _regex(meta.get("unencrypted_regex"))
            self.encrypted_regex = _regex(meta.get("encrypted_regex"))
        except re.error as exc:
            raise NeedsBinary("a regex Python reads differently from Go") from exc
        self.age = list(meta.get("age") or [])
        self.kms = list(meta.get("kms") or [])

    def should_encrypt(self, path: list[str]) -> bool:
        """sops's shouldBeEncrypted, without the comment rules (those go to the binary)."""
        encrypted = True
        if self.unencrypted_suffix and any(p.endswith(self.unencrypted_suffix) for p in path):
            encrypted = False
        if self.encrypted_suffix:
            encrypted = any(p.endswith(self.encrypted_suffix) for p in path)
        if self.unencrypted_regex and any(self.unencrypted_regex.search(p) for p in path):
            encrypted = False
        if self.encrypted_regex:
            encrypted = any(self.encrypted_regex.search(p) for p in path)
        return encrypted


def _regex(value: Any) -> re.Pattern[str] | None:
    return re.compile(str(value)) if value else None


def decrypt_value(text: str, key: bytes, additional_data: str) -> Any:
    if text == "":
        return ""  # sops leaves empty strings unencrypted
    match = _ENC.match(text)
    if match is None:
        raise NeedsBinary("a value that should be encrypted is not")
    data, iv, tag, kind = match.groups()
    try:
        plain = AESGCM(key).decrypt(base64.b64decode(iv), base64.b64decode(data) + base64.b64decode(tag),
                                    additional_data.encode())
    except (InvalidTag, ValueError) as exc:
        raise NeedsBinary("a value does not decrypt") from exc
    try:
        match kind:
            case "str":
                return plain.decode()
            case "int":
                return int(plain)
            case "float":
                return float(plain)
            case "bool":
                return plain == b"True"
            case "bytes":
                return plain
    except ValueError:
        # Not chained: the ValueError's message quotes the plaintext.
        raise NeedsBinary(f"a value does not read as {kind}") from None
    raise NeedsBinary(f"value type {kind}")


# --- the data key ---------------------------------------------------------------


def _age_identity_lines() -> Iterator[str]:
    if os.environ.get("SOPS_AGE_KEY_CMD"):
        raise NeedsBinary("SOPS_AGE_KEY_CMD")
    sources: list[str] = []
    if os.environ.get("SOPS_AGE_KEY"):
        sources.append(os.environ["SOPS_AGE_KEY"])
    key_file = os.environ.get("SOPS_AGE_KEY_FILE")
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for path in (key_file, str(Path(config_home) / "sops" / "age" / "keys.txt")):
        if path and os.path.isfile(path):
            sources.append(Path(path).read_text(encoding="utf-8"))
    for source in sources:
        for line in source.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


@functools.cache
def _age_identities(_cache_key: tuple[str | None, ...]) -> tuple[Any, ...]:
    import pyrage

    identities = []
    for line in _age_identity_lines():
        if line.startswith("AGE-SECRET-KEY-1"):
            identities.append(pyrage.x25519.Identity.from_str(line))
        # Plugin, post-quantum and other identities are left to the binary.
    return tuple(identities)


def _identities() -> tuple[Any, ...]:
    # Keyed on the settings that decide where keys come from, so tests and
    # long-lived processes see changes.
    names = ("SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE", "XDG_CONFIG_HOME", "HOME")
    return _age_identities(tuple(os.environ.get(n) for n in names))


def _data_key(meta: _Metadata) -> bytes:
    if meta.age:
        import pyrage

        identities = _identities()
        if identities:
            for entry in meta.age:
                try:
                    key = pyrage.decrypt(str(entry.get("enc", "")).encode(), list(identities))
                except (pyrage.DecryptError, ValueError, TypeError):
                    continue
                if len(key) == 32:
                    return bytes(key)
    for entry in meta.kms:
        key = _kms_data_key(entry)
        if key is not None:
            return key
    raise NeedsBinary("no key available in process")


def _kms_data_key(entry: Mapping[str, Any]) -> bytes | None:
    if entry.get("role") or entry.get("aws_profile"):
        raise NeedsBinary("KMS with a role or a profile")
    arn = str(entry.get("arn", ""))
    parts = arn.split(":")
    if len(parts) < 6:
        return None
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = _kms_client(parts[3]).decrypt(
            CiphertextBlob=base64.b64decode(str(entry.get("enc", ""))),
            EncryptionContext={str(k): str(v) for k, v in (entry.get("context") or {}).items()},
        )
    except (ClientError, BotoCoreError, ValueError):
        return None
    key = response.get("Plaintext")
    return bytes(key) if isinstance(key, bytes) and len(key) == 32 else None


@functools.cache
def _kms_client(region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("kms", region_name=region,
                        config=Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard"}))


# --- the document -----------------------------------------------------------------


def decrypt_text(text: str) -> list[dict[str, Any]]:
    """Every document of a SOPS YAML file, decrypted, MAC verified; or NeedsBinary."""
    try:
        documents = list(yaml.load_all(text, Loader=_Yaml12Loader))
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError, KeyError, IndexError,
            RecursionError):
        raise NeedsBinary("YAML the binary should judge") from None
    if not documents or not all(isinstance(d, dict) for d in documents):
        raise NeedsBinary("not a mapping")
    meta_block = documents[0].get("sops")
    if not isinstance(meta_block, Mapping):
        raise NeedsBinary("no sops metadata")
    meta = _Metadata(meta_block)
    key = _data_key(meta)

    digest = hashlib.sha512()
    if meta.mac_only_encrypted:
        digest.update(_MAC_ONLY_ENCRYPTED_INIT)

    def walk(value: Any, path: list[str]) -> Any:
        if isinstance(value, dict):
            out = {}
            for name, item in value.items():
                if not isinstance(name, str):
                    raise NeedsBinary("a non-string key")
                out[name] = walk(item, [*path, name])
            return out
        if isinstance(value, list):
            return [walk(item, path) for item in value]
        if value is None:
            return None
        encrypted = meta.should_encrypt(path)
        if encrypted:
            if not isinstance(value, str):
                raise NeedsBinary("a clear value where a secret belongs")
            value = decrypt_value(value, key, ":".join(path) + ":")
        if encrypted or not meta.mac_only_encrypted:
            digest.update(go_bytes(value))
        return value

    decrypted = [walk({k: v for k, v in doc.items() if k != "sops"}, []) for doc in documents]
    stored_mac = decrypt_value(meta.mac, key, meta.lastmodified)
    if not isinstance(stored_mac, str) or not hmac.compare_digest(stored_mac,
                                                                  digest.hexdigest().upper()):
        raise NeedsBinary("MAC mismatch")
    return decrypted
