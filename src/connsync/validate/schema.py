"""Bundled JSON Schemas, cached validators, and schema errors as Findings.

Two validators read the same schemas. Python's jsonschema explains: every error, located, the best
branch of an ``anyOf``; it costs about 0.1 ms a document and a tenth of a second to import, and most
runs find every file valid, with nothing to explain. jsonschema-rs (the Rust implementation of the
same drafts) compiles the schemas once per run and answers "valid" in microseconds: when it says
valid, the document is; when it says anything else, or cannot take a value at all (a date, a set, a
non-string key, ``inf``), jsonschema decides and explains, and is imported only then.

So the quick check may be stricter than jsonschema, never laxer, and two things make it so:
``pattern`` is evaluated by Python's ``re`` (jsonschema's engine; Rust's ``\\s`` and ``$`` differ),
and only plain JSON values are handed over (jsonschema-rs reads a tuple, which PyYAML's ``!!pairs``
makes, as an array; jsonschema does not). tests/test_schema_quick.py compares the two on generated
documents.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connsync import providers
from connsync.errors import UsageError
from connsync.model import Declaration, Finding, SourceMap, json_path

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

ENVELOPE = "connection"
CONFIG = "config"  # connsync.yaml's own schema, not a provider
POLICY = "policy"  # an organisation policy file's schema (kind: Policy), not a provider
# The files carry no $id so that editors resolve their relative $refs next to
# the file; in process they live under this base URI.
_BASE_URI = "https://schemas.connsync.invalid/"
_SUFFIX = ".schema.json"
# A value longer than this is described, not quoted (a 10,000-character name).
_QUOTE_AT_MOST = 100


@functools.cache
def all_schemas() -> dict[str, dict[str, Any]]:
    """name -> schema, for every bundled ``*.schema.json`` (each is checked against the metaschema
    before jsonschema uses it, and by tests/test_schemas.py)."""
    folder: Any = Path(__file__).resolve().parent.parent / "schemas"
    if not folder.is_dir():  # imported from a zip: importlib.resources reads it there
        from importlib import resources  # (~15 ms to import: not for an installed package)

        folder = resources.files("connsync") / "schemas"
    schemas: dict[str, dict[str, Any]] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(_SUFFIX):
            schemas[entry.name.removesuffix(_SUFFIX)] = json.loads(entry.read_text(encoding="utf-8"))
    return schemas


@functools.cache
def _checked_schemas() -> dict[str, dict[str, Any]]:
    """all_schemas(), each checked against the metaschema: what jsonschema's validators are built on."""
    from jsonschema import Draft202012Validator

    for schema in all_schemas().values():
        Draft202012Validator.check_schema(schema)
    return all_schemas()


def provider_names() -> list[str]:
    return list(_providers())


@functools.cache
def _providers() -> tuple[str, ...]:
    # Asked for every document: worked out once.
    return tuple(name for name in all_schemas() if name not in (ENVELOPE, CONFIG, POLICY))


def get_schema(name: str) -> dict[str, Any]:
    try:
        return all_schemas()[name]
    except KeyError:
        known = ", ".join(provider_names())
        raise UsageError(f"unknown provider {name!r}; known providers: {known}") from None


@functools.cache
def secret_fields(provider: str) -> frozenset[str]:
    """The provider's writeOnly fields: what SOPS encrypts and output masks."""
    props = all_schemas().get(provider, {}).get("properties", {})
    return frozenset(name for name, prop in props.items() if prop.get("writeOnly"))


def all_secret_fields() -> frozenset[str]:
    return frozenset().union(*(secret_fields(p) for p in provider_names()))


@functools.cache
def _validator(name: str, *, dispatch: bool = True) -> Draft202012Validator:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    registry: Registry[Any] = Registry().with_resources(
        (_BASE_URI + n + _SUFFIX, Resource.from_contents(s, default_specification=DRAFT202012))
        for n, s in _checked_schemas().items()
    )
    root = {**all_schemas()[name], "$id": _BASE_URI + name + _SUFFIX}
    if not dispatch:
        root.pop("allOf", None)
    return Draft202012Validator(root, registry=registry)


