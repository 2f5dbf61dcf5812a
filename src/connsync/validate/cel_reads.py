"""What a CEL expression reads of a connection, found from its tokens, and the same expressions
with the map fields they read as variables of their own.

Two uses, both for speed (see :class:`connsync.validate.cel.Evaluator`): an expression's outcome
depends only on what it reads, so it is evaluated once per distinct input; and the engine takes a
map in at the cost of several strings, so fields are handed to it one by one. Both are sound only
if nothing read is missed, so this errs one way: a map variable (``labels``, ``spec``) used only
as ``spec.field`` (also inside ``has(spec.field)``) reads those fields; used any other way
(``size(spec)``, ``spec["x"]``, ``"x" in spec``, ``spec.exists(...)``, ``[spec][0]``, a
comprehension's variable of that name), or in an expression whose tokens are not all covered
here, it is read whole, and left as it is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence
from typing import NamedTuple

# (variable, field): field None for the whole variable
Read = tuple[str, "str | None"]
MAPS = ("labels", "spec")


def _quoted(*, raw: bool) -> str:
    """CEL's four forms of quoted text (cel-spec, langdef.md: one or three quotes of either kind);
    a raw one has no escapes, so a backslash does not hide the closing quote."""
    forms = []
    for q in ("'", '"'):
        long_char = "." if raw else r"(?:\\.|[^\\])"
        char = f"[^{q}\\n]" if raw else f"(?:\\\\.|[^\\\\{q}\\n])"
        forms += [f"{q * 3}{long_char}*?{q * 3}", f"{q}{char}*{q}"]
    return "(?:" + "|".join(forms) + ")"


@functools.cache
def _token() -> re.Pattern[str]:
    """One token (compiled when a policy has an expression: ~2 ms that validate without one
    does not pay)."""
    return re.compile(
        r"(?P<skip>\s+|//[^\n]*)"
        rf"|(?P<literal>[bB]?[rR]{_quoted(raw=True)}|[bB]?{_quoted(raw=False)})"
        r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)"
        r"|(?P<number>[0-9](?:[0-9A-Za-z_]|\.(?=[0-9]))*)"
        r"""|(?P<punct>[^\s\w'"`])""",
        re.DOTALL)


class Token(NamedTuple):
    kind: str  # literal, ident, number or punct
    text: str
    start: int
    end: int


_NOTHING = Token("", "", 0, 0)


class Select(NamedTuple):
    """``variable.field`` in an expression, and where: the span to replace by the field's value,
    or by whether the field is there when it is the argument of ``has()``."""

    variable: str
    field: str
    start: int
    end: int
    presence: bool  # has(variable.field)


def reads(source: str, variables: Collection[str], engine_names: Collection[str]) -> tuple[Read, ...]:
    """What ``source`` reads of ``variables``; ``engine_names`` are the identifiers the engine
    found in it (free or bound by a comprehension)."""
    tokens = _tokens(source)
    if tokens is None:
        return tuple((name, None) for name in variables)
    named = {t.text for t in tokens if t.kind == "ident"} | set(engine_names)
    used = [name for name in variables if name in named]
    selects = _selects(tokens, [name for name in used if name in MAPS])
    found: list[Read] = []
    for name in used:
        fields = selects.get(name)
        found += [(name, None)] if fields is None else sorted({(name, s.field) for s in fields})
    return tuple(found)


def _selects(tokens: Sequence[Token], maps: Sequence[str]) -> dict[str, list[Select] | None]:
    """Each map variable's selects, or None for one used any other way."""
    found: dict[str, list[Select] | None] = {name: [] for name in maps}
    for i, token in enumerate(tokens):
        selects = found.get(token.text)
        if token.kind != "ident" or selects is None:
            continue
        before = tokens[i - 1] if i else _NOTHING
        if before.text == "." and before.kind == "punct":
            owner = tokens[i - 2] if i > 1 else _NOTHING
            if (owner.kind in ("literal", "number") or owner.text in (")", "]", "}")
                    or (owner.kind == "ident" and owner.text != "in")):
                continue  # a field of that name, of something else
            found[token.text] = None  # ".spec", the variable named from the root (compile_expression
            # refuses it today; read whole, this function stays sound on its own)
            continue
        dot, field = [*tokens[i + 1:i + 3], _NOTHING, _NOTHING][:2]
        following = tokens[i + 3] if i + 3 < len(tokens) else _NOTHING
        if (dot.kind, dot.text, field.kind) != ("punct", ".", "ident") or following.text in ("(", "{"):
            found[token.text] = None  # spec[...], size(spec), spec.exists(...), spec.X{...}, ...
            continue
        opening = tokens[i - 2] if i > 1 else _NOTHING
        outer = tokens[i - 3] if i > 2 else _NOTHING
        if (before.text == "(" and opening.text == "has" and opening.kind == "ident"
                and following.text == ")" and outer.text != "."):
            selects.append(Select(token.text, field.text, opening.start, following.end, True))
        else:
            selects.append(Select(token.text, field.text, token.start, field.end, False))
    return found


class Flat(NamedTuple):
    """Expressions in which each field a map variable is read by is a variable of its own, and
    what each of those variables holds: (name, map variable, field, presence)."""

    sources: tuple[str, ...]
    inputs: tuple[tuple[str, str, str, bool], ...]


@functools.lru_cache(maxsize=256)
def flatten(sources: tuple[str, ...], maps: tuple[str, ...]) -> Flat | None:
    """``sources`` with the fields of ``maps`` as variables (the engine takes a map
    in at the cost of several strings); None when one of them reads such a map whole. The names
    are ones no expression uses, so no comprehension can hide them."""
    scanned = [(source, _tokens(source)) for source in sources]
    if any(tokens is None for _, tokens in scanned):
        return None
    taken = {t.text for _, tokens in scanned for t in tokens or () if t.kind == "ident"}
    prefix = "_f"
    while any(name.startswith(prefix) for name in taken):
        prefix += "_"
    inputs: dict[tuple[str, str, bool], str] = {}
    parts = []
    for source, tokens in scanned:
        selects = _selects(tokens or (), maps)
        if any(found is None for found in selects.values()):
            return None
        text, position = [], 0
        for select in sorted((s for found in selects.values() for s in found or ()),
                             key=lambda s: s.start):
            key = (select.variable, select.field, select.presence)
            name = inputs.setdefault(key, f"{prefix}{len(inputs)}")
            text += [source[position:select.start], f" {name} "]  # never glued to a neighbour
            position = select.end
        parts.append("".join([*text, source[position:]]))
    return Flat(tuple(parts),
                tuple((name, variable, field, presence)
                      for (variable, field, presence), name in inputs.items()))


@functools.lru_cache(maxsize=256)
def _tokens(source: str) -> tuple[Token, ...] | None:
    """The expression's tokens, or None when something in it is not covered here (a backquoted
    field name, a letter outside ASCII)."""
    tokens = []
    position = 0
    while position < len(source):
        match = _token().match(source, position)
        if match is None or match.lastgroup is None:
            return None
        if match.lastgroup != "skip":
            tokens.append(Token(match.lastgroup, match.group(), match.start(), match.end()))
        position = match.end()
    return tuple(tokens)
