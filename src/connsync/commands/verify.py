from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from connsync import render, sops
from connsync.config import Config
from connsync.errors import EXIT_FAILED, EXIT_OK, ConnsyncError
from connsync.model import Desired
from connsync.providers import Verdict
from connsync.providers.verification import verify_all
from connsync.reconcile.history import record_at
from connsync.reconcile.pipeline import load_valid

# Up to this many connections, plain lines are progress enough.
PROGRESS_BAR_ABOVE = 5


def verify(config: Config, paths: Sequence[str], *, fmt: str, style: render.Style,
           history: bool = True) -> int:
    declarations = load_valid(config, paths)
    decrypted = sops.decrypt_many((d, Path(d.file)) for d in declarations)
    verdicts: list[Verdict] = [
        Verdict(d.name, d.file, d.provider, "failed", messages=(str(r.message),))
        for d, r in zip(declarations, decrypted, strict=True) if isinstance(r, ConnsyncError)
    ]
    desired = [r for r in decrypted if isinstance(r, Desired)]

    started = time.monotonic()
    show_bar = fmt == "text" and sys.stderr.isatty() and len(desired) > PROGRESS_BAR_ABOVE
    if show_bar:
        with click.progressbar(length=len(desired), label="Verifying", file=sys.stderr) as bar:
            results = verify_all(desired, config.verify, on_done=lambda _: bar.update(1))
    else:
        on_done = (lambda v: click.echo(render.verdict_line(v, style))) if fmt == "text" else None
        for verdict in verdicts:
            if on_done:
                on_done(verdict)
        results = verify_all(desired, config.verify, on_done=on_done)
    verdicts += results.values()
    verdicts.sort(key=lambda v: v.name.casefold())
    if history:
        warning = record_at(config.store_url, config.workspace, verdicts, config.verify_history)
        if warning:
            click.echo(style(f"Warning: {render.text(warning, 400)}", fg="yellow"), err=True)

    if fmt == "json":
        ok = not any(v.status == "failed" for v in verdicts)
        click.echo(render.json_output("verify", ok, {"results": [v.as_json() for v in verdicts]}))
    else:
        if show_bar:
            for verdict in verdicts:
                click.echo(render.verdict_line(verdict, style))
        click.echo(f"{render.verify_summary(verdicts)} in {time.monotonic() - started:.1f}s")
    return EXIT_FAILED if any(v.status == "failed" for v in verdicts) else EXIT_OK