# --- the quick check: proves a document valid, or passes it on --------------


class _PythonPattern:
    """``pattern`` as jsonschema evaluates it: ``re.search`` on strings, nothing on other types."""

    def __init__(self, parent_schema: dict[str, Any], value: str, schema_path: list[str | int]) -> None:
        self._search = re.compile(value).search

    def validate(self, instance: Any) -> None:
        if isinstance(instance, str) and self._search(instance) is None:
            raise ValueError("does not match the pattern")


@functools.cache
def _quick_validator(name: str, dispatch: bool) -> Any:
    import jsonschema_rs  # ~20 ms: for runs that check a document, not for every command

    registry = jsonschema_rs.Registry([(_BASE_URI + n + _SUFFIX, s) for n, s in all_schemas().items()])
    root = {**all_schemas()[name], "$id": _BASE_URI + name + _SUFFIX}
    if not dispatch:
        root.pop("allOf", None)
    # No format assertions, as jsonschema without a format checker: annotations in draft 2020-12.
    return jsonschema_rs.validator_for(root, registry=registry, validate_formats=False,
                                       keywords={"pattern": _PythonPattern})


def proves_valid(name: str, instance: Any, *, dispatch: bool = True) -> bool:
    """True only if ``instance`` is valid against the bundled schema ``name`` (without the
    envelope's ``allOf`` when ``dispatch`` is false); False means "ask jsonschema"."""
    if not _plain_json(instance):
        return False
    try:
        return bool(_quick_validator(name, dispatch).is_valid(instance))
    except (ValueError, TypeError, OverflowError, RecursionError):
        return False


def _plain_json(value: Any, depth: int = 0) -> bool:
    """Only dicts with string keys, lists, strings, numbers, booleans and None: what both
    validators read alike. The depth cap keeps hostile nesting out of the recursion."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        return True
    if depth > 64:
        return False
    if kind is dict:
        return all(type(key) is str and _plain_json(item, depth + 1) for key, item in value.items())
    if kind is list:
        return all(_plain_json(item, depth + 1) for item in value)
    return False


# --- connection files ----------------------------------------------------------


def check(decl: Declaration) -> tuple[Declaration, list[Finding]]:
    """The schema stage for one declaration: its findings, and the declaration as this stage
    hands it forward, with its provider's secret fields (None for a provider without a schema)."""
    provider = decl.data.get("provider")
    known = isinstance(provider, str) and provider in _providers()
    checked = replace(decl, secret_fields=secret_fields(provider) if known else None)
    return checked, validate_document(checked)


def validate_document(decl: Declaration) -> list[Finding]:
    """Schema findings for one declaration, each at its own line and column: none when the quick
    check proves it valid, else jsonschema's, which :func:`explain_document` locates."""
    return [] if quick_valid(decl) else explain_document(decl)


def _dispatched(provider: Any, spec: Any) -> bool:
    """The envelope's if/then dispatch on ``provider`` is for editors; here the provider's schema is
    applied to ``spec`` directly, which gives the same errors at about half the cost."""
    return isinstance(provider, str) and provider in _providers() and isinstance(spec, dict)


def quick_valid(decl: Declaration) -> bool:
    """True only if jsonschema would find no error in ``decl``: the quick check, on the same two
    schemas :func:`explain_document` applies."""
    provider, spec = decl.data.get("provider"), decl.data.get("spec")
    return proves_valid(ENVELOPE, decl.data, dispatch=False) and (
        not _dispatched(provider, spec) or proves_valid(str(provider), spec))


