"""In-process decryption of SOPS YAML files: the fast path.

A port of what sops 3.11 does when it decrypts a YAML file (getsops/sops
``stores/yaml/store.go``, ``stores/stores.go``, ``sops.go``, ``aes/cipher.go``,
``cmd/sops/common``), for the files that matter here: the data key wrapped for
age X25519 identities (pyrage) or AWS KMS (boto3), values in AES-256-GCM, the
MAC verified before any value is returned, with and without
``mac_only_encrypted``. Values come back as sops's YAML output reads back
(:mod:`connsync.sops.yaml_view`): whole floats below 1e6 as ints, times as RFC 3339
text.

Wherever sops would refuse a file, and wherever matching it exactly is not
worth it (PGP, GCP KMS, Azure Key Vault, Vault, key groups, comment rules,
SSH or plugin identities, SOPS_AGE_KEY_CMD, KMS with a role or a profile,
aliases, explicit tags, ``bytes`` values, ...), :class:`NeedsBinary` is
raised and the sops binary gives the authoritative answer and its message.
This engine is an accelerator: it never has the last word on a refusal.
Regexes from the metadata run on RE2, the engine Go's regexp implements, so
a hostile ``encrypted_regex`` costs linear time.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

import re2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from connsync.sops import keys, yaml_view
from connsync.sops.keys import NeedsBinary
from connsync.sops.yaml_view import GoTime, GoUint, Parsed, Scalar, Sequence, Unsupported

__all__ = ["NeedsBinary", "decrypt_text", "decrypt_value", "go_bytes"]

# sops's MACOnlyEncryptedInitialization (sops.go): sha256("sops").
_MAC_ONLY_ENCRYPTED_INIT = hashlib.sha256(b"sops").digest()
# aes/cipher.go's encre: not anchored at the end, greedy groups.
_ENC = re.compile(r"ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]")
# A comment sops would decrypt (the text right after '#'), whatever its type.
_ENC_COMMENT = re.compile(r"#ENC\[AES256_GCM,data:.+,iv:.+,tag:.+,type:(.+)\]")
_DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
_CRYPT_RULES = ("unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex",
                "unencrypted_comment_regex", "encrypted_comment_regex")
_STRING_FIELDS = ("lastmodified", "mac", "version", *_CRYPT_RULES)
_BINARY_ONLY = ("pgp", "gcp_kms", "azure_kv", "hc_vault", "key_groups", "shamir_threshold")
# yaml.v3 accepts YAML 1.1 spellings when it decodes into a Go bool (decode.go).
_GO_YAML_BOOLS = {**dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"), True),
                  **dict.fromkeys(("n", "N", "no", "No", "NO", "off", "Off", "OFF"), False)}
_GO_PARSE_BOOL = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
                  **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def go_bytes(value: Any) -> bytes:
    """sops's ToBytes: how a value enters the MAC (Go's spelling of bools and floats)."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, str):  # GoTime included: its text is MarshalText's
        return value.encode()
    if isinstance(value, int) and not isinstance(value, GoUint):
        return str(value).encode()
    if isinstance(value, float):
        return yaml_view.go_format_float(value).encode()
    raise NeedsBinary(f"sops cannot hash a {type(value).__name__}")


# --- metadata (stores.Metadata, decoded by yaml.v3, then ToInternal) ---------------


def _string_field(node: yaml_view.Node | None) -> str:
    """yaml.v3 decoding a node into a Go string: any scalar's text, null as ''."""
    if node is None:
        return ""
    if not isinstance(node, Scalar):
        raise NeedsBinary("a metadata field that should be text is not")
    return "" if node.value is None and not node.quoted else node.raw


def _bool_field(node: yaml_view.Node | None) -> bool:
    if node is None or (isinstance(node, Scalar) and node.value is None and not node.quoted):
        return False
    if isinstance(node, Scalar):
        if isinstance(node.value, bool):
            return node.value
        if isinstance(node.value, str) and not isinstance(node.value, GoTime) \
                and node.value in _GO_YAML_BOOLS:
            return _GO_YAML_BOOLS[node.value]
    raise NeedsBinary("mac_only_encrypted is not a bool (sops refuses the file)")


def _fields(node: yaml_view.Node | None) -> dict[str, yaml_view.Node | None]:
    if node is None:
        return {}
    if not isinstance(node, yaml_view.Mapping):
        raise NeedsBinary("a metadata entry that should be a mapping is not")
    return {key.raw: value for key, value in node.pairs if isinstance(key, Scalar)}


def _entries(node: yaml_view.Node | None) -> list[dict[str, yaml_view.Node | None]]:
    if node is None or (isinstance(node, Scalar) and node.value is None and not node.quoted):
        return []
    if not isinstance(node, Sequence):
        raise NeedsBinary("a key list that is not a list")
    return [_fields(item) for item in node.items]


