"""YAML scalars typed the way sops reads them: yaml.v3's YAML 1.2 core schema.

sops (3.11) reads files with ``go.yaml.in/yaml/v3``; PyYAML reads YAML 1.1,
where ``yes`` is a bool, ``0777`` and ``1_000`` are typed differently and
``1e400`` is infinity. :func:`resolve_plain` is a port of yaml.v3's
``resolve()`` (resolve.go, v3.0.x) for untagged plain scalars, with Go's
``strconv`` rules. It is the one typing of clear values: validation
(:mod:`connsync.validate.loader`) and decryption (:mod:`connsync.sops.native`) both use
it, so what was validated is what is applied.

Go types without a Python twin are marked: :class:`GoTime` (a timestamp, held
as the text sops prints for it, RFC 3339 with nanoseconds) and
:class:`GoUint` (an integer above int64, which sops cannot walk).

:func:`compose` builds a small node tree from libyaml's events (libyaml is
also what yaml.v3 was ported from) and raises :class:`Unsupported` for
anything whose reading by sops is not certain here: aliases, explicit tags
other than ``!!str``, directives, duplicate keys, ``<<``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml


class Unsupported(Exception):
    """sops's reading of this YAML is not reproduced here; ask the binary."""


class GoTime(str):
    """A timestamp as sops holds it (time.Time), spelled as it prints it."""

    __slots__ = ()


class GoUint(int):
    """An integer that only fits Go's uint64: sops refuses to walk it."""

    __slots__ = ()


STR_TAG = "tag:yaml.org,2002:str"
_INT64 = 2**63
_UINT64 = 2**64
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_SPECIAL_FLOATS = {".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan}
for _sign, _value in (("", math.inf), ("+", math.inf), ("-", -math.inf)):
    for _spelling in (".inf", ".Inf", ".INF"):
        _SPECIAL_FLOATS[_sign + _spelling] = _value
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_GO_DECIMAL_FLOAT = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


# --- Go's strconv ----------------------------------------------------------------


def _go_parse_uint(text: str) -> int | None:
    """strconv.ParseUint(text, 0, 64) on text without underscores; None on error."""
    base, digits = 10, text
    if text[:1] == "0":
        prefix = text[1:2].lower()
        if len(text) >= 3 and prefix in ("b", "o", "x"):
            base, digits = {"b": 2, "o": 8, "x": 16}[prefix], text[2:]
        else:
            base, digits = 8, text[1:]
    if not text or any(c not in _DIGITS[base] for c in digits):
        return None
    value = int(digits, base) if digits else 0
    return value if value < _UINT64 else None


def _go_parse_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64); None on error."""
    sign, rest = 1, text
    if text[:1] in ("+", "-"):
        sign, rest = (-1 if text[0] == "-" else 1), text[1:]
    if not rest:
        return None
    magnitude = _go_parse_uint(rest)
    if magnitude is None:
        return None
    value = sign * magnitude
    return value if -_INT64 <= value < _INT64 else None


def go_parse_float(text: str) -> float | None:
    """strconv.ParseFloat(text, 64) for decimal and inf/nan spellings; None on error.

    Hexadecimal floats are valid Go but never written by sops: Unsupported.
    """
    lowered = text.lower()
    if lowered in ("inf", "+inf", "infinity", "+infinity"):
        return math.inf
    if lowered in ("-inf", "-infinity"):
        return -math.inf
    if lowered == "nan":
        return math.nan
    if _GO_DECIMAL_FLOAT.fullmatch(text) is None:
        if re.fullmatch(r"[-+]?0[xX].*", text):
            raise Unsupported("a hexadecimal float")
        return None
    value = float(text)
    return None if math.isinf(value) else value  # Go: ErrRange on overflow


def go_format_float(value: float) -> str:
    """strconv.FormatFloat(v, 'f', -1, 64): how sops feeds a float to the MAC."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    return _shortest_fixed(value)


def _shortest_fixed(value: float) -> str:
    from decimal import Decimal

    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def as_emitted(value: float) -> float | int:
    """The number sops's YAML output reads back as: yaml.v3 writes floats with
    FormatFloat(v, 'g', -1, 64), so a whole float below 1e6 comes out as an int."""
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e6:
        return int(value)
    return value


