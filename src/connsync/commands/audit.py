"""``connsync audit``: who wrote what, when, at which git revision (never a secret)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_FAILED, EXIT_OK
from connsync.store import AuditEntry, opened


def audit(config: Config, names: Sequence[str], *, fmt: str) -> int:
    config.require_repository_or_store()
    with opened(config.store_url, config.workspace, create=False) as store:
        entries = store.audit()
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


def audit_text(entries: Sequence[AuditEntry]) -> str:
    if not entries:
        return "The store's audit holds no entries for this workspace."
    header = ("AT", "NAME", "ACTION", "VERSION", "ACTOR", "GIT", "SOURCE")
    rows = [header] + [
        (e.at, render.text(e.name), render.text(e.action), _versions(e), render.text(e.actor),
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