class _Metadata:
    def __init__(self, node: yaml_view.Node | None) -> None:
        if node is None or (isinstance(node, Scalar) and node.value is None):
            raise NeedsBinary("no sops metadata")
        fields = _fields(node)
        for name in _BINARY_ONLY:
            value = fields.get(name)
            if value is not None and not (isinstance(value, Scalar) and value.value is None
                                          and not value.quoted) \
                    and not (isinstance(value, Sequence) and not value.items):
                raise NeedsBinary(f"{name} is handled by the sops binary")
        text = {name: _string_field(fields.get(name)) for name in _STRING_FIELDS}
        self.mac_only_encrypted = _bool_field(fields.get("mac_only_encrypted"))
        self.age = [{k: _string_field(v) for k, v in entry.items() if k in ("recipient", "enc")}
                    for entry in _entries(fields.get("age"))]
        self.kms = [_kms_entry(entry) for entry in _entries(fields.get("kms"))]
        try:
            self.mac_additional_data = yaml_view.rfc3339_seconds(text["lastmodified"])
        except Unsupported as exc:
            raise NeedsBinary("lastmodified is not an RFC 3339 time") from exc
        rules = [name for name in _CRYPT_RULES if text[name]]
        if len(rules) > 1:
            raise NeedsBinary("more than one crypt rule (sops refuses the file)")
        if "unencrypted_comment_regex" in rules or "encrypted_comment_regex" in rules:
            raise NeedsBinary("comment rules are handled by the sops binary")
        self.mac = text["mac"]
        self.unencrypted_suffix = text["unencrypted_suffix"] or ("" if rules else _DEFAULT_UNENCRYPTED_SUFFIX)
        self.encrypted_suffix = text["encrypted_suffix"]
        self.unencrypted_regex = _regex(text["unencrypted_regex"])
        self.encrypted_regex = _regex(text["encrypted_regex"])

    def should_encrypt(self, path: list[str]) -> bool:
        """sops's shouldBeEncrypted without the comment rules (those go to the binary)."""
        if self.unencrypted_suffix:
            return not any(p.endswith(self.unencrypted_suffix) for p in path)
        if self.encrypted_suffix:
            return any(p.endswith(self.encrypted_suffix) for p in path)
        if self.unencrypted_regex is not None:
            return not any(self.unencrypted_regex(p) for p in path)
        if self.encrypted_regex is not None:
            return any(self.encrypted_regex(p) for p in path)
        return True


def _kms_entry(entry: dict[str, yaml_view.Node | None]) -> dict[str, Any]:
    out: dict[str, Any] = {k: _string_field(entry.get(k))
                           for k in ("arn", "role", "aws_profile", "created_at", "enc")}
    try:
        yaml_view.parse_rfc3339(out["created_at"])  # ToInternal refuses a bad created_at
    except Unsupported as exc:
        raise NeedsBinary("a KMS created_at sops cannot read") from exc
    context: dict[str, str] = {}
    for name, value in _fields(entry.get("context")).items():
        if not isinstance(value, Scalar) or (value.value is None and not value.quoted):
            raise NeedsBinary("a KMS context value that is not text")
        context[name] = value.raw
    out["context"] = context
    return out


def _regex(pattern: str) -> Callable[[str], bool] | None:
    """Go's regexp.Match through RE2, which Go's regexp implements: linear time."""
    if not pattern:
        return None
    if "\\C" in pattern:
        raise NeedsBinary(r"\C means one thing to RE2 and nothing to Go")
    try:
        return _matcher(pattern)
    except re2.error:
        # Go's regexp.Match reports the error and sops reads it as "no match";
        # the engines may disagree on what is valid, so the binary decides.
        raise NeedsBinary("a regex RE2 does not accept") from None


@functools.lru_cache(maxsize=32)
def _matcher(pattern: str) -> Callable[[str], bool]:
    """One compiled regex per pattern for the run, and its answers remembered: every file of a
    repository carries the same rule, and asks it about the same key names."""
    compiled = re2.compile(pattern, _RE2_OPTIONS)
    answers: dict[str, bool] = {}

    def matches(text: str) -> bool:
        answer = answers.get(text)
        if answer is None:
            answer = compiled.search(text) is not None
            if len(answers) < _REMEMBERED_ANSWERS:
                answers[text] = answer
        return answer

    return matches


_REMEMBERED_ANSWERS = 4096


# --- values (aes/cipher.go Decrypt) -------------------------------------------------


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NeedsBinary("a value that is not base64") from None


def decrypt_value(text: str, key: bytes, additional_data: str) -> Any:
    """One ENC[...] value, typed as sops types it; NeedsBinary where sops fails."""
    if text == "":
        return ""  # sops leaves empty strings unencrypted
    match = _ENC.match(text)
    if match is None:
        raise NeedsBinary("a value that should be encrypted is not")
    data, iv, tag, kind = match.groups()
    try:
        plain = AESGCM(key).decrypt(_b64(iv), _b64(data) + _b64(tag), additional_data.encode())
    except (InvalidTag, ValueError) as exc:
        raise NeedsBinary("a value does not decrypt") from exc
    try:
        return _typed(plain, kind)
    except (UnicodeDecodeError, ValueError, Unsupported):
        # Not chained: these messages can quote the plaintext.
        raise NeedsBinary(f"a value sops would not read as {kind}") from None


