"""CEL (Common Expression Language) for policy rules: compiled once, evaluated with bounds.

The engine is the Rust ``cel`` crate through the ``common-expression-language`` package. CEL is not
Turing-complete (no loops, no recursion, no I/O), so what remains to bound is the size of the work:
- the expression: at most :data:`MAX_EXPRESSION` characters (also the policy schema's limit) and
  :data:`MAX_COMPREHENSIONS` comprehension macros (``all``, ``exists``, ``map``, ...), so that its cost
  is at most quadratic in its input;
- the input: what a connection file holds, which the loader caps at 1 MiB;
- the time: an evaluation that still took longer than :data:`MAX_SECONDS` is an error for that
  connection (the Rust engine cannot be interrupted, so with the two bounds above this is a guard
  against a pathological case, reported, never a pass);
- the result: it must be a boolean; anything else is an error, never a pass.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import operator
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # imported where used: validate without an expression does not need it
    from connsync.validate.cel_reads import Read

MAX_EXPRESSION = 2000
MAX_COMPREHENSIONS = 2
MAX_SECONDS = 0.25
_MACROS = re.compile(r"\.\s*(all|exists|exists_one|map|filter)\s*\(")
# What an expression may name: the connection, as the policy's documentation describes it.
VARIABLES = ("provider", "name", "description", "labels", "spec")
# and CEL's type names (type(spec.port) == int), which the engine lists among the variables
_TYPES = frozenset({"bool", "bytes", "double", "int", "list", "map", "null_type", "string", "type",
                    "uint"})


@functools.cache
def _engine() -> Any:
    """The compiled extension, without the package's ``__init__``: that one imports the package's
    command-line interface (typer, rich, prompt_toolkit), ~250 ms that validate does not need.

    It is registered as ``cel.cel``, where the package's own import looks for it: the extension
    can be initialised once per process (a second time it panics setting up its logging)."""
    loaded = sys.modules.get("cel.cel")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("cel")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the common-expression-language package is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    binary = next(folder.glob("cel.*.so"), None) or next(folder.glob("cel*.pyd"), None)
    if binary is None:
        import cel  # an unusual layout: the public import, at its cost

        return cel
    loader = importlib.machinery.ExtensionFileLoader("cel.cel", str(binary))
    module_spec = importlib.util.spec_from_file_location("cel.cel", binary, loader=loader)
    if module_spec is None:
        raise ImportError(f"cannot load {binary}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["cel.cel"] = module
    try:
        loader.exec_module(module)
    except BaseException:
        del sys.modules["cel.cel"]
        raise
    return module


Outcome = bool | str  # true, false, or why the expression could not be evaluated


class Overtime(str):
    """An evaluation over :data:`MAX_SECONDS`: a finding for that connection, and not remembered
    for others that read the same values (a busy machine, a collection, may have slowed it)."""


class Program(NamedTuple):
    source: str
    compiled: Any
    reads: tuple[Read, ...]  # what it reads of a connection (see cel_reads)

    def evaluate(self, connection: Mapping[str, Any]) -> Outcome:
        """True or False, or why the expression could not be evaluated (never a pass), given only
        what it reads of ``connection`` (a value it does not read cannot make it fail)."""
        started = time.perf_counter()
        try:
            result = self.compiled.execute(_given(self.reads, connection))
        except KeyError as exc:  # a field or label the connection does not have
            return f"no such key: {exc.args[0] if exc.args else '?'} (test it first with has(...))"
        except Exception as exc:  # the engine's errors: ValueError, RuntimeError, TypeError
            return _first_line(str(exc)) or type(exc).__name__
        took = time.perf_counter() - started
        if took > MAX_SECONDS:
            return Overtime(f"evaluation took {took:.2f} s, over the bound of {MAX_SECONDS} s")
        if not isinstance(result, bool):
            return f"the expression must give true or false, not a {type(result).__name__}"
        return result


def _given(reads: tuple[Read, ...], connection: Mapping[str, Any]) -> dict[str, Any]:
    """What ``reads`` reads of ``connection``: a variable read whole as it is, a map read by
    fields as a map of those of them it has (so that has() answers as on the whole map)."""
    given: dict[str, Any] = {}
    for name, field in reads:
        value = connection.get(name, _ABSENT)
        if field is None:
            if value is not _ABSENT:
                given[name] = value
        elif isinstance(value, dict):
            part = given.setdefault(name, {})
            if field in value:
                part[field] = value[field]
    return given


class Evaluator:
    """Expressions over many connections, each distinct input evaluated once.

    Most of the engine's time goes into taking values in (it tries each string as a bool, an int,
    a float and a date before it takes it as a string: ~2 us a value), and an outcome depends only
    on what its expression reads (:attr:`Program.reads`): ``spec.default_region.startsWith("eu-")``
    has a handful of inputs however many connections there are. So outcomes are remembered by the
    values their expression reads, and what is still unknown for a connection is evaluated in one
    program that is given only those values."""

    def __init__(self) -> None:
        self._known: dict[str, dict[Any, Outcome]] = {}

    def together(self, programs: tuple[Program, ...]) -> Expressions:
        """``programs``, to be evaluated on many connections; outcomes are shared by all of this
        evaluator's :class:`Expressions`."""
        return Expressions(programs, [self._known.setdefault(p.source, {}) for p in programs])


