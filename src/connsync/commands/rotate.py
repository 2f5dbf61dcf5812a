"""``connsync rotate``: a new key (AWS, GCP) or client secret (Azure) in the file (GitOps), or in the
store too (``--apply``); ``--exposed`` runs the incident runbook.

The procedures and their invariants live in the providers (``aws_rotation``,
``gcp_rotation``, ``azure_rotation``; ``*_incident`` for ``--exposed``); this
command chooses the connections, asks before acting, holds the workspace
lock while the store is read or written, and reports.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_FAILED, EXIT_OK, ConnsyncError, UsageError
from connsync.model import Declaration
from connsync.providers import (
    aws_incident,
    aws_rotation,
    azure_incident,
    azure_rotation,
    gcp_incident,
    gcp_rotation,
    incident,
    key_holders,
    rotation,
    rotation_due,
)
from connsync.providers.aws_keys import Credentials
from connsync.store import Store, opened


@dataclass(frozen=True)
class RotateCommand:
    names: Sequence[str]
    older_than: int | None = None
    finish: bool = False
    delete: bool = False
    apply: bool = False
    auto_approve: bool = False
    delete_inactive: bool = False
    admin_profile: str | None = None
    admin_env: bool = False
    wait_seconds: float = 60.0
    dry_run: bool = False
    lock_timeout: float = 60.0
    exposed: bool = False  # names are exposed key ids (AWS, GCP, Azure): the incident runbook
    detach_quarantine: bool = False
    expires_in_days: int = 180


def _check_flags(command: RotateCommand) -> None:
    if command.detach_quarantine and not command.exposed:
        raise UsageError("--detach-quarantine belongs to --exposed")
    if command.exposed:
        if not command.names or command.older_than is not None or command.finish:
            raise UsageError("--exposed takes the exposed key ids (not --older-than or --finish)")
        if command.admin_profile and command.admin_env:
            raise UsageError("choose one of --admin-profile and --admin-env")
        if not command.auto_approve and not command.dry_run and not sys.stdin.isatty():
            raise ConnsyncError("refusing to deactivate keys without confirmation: standard input is not "
                                "a terminal", hint="pass --auto-approve (or --dry-run to see the steps)")
        return
    if bool(command.names) == (command.older_than is not None):
        raise UsageError("name the connections to rotate, or pass --older-than DAYS (not both)")
    if command.delete and not command.finish:
        raise UsageError("--delete belongs to --finish: the old key is deleted only after it was retired")
    if command.finish and (command.apply or command.older_than is not None or command.delete_inactive):
        raise UsageError("--finish takes connection names and --delete only")
    if command.admin_profile and command.admin_env:
        raise UsageError("choose one of --admin-profile and --admin-env")
    if command.apply and not command.auto_approve and not command.dry_run and not sys.stdin.isatty():
        raise ConnsyncError("refusing to rotate into the store without confirmation: standard input is "
                            "not a terminal", hint="pass --auto-approve, or leave out --apply (GitOps)")


def _admin(command: RotateCommand) -> Credentials | None:
    if command.admin_profile:
        return Credentials(profile=command.admin_profile)
    return Credentials() if command.admin_env else None


def rotate(config: Config, command: RotateCommand, *, fmt: str, style: render.Style) -> int:
    _check_flags(command)
    if command.exposed:
        return _exposed(config, command, fmt=fmt, style=style)
    options = rotation.RotateOptions(admin=_admin(command), delete_inactive=command.delete_inactive,
                                     wait_seconds=command.wait_seconds, dry_run=command.dry_run,
                                     timeout=config.verify.timeout_seconds,
                                     expires_in_days=command.expires_in_days)
    echo = click.echo if fmt == "text" else None
    skipped: list[str] = []
    if command.older_than is not None:
        chosen, skipped = rotation_due.due(config, command.older_than, options)
        if echo:
            for line in skipped:
                echo(f"skip {render.text_lines(line)}")
    else:
        chosen = [rotation.find(config, name) for name in command.names]

    results: list[rotation.Rotation] = []
    with opened(config.store_url, config.workspace, create=not command.dry_run) as store:
        for decl in chosen:
            results.append(_one(config, store, decl, command, options, echo, style))
    failed = [r for r in results if r.error]
    if fmt == "json":
        click.echo(render.json_output("rotate", not failed, {
            "dry_run": command.dry_run, "rotations": [r.as_json() for r in results], "skipped": skipped}))
    elif not chosen:
        click.echo("Nothing to rotate.")
    return EXIT_FAILED if failed else EXIT_OK


def _one(config: Config, store: Store, decl: Declaration, command: RotateCommand,
         options: rotation.RotateOptions, echo: rotation.Echo | None,
         style: render.Style) -> rotation.Rotation:
    what = "Finishing the rotation of" if command.finish else "Rotating"
    if echo:
        echo(style(f"{what} {render.text(decl.name)} ({render.text(decl.file)})"
                   + (" — dry run, nothing changes" if command.dry_run else ""), bold=True))
    result = rotation.Rotation(decl.name, decl.file)
    try:
        if command.finish:
            lock = None if command.dry_run else store.acquire_lock(timeout=command.lock_timeout)
            try:
                _engine(decl).finish(config, decl, store, options, delete=command.delete, echo=echo,
                                rotation=result)
            finally:
                if lock is not None:
                    store.release_lock(lock)
        else:
            if command.apply and not command.auto_approve and not command.dry_run:
                _confirm(decl)
            _engine(decl).start(config, decl, store, options, echo, result)
            if command.dry_run:
                result.next_steps.append(_engine(decl).DRY_RUN_NEXT)
            elif command.apply:
                _store_and_retire(config, store, decl, command, options, echo, result)
            else:
                result.next_steps = _engine(decl).gitops_next_steps(result)
    except ConnsyncError as exc:
        result.error = exc.message
        if echo:
            click.echo(style(f"  ✗ {render.text_lines(exc.message)}", fg="red"), err=True)
            if exc.hint:
                click.echo(f"  hint: {render.text_lines(exc.hint)}", err=True)
    if echo and result.next_steps:
        echo("Next:")
        for line in result.next_steps:
            echo(f"  {render.text(line, limit=400)}")
    return result


def _store_and_retire(config: Config, store: Store, decl: Declaration, command: RotateCommand,
                      options: rotation.RotateOptions, echo: rotation.Echo | None,
                      result: rotation.Rotation) -> None:
    lock = store.acquire_lock(timeout=command.lock_timeout)
    try:
        rotation.store_new_key(config, rotation.find(config, decl.file), store, result, echo,
                               _engine(decl).stranded)
        _engine(decl).finish(config, rotation.find(config, decl.file), store, options, delete=False,
                             echo=echo, rotation=result)
    finally:
        store.release_lock(lock)


def _engine(decl: Declaration) -> Any:
    """The provider's rotation procedure: the same steps (start, finish, next steps) for each card."""
    return {"gcp": gcp_rotation, "azure": azure_rotation}.get(decl.provider, aws_rotation)


