from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_CHANGES, EXIT_OK
from connsync.fsutil import write_atomic
from connsync.model import Declaration
from connsync.reconcile import InvalidDeclarations, Planned, make_plan
from connsync.store import Store, opened


@contextlib.contextmanager
def explain_invalid(style: render.Style) -> Iterator[None]:
    """Print the findings (to stderr) when the files are invalid; the error itself is one line."""
    try:
        yield
    except InvalidDeclarations as exc:
        click.echo(render.findings_text(exc.findings, len({f.file for f in exc.findings}), style),
                   err=True)
        raise


def plan_or_explain(config: Config, store: Store, paths: Sequence[str], *, prune: bool, adopt: bool,
                    style: render.Style, declarations: list[Declaration] | None = None) -> Planned:
    with explain_invalid(style):
        return make_plan(config, store, paths, prune=prune, adopt=adopt, declarations=declarations)


def plan(config: Config, paths: Sequence[str], *, prune: bool, adopt: bool, out: str | None,
         detailed_exitcode: bool, fmt: str, style: render.Style) -> int:
    with opened(config.store_url, config.workspace, create=False) as store:
        planned = plan_or_explain(config, store, paths, prune=prune, adopt=adopt, style=style)
    result = planned.plan
    if fmt == "json":
        click.echo(render.dumps(result.as_json()))
    elif fmt == "markdown":
        click.echo(render.plan_markdown(result))
    else:
        click.echo(render.plan_text(result, style))
    if out:
        saved = {**result.as_json(), "paths": list(paths)}
        write_atomic(Path(out), (render.dumps(saved) + "\n").encode(), overwrite=True)
        if fmt == "text":
            click.echo(f"Saved the plan to {out}; apply it with: connsync apply {out}")
    if detailed_exitcode and result.has_changes:
        return EXIT_CHANGES
    return EXIT_OK
