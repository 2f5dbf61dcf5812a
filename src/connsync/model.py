"""Value types that travel through the pipeline.

Secrets are carried as :class:`Secret` end to end so that a stray ``print``,
log line, f-string or traceback shows a mask, never the value.
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

Severity = Literal["error", "warning"]
Action = Literal["create", "update", "delete", "noop", "conflict", "orphan"]
ACTIONS: tuple[Action, ...] = ("create", "update", "delete", "noop", "conflict", "orphan")

MASK = "********"


class Secret:
    """A secret value that masks itself everywhere except :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:  # pickling would write the value in clear
        raise TypeError("Secret values cannot be pickled")


class Finding(NamedTuple):
    """One problem in one file, at a line and column (both 1-based)."""

    severity: Severity
    rule: str
    file: str
    line: int
    column: int
    path: str
    message: str

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.file, self.line, self.column, self.rule, self.message)

    def as_json(self) -> dict[str, Any]:
        return self._asdict()


def json_path(parts: Iterable[str | int]) -> str:
    """``["spec", "regions", 0]`` as findings show it: ``$.spec.regions[0]``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class SourceMap(Protocol):
    """Where the values of a parsed file are."""

    def position(self, parts: Sequence[str | int], *, at_key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of the value at ``parts``, or of its key with ``at_key``;
        a path that does not exist points at the deepest part of it that does."""
        ...


class _Nowhere:
    """The source map of a document that was never a file (built in memory)."""

    def position(self, parts: Sequence[str | int], *, at_key: bool = False) -> tuple[int, int]:
        return 1, 1


NOWHERE: SourceMap = _Nowhere()


ID_PATTERN = re.compile(r"[a-z0-9]([a-z0-9_.-]{0,126}[a-z0-9])?")  # metadata.id in the schema


def connection_id(name: str, chosen: object = None) -> str:
    """The id a store may name the connection by (Airflow's conn_id): ``metadata.id`` when set, else
    the name made readable, ``EU-Prod`` -> ``eu-prod``. Not one-to-one: validate reports a shared id."""
    if isinstance(chosen, str) and ID_PATTERN.fullmatch(chosen):
        # As the schema allows it: no "/", no leading dot, so an id read back from a store (store
        # copy) can never name a path outside the workspace or one of connsync's own secrets.
        return chosen
    readable = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    # Beyond ASCII, folding would make "Café" and "Cafe" one id: such a name keeps the exact encoding
    # ("caf_c3_a9"); metadata.id can give it a readable one.
    return readable if name.isascii() and readable else slug(name.casefold())


def slug(name: str) -> str:
    """An injective, readable secret-name segment: ``aws prod`` -> ``aws-prod``.

    Letters, digits and dots stay; a space becomes ``-``; every other character
    (``-`` and ``_`` included, and a leading dot) is ``_`` plus the hex of its
    UTF-8 bytes, so :func:`unslug` gives the name back exactly.
    """
    out = []
    for index, char in enumerate(name):
        if char == " ":
            out.append("-")
        elif re.fullmatch(r"[a-z0-9.]", char) and not (index == 0 and char == "."):
            out.append(char)
        else:
            out.append("".join(f"_{byte:02x}" for byte in char.encode()))
    return "".join(out)


def unslug(text: str) -> str:
    raw = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char == "_":
            raw.append(int(text[index + 1:index + 3], 16))
            index += 3
            continue
        raw += b" " if char == "-" else char.encode()
        index += 1
    return raw.decode()




@dataclass(frozen=True)
class Declaration:
    """A connection file as loaded from disk, secrets still SOPS-encrypted.

    It carries the one parse of its file: ``source`` says where each value is
    (for findings), and the in-process decryptor reads the same parse.
    """

    file: str  # as shown to the user (relative to the working directory when possible)
    data: Mapping[str, Any]
    digest: str  # sha256 of the file bytes
    text: str = field(default="", repr=False, compare=False)  # what sops decrypts
    source: SourceMap = field(default=NOWHERE, repr=False, compare=False)
    # The provider's secret (writeOnly) fields, as the schema stage hands them forward;
    # None before that stage, or for a provider without a schema.
    secret_fields: frozenset[str] | None = field(default=None, repr=False, compare=False)

    def position(self, parts: Sequence[str | int], *, at_key: bool = False) -> tuple[int, int]:
        return self.source.position(parts, at_key=at_key)

    @property
    def name(self) -> str:
        # NFC: "Café" typed composed or decomposed is one name everywhere (plan, store).
        return unicodedata.normalize("NFC", str(self.data["metadata"]["name"]))

    @property
    def provider(self) -> str:
        return str(self.data["provider"])

    @property
    def conn_id(self) -> str:
        return connection_id(self.name, self.data["metadata"].get("id"))

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.data.get("spec")
        return spec if isinstance(spec, Mapping) else {}


@dataclass(frozen=True)
class Desired:
    """A decrypted declaration: clear fields plus secrets as :class:`Secret`."""

    declaration: Declaration
    spec: Mapping[str, Any]
    secrets: Mapping[str, Secret]

    @property
    def name(self) -> str:
        return self.declaration.name

    @property
    def provider(self) -> str:
        return self.declaration.provider


@dataclass(frozen=True)
class StoredConnection:
    """A store record; it never holds a secret value, only fingerprints."""

    name: str
    provider: str
    spec: Mapping[str, Any]
    fingerprints: Mapping[str, str]
    version: int
    managed: bool
    source: str | None = None
    source_digest: str | None = None
    synced_version: int | None = None  # the version connsync last wrote
    git_revision: str | None = None
    updated_at: str = ""
    updated_by: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None
    conn_id: str | None = None  # metadata.id, where the store keeps it (Secrets Manager, Vault)

    @property
    def drifted(self) -> bool:
        """True when something other than connsync wrote the record last."""
        return self.managed and self.synced_version != self.version
