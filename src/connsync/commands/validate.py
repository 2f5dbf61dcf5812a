from __future__ import annotations

from collections.abc import Sequence

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_FAILED, EXIT_OK
from connsync.validate import policy, rules


def validate(paths: Sequence[str], config: Config, *, fmt: str, style: render.Style) -> int:
    result = rules.validate_files(paths, config.connections_dir, config.root, policy.in_force(config))
    waived = [w.as_json() for w in result.waived]
    if fmt == "json":
        click.echo(render.findings_json(result.findings, result.files, waived))
    elif fmt == "github":
        click.echo(render.findings_github(result.findings, result.files, len(waived)))
    else:
        click.echo(render.findings_text(result.findings, result.files, style, len(waived)))
    return EXIT_OK if result.ok else EXIT_FAILED