class Expressions:
    """Some expressions (those of the rules that match a kind of connection), what they read
    between them, and each one's part of that."""

    def __init__(self, programs: tuple[Program, ...], known: list[dict[Any, Outcome]]) -> None:
        self.programs = programs
        self._reads = list(dict.fromkeys(read for p in programs for read in p.reads))
        at = {read: index for index, read in enumerate(self._reads)}
        self._keys = [_picker(tuple(at[read] for read in p.reads)) for p in programs]
        self._known = known
        self._unknown: dict[tuple[int, ...], _Unknown] = {}

    def outcomes(self, variables: Mapping[str, Any]) -> list[Outcome]:
        """Each expression's outcome for one connection. ``variables`` are the connection as an
        expression sees it (every one of VARIABLES; no secret field; ``labels`` and ``spec`` are
        dicts)."""
        values = [variables[name] if field is None else variables[name].get(field, _ABSENT)
                  for name, field in self._reads]
        if not _PLAIN.issuperset(map(type, values)):  # not all strings: values with their type
            values = [v if type(v) is str or v is _ABSENT else _frozen(v) for v in values]
            if _UNKEYED in values:  # a date, a set: nothing to remember it by (nor for the
                return [program.evaluate(variables) for program in self.programs]  # engine)
        keys = [key(values) for key in self._keys]
        outcomes: list[Any] = list(map(dict.get, self._known, keys))
        if None not in outcomes:
            return outcomes
        missing = tuple([i for i, outcome in enumerate(outcomes) if outcome is None])
        unknown = self._unknown.get(missing)
        if unknown is None:
            unknown = self._unknown[missing] = _Unknown(tuple(self.programs[i] for i in missing))
        for i, outcome in zip(missing, unknown.evaluate(variables), strict=True):
            outcomes[i] = outcome
            if not isinstance(outcome, Overtime):
                self._known[i][keys[i]] = outcome
        return outcomes


def _picker(indexes: tuple[int, ...]) -> Callable[[list[Any]], Any]:
    """An expression's key among the values its plan's expressions read."""
    if not indexes:
        return lambda values: ()
    return operator.itemgetter(*indexes)


