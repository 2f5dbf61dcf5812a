from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ConnsyncError, StoreError, UsageError
from connsync.identity import actor, git_revision, in_ci
from connsync.model import Declaration, StoredConnection
from connsync.reconcile import planfile
from connsync.reconcile.apply import ApplyReport, Verifier, check_deletes, execute, settle
from connsync.reconcile.pipeline import load_valid, make_plan
from connsync.reconcile.plan import Plan, check_stale
from connsync.store import EmptyStore, LockInfo, Store, destroying, opened, refuse_ephemeral_store


@dataclass(frozen=True)
class ApplyOptions:
    planfile: str | None
    prune: bool | None  # None: apply.prune from connsync.yaml
    adopt: bool
    auto_approve: bool
    skip_verify: bool
    max_deletes: int | None
    lock_timeout: float
    allow_embedded_store: bool = False
    destroy: bool = False  # deletes destroy every version (stores that keep versions only)


def _refuse_plan_changing_flags(options: ApplyOptions) -> None:
    """A saved plan is applied as it was made and reviewed; a flag that would change it is an error."""
    given = [flag for flag, on in (("--prune", options.prune is True), ("--no-prune", options.prune is False),
                                   ("--adopt", options.adopt)) if on]
    if given:
        raise UsageError(
            f"{', '.join(given)} cannot be used with a saved plan: it would change the plan",
            hint="make a new plan with these flags ('connsync plan --out FILE ...') and apply that",
        )


def apply(config: Config, paths: Sequence[str], options: ApplyOptions, *, verifier: Verifier | None,
          fmt: str, style: render.Style) -> int:
    refuse_ephemeral_store(config.store_url, in_ci=in_ci(), allowed=options.allow_embedded_store)
    if options.planfile:
        _refuse_plan_changing_flags(options)
        paths = planfile.read(options.planfile).paths  # checked again, with its MAC, under the lock
    # The files first: broken input must not even create a store.
    declarations = load_valid(config, paths)
    # A plan without a MAC is one made before the store existed: only then can it be applied.
    store_existed = bool(options.planfile) and _store_exists(config)
    with opened(config.store_url, config.workspace) as store:
        if options.destroy:
            destroying(store)
        saved: Plan | None = None
        if options.planfile:
            saved = planfile.verify(options.planfile, store, store_existed=store_existed).plan
        prune = saved.prune if saved else (config.prune if options.prune is None else options.prune)
        adopt = saved.adopt if saved else options.adopt
        lock = store.acquire_lock(timeout=options.lock_timeout)
        try:
            if lock.replaced:
                click.echo(render.text(lock.takeover_note(), 400), err=True)
            report = _plan_and_execute(config, store, paths, declarations, options, saved, prune=prune,
                                       adopt=adopt, verifier=verifier, fmt=fmt, style=style)
        except BaseException:
            # The error (or ^C) that ended the command is what the user reads; a lock that cannot
            # be given back on top of it is a note.
            for note in _release(store, lock):
                click.echo(f"note: {render.text_lines(note)}", err=True)
            raise
        late_interrupt = False
        try:
            report.notes += _release(store, lock)
        except KeyboardInterrupt:
            late_interrupt = True
    try:
        _print_report(report, fmt, style)
    except KeyboardInterrupt:
        late_interrupt = True
    if late_interrupt and report.ended is None:
        click.echo("Interrupted (^C) after the apply finished: the report above is complete; nothing "
                   "was left half-done.", err=True)
        return EXIT_INTERRUPTED
    if report.ended is not None:
        return EXIT_INTERRUPTED if report.ended.interrupted else EXIT_FAILED
    return EXIT_OK if report.ok else EXIT_FAILED


def _plan_and_execute(config: Config, store: Store, paths: Sequence[str], declarations: list[Declaration],
                      options: ApplyOptions, saved: Plan | None, *, prune: bool, adopt: bool,
                      verifier: Verifier | None, fmt: str, style: render.Style) -> ApplyReport:
    try:
        # Planned afresh under the lock: whatever ran before us is already in the store, and
        # every decision comes from the files and the settings, not from the plan file.
        planned = make_plan(config, store, paths, prune=prune, adopt=adopt, declarations=declarations)
    except KeyboardInterrupt:
        raise Cancelled("interrupted (^C) while planning; nothing was written") from None
    if saved is not None:
        check_stale(saved, planned.plan)
    check_deletes(planned.plan, config.max_deletes if options.max_deletes is None else options.max_deletes)
    if fmt == "text":
        click.echo(render.plan_text(planned.plan, style))
        for warning in render.plan_notes_text(planned.plan):
            click.echo(style(f"Warning: {warning}", fg="yellow"), err=True)
    if planned.plan.pending and not options.auto_approve:
        _confirm(planned.plan)
    report = execute(planned.plan, planned.desired, store,
                     verifier=None if options.skip_verify else verifier,
                     actor=actor(), git_revision=git_revision(config.root), history=config.verify_history)
    if report.ended is not None and not report.ended.before_writes:
        settle(report, _read_back(store))
    return report


def _read_back(store: Store) -> list[StoredConnection] | None:
    """The store's records after an early end, or None when it cannot be read (gone, or ^C again)."""
    try:
        return store.records()
    except (StoreError, KeyboardInterrupt):
        return None


def _release(store: Store, lock: LockInfo) -> list[str]:
    """Give the lock back; when the store is gone that fails, and it is a note, not the error."""
    try:
        store.release_lock(lock)
    except StoreError as exc:
        return [f"the workspace lock {lock.id} could not be released ({exc.message}); it belongs to this "
                "process, which is ending, so the next apply takes it over"]
    return []


def _store_exists(config: Config) -> bool:
    with opened(config.store_url, config.workspace, create=False) as store:
        return not isinstance(store, EmptyStore)


def _print_report(report: ApplyReport, fmt: str, style: render.Style) -> None:
    if fmt == "json":
        click.echo(render.json_output("apply", report.ok, report.as_json()))
    elif report.ended is not None and report.ended.before_writes:
        pass  # one line says it all: nothing was written
    elif report.plan.pending or report.failed or report.ended:
        click.echo("")
        click.echo(render.apply_text(report, style))
    for line in render.early_end_lines(report):
        click.echo(line, err=True)
    for note in report.notes:
        click.echo(f"note: {render.text_lines(note)}", err=True)


def _confirm(plan: Plan) -> None:
    if not sys.stdin.isatty():
        raise ConnsyncError(
            "refusing to apply without confirmation: standard input is not a terminal",
            hint="review the plan, then pass --auto-approve",
        )
    deletes = plan.summary["delete"]
    try:
        if deletes:
            # As Terraform does for destroys: a y typed by habit is not enough to delete.
            answer = click.prompt(f"\nThis deletes {deletes} connection(s) from the store. "
                                  "Only 'yes' will be accepted to approve", default="", show_default=False,
                                  err=True)
            approved = answer.strip() == "yes"
        else:
            approved = click.confirm("\nApply these changes?", default=False, err=True)
    # ^C or ^D at the prompt: say so, not just "Aborted." A ^C that lands while click is still
    # printing the prompt arrives as KeyboardInterrupt rather than click's Abort.
    except (click.exceptions.Abort, KeyboardInterrupt):
        raise Cancelled("apply cancelled at the prompt; nothing was changed") from None
    if not approved:
        raise ConnsyncError("apply cancelled; nothing was changed")


class Cancelled(ConnsyncError):
    exit_code = EXIT_INTERRUPTED
