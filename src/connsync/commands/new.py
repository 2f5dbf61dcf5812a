"""``connsync new``: write one encrypted connection file, plaintext never on disk.

Works like a form: the name first, then each required field in the schema's
order (so the account id is checked before the secret is asked for). Each
value, from a flag or a prompt, is checked by validate's own rules as soon as
it is known; on a terminal a wrong answer is asked again, otherwise every
problem is one line naming its flag.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from connsync.model import Declaration, Finding, Secret
from connsync.reconcile.writer import inside, write_connection
from connsync.validate import fields, loader, rules, schema
from connsync.validate.loader import display_path

NAME_PATH = "$.metadata.name"


@dataclass(frozen=True)
class NewOptions:
    provider: str
    name: str | None
    description: str | None
    labels: Sequence[str]
    sets: Sequence[str]
    secret_envs: Sequence[str]
    file: str | None
    no_input: bool
    force: bool


@dataclass
class Form:
    """The connection being filled in, and what it is checked against."""

    config: Config
    options: NewOptions
    existing: list[Declaration]
    metadata: dict[str, Any]
    clear: dict[str, str | int]
    secrets: dict[str, Secret]
    # Fields the form will still ask for: "access_key_id needs secret_access_key" is no problem yet.
    pending: set[str] = dataclasses.field(default_factory=set)

    def target(self, name: str) -> Path:
        if self.options.file:
            return Path(self.options.file)
        return self.config.connections_dir / f"{fields.slug(name)}.yaml"

    def document(self) -> dict[str, Any]:
        properties = schema.get_schema(self.options.provider)["properties"]
        return {"apiVersion": "connsync/v1", "provider": self.options.provider,
                "metadata": dict(self.metadata),
                "spec": {f: self.clear[f] for f in properties if f in self.clear}}

    def findings(self) -> list[Finding]:
        name = str(self.metadata.get("name", ""))
        shown = display_path(self.target(name)) if name else "(new connection)"
        others = [d for d in self.existing if Path(d.file).resolve() != self.target(name).resolve()]
        return fields.problems(self.document(), self.secrets, shown, others)

    def problems_at(self, path: str) -> list[str]:
        field = path.removeprefix("$.spec.")
        found = [f.message for f in self.findings() if f.path == path
                 and not (f.message.startswith(f"{field} needs ") and self._waits_for_pending(f.message))]
        if path == NAME_PATH and not found:
            target = self.target(str(self.metadata["name"]))
            if target.exists() and not self.options.force:
                found.append(f"{display_path(target)} already exists: choose another name, "
                             "--file, or --force to replace it")
        return found

    def _waits_for_pending(self, message: str) -> bool:
        needed = message.split(":")[0].split(" needs ", 1)[-1].split(" and ")
        return all(n in self.pending for n in needed)


def _flag(path: str, provider: str) -> str:
    if path == NAME_PATH:
        return "--name"
    if path.startswith("$.metadata.description"):
        return "--description"
    if path.startswith("$.metadata.labels"):
        return "--label"
    field = path.removeprefix("$.spec.").split(".")[0]
    if field in schema.secret_fields(provider):
        return f"--secret-env {field}"
    return f"--set {field}" if path.startswith("$.spec.") else path


def _existing(config: Config) -> list[Declaration]:
    if not config.connections_dir.is_dir():
        return []
    return rules.validate_files([], config.connections_dir, config.root).declarations


def _kept_metadata(target: Path, options: NewOptions) -> dict[str, Any]:
    """What ``--force`` keeps from the file it replaces: description and labels not given again."""
    loaded = loader.load_file(target)
    if isinstance(loaded, Finding):
        return {}
    old = loaded.data.get("metadata")
    if not isinstance(old, Mapping):
        return {}
    kept: dict[str, Any] = {}
    if options.description is None and isinstance(old.get("description"), str):
        kept["description"] = old["description"]
    if not options.labels and isinstance(old.get("labels"), Mapping):
        kept["labels"] = dict(old["labels"])
    return kept


def _fill(form: Form, path: str, current: str | None, label: str, about: str, hidden: bool,
          store: Callable[[str], None], interactive: bool, errors: list[str],
          missing: list[str], style: render.Style) -> None:
    """One field of the form: from its flag, else the prompt; checked either way."""
    provider = form.options.provider

    def check(answer: str) -> list[str]:
        store(answer)
        return form.problems_at(path)

    if current is not None:
        found = check(current)
        if not found:
            return
        if not interactive:
            errors += [f"{_flag(path, provider)}: {p}" for p in found]
            return
        for problem in found:
            click.echo(f"  ✗ {render.text(f'{_flag(path, provider)}: {problem}')}", err=True)
    elif not interactive:
        missing.append(f"{_flag(path, provider)}: missing ({label})")
        return
    fields.ask(label, about, hidden=hidden, check=check, style=style)


def new(config: Config, options: NewOptions, style: render.Style,
        environ: Mapping[str, str] = os.environ) -> int:
    interactive = not options.no_input and sys.stdin.isatty()
    provider_schema = schema.get_schema(options.provider)
    properties: Mapping[str, Any] = provider_schema["properties"]
    secret_names = schema.secret_fields(options.provider)
    metadata: dict[str, Any] = {}
    if options.description is not None:
        metadata["description"] = options.description
    if options.labels:
        metadata["labels"] = fields.pairs(options.labels, "--label")
    form = Form(config, options, _existing(config), metadata,
                fields.clear_values(fields.pairs(options.sets, "--set"), options.provider, "--set"),
                fields.secrets_from_env(options.secret_envs, options.provider, environ))
    errors: list[str] = []
    missing: list[str] = []

    def set_name(value: str) -> None:
        form.metadata["name"] = value

    _fill(form, NAME_PATH, options.name, "Name", fields.about(
        schema.get_schema("connection")["properties"]["metadata"]["properties"]["name"], False),
        False, set_name, interactive, errors, missing, style)
    if "name" not in form.metadata or errors:
        return _refuse(errors, missing, None)
    target = form.target(str(form.metadata["name"]))
    if inside(target, config.root) and not inside(target, config.connections_dir):
        # .sops.yaml's rules and every command look only in the connections directory.
        return _refuse([f"--file {display_path(target)} is in the repository but outside its connections "
                        f"directory {display_path(config.connections_dir)}: validate, plan and apply would "
                        f"never see it; put it there (--file "
                        f"{display_path(config.connections_dir / target.name)})"], [], target)
    kept = _kept_metadata(target, options) if target.exists() and options.force else {}
    form.metadata = {"name": form.metadata.pop("name"), **kept, **form.metadata}

    required = [f for f in properties if f in provider_schema.get("required", [])]
    for field in required:
        _field(form, field, properties, secret_names, interactive, errors, missing, style)
    # Then which alternative (AWS: key pair or role), and its own fields.
    chosen, others = _choose(fields.alternatives(provider_schema), {*form.clear, *form.secrets},
                             interactive and not errors)
    form.pending = {f for f in chosen if f not in form.clear and f not in form.secrets}
    for field in [f for f in properties if f in chosen and f not in required]:
        _field(form, field, properties, secret_names, interactive, errors, missing, style)
        form.pending.discard(field)
    if missing and others:
        missing.append(f"(or instead {others})")
    if interactive and not errors:
        _ask_optional(form, provider_schema, secret_names, style)

    if not errors and not missing:  # whatever no single field owns: labels, description
        asked = {NAME_PATH, *(f"$.spec.{f}" for f in properties)}
        errors = [f"{_flag(f.path, options.provider)}: {f.message}" for f in form.findings()
                  if f.path not in asked]
    if errors or missing:
        return _refuse(errors, missing, target)

    shown = display_path(target)
    outside = not inside(target, config.root)
    write_connection(form.document(), form.secrets, target, config.root,
                     connections_dir=config.connections_dir, overwrite=options.force)
    click.echo(f"Wrote {render.text(shown)} ({', '.join(sorted(form.secrets))} encrypted with SOPS"
               + (f"; kept its {' and '.join(kept)}" if kept else "") + ").")
    if outside:
        click.echo(f"{render.text(shown)} is outside the repository: encrypted with the repository's "
                   ".sops.yaml, readable only by you (0600); connsync does not plan or apply it.")
    else:
        click.echo("Next: connsync validate && connsync plan")
    return EXIT_OK


def _field(form: Form, field: str, properties: Mapping[str, Any], secret_names: frozenset[str],
           interactive: bool, errors: list[str], missing: list[str], style: render.Style) -> None:
    prop = properties[field]
    secret = field in secret_names

    def keep(value: str) -> None:
        if secret:
            form.secrets[field] = Secret(value)
        else:
            form.clear[field] = fields.typed(value, prop)

    given = form.clear.get(field)
    current = form.secrets[field].reveal() if field in form.secrets else None if given is None else str(given)
    _fill(form, f"$.spec.{field}", current, f"{prop.get('title', field)} ({field})",
          fields.about(prop, secret), secret, keep, interactive, errors, missing, style)


def _choose(groups: list[tuple[str, list[str]]], given: set[str], interactive: bool) -> tuple[set[str], str]:
    """The fields of the alternative in use (AWS: key pair or role), and how to name the others.

    Whatever the flags already give decides; a terminal asks; otherwise the first is assumed and the
    others are named beside what is missing.
    """
    if not groups:
        return set(), ""
    picked = [group for _, group in groups if given & set(group)]
    if picked:
        return set().union(*picked), ""
    if not interactive:
        others = "; ".join(f"{title.lower()}: " + ", ".join(f"--set {f}" for f in group)
                           for title, group in groups[1:])
        return set(groups[0][1]), others
    for number, (title, group) in enumerate(groups, 1):
        click.echo(f"  {number}. {render.text(title)} ({', '.join(group)})", err=True)
    choice = click.prompt("Which one", type=click.IntRange(1, len(groups)), default=1, err=True)
    return set(groups[choice - 1][1]), ""


def _ask_optional(form: Form, provider_schema: Mapping[str, Any], secret_names: frozenset[str],
                  style: render.Style) -> None:
    """Optional fields that belong to what was chosen (a role's external id): an empty answer skips."""
    properties = provider_schema["properties"]
    for field in fields.dependants(provider_schema, [*form.clear, *form.secrets]):
        prop, secret = properties[field], field in secret_names
        description = fields.about(prop, secret)
        if description:
            click.echo(style(description, dim=True), err=True)
        while True:
            answer = click.prompt(f"{prop.get('title', field)} ({field}, optional: Enter to skip)",
                                  default="", show_default=False, hide_input=secret, err=True).strip()
            if not answer:
                break
            if secret:
                form.secrets[field] = Secret(answer)
            else:
                form.clear[field] = fields.typed(answer, prop)
            found = form.problems_at(f"$.spec.{field}")
            if not found:
                break
            form.secrets.pop(field, None)
            form.clear.pop(field, None)
            for problem in found:
                click.echo(f"  ✗ {render.text(problem)}", err=True)


def _refuse(errors: list[str], missing: list[str], target: Path | None) -> int:
    for line in [*missing, *errors]:
        click.echo(f"connsync: error: {render.text(line)}", err=True)
    where = f" to {display_path(target)}" if target is not None else ""
    click.echo(render.text(f"Nothing was written{where}."), err=True)
    # Only missing fields: the command line was incomplete (64, as for a missing option).
    return EXIT_FAILED if errors else EXIT_USAGE
