from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from connsync import render
from connsync.apply import Verifier, check_deletes, execute
from connsync.commands.plan import explain_invalid, plan_or_explain
from connsync.config import Config
from connsync.errors import EXIT_FAILED, EXIT_OK, ConnsyncError, UsageError
from connsync.identity import actor, git_revision
from connsync.plan import Plan, check_stale
from connsync.reconcile import load_valid
from connsync.store import opened


@dataclass(frozen=True)
class ApplyOptions:
    planfile: str | None
    prune: bool
    adopt: bool
    auto_approve: bool
    skip_verify: bool
    max_deletes: int | None
    lock_timeout: float


def load_saved_plan(path: str) -> tuple[Plan, list[str]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return Plan.from_json(data), list(data.get("paths") or [])
    except OSError as exc:
        raise UsageError(f"{path}: cannot read plan file: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConnsyncError(f"{path}: not a connsync plan file ({exc})") from None


def apply(config: Config, paths: Sequence[str], options: ApplyOptions, *, verifier: Verifier | None,
          fmt: str, style: render.Style) -> int:
    saved: Plan | None = None
    if options.planfile:
        saved, paths = load_saved_plan(options.planfile)
    prune = saved.prune if saved else options.prune
    adopt = saved.adopt if saved else options.adopt
    # The files first: broken input must not even create a store.
    with explain_invalid(style):
        declarations = load_valid(config, paths)
    with opened(config.store_url, config.workspace) as store:
        lock = store.acquire_lock(timeout=options.lock_timeout)
        if lock.replaced:
            click.echo(lock.takeover_note(), err=True)
        try:
            # Planned afresh under the lock: whatever ran before us is already in the store.
            planned = plan_or_explain(config, store, paths, prune=prune, adopt=adopt, style=style,
                                      declarations=declarations)
            if saved is not None:
                check_stale(saved, planned.plan)
            check_deletes(planned.plan, config.max_deletes if options.max_deletes is None
                          else options.max_deletes)
            if fmt == "text":
                click.echo(render.plan_text(planned.plan, style))
            actionable = any(c.action in ("create", "update", "delete", "conflict")
                             for c in planned.plan.changes)
            if actionable and saved is None and not options.auto_approve:
                _confirm()
            report = execute(planned.plan, planned.desired, store,
                             verifier=None if options.skip_verify else verifier,
                             actor=actor(), git_revision=git_revision(config.root))
        finally:
            store.release_lock(lock)
    if fmt == "json":
        click.echo(render.dumps(report.as_json()))
    elif actionable or report.failed:
        click.echo("")
        click.echo(render.apply_text(report, style))
    return EXIT_OK if report.ok else EXIT_FAILED


def _confirm() -> None:
    if not sys.stdin.isatty():
        raise ConnsyncError(
            "refusing to apply without confirmation: standard input is not a terminal",
            hint="review the plan, then pass --auto-approve (or apply a saved plan file)",
        )
    if not click.confirm("\nApply these changes?", default=False, err=True):
        raise ConnsyncError("apply cancelled; nothing was changed")
