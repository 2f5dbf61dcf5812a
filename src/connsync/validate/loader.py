"""Find connection files and load them safely.

Per-file problems are values (a :class:`Finding`), never exceptions, so one
hostile file cannot hide the findings of the others.

Each file is parsed once: libyaml composes the node tree, and one walk over it
makes the document, the positions of its values (for findings) and the node
tree the in-process decryptor reads (:class:`connsync.sops.yaml_view.Parsed`).
Anything that walk does not read the way PyYAML's constructor would (explicit
tags, aliases, duplicate keys, merge keys) goes to :class:`StrictLoader`'s
constructor on the same nodes, which decides and explains.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from connsync.model import Declaration, Finding, json_path
from connsync.sops import yaml_view
from connsync.sops.yaml_view import Parsed

# Connection files are a few hundred bytes; anything this big is a mistake or an
# attack, and is refused before the parser sees it.
MAX_FILE_BYTES = 1024 * 1024
YAML_SUFFIXES = (".yaml", ".yml")


class _RefusedNode(yaml.MarkedYAMLError):
    """Raised from inside the constructor; carries the offending node's mark."""

    def __init__(self, rule: str, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.rule = rule


class StrictLoader(yaml.CSafeLoader):
    """``CSafeLoader`` that rejects duplicate keys, merge keys and every alias.

    PyYAML silently keeps the last of two equal keys, which would let a second
    ``secret_access_key`` hide under the first in review. Aliases have no use in
    a connection file and are how "billion laughs" files blow up, so they are
    refused outright rather than capped.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node in self.constructed_objects or node in self.recursive_objects:
            raise _RefusedNode("yaml", "aliases (*name) are not allowed", node.start_mark)
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # BaseConstructor.construct_mapping, plus the duplicate check it lacks.
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, found {node.id}", node.start_mark
            )
        for key_node, _ in node.value:
            # PyYAML merges "<<" (with a !!merge tag); sops keeps it as a plain key. Either way what
            # was validated would not be what is encrypted and stored, so it has no meaning here.
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<":
                raise _RefusedNode("yaml", "merge keys (<<) are not allowed: sops does not merge them, so "
                                   "what is validated would not be what is stored; write the keys out",
                                   key_node.start_mark)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise _RefusedNode("yaml", "a mapping key must be a scalar", key_node.start_mark)
            if key in mapping:
                raise _RefusedNode(
                    "duplicate-key", f"key {key!r} appears twice in this mapping", key_node.start_mark
                )
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def resolve(self, kind: type[yaml.Node], value: str | None, implicit: tuple[bool, bool]) -> str:
        # What the one implicit resolver below decides for every untagged plain scalar,
        # without BaseResolver's search: libyaml asks for every node it composes.
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN_TAG
        return str(super().resolve(kind, value, implicit))

    def construct_plain_scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            return yaml_view.read_plain(str(node.value))
        except yaml_view.Unsupported:
            raise _RefusedNode("yaml", f"{node.value!r} may be read differently by sops; quote it",
                               node.start_mark) from None


# One YAML typing (YAML 1.2, as sops's yaml.v3 reads it) for validation and
# decryption alike, so that what was validated is what is applied: PyYAML's
# YAML 1.1 resolvers are replaced by one that hands every untagged plain
# scalar to connsync.sops.yaml_view.
_PLAIN_TAG = "tag:connsync.dev,2026:plain"
StrictLoader.yaml_implicit_resolvers = {}
StrictLoader.add_implicit_resolver(_PLAIN_TAG, re.compile(r"(?s:.*)"), None)
StrictLoader.add_constructor(_PLAIN_TAG, StrictLoader.construct_plain_scalar)
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"




class YamlProblem(Exception):
    """Why a text is not acceptable YAML, and where (1-based)."""

    def __init__(self, message: str, line: int = 1, column: int = 1, rule: str = "yaml",
                 path: str = "$") -> None:
        super().__init__(message)
        self.message, self.line, self.column, self.rule, self.path = message, line, column, rule, path


def parse(text: str) -> Any:
    """Load one YAML document with :class:`StrictLoader`; every failure is a YamlProblem."""
    return parse_located(text)[0]


def parse_located(text: str) -> tuple[Any, Parsed]:
    """The document and its parse (positions, and the tree sops reads); every failure is a
    YamlProblem."""
    loader = StrictLoader(text)
    root: yaml.Node | None = None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, Parsed(None, False)
        try:
            data, tree = _read(root, set() if "*" in text else None)
        except (_Unusual, yaml_view.Unsupported, RecursionError):
            # PyYAML's constructor on the same nodes: it accepts or refuses, and says where.
            return loader.construct_document(root), Parsed(_shape(root), False)
        # Tags and directives are refused by sops's reading (compose) but not all
        # of them show in the nodes; the decryptor then reads the text itself.
        return data, Parsed(tree, "!" not in text and "%" not in text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        if mark is None:
            raise YamlProblem(message) from None
        if text[mark.index : mark.index + 1] == "\t":
            message = "tab character: YAML indentation must use spaces"
        line, column = mark.line + 1, mark.column + 1
        if isinstance(exc, _RefusedNode):
            raise YamlProblem(message, line, column, exc.rule, json_path(path_at(root, mark))) from None
        raise YamlProblem(message, line, column) from None
    except (yaml.YAMLError, RecursionError) as exc:  # unmarked reader errors, absurd nesting
        raise YamlProblem(f"invalid YAML: {type(exc).__name__}") from None
    except (ValueError, TypeError, AttributeError, OverflowError, KeyError, IndexError):
        # PyYAML's constructors raise these for explicitly tagged values that do
        # not parse (`!!timestamp soon`, `!!int x`); found by the property tests.
        raise YamlProblem("a value with an explicit YAML tag (!!int, !!timestamp, ...) "
                          "does not parse") from None
    finally:
        loader.dispose()


class _Unusual(Exception):
    """A node the fast reading leaves to StrictLoader's constructor."""


def _read(node: yaml.Node, seen: set[int] | None) -> tuple[Any, yaml_view.Node]:
    """The value of ``node`` as StrictLoader constructs it, and its node in sops's reading.

    Raises _Unusual wherever the two could differ or the constructor would refuse.
    ``seen`` collects the nodes read so far, to find aliases; None when the text has no ``*``.
    """
    if seen is not None:
        if id(node) in seen:
            raise _Unusual  # an alias
        seen.add(id(node))
    mark = node.start_mark
    kind = type(node)
    if kind is _SCALAR_NODE:
        raw = node.value
        if node.style:  # type: ignore[attr-defined]  # quoted or block: a string
            if node.tag != _STR_TAG:
                raise _Unusual
            return raw, _Scalar(raw, raw, True, mark.line + 1, mark.column + 1)
        if node.tag != _PLAIN_TAG:
            raise _Unusual
        value = _resolve_plain(raw)
        kind = type(value)
        # as_value() changes only floats and the Go types; the common types skip the call.
        data = value if kind is str or kind is int or kind is bool or value is None else _as_value(value)
        return data, _Scalar(raw, value, False, mark.line + 1, mark.column + 1)
    if kind is _MAPPING_NODE:
        if node.tag != _MAP_TAG:
            raise _Unusual
        mapping: dict[Any, Any] = {}
        flat: list[yaml_view.Node] = []
        spellings: set[str] = set()
        for key_node, value_node in node.value:
            if type(key_node) is not _SCALAR_NODE or key_node.value in spellings or key_node.value == "<<":
                raise _Unusual  # a collection as a key, a key spelled twice, a merge key
            key, key_tree = _read(key_node, seen)
            if key in mapping:
                raise _Unusual  # a duplicate key (1 and 1.0 included)
            spellings.add(key_node.value)
            value, value_tree = _read(value_node, seen)
            mapping[key] = value
            flat += (key_tree, value_tree)
        return mapping, _Mapping(flat, mark.line + 1, mark.column + 1)
    if kind is _SEQUENCE_NODE and node.tag == _SEQ_TAG:
        items: list[Any] = []
        trees: list[yaml_view.Node] = []
        for item in node.value:
            value, tree = _read(item, seen)
            items.append(value)
            trees.append(tree)
        return items, _Sequence(trees, mark.line + 1, mark.column + 1)
    raise _Unusual


# Looked up once: _read runs for every node of every file.
_SCALAR_NODE, _MAPPING_NODE, _SEQUENCE_NODE = yaml.ScalarNode, yaml.MappingNode, yaml.SequenceNode
_Scalar, _Mapping, _Sequence = yaml_view.Scalar, yaml_view.Mapping, yaml_view.Sequence
_STR_TAG = yaml_view.STR_TAG
_resolve_plain, _as_value = yaml_view.resolve_plain, yaml_view.as_value


def _shape(node: yaml.Node) -> yaml_view.Node | None:
    """Only the positions of a tree the constructor read (values are not sops's reading)."""
    try:
        return _shape_of(node)
    except RecursionError:
        return None


def _shape_of(node: yaml.Node) -> yaml_view.Node:
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    if isinstance(node, yaml.MappingNode):
        return yaml_view.Mapping([_shape_of(n) for pair in node.value for n in pair], line, column)
    if isinstance(node, yaml.SequenceNode):
        return yaml_view.Sequence([_shape_of(item) for item in node.value], line, column)
    raw = node.value if isinstance(node.value, str) else ""
    return yaml_view.Scalar(raw, None, bool(getattr(node, "style", None)), line, column)


def display_path(path: Path) -> str:
    """The path as users expect to see it: relative to the working directory if inside it."""
    text = os.fspath(path)
    # What relpath answers for a normal absolute path under the working directory, without its
    # two abspath calls: this runs for every file.
    inside = os.path.join(os.getcwd(), "")
    if text.startswith(inside) and os.path.isabs(text) and os.path.normpath(text) == text:
        rest = text[len(inside):]
        if rest and not rest.startswith(os.sep):
            return rest
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)


