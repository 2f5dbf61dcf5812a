"""``connsync new``: write one encrypted connection file, plaintext never on disk."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from connsync import providers, render, rules, schema
from connsync.config import Config
from connsync.errors import EXIT_FAILED, EXIT_OK, ConnsyncError, UsageError
from connsync.loader import display_path
from connsync.model import Declaration, Finding, Secret
from connsync.writer import write_connection

# Stands in for an encrypted value while the document is validated before encryption.
_PLACEHOLDER = "ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]"


@dataclass(frozen=True)
class NewOptions:
    provider: str
    name: str
    description: str | None
    labels: Sequence[str]
    sets: Sequence[str]
    secret_envs: Sequence[str]
    file: str | None
    no_input: bool
    force: bool


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "connection"


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} expects FIELD=VALUE, got {item.split('=')[0]!r}")
        out[key] = value
    return out


def collect_fields(options: NewOptions, interactive: bool) -> tuple[dict[str, Any], dict[str, Secret]]:
    provider_schema = schema.get_schema(options.provider)
    properties: Mapping[str, Any] = provider_schema["properties"]
    secret_names = schema.secret_fields(options.provider)
    clear: dict[str, Any] = {}
    for field, value in _pairs(options.sets, "--set").items():
        if field in secret_names:
            raise UsageError(
                f"{field} is a secret: pass it with --secret-env {field}=ENV_VAR or at the prompt, "
                "never on the command line, where shell history and ps can see it"
            )
        if field not in properties:
            raise UsageError(f"{options.provider} has no field {field!r}; fields: {', '.join(properties)}")
        clear[field] = value
    secrets: dict[str, Secret] = {}
    for field, variable in _pairs(options.secret_envs, "--secret-env").items():
        if field not in secret_names:
            raise UsageError(f"{field} is not a secret field of {options.provider}; use --set")
        env_value = os.environ.get(variable)
        if not env_value:
            raise UsageError(f"environment variable {variable} (for {field}) is not set or empty")
        secrets[field] = Secret(env_value)

    missing = [f for f in provider_schema.get("required", []) if f not in clear and f not in secrets]
    if missing and not interactive:
        raise UsageError(
            f"missing field(s): {', '.join(missing)}",
            hint="pass --set FIELD=VALUE and --secret-env FIELD=ENV_VAR, or run on a terminal",
        )
    for field in missing:
        prop = properties[field]
        label = f"{prop.get('title', field)} ({field})"
        if field in secret_names:
            secrets[field] = Secret(click.prompt(label, hide_input=True, err=True))
        else:
            clear[field] = click.prompt(label, err=True)
    ordered = {f: clear[f] for f in properties if f in clear}
    return ordered, secrets


def build_document(options: NewOptions, spec: Mapping[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": options.name}
    if options.description:
        metadata["description"] = options.description
    if options.labels:
        metadata["labels"] = _pairs(options.labels, "--label")
    return {"apiVersion": "connsync/v1", "provider": options.provider,
            "metadata": metadata, "spec": dict(spec)}


def check(document: dict[str, Any], secrets: Mapping[str, Secret], shown: str,
          existing: Sequence[Declaration]) -> list[Finding]:
    """The rules of ``validate``, on the document as it will look once encrypted."""
    stand_in = {**document, "spec": {**document["spec"], **dict.fromkeys(secrets, _PLACEHOLDER)},
                "sops": {"mac": _PLACEHOLDER}}
    text = yaml.safe_dump(stand_in, sort_keys=False)
    decl = Declaration(file=shown, data=stand_in, digest="", text=text)
    findings = rules.check_declaration(decl)
    findings += [f for f in rules.duplicate_names([*existing, decl]) if f.file == shown]
    provider = providers.get(document["provider"])
    for field, secret in secrets.items():
        problem = provider.check_secret(field, secret.reveal())
        if problem:
            findings.append(Finding("error", "secret-format", shown, 1, 1, f"$.spec.{field}",
                                    f"{field} {problem}"))
    return findings


def new(config: Config, options: NewOptions, style: render.Style) -> int:
    interactive = not options.no_input and sys.stdin.isatty()
    spec, secrets = collect_fields(options, interactive)
    document = build_document(options, spec)
    target = Path(options.file) if options.file else config.connections_dir / f"{slug(options.name)}.yaml"
    shown = display_path(target)
    if target.exists() and not options.force:
        raise ConnsyncError(f"{shown} already exists", hint="choose another --file, or --force")

    existing = [d for d in rules.validate_files([], config.connections_dir).declarations
                if d.file != shown] if config.connections_dir.is_dir() else []
    findings = check(document, secrets, shown, existing)
    if findings:
        click.echo(render.findings_text(findings, 1, style))
        click.echo(f"Nothing was written to {shown}.", err=True)
        return EXIT_FAILED

    write_connection(document, secrets, target, config.root, overwrite=options.force)
    click.echo(f"Wrote {shown} ({', '.join(sorted(secrets))} encrypted with SOPS).")
    click.echo("Next: connsync validate && connsync plan")
    return EXIT_OK