# --- timestamps (time.Parse, time.Format) ------------------------------------------

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d\d?)-(\d\d?)"
    r"(?:(?:[Tt](\d\d?):(\d\d?):(\d\d?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d))"
    r"|(?: (\d\d?):(\d\d?):(\d\d?)(?:\.(\d+))?))?"
)
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def _format_time(parts: tuple[str | None, ...], fraction: str | None, zone: str | None) -> GoTime | None:
    """Validate like time.Parse (None where it fails) and spell like
    time.Format(time.RFC3339Nano)."""
    year, month, day, hour, minute, second = (int(p or 0) for p in parts)
    try:
        # Range checks only; year 0 is a leap year in Go's calendar, like 2000.
        dt.datetime(year or 2000, month, day, hour, minute, second)
    except ValueError:
        return None
    if fraction is not None and len(fraction) > 9:
        raise Unsupported("a timestamp with more than nanosecond digits")
    if zone is None or zone in ("Z", "+00:00", "-00:00"):
        suffix = "Z"
    else:
        if int(zone[1:3]) > 23 or int(zone[4:6]) > 59:
            raise Unsupported("a timestamp zone offset out of range")
        suffix = zone
    nanos = (fraction or "").ljust(9, "0")[:9].rstrip("0")
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    return GoTime(text + (f".{nanos}" if nanos else "") + suffix)


def _parse_timestamp(text: str) -> GoTime | None:
    """yaml.v3's parseTimestamp: four formats tried with time.Parse."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    g = match.groups()
    if g[3] is not None:
        return _format_time(g[0:6], g[6], g[7])
    return _format_time((*g[0:3], *g[8:11]), g[11], None)


def parse_rfc3339(text: str) -> GoTime:
    """time.Time.UnmarshalText (RFC 3339), spelled as MarshalText spells it."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise Unsupported("a time value sops may read differently")
    g = match.groups()
    spelled = _format_time(g[0:6], g[6], g[7])
    if spelled is None:
        raise Unsupported("an out-of-range time value")
    return spelled


def rfc3339_seconds(text: str) -> str:
    """time.Parse(time.RFC3339, s).Format(time.RFC3339): the MAC's additional data."""
    spelled = parse_rfc3339(text)
    return re.sub(r"\.\d+(?=Z|[+-])", "", spelled)


# --- resolve ------------------------------------------------------------------------


def resolve_plain(text: str) -> Any:
    """The value of an untagged plain scalar as yaml.v3 resolves it."""
    if text in _BOOLS:
        return _BOOLS[text]
    if text in _NULLS:
        return None
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    first = text[0]
    if first == ".":
        if re.fullmatch(r"\.[0-9]+([eE][-+]?[0-9]+)?", text):
            value = float(text)
            return text if math.isinf(value) else value
        return text
    if first not in "+-0123456789":
        return text
    timestamp = _parse_timestamp(text)
    if timestamp is not None:
        return timestamp
    plain = text.replace("_", "")
    if not plain:
        return text
    as_int = _go_parse_int(plain)
    if as_int is not None:
        return as_int
    as_uint = _go_parse_uint(plain) if plain[0] != "+" and plain[0] != "-" else None
    if as_uint is not None:
        return GoUint(as_uint)
    if _YAML_STYLE_FLOAT.fullmatch(plain):
        as_float = go_parse_float(plain)
        if as_float is not None:
            return as_float
    # yaml.v3's extra 0b/0o branches only matter for uint64 ranges:
    for prefix, base in (("0b", 2), ("0o", 8), ("-0b", 2), ("-0o", 8)):
        if plain.startswith(prefix):
            digits = plain[len(prefix):]
            if digits and all(c in _DIGITS[base] for c in digits):
                value = int(digits, base)
                if prefix[0] != "-" and value < _UINT64:
                    return GoUint(value)
    return text


# --- a node tree from libyaml's events ----------------------------------------------


# Each node knows where it starts (1-based; 0 where it was composed from events
# without marks), so the one parse of a file also says where each value is.


@dataclass(slots=True)
class Scalar:
    raw: str
    value: Any  # as sops holds it: None, bool, int, float, str, GoTime, GoUint
    quoted: bool  # quoted, block or !!str: yaml.v3's indicatedString()
    line: int = 0
    column: int = 0


@dataclass(slots=True)
class Mapping:
    # Keys and values one after the other (k0, v0, k1, v1, ...): a tuple per pair would be a
    # third of the tree's memory, and every Declaration keeps its tree.
    flat: list[Node] = field(default_factory=list)
    line: int = 0
    column: int = 0

    @property
    def pairs(self) -> list[tuple[Node, Node]]:
        flat = self.flat
        return list(zip(flat[::2], flat[1::2], strict=True))


@dataclass(slots=True)
class Sequence:
    items: list[Node] = field(default_factory=list)
    line: int = 0
    column: int = 0


Node = Scalar | Mapping | Sequence