def explain_document(decl: Declaration) -> list[Finding]:
    """jsonschema's findings for one declaration, without the quick check."""
    provider, spec = decl.data.get("provider"), decl.data.get("spec")
    errors = list(_validator(ENVELOPE, dispatch=False).iter_errors(decl.data))
    if _dispatched(provider, spec):
        for error in _validator(str(provider)).iter_errors(spec):
            error.path.appendleft("spec")
            errors.append(error)
    if not errors:
        return []
    name = provider if isinstance(provider, str) else ""
    findings: list[Finding] = []
    # A field that needs another says so at its own line; the object's "one of these sets" error
    # would only repeat the same mistake.
    needing = {tuple(e.absolute_path) for e in errors if e.validator == "dependentRequired"}
    for error in errors:
        if error.validator == "dependentRequired":
            findings.extend(_dependency_findings(decl, error, name))
        elif _is_alternatives(error):
            if tuple(error.absolute_path) not in needing:
                findings.append(_alternatives_finding(decl, error))
        else:
            for leaf in _leaf_errors(iter([error])):
                findings.extend(_to_findings(decl, leaf, name))
    return findings


def _is_alternatives(error: ValidationError) -> bool:
    """An ``anyOf`` of ``required`` sets: the object must hold one of several groups of fields."""
    return error.validator == "anyOf" and bool(error.context) and all(
        c.validator == "required" for c in error.context)


def _alternatives_finding(decl: Declaration, error: ValidationError) -> Finding:
    groups = [" and ".join(branch.get("required", []))
              + (f" ({str(branch['title']).lower()})" if branch.get("title") else "")
              for branch in error.validator_value]
    parts: list[str | int] = list(error.absolute_path)
    line, column = decl.position(parts)
    where = str(parts[-1]) if parts else "the document"
    return Finding("error", "schema", decl.file, line, column, json_path(parts),
                   f"{where} needs {' or '.join(groups)}")


def _dependency_findings(decl: Declaration, error: ValidationError, provider: str) -> list[Finding]:
    """``dependentRequired``: each present field that lacks a field it needs, at the field's key."""
    instance = error.instance if isinstance(error.instance, dict) else {}
    parts: list[str | int] = list(error.absolute_path)
    findings = []
    for field, needed in error.validator_value.items():
        missing = [n for n in needed if n not in instance]
        if field not in instance or not missing:
            continue
        hint = providers.get(provider).schema_hint(field, "dependentRequired", missing)
        line, column = decl.position([*parts, field], at_key=True)
        findings.append(Finding("error", "schema", decl.file, line, column, json_path([*parts, field]),
                                f"{field} needs {' and '.join(missing)}" + (f": {hint}" if hint else "")))
    return findings


def _leaf_errors(errors: Iterator[ValidationError]) -> Iterator[ValidationError]:
    """The most specific errors: the relevant branch of any oneOf/anyOf, not the wall."""
    from jsonschema.exceptions import best_match

    for error in errors:
        if error.context:
            yield from _leaf_errors(iter([best_match(error.context)]))
        else:
            yield error


def _to_findings(decl: Declaration, error: ValidationError, provider: str) -> list[Finding]:
    parts: list[str | int] = list(error.absolute_path)
    in_spec = len(parts) >= 2 and parts[0] == "spec"
    field = str(parts[1]) if in_spec else ""
    secret = in_spec and field in secret_fields(provider)

    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        out = []
        for key in error.instance:
            if key in allowed:
                continue
            line, column = decl.position([*parts, key], at_key=True)
            close = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"
            out.append(
                Finding(
                    "error", "schema", decl.file, line, column, json_path([*parts, key]),
                    f"unknown field {key!r}{suggestion}",
                )
            )
        return out

    hint = providers.get(provider).schema_hint(field, str(error.validator), error.instance)
    message: str
    if in_spec and len(parts) == 2 and hint:
        message = f"{field} {hint}"
    elif secret or isinstance(error.instance, (dict, list)) or len(repr(error.instance)) > _QUOTE_AT_MOST:
        # jsonschema quotes the instance; for a secret, or a container that may
        # hold one, say what is wrong without the value.
        message = _without_value(error, field or (str(parts[-1]) if parts else "document"))
    else:
        message = error.message
    line, column = decl.position(parts)
    return [Finding("error", "schema", decl.file, line, column, json_path(parts), message)]


