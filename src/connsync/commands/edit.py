"""``connsync set`` and ``connsync edit``: change a connection file in place.

``set`` changes fields through ``sops set`` (each value through stdin), so
every other field, comment, description and label stays as it was; the
change is checked with validate's rules before the file is touched, and the
file as written is checked again before it replaces the old one. ``edit``
opens ``sops edit`` and validates what the editor left.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from connsync import render, sops
from connsync.config import Config
from connsync.errors import EXIT_FAILED, EXIT_OK, ConnsyncError, UsageError
from connsync.fsutil import write_atomic
from connsync.model import Declaration, Finding, Secret
from connsync.reconcile.writer import update_fields
from connsync.validate import fields, loader, rules, schema


@dataclass(frozen=True)
class SetOptions:
    name: str
    assignments: Sequence[str]  # FIELD=VALUE for clear fields; a secret FIELD alone is asked for
    secret_envs: Sequence[str]
    no_input: bool


def _parse(assignments: Sequence[str], provider: str) -> tuple[dict[str, str | int], list[str]]:
    secret_names = schema.secret_fields(provider)
    clear: dict[str, str] = {}
    asked: list[str] = []
    for item in assignments:
        field, sep, value = item.partition("=")
        if field in secret_names:
            if sep:
                raise UsageError(f"{field} is a secret: never on the command line, where shell history and "
                                 f"ps can see it (what was given is not shown)",
                                 hint=f"pass it as --secret-env {field}=ENV_VAR, or name it alone "
                                 f"('connsync set NAME {field}') to be asked for it")
            asked.append(field)
        elif not sep:
            raise UsageError(f"{field!r}: expected FIELD=VALUE (a secret field alone is asked for)")
        else:
            clear[field] = value
    return fields.clear_values(clear, provider, "set"), asked


def _new_problems(decl: Declaration, document: Mapping[str, Any], secrets: Mapping[str, Secret],
                  others: Sequence[Declaration]) -> list[Finding]:
    """What the change would break: findings after it that the file did not have before."""
    before = {(f.path, f.message) for f in rules.check_declaration(decl)}
    after = fields.problems(document, secrets, decl.file, others)
    return [f for f in after if (f.path, f.message) not in before and f.severity == "error"]


def set_fields(config: Config, options: SetOptions, style: render.Style,
               environ: Mapping[str, str] = os.environ) -> int:
    decl = fields.find_connection(options.name, config.connections_dir)
    provider = decl.provider
    clear, asked = _parse(options.assignments, provider)
    secrets = fields.secrets_from_env(options.secret_envs, provider, environ)
    listed = rules.validate_files([], config.connections_dir).declarations
    others = [d for d in listed if Path(d.file).resolve() != Path(decl.file).resolve()]
    document = {k: v for k, v in decl.data.items() if k != "sops"}
    document["spec"] = {**decl.spec, **clear}
    if asked and (options.no_input or not sys.stdin.isatty()):
        raise UsageError(f"{', '.join(asked)}: no terminal to ask on",
                         hint="pass the secret with --secret-env FIELD=ENV_VAR")
    properties = schema.get_schema(provider)["properties"]
    for field in asked:
        prop = properties[field]

        def check(answer: str, field: str = field) -> list[str]:
            trial = {**secrets, field: Secret(answer)}
            return [f.message for f in _new_problems(decl, document, trial, others)
                    if f.path == f"$.spec.{field}"]

        secrets[field] = Secret(fields.ask(f"{prop.get('title', field)} ({field})", fields.about(prop, True),
                                           hidden=True, check=check, style=style))
    if not clear and not secrets:
        raise UsageError("nothing to set: give FIELD=VALUE, a secret FIELD to be asked for, or --secret-env")

    problems = _new_problems(decl, document, secrets, others)
    if problems:
        for finding in problems:
            field = finding.path.removeprefix("$.spec.")
            arg = (f"--secret-env {field}" if field in secrets
                   else f"{field}=…" if field in clear else finding.path)
            click.echo(f"connsync: error: {render.text(f'{arg}: {finding.message}')}", err=True)
        click.echo(f"Nothing was written to {render.text(decl.file)}.", err=True)
        return EXIT_FAILED

    def written_ok(data: bytes, copy: Path) -> None:
        loaded = loader.load_bytes(data, decl.file)
        if not isinstance(loaded, Declaration):
            raise ConnsyncError(f"{decl.file}: sops wrote a file that does not parse; it was left as it was")
        got = sops.decrypt(loaded, copy)
        if any(got.spec.get(k) != v for k, v in clear.items()) or any(
                got.secrets.get(k) != v for k, v in secrets.items()):
            raise ConnsyncError(f"{decl.file}: the file did not read back with the new values; it was left "
                                "as it was")

    meta = decl.data.get("sops")
    update_fields(Path(decl.file), {**clear, **secrets}, shown=decl.file,
                  sops_meta=meta if isinstance(meta, Mapping) else {}, check=written_ok)
    changed = [*clear, *(f"{f} (encrypted)" for f in secrets)]
    click.echo(f"Updated {render.text(decl.file)}: {', '.join(changed)}; everything else kept.")
    click.echo("Next: connsync plan")
    return EXIT_OK


def edit(config: Config, name: str, style: render.Style) -> int:
    terminal = _terminal()
    try:
        return _edit(config, name, style, terminal)
    finally:
        os.close(terminal)


def _terminal() -> int:
    """The terminal the user types on, for sops and the editor; refused at once without one.

    Without a terminal an editor cannot be used: vim drew the decrypted file onto standard output
    (a CI log), and sops's "press a key" waited for ever.
    """
    hint = ("change a connection without an editor: connsync set NAME FIELD=VALUE (a secret: "
            "connsync set NAME FIELD --secret-env FIELD=VAR)")
    if not sys.stdin.isatty():
        raise UsageError("connsync edit needs a terminal: it opens an editor on the decrypted file, and "
                         "standard input is not a terminal", hint=hint)
    try:
        return os.open(os.ttyname(sys.stdin.fileno()), os.O_RDWR | os.O_NOCTTY)
    except OSError:
        raise UsageError("connsync edit needs a terminal, and the one on standard input cannot be opened",
                         hint=hint) from None


def _edit(config: Config, name: str, style: render.Style, terminal: int) -> int:
    decl = fields.find_connection(name, config.connections_dir)
    path = Path(decl.file)
    before = path.read_bytes()
    # An edit may fix some of a file's problems and not yet others; it may not add one.
    known = {_key(f) for f in rules.validate_files([decl.file], config.connections_dir).findings}
    with tempfile.TemporaryDirectory(prefix="connsync-edit-") as private:  # 0700
        report = Path(private) / "report.json"
        changed = sops.edit(path, shown=decl.file, terminal=terminal, report=report)
        problem = json.loads(report.read_text()) if report.exists() else None
    if problem is not None:
        # What the editor left did not parse: sops wrote nothing. Located in the text as edited.
        where = f":{problem['line']}:{problem['column']}" if problem["line"] else ""
        rule = f" [{render.text(problem['rule'], 20)}]" if problem["line"] else ""
        click.echo(f"{render.text(decl.file)}{where}: error{rule} (as edited) "
                   f"{render.text(problem['message'])}", err=True)
        click.echo(f"{render.text(decl.file)} was left as it was; nothing was saved.", err=True)
        return EXIT_FAILED
    if not changed:
        click.echo(f"{render.text(decl.file)} is unchanged.")
        return EXIT_OK
    validation = rules.validate_files([decl.file], config.connections_dir)
    if any(f.severity == "error" and _key(f) not in known for f in validation.findings):
        # One edit, one answer: the file goes back to what it was, so nothing invalid is ever
        # committed by accident; the findings say what to change next time.
        write_atomic(path, before, mode=stat.S_IMODE(path.stat().st_mode), overwrite=True)
        click.echo(render.findings_text(validation.findings, validation.files, style))
        click.echo(f"{render.text(decl.file)} was left as it was; nothing was saved. Fix these in the "
                   "next 'connsync edit'.", err=True)
        return EXIT_FAILED
    if validation.findings:
        click.echo(render.findings_text(validation.findings, validation.files, style))
        click.echo(f"Updated {render.text(decl.file)}; the problems above were there before this edit.")
        return EXIT_FAILED if any(f.severity == "error" for f in validation.findings) else EXIT_OK
    click.echo(f"Updated {render.text(decl.file)}; it validates. Next: connsync plan")
    return EXIT_OK


def _key(finding: Finding) -> tuple[str, str, str]:
    return finding.rule, finding.path, finding.message
