from __future__ import annotations

from typing import Any

import click

from connsync import render
from connsync.errors import EXIT_OK
from connsync.validate import schema


def provider_summary(name: str) -> dict[str, Any]:
    document = schema.get_schema(name)
    return {"name": name, "title": str(document.get("title", "")),
            "fields": list(document.get("properties", {})), "required": list(document.get("required", [])),
            "secret_fields": sorted(schema.secret_fields(name))}


def show_schema(provider: str | None, *, list_only: bool, fmt: str) -> int:
    if list_only:
        providers = [provider_summary(name) for name in schema.provider_names()]
        if fmt == "json":
            click.echo(render.json_output("schema", True, {"providers": providers}))
        else:
            for p in providers:
                click.echo(f"{p['name']:<8} {p['title']}")
                click.echo(f"         fields: {', '.join(p['fields'])}")
                click.echo(f"         secret: {', '.join(p['secret_fields']) or '-'}")
        return EXIT_OK
    name = provider or schema.ENVELOPE
    document = schema.get_schema(name)
    if fmt == "json":
        click.echo(render.json_output("schema", True, {"name": name, "schema": document}))
    else:
        click.echo(render.dumps(document))  # the document itself, for editors and validators
    return EXIT_OK
