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
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

MAX_EXPRESSION = 2000
MAX_COMPREHENSIONS = 2
MAX_SECONDS = 0.25
_MACROS = re.compile(r"\.\s*(all|exists|exists_one|map|filter)\s*\(")
# What an expression may name: the connection, as the policy's documentation describes it.
VARIABLES = ("provider", "name", "description", "labels", "spec")


@functools.cache
def _engine() -> Any:
    """The compiled extension, without the package's ``__init__``: that one imports the package's
    command-line interface (typer, rich, prompt_toolkit), ~250 ms that validate does not need."""
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
    loader.exec_module(module)
    return module


def context(variables: Mapping[str, Any]) -> Any:
    """The variables in the engine's own form, converted once for every expression that reads the
    same connection (half the cost of handing each evaluation a dict)."""
    return _engine().Context(dict(variables))


class Program(NamedTuple):
    source: str
    compiled: Any

    def evaluate(self, variables: Any) -> bool | str:
        """True or False, or why the expression could not be evaluated (never a pass);
        ``variables`` made by :func:`context`."""
        started = time.perf_counter()
        try:
            result = self.compiled.execute(variables)
        except KeyError as exc:  # a field or label the connection does not have
            return f"no such key: {exc.args[0] if exc.args else '?'} (test it first with has(...))"
        except Exception as exc:  # the engine's errors: ValueError, RuntimeError, TypeError
            return _first_line(str(exc)) or type(exc).__name__
        took = time.perf_counter() - started
        if took > MAX_SECONDS:
            return f"evaluation took {took:.2f} s, over the bound of {MAX_SECONDS} s"
        if not isinstance(result, bool):
            return f"the expression must give true or false, not a {type(result).__name__}"
        return result


class Combined(NamedTuple):
    """Several expressions as one program giving the list of their values (each already compiled on
    its own), and the variables it names: the engine converts each variable handed to it (~3 us a
    string), and one that no expression names cannot change a value."""

    compiled: Any
    names: tuple[str, ...]

    def all_true(self, variables: Mapping[str, Any]) -> bool:
        """Whether every expression is true, in one evaluation: one conversion of the variables
        instead of one per expression. False means "look at each on its own" (one is false, or
        failed)."""
        started = time.perf_counter()
        try:
            values = self.compiled.execute({name: variables[name] for name in self.names
                                            if name in variables})
        except Exception:  # one of them failed: each is evaluated on its own, to say which and why
            return False
        return time.perf_counter() - started <= MAX_SECONDS and all(v is True for v in values)


@functools.lru_cache(maxsize=64)
def _together(sources: tuple[str, ...]) -> Combined:
    compiled = _engine().compile("[" + ", ".join(f"({s})" for s in sources) + "]")
    return Combined(compiled, tuple(compiled.variables()))


def combine(programs: tuple[Program, ...]) -> Combined:
    return _together(tuple(p.source for p in programs))


def all_true(programs: tuple[Program, ...], variables: Mapping[str, Any]) -> bool:
    """:meth:`Combined.all_true` of ``programs``."""
    return combine(programs).all_true(variables)


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
    unknown = sorted(set(_free_variables(compiled)) - set(VARIABLES))
    if unknown:
        return (f"unknown variable {unknown[0]!r}; an expression may use {', '.join(VARIABLES)}")
    return Program(source, compiled)


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
