"""Find connection files and load them safely.

Per-file problems are values (a :class:`Finding`), never exceptions, so one
hostile file cannot hide the findings of the others. Parsing uses libyaml's
``CSafeLoader`` for speed; the node tree that maps a JSON path back to a line
is only composed for files that have findings (:func:`locate`).
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

from connsync.model import Declaration, Finding
from connsync.sops import yaml_view as sops_yaml

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
    """``CSafeLoader`` that rejects duplicate keys and every alias.

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
        self.flatten_mapping(node)
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

    def construct_plain_scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            return sops_yaml.read_plain(str(node.value))
        except sops_yaml.Unsupported:
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


class YamlProblem(Exception):
    """Why a text is not acceptable YAML, and where (1-based)."""

    def __init__(self, message: str, line: int = 1, column: int = 1, rule: str = "yaml",
                 path: str = "$") -> None:
        super().__init__(message)
        self.message, self.line, self.column, self.rule, self.path = message, line, column, rule, path


def parse(text: str) -> Any:
    """Load one YAML document with :class:`StrictLoader`; every failure is a YamlProblem."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        if mark is None:
            raise YamlProblem(message) from None
        if text[mark.index : mark.index + 1] == "\t":
            message = "tab character: YAML indentation must use spaces"
        line, column = mark.line + 1, mark.column + 1
        if isinstance(exc, _RefusedNode):
            raise YamlProblem(message, line, column, exc.rule, json_path(path_at(text, mark))) from None
        raise YamlProblem(message, line, column) from None
    except (yaml.YAMLError, RecursionError) as exc:  # unmarked reader errors, absurd nesting
        raise YamlProblem(f"invalid YAML: {type(exc).__name__}") from None
    except (ValueError, TypeError, AttributeError, OverflowError, KeyError, IndexError):
        # PyYAML's constructors raise these for explicitly tagged values that do
        # not parse (`!!timestamp soon`, `!!int x`); found by the property tests.
        raise YamlProblem("a value with an explicit YAML tag (!!int, !!timestamp, ...) "
                          "does not parse") from None


def display_path(path: Path) -> str:
    """The path as users expect to see it: relative to the working directory if inside it."""
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
        return handle.read(MAX_FILE_BYTES + 1)


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
        data = parse(text)
    except YamlProblem as problem:
        return Finding("error", problem.rule, shown, problem.line, problem.column, problem.path,
                       problem.message)
    if data is None:
        return finding("file is empty; a connection file needs apiVersion, provider, metadata and spec")
    if not isinstance(data, dict):
        kind = "list" if isinstance(data, list) else type(data).__name__
        return Finding("error", "schema", shown, 1, 1, "$", f"top level must be a mapping, not a {kind}")
    return Declaration(file=shown, data=data, digest=hashlib.sha256(raw).hexdigest(), text=text)


def load_all(paths: Iterable[Path]) -> Iterator[Declaration | Finding]:
    for path in paths:
        yield load_file(path)


def json_path(parts: Iterable[str | int]) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def locate(text: str, parts: Sequence[str | int], *, at_key: bool = False) -> tuple[int, int]:
    """Line and column (1-based) of the node at ``parts``; of its key with ``at_key``.

    Walks as deep as the path exists, so a missing field points at its parent.
    """
    node: yaml.Node | None = yaml.compose(text, Loader=yaml.CSafeLoader)
    if node is None:
        return 1, 1
    mark = node.start_mark
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            key_node, node = match
            mark = key_node.start_mark if (last and at_key) else node.start_mark
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            mark = node.start_mark
        else:
            break
    return mark.line + 1, mark.column + 1


def path_at(text: str, mark: yaml.Mark) -> list[str | int]:
    """The JSON path of the node (or mapping key) that starts at ``mark``."""
    root = yaml.compose(text, Loader=yaml.CSafeLoader)

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
    except (yaml.YAMLError, RecursionError):
        return []
