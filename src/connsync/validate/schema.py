"""Bundled JSON Schemas, cached validators, and schema errors as Findings."""

from __future__ import annotations

import difflib
import functools
import json
import math
from collections.abc import Iterator
from dataclasses import replace
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from connsync import providers
from connsync.errors import UsageError
from connsync.model import Declaration, Finding, SourceMap, json_path

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
    """name -> schema, for every bundled ``*.schema.json``, checked against the metaschema."""
    folder = resources.files("connsync") / "schemas"
    schemas: dict[str, dict[str, Any]] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(_SUFFIX):
            schema = json.loads(entry.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
            schemas[entry.name.removesuffix(_SUFFIX)] = schema
    return schemas


def provider_names() -> list[str]:
    return [name for name in all_schemas() if name not in (ENVELOPE, CONFIG, POLICY)]


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
    registry: Registry[Any] = Registry().with_resources(
        (_BASE_URI + n + _SUFFIX, Resource.from_contents(s, default_specification=DRAFT202012))
        for n, s in all_schemas().items()
    )
    root = {**all_schemas()[name], "$id": _BASE_URI + name + _SUFFIX}
    if not dispatch:
        root.pop("allOf", None)
    return Draft202012Validator(root, registry=registry)


def check(decl: Declaration) -> tuple[Declaration, list[Finding]]:
    """The schema stage for one declaration: its findings, and the declaration as this stage
    hands it forward, with its provider's secret fields (None for a provider without a schema)."""
    provider = decl.data.get("provider")
    known = isinstance(provider, str) and provider in provider_names()
    checked = replace(decl, secret_fields=secret_fields(provider) if known else None)
    return checked, validate_document(checked)


def validate_document(decl: Declaration) -> list[Finding]:
    """Schema findings for one declaration, each at its own line and column.

    The envelope's if/then dispatch on ``provider`` is for editors; here the
    provider's validator is applied to ``spec`` directly, which gives the same
    errors at about half the cost.
    """
    errors = list(_validator(ENVELOPE, dispatch=False).iter_errors(decl.data))
    provider = decl.data.get("provider")
    spec = decl.data.get("spec")
    if isinstance(provider, str) and provider in provider_names() and isinstance(spec, dict):
        for error in _validator(provider).iter_errors(spec):
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
    return bool(Draft202012Validator.TYPE_CHECKER.is_type(instance, "number")) and math.isfinite(instance)


@functools.cache
def _strict_validator(name: str) -> Any:
    checker = Draft202012Validator.TYPE_CHECKER.redefine("number", _finite_number)
    strict = validators.extend(Draft202012Validator, type_checker=checker)
    return strict(all_schemas()[name])


def config_problems(data: Any, source: SourceMap) -> list[tuple[int, int, str, str]]:
    """(line, column, JSON path, message) for each way ``data`` breaks config.schema.json."""
    return document_problems(CONFIG, data, source)


def document_problems(name: str, data: Any, source: SourceMap) -> list[tuple[int, int, str, str]]:
    """(line, column, JSON path, message) for each way ``data`` (whose positions ``source`` knows) breaks the
    bundled schema ``name``: connsync.yaml's and the policy files'."""
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