def _confirm(decl: Declaration) -> None:
    engine = _engine(decl)
    question = (f"Create a new {engine.CREDENTIAL} for {render.text(decl.name)}, write it into "
                f"{render.text(decl.file)}, store it, then {engine.RETIRE} the old one?")
    if not click.confirm(question, default=False, err=True):
        raise ConnsyncError("rotation cancelled; nothing was changed")


# --- rotate --exposed: the incident runbook ---------------------------------------------------------


def _exposed(config: Config, command: RotateCommand, *, fmt: str, style: render.Style) -> int:
    options = incident.IncidentOptions(
        admin=_admin(command) or Credentials(), delete_inactive=command.delete_inactive,
        detach_quarantine=command.detach_quarantine, apply=command.apply, wait_seconds=command.wait_seconds,
        dry_run=command.dry_run, timeout=config.verify.timeout_seconds, lock_timeout=command.lock_timeout,
        expires_in_days=command.expires_in_days)
    echo = click.echo if fmt == "text" else None
    runbooks = dict(_runbook(k) for k in command.names)  # key id: its provider's runbook, in order
    results: list[incident.Incident] = []
    with opened(config.store_url, config.workspace, create=not command.dry_run) as store:
        def lookup(key_id: str) -> key_holders.Holders:
            return runbooks.get(key_id, aws_incident).find_holders(config, key_id, store)

        found = [lookup(k) for k in runbooks]
        for holders in found:  # every key is accounted for before any is touched
            if not holders.all:
                raise runbooks[holders.key_id].no_holder(holders)
        if not command.auto_approve and not command.dry_run:
            _confirm_exposed(found, runbooks, command.apply)
        for holders in found:
            results.append(_contain_one(config, holders, lookup, store, options, echo, style,
                                        runbooks[holders.key_id]))
    failed = [r for r in results if r.error]
    if fmt == "json":
        click.echo(render.json_output("rotate", not failed, {
            "dry_run": command.dry_run, "rotations": [], "skipped": [],
            "exposed": [r.as_json() for r in results]}))
    return EXIT_FAILED if failed else EXIT_OK


