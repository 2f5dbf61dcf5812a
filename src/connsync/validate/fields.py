"""What users type for a connection's fields: parsed, checked by validate's own rules, asked again.

Used by ``new`` and ``set``. Every problem names the flag or prompt it came
from (``--set account_id``), never a line of a file that was never written,
and nothing here echoes a secret, nor anything that might be one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import yaml

from connsync import providers, render
from connsync.errors import ConnsyncError, UsageError
from connsync.model import Declaration, Finding, Secret
from connsync.validate import loader, rules, schema

# Stands in for an encrypted value while a document is checked before encryption.
PLACEHOLDER = "ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]"
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_SLUG_MAX = 64  # file names stay far below every filesystem's 255-byte limit


def slug(name: str) -> str:
    """A file name stem for a connection name, bounded in length."""
    stem = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "connection"
    if len(stem) <= _SLUG_MAX:
        return stem
    # Cut, with a digest of the whole name so that two long names sharing a prefix still differ.
    return f"{stem[:_SLUG_MAX - 9].rstrip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    """``FIELD=VALUE`` items as a mapping; a malformed item is never echoed (it may be a secret)."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} expects FIELD=VALUE; one of the values given has no 'FIELD=' "
                             "(it is not shown, in case it is a secret)")
        out[key] = value
    return out


def looks_like_variable_name(text: str) -> bool:
    """A conventional environment variable name: ``AWS_SECRET`` or ``aws_secret``.

    Generated secrets mix upper and lower case or carry ``/+=~.-``, so what
    fails this is treated as a value someone pasted and is never printed.
    """
    return bool(_VARIABLE_NAME.fullmatch(text)) and text in (text.upper(), text.lower())


def secrets_from_env(values: Sequence[str], provider: str, environ: Mapping[str, str]) -> dict[str, Secret]:
    secret_names = schema.secret_fields(provider)
    secrets: dict[str, Secret] = {}
    for field, variable in pairs(values, "--secret-env").items():
        if field not in secret_names:
            raise UsageError(f"--secret-env {field}: not a secret field of {provider}; use --set for it")
        if not looks_like_variable_name(variable):
            raise UsageError(
                f"--secret-env {field}=…: what follows '=' looks like a value, not the name of an "
                "environment variable; it is not shown",
                hint=f"put the secret in a variable and pass its name: --secret-env {field}=MY_VAR "
                "(if you typed the secret itself, it is in your shell history: rotate it)",
            )
        value = environ.get(variable)
        if not value:
            # What follows '=' is never shown: a secret can look like a variable name (all capitals).
            raise UsageError(f"--secret-env {field}=…: the environment variable named after '=' is not set "
                             "or is empty (its name is not shown, in case it is the secret itself)",
                             hint=f"export the variable, then pass its name: --secret-env {field}=MY_VAR (if "
                             "you typed the secret itself, it is in your shell history: rotate it)")
        secrets[field] = Secret(value)
    return secrets


def typed(value: str, prop: Mapping[str, Any]) -> str | int:
    """A value typed on a command line as the schema's type: ``3600`` for an integer field."""
    if prop.get("type") == "integer" and re.fullmatch(r"[+-]?[0-9]{1,15}", value.strip()):
        return int(value)
    return value


def clear_values(values: Mapping[str, str], provider: str, flag: str) -> dict[str, str | int]:
    properties = schema.get_schema(provider)["properties"]
    for field in values:
        if field in schema.secret_fields(provider):
            raise UsageError(
                f"{flag} {field}: {field} is a secret: pass it with --secret-env {field}=ENV_VAR or at "
                "the prompt, never on the command line, where shell history and ps can see it"
            )
        if field not in properties:
            raise UsageError(f"{flag} {field}: {provider} has no such field; fields: "
                             f"{', '.join(properties)}")
    return {field: typed(value, properties[field]) for field, value in values.items()}


def alternatives(provider_schema: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """The schema's ``anyOf`` of required field sets (AWS: a key pair, or a role), as (title, fields)."""
    return [(str(branch.get("title") or " and ".join(branch["required"])), list(branch["required"]))
            for branch in provider_schema.get("anyOf", [])
            if isinstance(branch, Mapping) and set(branch) <= {"title", "description", "required"}]


def dependants(provider_schema: Mapping[str, Any], present: Iterable[str]) -> list[str]:
    """Optional fields that only make sense beside fields already present (an external id, a role)."""
    have = set(present)
    needs: Mapping[str, Sequence[str]] = provider_schema.get("dependentRequired", {})
    return [field for field in provider_schema["properties"]
            if field not in have and needs.get(field) and set(needs[field]) <= have
            and not any(field in group for _, group in alternatives(provider_schema))]


def stand_in(document: Mapping[str, Any], secret_names: Sequence[str], shown: str) -> Declaration:
    """The document as it will look once encrypted, for validate's rules."""
    spec = {**document["spec"], **dict.fromkeys(secret_names, PLACEHOLDER)}
    data = {**document, "spec": spec, "sops": {"mac": PLACEHOLDER}}
    text = yaml.safe_dump(data, sort_keys=False)
    return Declaration(file=shown, data=data, digest="", text=text, source=loader.source_of(text))


def problems(document: Mapping[str, Any], secrets: Mapping[str, Secret], shown: str,
             existing: Sequence[Declaration]) -> list[Finding]:
    """The rules of ``validate`` on a document before it is encrypted, secrets checked for shape."""
    decl = stand_in(document, list(secrets), shown)
    findings = rules.check_declaration(decl)
    findings += [f for f in rules.duplicate_names([*existing, decl]) if f.file == shown]
    provider = providers.get(str(document["provider"]))
    for field, secret in secrets.items():
        problem = provider.check_secret(field, secret.reveal())
        if problem:
            findings.append(Finding("error", "secret-format", shown, 1, 1, f"$.spec.{field}",
                                    f"{field} {problem}"))
    return findings


def find_connection(name: str, connections_dir: Path) -> Declaration:
    """The file declaring connection ``name`` (names compare ignoring case), or the file at ``name``."""
    declarations = rules.validate_files([], connections_dir).declarations if connections_dir.is_dir() else []
    for decl in declarations:
        metadata = decl.data.get("metadata")
        if isinstance(metadata, Mapping) and str(metadata.get("name", "")).casefold() == name.casefold():
            return decl
    path = Path(name)
    if path.is_file():
        loaded = loader.load_file(path)
        if isinstance(loaded, Declaration):
            return loaded
        raise ConnsyncError(f"{loaded.file}:{loaded.line}:{loaded.column}: {loaded.message}")
    raise ConnsyncError(f"no connection named {name!r} under {loader.display_path(connections_dir)}",
                        hint="'connsync validate' lists the files; names are compared ignoring case")


def about(prop: Mapping[str, Any], secret: bool) -> str:
    """One line for a prompt: what the field is for, and an example."""
    text = str(prop.get("description", "")).strip()
    examples = [e for e in prop.get("examples", []) if isinstance(e, str) and not e.startswith("ENC[")]
    if examples and not secret:
        text += f" Example: {examples[0]}"
    return text


def ask(label: str, description: str, *, hidden: bool, check: Callable[[str], list[str]],
        style: render.Style) -> str:
    """Prompt until the answer passes ``check``; its problems are shown, never a hidden answer."""
    if description:
        click.echo(style(description, dim=True), err=True)  # no escape codes with --no-color/NO_COLOR
    while True:
        answer = click.prompt(label, hide_input=hidden, err=True).strip()
        found = check(answer)
        if not found:
            return answer
        for problem in found:
            click.echo(f"  ✗ {render.text(problem)}", err=True)
