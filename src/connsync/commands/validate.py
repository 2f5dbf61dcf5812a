from __future__ import annotations

from collections.abc import Sequence

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_FAILED, EXIT_OK
from connsync.validate import rules


def validate(paths: Sequence[str], config: Config, *, fmt: str, style: render.Style) -> int:
    result = rules.validate_files(paths, config.connections_dir, config.root)
    if fmt == "json":
        click.echo(render.findings_json(result.findings, result.files))
    elif fmt == "github":
        click.echo(render.findings_github(result.findings, result.files))
    else:
        click.echo(render.findings_text(result.findings, result.files, style))
    return EXIT_OK if result.ok else EXIT_FAILED