def _runbook(raw: str) -> tuple[str, Any]:
    """A GCP service-account key id (40 hex digits), an Azure client secret id (a GUID), else an AWS
    access key id (or a usage error)."""
    gcp_key = gcp_incident.key_id_of(raw)
    if gcp_key:
        return gcp_key, gcp_incident
    azure_key = azure_incident.key_id_of(raw)
    if azure_key:
        return azure_key, azure_incident
    return aws_incident.check_key_id(raw), aws_incident


def _contain_one(config: Config, holders: key_holders.Holders, lookup: incident.Lookup, store: Store,
                 options: incident.IncidentOptions, echo: rotation.Echo | None,
                 style: render.Style, runbook: Any) -> incident.Incident:
    result = incident.Incident(holders.key_id, credential=runbook.CREDENTIAL)
    if echo:
        echo(style(f"Containing the exposed {runbook.CREDENTIAL} {render.text(holders.key_id)}"
                   + (" — dry run, nothing changes" if options.dry_run else ""), bold=True))
        for holder in holders.all:
            echo(f"  held by {render.text(holder.describe())}")
    try:
        runbook.contain(config, holders, lookup, store, options, echo, result)
    except ConnsyncError as exc:
        result.error = exc.message
        if echo:
            click.echo(style(f"  ✗ {render.text_lines(exc.message)}", fg="red"), err=True)
            if exc.hint:
                click.echo(f"  hint: {render.text_lines(exc.hint)}", err=True)
    except BaseException as exc:  # ^C or a bug part way: where the keys are, on stderr in any format
        stopped = ("interrupted (^C)" if isinstance(exc, KeyboardInterrupt)
                   else f"stopped ({type(exc).__name__})")
        click.echo(style(f"  ✗ {stopped}; {render.text_lines(result.state())}", fg="red"), err=True)
        for line in [*(f"note: {n}" for n in result.notes), *result.next_steps]:
            click.echo(f"  {render.text(line, limit=600)}", err=True)
        raise
    if echo:
        for note in result.notes:
            echo(f"  note: {render.text_lines(note)}")
        if result.next_steps:
            echo("What is left to do:")
            for line in result.next_steps:
                echo(f"  {render.text(line, limit=600)}")
    return result


def _confirm_exposed(found: Sequence[key_holders.Holders], runbooks: dict[str, Any], apply: bool) -> None:
    plans = "; ".join(f"{render.text(h.key_id)}: {runbooks[h.key_id].PLAN}" for h in found)
    question = f"Contain now ({plans})" + (", storing the new one" if apply else "") + "?"
    if not click.confirm(question, default=False, err=True):
        raise ConnsyncError("cancelled; nothing was changed")