def _typed(plain: bytes, kind: str) -> Any:
    text = plain.decode()  # sops would print invalid UTF-8 as !!binary: not here
    if kind == "str":
        return text
    if kind == "int":  # strconv.Atoi: decimal, optional sign, int64
        if re.fullmatch(r"[+-]?[0-9]+", text) is None or not -(2**63) <= int(text) < 2**63:
            raise ValueError
        return int(text)
    if kind == "float":
        value = yaml_view.go_parse_float(text)
        if value is None:
            raise ValueError
        return value
    if kind == "bool":
        if text not in _GO_PARSE_BOOL:
            raise ValueError
        return _GO_PARSE_BOOL[text]
    if kind == "time":
        return yaml_view.parse_rfc3339(text)
    if kind == "comment":
        return _Comment(text)
    raise Unsupported(kind)  # bytes (sops panics), comment as a value, unknown types


class _Comment(str):
    """sops.Comment: what a ``type:comment`` value decrypts to."""

    __slots__ = ()


_DROP = object()  # a list item that is a comment once decrypted


# --- the document -----------------------------------------------------------------


def decrypt_text(text: str, parsed: Parsed | None = None) -> list[dict[str, Any]]:
    """Every document of a SOPS YAML file, decrypted, MAC verified; or NeedsBinary.

    ``parsed`` is the loader's parse of the same text: its tree is read as it is
    when sops reads the text that way (``sops_reads_as_is``), so a file is
    parsed once per run; otherwise the text is composed here.
    """
    for match in _ENC_COMMENT.finditer(text):
        if match.group(1) != "comment":
            # sops would decrypt it into a value (a list item, a hashed string).
            raise NeedsBinary("an encrypted comment of another type")
    if parsed is not None and parsed.sops_reads_as_is:
        documents: list[yaml_view.Node | None] = [parsed.root]
    else:
        try:
            documents = yaml_view.compose(text)
        except Unsupported as exc:
            raise NeedsBinary(str(exc)) from None
    if not documents or not all(d is None or isinstance(d, yaml_view.Mapping) for d in documents):
        raise NeedsBinary("a document that is not a mapping")
    first = documents[0]
    pairs = first.pairs if isinstance(first, yaml_view.Mapping) else []
    meta_nodes = [v for k, v in pairs if isinstance(k, Scalar) and k.raw == "sops"]
    if len(meta_nodes) != 1:
        raise NeedsBinary("no sops metadata")
    meta = _Metadata(meta_nodes[0])
    key = keys.data_key(meta.age, meta.kms)

    digest = hashlib.sha512()
    if meta.mac_only_encrypted:
        digest.update(_MAC_ONLY_ENCRYPTED_INIT)

    def walk(node: yaml_view.Node | None, path: list[str], in_list: bool = False) -> Any:
        if node is None:
            return None
        if isinstance(node, yaml_view.Mapping):
            out: dict[str, Any] = {}
            for key_node, value_node in node.pairs:
                name = key_node.value if isinstance(key_node, Scalar) else None
                if not isinstance(name, str) or isinstance(name, GoTime):
                    raise NeedsBinary("a non-string key (sops refuses the file)")
                if not path and name == "sops":
                    continue
                out[name] = walk(value_node, [*path, name])
            return out
        if isinstance(node, Sequence):
            # sops writes a comment inside an encrypted list as an item of type
            # comment; decrypted, it is a comment again, outside the values and the MAC.
            return [v for v in (walk(item, path, in_list=True) for item in node.items) if v is not _DROP]
        value = node.value
        if value is None:
            return None  # sops neither decrypts nor hashes a null
        if isinstance(value, GoUint):
            raise NeedsBinary("an integer above int64 (sops refuses the file)")
        encrypted = meta.should_encrypt(path)
        if encrypted:
            if not isinstance(value, str) or isinstance(value, GoTime):
                raise NeedsBinary("a clear value where a secret belongs")
            value = decrypt_value(value, key, ":".join(path) + ":")
            if isinstance(value, _Comment):
                if not in_list:
                    raise NeedsBinary("a comment where a value belongs")
                return _DROP
        if encrypted or not meta.mac_only_encrypted:
            digest.update(go_bytes(value))
        return yaml_view.as_value(value)

    # sops writes the metadata into every document and drops it from each on reading.
    decrypted = [walk(document, []) or {} for document in documents]
    stored_mac = decrypt_value(meta.mac, key, meta.mac_additional_data)
    if type(stored_mac) is not str or not hmac.compare_digest(stored_mac, digest.hexdigest().upper()):
        raise NeedsBinary("MAC mismatch")
    return decrypted