def load_file(path: Path) -> Declaration | Finding:
    shown = display_path(path)

    def finding(message: str, line: int = 1, column: int = 1, rule: str = "yaml") -> Finding:
        return Finding("error", rule, shown, line, column, "$", message)

    try:
        raw = _read_regular(path)
    except OSError as exc:
        return finding(f"cannot read file: {exc.strerror}")
    except ValueError as exc:
        return finding(str(exc))
    return load_bytes(raw, shown)


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file; never blocks on a FIFO, never follows a link swapped in."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file; connection files are plain files")
        if info.st_size > MAX_FILE_BYTES:
            raise ValueError(f"file is {info.st_size:,} bytes; connection files are capped at "
                             f"{MAX_FILE_BYTES:,}")
        # The size fstat saw, and one byte more to notice a file that grew since: asking for the
        # whole cap at once would allocate a megabyte for every file.
        raw = handle.read(info.st_size + 1)
        if len(raw) > info.st_size:
            raw += handle.read(MAX_FILE_BYTES + 1 - len(raw))
        return raw


def load_bytes(raw: bytes, shown: str) -> Declaration | Finding:
    def finding(message: str, line: int = 1, column: int = 1, rule: str = "yaml") -> Finding:
        return Finding("error", rule, shown, line, column, "$", message)

    if b"\0" in raw:
        return finding("binary file (contains NUL bytes), not YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return finding("file is not valid UTF-8", line, column)
    try:
        data, source = parse_located(text)
    except YamlProblem as problem:
        return Finding("error", problem.rule, shown, problem.line, problem.column, problem.path,
                       problem.message)
    if data is None:
        return finding("file is empty; a connection file needs apiVersion, provider, metadata and spec")
    if not isinstance(data, dict):
        kind = "list" if isinstance(data, list) else type(data).__name__
        return Finding("error", "schema", shown, 1, 1, "$", f"top level must be a mapping, not a {kind}")
    return Declaration(file=shown, data=data, digest=hashlib.sha256(raw).hexdigest(), text=text,
                       source=source)


def load_all(paths: Iterable[Path]) -> Iterator[Declaration | Finding]:
    for path in paths:
        yield load_file(path)


def source_of(text: str) -> Parsed:
    """The positions in a text that is not a loaded file (one made in memory), however
    StrictLoader would judge it."""
    try:
        root = yaml.compose(text, Loader=yaml.CSafeLoader)
    except (yaml.YAMLError, RecursionError):
        return Parsed(None, False)
    return Parsed(_shape(root) if root is not None else None, False)


def locate(text: str, parts: Sequence[str | int], *, at_key: bool = False) -> tuple[int, int]:
    """Line and column (1-based) of the node at ``parts`` in a text that is not a loaded file's
    (a Declaration's ``position`` answers for its own file)."""
    return source_of(text).position(parts, at_key=at_key)


def path_at(root: yaml.Node | None, mark: yaml.Mark) -> list[str | int]:
    """The JSON path of the node (or mapping key) that starts at ``mark``."""

    def walk(node: yaml.Node, parts: list[str | int]) -> list[str | int] | None:
        if node.start_mark.index == mark.index and not isinstance(node, yaml.MappingNode):
            return parts
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.start_mark.index == mark.index:
                    return [*parts, key.value]
                found = walk(value, [*parts, key.value])
                if found is not None:
                    return found
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                found = walk(item, [*parts, index])
                if found is not None:
                    return found
        return None

    try:
        return (walk(root, []) if root is not None else None) or []
    except RecursionError:
        return []
