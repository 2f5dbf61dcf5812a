from __future__ import annotations

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_OK
from connsync.store import opened


def list_connections(config: Config, *, fmt: str) -> int:
    with opened(config.store_url, config.workspace, create=False) as store:
        records = store.records()
    if fmt == "json":
        click.echo(render.json_output("list", True, {
            "workspace": config.workspace, "connections": [render.record_json(r) for r in records]}))
    else:
        click.echo(render.records_text(records))
    return EXIT_OK
