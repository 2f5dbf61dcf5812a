from __future__ import annotations

import click

from connsync import render
from connsync.errors import EXIT_OK
from connsync.reconcile import planfile


def show(path: str, *, fmt: str, style: render.Style) -> int:
    saved = planfile.read(path)
    plan = saved.plan
    if fmt == "json":
        click.echo(render.json_output("show", True, {**plan.as_output(), "paths": list(saved.paths),
                                                      "signed": saved.signed}))
        return EXIT_OK
    if fmt == "markdown":
        click.echo(render.plan_markdown(plan) + render.plan_notes_markdown(plan))
        return EXIT_OK
    settings = [f"prune {'on' if plan.prune else 'off'}", f"adopt {'on' if plan.adopt else 'off'}"]
    if saved.paths:
        settings.append(f"only {len(saved.paths)} path(s)")
    # show reads no store: it can say a signature is there, only apply can say it is good.
    signature = ("signed; apply checks the signature against the store" if saved.signed
                 else "unsigned: made before the store existed; apply takes it only while it still does not")
    click.echo(f"Saved plan {render.text(path)} ({', '.join(settings)}; {signature})")
    click.echo(render.plan_text(plan, style))
    for warning in render.plan_notes_text(plan):
        click.echo(style(f"Warning: {warning}", fg="yellow"), err=True)
    return EXIT_OK
