"""``connsync audit``: who wrote what, when, at which git revision (never a secret)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_FAILED, EXIT_OK, StoreError
from connsync.store import AuditEntry, opened


def audit(config: Config, names: Sequence[str], *, fmt: str) -> int:
    config.require_repository_or_store()
    with opened(config.store_url, config.workspace, create=False) as store:
        entries = [_checked(entry, number) for number, entry in enumerate(store.audit(), start=1)]
    wanted = {n.casefold() for n in names}
    if wanted:
        entries = [e for e in entries if e.name.casefold() in wanted]
    seen = {e.name.casefold() for e in entries}
    # A NAME with no entry is a typo or a connection never written: said, never an empty "ok".
    unknown = list(dict.fromkeys(n for n in names if n.casefold() not in seen))
    if fmt == "json":
        click.echo(render.json_output("audit", not unknown, {
            "workspace": config.workspace, "entries": [asdict(e) for e in entries], "unknown": unknown}))
    else:
        if entries or not unknown:
            click.echo(audit_text(entries))
        for name in unknown:
            click.echo(f"connsync: no audit entry for {render.text(repr(name))} in workspace "
                       f"{render.text(config.workspace)}", err=True)
    return EXIT_FAILED if unknown else EXIT_OK


_OPTIONAL_TEXT = ("git_revision", "source")
_VERSIONS = ("version_before", "version_after")


def _fits(field: str, value: object) -> bool:
    if field in _VERSIONS:
        return value is None or type(value) is int
    return isinstance(value, str) or (value is None and field in _OPTIONAL_TEXT)


def _checked(entry: AuditEntry, number: int) -> AuditEntry:
    """The store's words as they are (escaped when shown), in the types the outputs promise.

    Another client may have written the audit (a table anyone with the database can write, a
    Description anyone with the secret can edit): a value of the wrong type is one clear error.
    """
    wrong = next((f.name for f in fields(entry) if not _fits(f.name, getattr(entry, f.name))), None)
    if wrong:
        name = entry.name if isinstance(entry.name, str) else "?"
        raise StoreError(f"the store's audit entry {number} ({render.text(repr(name), 80)}) is damaged: its "
                         f"{wrong} is {type(getattr(entry, wrong)).__name__}, not what connsync writes",
                         hint="another client wrote it; the store's records are not affected")
    return entry


def audit_text(entries: Sequence[AuditEntry]) -> str:
    if not entries:
        return "The store's audit holds no entries for this workspace."
    header = ("AT", "NAME", "ACTION", "VERSION", "ACTOR", "GIT", "SOURCE")
    rows = [header] + [
        (render.text(e.at), render.text(e.name), render.text(e.action), _versions(e), render.text(e.actor),
         render.text((e.git_revision or "-")[:12]), render.text(e.source or "-"))
        for e in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _versions(entry: AuditEntry) -> str:
    before = "-" if entry.version_before is None else str(entry.version_before)
    after = "-" if entry.version_after is None else str(entry.version_after)
    return f"{before} -> {after}"
