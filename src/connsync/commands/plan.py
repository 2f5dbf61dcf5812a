from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_CHANGES, EXIT_OK, UsageError
from connsync.providers import key_age
from connsync.reconcile import planfile
from connsync.reconcile.pipeline import InvalidDeclarations, load_valid, make_plan
from connsync.reconcile.plan import Plan
from connsync.store import opened
from connsync.validate import policy_diff


def print_plan(plan: Plan, fmt: str, style: render.Style, *, command: str = "plan",
               extra: dict[str, object] | None = None) -> None:
    """One plan in one of the three formats; text warnings go to stderr, the rest to stdout."""
    if fmt == "json":
        click.echo(render.json_output(command, True, {**plan.as_output(), **(extra or {})}))
    elif fmt == "markdown":
        click.echo(render.plan_markdown(plan) + render.plan_notes_markdown(plan))
    else:
        click.echo(render.plan_text(plan, style))
        for warning in render.plan_notes_text(plan):
            click.echo(style(f"Warning: {warning}", fg="yellow"), err=True)


def plan(config: Config, paths: Sequence[str], *, prune: bool | None, adopt: bool, out: str | None,
         detailed_exitcode: bool, fmt: str, style: render.Style, base: str | None = None) -> int:
    prune = config.prune if prune is None else prune
    policy_section = _policy_section(config, paths) if fmt == "markdown" else ""
    if base is not None:
        from connsync.reconcile.baseline import plan_against_files

        if out:
            raise UsageError("--out cannot be used with --base: a plan without the store cannot be applied")

        result = plan_against_files(config, Path(base), paths, prune=prune)
        print_plan(result, fmt, style)
        if policy_section:
            click.echo("\n" + policy_section)
        return EXIT_CHANGES if detailed_exitcode and result.pending else EXIT_OK
    with opened(config.store_url, config.workspace, create=False) as store:
        planned = make_plan(config, store, paths, prune=prune, adopt=adopt)
        if out:
            planfile.save(Path(out), planned.plan, paths, store)
        # The key-age rule, offline: keys whose creation connsync recorded (rotate) and that are due.
        overdue = key_age.plan_notes(store, config.verify.max_key_age_days) if fmt == "text" else []
    result = planned.plan
    print_plan(result, fmt, style)
    if policy_section:
        click.echo("\n" + policy_section)
    for note in overdue:
        click.echo(style(f"Note: {render.text(note, 400)}", fg="yellow"), err=True)
    if out and fmt == "text":
        click.echo(f"Saved the plan to {out}; review it with 'connsync show {out}', "
                   f"apply it with 'connsync apply {out}'")
    return EXIT_CHANGES if detailed_exitcode and result.pending else EXIT_OK


def _policy_section(config: Config, paths: Sequence[str]) -> str:
    """For the pull-request comment: the policy's warnings, waivers and what the branch changes in the
    policies; when the files do not pass, the findings that stop the plan (the comment says it failed)."""
    try:
        declarations = load_valid(config, paths)
    except InvalidDeclarations as invalid:
        click.echo("The files do not pass validation, so nothing was planned:\n\n"
                   + render.findings_markdown(invalid.findings))
        raise
    return render.policy_markdown(policy_diff.report(config, declarations))
