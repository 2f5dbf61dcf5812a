from __future__ import annotations

import click

from connsync import render, schema
from connsync.errors import EXIT_OK


def show_schema(provider: str | None, *, list_only: bool, fmt: str) -> int:
    if list_only:
        names = schema.provider_names()
        if fmt == "json":
            click.echo(render.dumps(names))
        else:
            for name in names:
                title = schema.get_schema(name).get("title", "")
                secrets = ", ".join(sorted(schema.secret_fields(name))) or "-"
                click.echo(f"{name:<8} {title}  (secret: {secrets})")
        return EXIT_OK
    click.echo(render.dumps(schema.get_schema(provider or schema.ENVELOPE)))
    return EXIT_OK