@dataclass(frozen=True, slots=True)
class Parsed:
    """One file's parse: its node tree, and whether sops's reading of it is this tree.

    The loader makes it once per file; validation reads its positions (a
    :class:`connsync.model.SourceMap`), and the in-process decryptor reads the
    tree itself when ``sops_reads_as_is`` (no tags, directives, aliases, merge keys
    or look-alike duplicate keys: what :func:`compose` would refuse or read apart).
    """

    root: Node | None
    sops_reads_as_is: bool

    def position(self, parts: abc.Sequence[str | int], *, at_key: bool = False) -> tuple[int, int]:
        """Line and column of the value at ``parts`` (of its key with ``at_key``); a path
        that does not exist points at the deepest part of it that does."""
        node = self.root
        if node is None:
            return 1, 1
        line, column = node.line, node.column
        last = len(parts) - 1
        for depth, part in enumerate(parts):
            if isinstance(node, Mapping):
                wanted = str(part)
                match = next(((k, v) for k, v in node.pairs if isinstance(k, Scalar) and k.raw == wanted),
                             None)
                if match is None:
                    break
                key, node = match
                at = key if (depth == last and at_key) else node
            elif isinstance(node, Sequence) and isinstance(part, int) and part < len(node.items):
                node = at = node.items[part]
            else:
                break
            line, column = at.line, at.column
        return line, column



def _scalar(event: yaml.ScalarEvent) -> Scalar:
    tag, value = event.tag, event.value
    if tag not in (None, "!", STR_TAG):
        raise Unsupported("an explicit YAML tag")
    if tag == STR_TAG or event.style:  # style is '' for plain scalars
        return Scalar(value, value, True)
    if value == "<<":
        raise Unsupported("a merge key")  # a plain key to sops, a merge to others
    return Scalar(value, resolve_plain(value), False)


def compose(text: str) -> list[Node | None]:
    """Every document of ``text``: None for an empty one. Raises Unsupported."""
    try:
        return list(_compose(yaml.parse(text, Loader=yaml.CSafeLoader)))
    except yaml.YAMLError:
        raise Unsupported("YAML the binary should judge") from None


def _compose(events: Iterator[yaml.Event]) -> Iterator[Node | None]:
    stack: list[Mapping | Sequence] = []
    pending_key: list[Node | None] = []
    document: Node | None = None

    def add(node: Node) -> None:
        nonlocal document
        if not stack:
            document = node
            return
        parent = stack[-1]
        if isinstance(parent, Sequence):
            parent.items.append(node)
        elif pending_key[-1] is None:
            pending_key[-1] = node
        else:
            key = pending_key[-1]
            assert key is not None
            parent.flat += (key, node)
            pending_key[-1] = None

    for event in events:
        if isinstance(event, yaml.ScalarEvent):
            add(_scalar(event))
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            if event.tag not in (None, "!"):
                raise Unsupported("an explicit tag on a collection")
            node: Mapping | Sequence = Mapping() if isinstance(event, yaml.MappingStartEvent) else Sequence()
            add(node)
            stack.append(node)
            pending_key.append(None)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            done = stack.pop()
            pending_key.pop()
            if isinstance(done, Mapping):
                _check_unique(done)
        elif isinstance(event, yaml.AliasEvent):
            raise Unsupported("an alias")
        elif isinstance(event, yaml.DocumentStartEvent):
            if event.version or event.tags:
                raise Unsupported("a %YAML or %TAG directive")
            document = None
        elif isinstance(event, yaml.DocumentEndEvent):
            yield document


def _check_unique(mapping: Mapping) -> None:
    seen: set[str] = set()
    for key, _ in mapping.pairs:
        if not isinstance(key, Scalar):
            raise Unsupported("a collection as a mapping key")
        if key.raw in seen:
            raise Unsupported("a duplicate key")
        seen.add(key.raw)


def as_value(value: Any) -> Any:
    """A scalar as it comes out of sops decrypt: floats as emitted, times as text."""
    if isinstance(value, float):
        return as_emitted(value)
    if isinstance(value, GoTime):
        return str(value)
    if isinstance(value, GoUint):
        return int(value)
    return value


def read_plain(text: str) -> Any:
    """An untagged plain scalar as sops decrypt returns it: what validation must see."""
    return as_value(resolve_plain(text))


def to_python(node: Node | None) -> Any:
    """The plain Python value of a node (keys as sops reads them)."""
    if node is None:
        return None
    if isinstance(node, Scalar):
        return as_value(node.value)
    if isinstance(node, Sequence):
        return [to_python(item) for item in node.items]
    return {to_python(key): to_python(value) for key, value in node.pairs}


def load_all(text: str) -> list[Any]:
    """Every document as Python values, read as sops reads them (used to read sops's output)."""
    return [to_python(document) for document in compose(text)]