class _Unknown:
    """Expressions evaluated together, given only what they read: the fields of a map each as a
    variable of its own (:func:`cel_reads.flatten`) when they read it by fields alone."""

    def __init__(self, programs: tuple[Program, ...]) -> None:
        from connsync.validate.cel_reads import MAPS, flatten

        self.programs = programs
        whole = tuple(dict.fromkeys(name for p in programs for name, field in p.reads if field is None))
        flat = flatten(tuple(p.source for p in programs), tuple(m for m in MAPS if m not in whole))
        if flat is None:  # given every variable they read, as it is
            whole = tuple(dict.fromkeys(name for p in programs for name, _ in p.reads))
        self._whole = whole
        self._inputs = flat.inputs if flat is not None else ()
        # Each on a line of its own: a // comment in one ends with it. A value that is not a
        # boolean has no && (the engine's "no such overload"): each is then evaluated on its own.
        self._together = _together(" && ".join(
            f"({source}\n)" for source in (flat.sources if flat is not None
                                            else [p.source for p in programs])))

    def evaluate(self, variables: Mapping[str, Any]) -> list[Outcome]:
        """Each program's outcome: in one evaluation when all are true in time (the values
        converted once for all), else each on its own, which says which failed and why."""
        given = {name: variables[name] for name in self._whole}
        for name, variable, field, presence in self._inputs:
            value = variables[variable]
            if presence:
                given[name] = field in value
            elif field in value:  # else not given: reading it fails as reading the field would
                given[name] = value[field]
        if self._together is not None:
            started = time.perf_counter()
            try:
                holds = self._together.execute(given)
            except Exception:  # one of them failed: evaluated on its own below, which says why
                holds = False
            if holds is True and time.perf_counter() - started <= MAX_SECONDS:
                return [True] * len(self.programs)
        return [program.evaluate(variables) for program in self.programs]


class _Absent:
    """A field the connection does not have (has() tells it apart from any value)."""


_ABSENT = _Absent()
_PLAIN = frozenset([str, _Absent])  # a key's values as they are (no other type equals a string)
_UNKEYED = ("unkeyed",)  # a value that cannot be part of a key


def _frozen(value: Any) -> Any:
    """``value`` as part of a key: equal to another only when CEL cannot tell the two apart. A
    string is itself (no other type equals one); ``1``, ``1.0`` and ``true`` are equal in Python,
    not in CEL, so other values carry their type."""
    kind = type(value)
    if kind is str or kind is bool or kind is int or value is None:
        return (kind, value)
    if kind is float:
        return (kind, repr(value))  # -0.0 apart from 0.0
    if kind is dict:  # in order: a map's order shows in a comprehension
        items = tuple((_frozen(k), _frozen(v)) for k, v in value.items())
        return _UNKEYED if any(_UNKEYED in item for item in items) else (kind, items)
    if kind is list:
        elements = tuple(_frozen(v) for v in value)
        return _UNKEYED if _UNKEYED in elements else (kind, elements)
    return _UNKEYED


@functools.lru_cache(maxsize=256)
def _together(source: str) -> Any:
    """The program of expressions evaluated together (whether all are true), or None if it does
    not compile (each is then evaluated on its own)."""
    try:
        return _engine().compile(source)
    except Exception:  # the engine's ValueError; never expected of expressions that compiled
        return None


def compile_expression(source: str) -> Program | str:
    """The compiled expression, or why it does not compile."""
    if len(source) > MAX_EXPRESSION:
        return f"longer than {MAX_EXPRESSION} characters"
    comprehensions = len(_MACROS.findall(source))
    if comprehensions > MAX_COMPREHENSIONS:
        return (f"{comprehensions} comprehension macros (all, exists, exists_one, map, filter); at most "
                f"{MAX_COMPREHENSIONS}, so that evaluation stays bounded")
    try:
        compiled = _engine().compile(source)
    except Exception as exc:  # ValueError with the parser's message
        reason = str(exc).removeprefix(f"Failed to parse expression {source!r}: ")
        return _first_line(reason) or "syntax error"
    unknown = sorted(set(_free_variables(compiled)) - set(VARIABLES) - _TYPES)
    if unknown:
        return (f"unknown variable {unknown[0]!r}; an expression may use {', '.join(VARIABLES)}")
    from connsync.validate.cel_reads import reads

    return Program(source, compiled, reads(source, VARIABLES, compiled.variables()))


def _free_variables(compiled: Any) -> list[str]:
    """Variables the expression reads, less the names its comprehensions bind (``x`` in
    ``labels.all(x, ...)``), which the engine lists among them."""
    names = list(compiled.variables())
    bound = set(re.findall(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,",
                           compiled.source))
    return [n for n in names if n not in bound]


def _first_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(lines[:2])[:300]