def _without_value(error: ValidationError, what: str) -> str:
    expected = error.validator_value
    match error.validator:
        case "type":
            return f"{what} must be of type {expected}"
        case "required":
            return error.message  # names the missing property, never a value
        case "minLength":
            return f"{what} must not be empty" if expected == 1 else f"{what} is too short"
        case "maxLength":
            return f"{what} is too long"
        case "pattern":
            return f"{what} does not have the expected format"
        case "const" | "enum":
            return f"{what} must be one of: {expected}"
        case _:
            return f"{what} fails the {error.validator!r} check"


# --- connsync.yaml -------------------------------------------------------------


def _finite_number(checker: Any, instance: Any) -> bool:
    # JSON has no .inf or .nan; YAML does, and they pass every minimum/maximum.
    from jsonschema import Draft202012Validator

    return bool(Draft202012Validator.TYPE_CHECKER.is_type(instance, "number")) and math.isfinite(instance)


@functools.cache
def _strict_validator(name: str) -> Any:
    from jsonschema import Draft202012Validator, validators

    checker = Draft202012Validator.TYPE_CHECKER.redefine("number", _finite_number)
    strict = validators.extend(Draft202012Validator, type_checker=checker)
    return strict(_checked_schemas()[name])


def config_problems(data: Any, source: SourceMap) -> list[tuple[int, int, str, str]]:
    """(line, column, JSON path, message) for each way ``data`` breaks config.schema.json."""
    return document_problems(CONFIG, data, source)


def document_problems(name: str, data: Any, source: SourceMap) -> list[tuple[int, int, str, str]]:
    """(line, column, JSON path, message) for each way ``data`` (whose positions ``source`` knows) breaks the
    bundled schema ``name``: connsync.yaml's and the policy files'. None when the quick check proves
    ``data`` valid (it reads no .inf or .nan as a number either), else :func:`explain_problems`'s."""
    return [] if proves_valid(name, data) else explain_problems(name, data, source)


def explain_problems(name: str, data: Any, source: SourceMap) -> list[tuple[int, int, str, str]]:
    """:func:`document_problems` from jsonschema, without the quick check."""
    problems: list[tuple[int, int, str, str]] = []
    errors = _leaf_errors(_strict_validator(name).iter_errors(data))
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        parts: list[str | int] = list(error.absolute_path)
        what = ".".join(map(str, parts)) or f"the {name} file"
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = list(error.schema.get("properties", {}))
            for key in error.instance:
                if key in allowed:
                    continue
                line, column = source.position([*parts, key], at_key=True)
                close = difflib.get_close_matches(str(key), allowed, n=1)
                known = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(allowed)}"
                unknown = "unknown setting" if name == CONFIG else "unknown key"
                problems.append((line, column, json_path([*parts, key]), f"{unknown}; {known}"))
            continue
        instance = error.instance
        if error.validator == "type" and instance is None:
            message = "has no value; give it one, or remove the key for the default"
        elif error.validator == "type" and isinstance(instance, float) and not math.isfinite(instance):
            message = f"must be a finite {error.validator_value}, not {instance}"
        elif error.validator == "pattern":
            message = f"{_short(instance)} does not match {error.validator_value}"
        elif len(repr(instance)) > _QUOTE_AT_MOST:
            message = _without_value(error, what)
        else:
            message = error.message
        line, column = source.position(parts)
        problems.append((line, column, json_path(parts), message))
    return problems


def _short(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= _QUOTE_AT_MOST else shown[:_QUOTE_AT_MOST] + "..."
