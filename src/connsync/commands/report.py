"""``connsync report``: the Connections page of the whole workspace, as HTML, Markdown or JSON."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_OK, ConnsyncError, UsageError
from connsync.fsutil import write_atomic_chunks
from connsync.report import html, json_view, markdown
from connsync.report.model import Fleet, gather
from connsync.store import opened
from connsync.validate import policy, rules


def report(config: Config, paths: Sequence[str], *, fmt: str, out: str | None, max_size: int | None) -> int:
    if max_size is not None and fmt != "markdown":
        raise UsageError("--max-size applies to --format markdown only")
    limit = markdown.STEP_SUMMARY_LIMIT if max_size is None else max_size
    if fmt == "markdown" and limit < markdown.MIN_SIZE:
        raise UsageError(f"--max-size must be at least {markdown.MIN_SIZE:,} characters")
    fleet = load(config, paths)
    if fmt == "html":
        pieces: Iterable[str] = html.chunks(fleet)  # a row at a time: a large fleet's page is never whole
    elif fmt == "markdown":
        pieces = (markdown.page(fleet, limit),)
    else:
        pieces = (json_view.document(fleet), "\n")
    if out is None:
        for piece in pieces:
            click.echo(piece, nl=False)
        return EXIT_OK
    target = Path(out)
    try:
        write_atomic_chunks(target, (piece.encode("utf-8") for piece in pieces), overwrite=True)
    except OSError as exc:
        raise ConnsyncError(f"cannot write the report to {render.text(out)}: {exc.strerror or exc}") from None
    problems = len(fleet.problems)
    click.echo(f"Report of {render.plural(len(fleet.rows), 'connection')} ({problems} need"
               f"{'s' if problems == 1 else ''} attention) written to {render.text(str(target))}", err=True)
    return EXIT_OK


def load(config: Config, paths: Sequence[str]) -> Fleet:
    """The declarations (offline checks and policy, never decrypted), the store (never created): rows."""
    # The same policies as validate, so that the page shows the same policy/<id> findings.
    validation = rules.validate_files(paths, config.connections_dir, config.root, policy.in_force(config))
    with opened(config.store_url, config.workspace, create=False) as store:
        return gather(config.workspace, validation.declarations, validation.findings, store,
                      max_key_age_days=config.verify.max_key_age_days, complete=not paths)
