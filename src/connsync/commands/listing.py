from __future__ import annotations

from typing import Any

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_OK
from connsync.model import StoredConnection
from connsync.providers import key_age
from connsync.store import opened


def _with_age(shown: dict[str, Any], record: StoredConnection, ages: dict[str, int]) -> dict[str, Any]:
    if record.provider in key_age.KEY_ID_FIELDS:
        shown["key_age_days"] = ages.get(record.name.casefold())
    return shown


def list_connections(config: Config, *, fmt: str) -> int:
    config.require_repository_or_store()
    with opened(config.store_url, config.workspace, create=False) as store:
        records = store.records()
        ages = key_age.known_ages(store)
    if fmt == "json":
        click.echo(render.json_output("list", True, {
            "workspace": config.workspace,
            "connections": [_with_age(render.record_json(r), r, ages) for r in records]}))
    else:
        click.echo(render.records_text(records, key_ages=ages))
    return EXIT_OK
