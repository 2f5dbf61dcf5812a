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
from connsync.validate import rules

# Up to this many connections, plain lines are progress enough.
PROGRESS_BAR_ABOVE = 5


def verify(config: Config, paths: Sequence[str], *, fmt: str, style: render.Style,
           history: bool = True) -> int:
    # An invalid file fails on its own; it does not stop the others being verified.
    validation = rules.validate_files(paths, config.connections_dir, config.root)
    declarations = validation.valid_declarations()
    decrypted = sops.decrypt_many((d, Path(d.file)) for d in declarations)
    verdicts: list[Verdict] = _invalid(validation) + [
        Verdict(d.name, d.file, d.provider, "failed",
                messages=tuple(m for m in (r.message, r.hint) if m))  # the hint says where sops looked
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
        # A file too broken to name a connection has no history to keep.
        named = [v for v in verdicts if v.provider != "-"]
        warning = record_at(config.store_url, config.workspace, named, config.verify_history)
        if warning:
            click.echo(style(f"Warning: {render.text(warning, 400)}", fg="yellow"), err=True)

    if fmt == "json":
        ok = not any(v.status == "failed" for v in verdicts)
        summary = {s: sum(v.status == s for v in verdicts) for s in ("ok", "warning", "failed", "skipped")}
        click.echo(render.json_output("verify", ok, {"results": [v.as_json() for v in verdicts],
                                                     "summary": summary}))
    elif fmt == "markdown":
        click.echo(render.verify_markdown(verdicts))
    else:
        if show_bar:
            for verdict in verdicts:
                click.echo(render.verdict_line(verdict, style))
        click.echo(f"{render.verify_summary(verdicts)} in {time.monotonic() - started:.1f}s")
    return EXIT_FAILED if any(v.status == "failed" for v in verdicts) else EXIT_OK


def _invalid(validation: rules.Validation) -> list[Verdict]:
    """A failed verdict for each file with validation errors, naming them (as validate would)."""
    parsed = {d.file: d.data for d in validation.declarations}  # may lack any field: it is invalid
    by_file: dict[str, list[str]] = {}
    for finding in validation.findings:
        if finding.severity == "error":
            by_file.setdefault(finding.file, []).append(
                f"invalid: {finding.line}:{finding.column} [{finding.rule}] {finding.message}")
    def field(file: str, *path: str) -> str | None:
        value: object = parsed.get(file)
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value if isinstance(value, str) else None

    return [Verdict(field(file, "metadata", "name") or file, file, field(file, "provider") or "-",
                    "failed", messages=tuple(messages)) for file, messages in by_file.items()]
