"""What every card's exposure runbook (``rotate --exposed``) shares, whatever the cloud.

The incident record (which steps ran, which keys are in which state), the
journal that audits each step, the ``exposed`` audit entries, writing the new
credential into every file that held the old one, storing it (verified) under
each workspace's lock, and the follow-up steps every runbook prints. What
differs per cloud (the order, the API) is in :mod:`connsync.providers.aws_incident`,
:mod:`connsync.providers.gcp_incident` and :mod:`connsync.providers.azure_incident`.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connsync import render
from connsync.config import Config
from connsync.errors import ConnsyncError
from connsync.identity import actor, git_revision
from connsync.model import Secret
from connsync.providers.aws_keys import Credentials
from connsync.providers.key_holders import Holder, Holders
from connsync.providers.rotation import Echo, RotationFailed, Step, write_fields
from connsync.store import Store, opened

Lookup = Callable[[str], Holders]


@dataclass(frozen=True)
class IncidentOptions:
    admin: Credentials = field(default_factory=Credentials)  # default: the standard AWS chain
    delete_inactive: bool = False
    detach_quarantine: bool = False
    apply: bool = False
    wait_seconds: float = 60.0
    dry_run: bool = False
    timeout: float = 10.0
    lock_timeout: float = 60.0
    expires_in_days: int = 180  # Azure: the lifetime of the new client secret


@dataclass
class Incident:
    """What happened to one exposed key, for text and JSON."""

    key_id: str
    credential: str = "key"  # what the provider calls it, in messages: "key", "client secret"
    holders: list[Holder] = field(default_factory=list)
    user: str | None = None
    arn: str | None = None
    exposed_status: str | None = None  # as IAM says, after the runbook
    last_used: dict[str, Any] = field(default_factory=dict)
    new_key: str | None = None
    written: list[str] = field(default_factory=list)  # files
    stored: list[str] = field(default_factory=list)  # "workspace/name"
    quarantine: list[str] = field(default_factory=list)  # policy names still attached
    steps: list[Step] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def state(self) -> str:
        """Which keys exist in which state: said after any failure."""
        what = self.credential
        parts = [f"the exposed {what} {self.key_id} is {self.exposed_status or 'in an unknown state'}"]
        if self.new_key:
            where = ", ".join(self.written) or "no file"
            parts.append(f"the new {what} {self.new_key} is active and written into {where}"
                         + (f", stored in {', '.join(self.stored)}" if self.stored else ", stored nowhere"))
        return "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        used = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in self.last_used.items()}
        return {"key_id": self.key_id, "holders": [h.as_json() for h in self.holders], "user": self.user,
                "exposed_key_status": self.exposed_status, "last_used": used, "new_key": self.new_key,
                "written": self.written, "stored": self.stored, "quarantine_policies": self.quarantine,
                "steps": [s.as_json() for s in self.steps], "next": self.next_steps, "notes": self.notes,
                "error": self.error}


class Journal:
    """Each step: shown, kept, and audited in the configured workspace's store (never a secret)."""

    def __init__(self, incident: Incident, holder: Holder, store: Store, root: Path,
                 echo: Echo | None) -> None:
        self.incident, self._holder, self._store, self._echo = incident, holder, store, echo
        self._actor, self._revision = actor(), git_revision(root)

    def step(self, action: str, key_id: str, text: str, *, done: bool = True) -> None:
        self.incident.steps.append(Step(action, text, done))
        if done:  # under the first holder's name: the audit log is per connection
            self._store.record_event(self._holder.name, f"{action} {key_id}", actor=self._actor,
                                     git_revision=self._revision, source=self._holder.file)
        if self._echo:  # names, ids and dates from files and cloud APIs: data, never terminal control
            self._echo(f"  {'✓' if done else '-'} {render.text(text, limit=600)}")

    def exposed(self, store: Store, holder: Holder) -> None:
        store.record_event(holder.name, f"exposed {self.incident.key_id}", actor=self._actor,
                           git_revision=self._revision, source=holder.file)


def record_exposed(config: Config, holders: Holders, store: Store, journal: Journal) -> None:
    """The incident in the audit log of every workspace that knows the key (key id, who, when)."""
    for holder in holders.files:
        journal.exposed(store, holder)
    for holder in holders.records:
        if holder.workspace == config.workspace:
            if not any(f.name.casefold() == holder.name.casefold() for f in holders.files):
                journal.exposed(store, holder)
        else:
            with opened(config.store_url, str(holder.workspace), create=False) as other:
                journal.exposed(other, holder)


def take_back(incident: Incident, cause: BaseException, delete: Callable[[], None]) -> RotationFailed:
    """The new key is written nowhere yet: delete it again, and say what is left."""
    reason = cause.message if isinstance(cause, ConnsyncError) else type(cause).__name__
    try:
        delete()
        incident.new_key = None
        gone = f"the new {incident.credential} was deleted again"
    except ConnsyncError as again:
        gone = f"deleting the new {incident.credential} failed too ({again.message})"
    return RotationFailed(f"{reason}; {gone}; {incident.state()}; no file was changed",
                          hint="fix that and run 'connsync rotate --exposed' again")


Redo = Callable[[Holder], str]  # what finishes a file the new credential could not be written into


def rerun(holder: Holder) -> str:
    """The default way to finish: the file still holds the exposed key's id, so the runbook finds it."""
    del holder
    return "run 'connsync rotate --exposed' again"


def write_everywhere(holders: Holders, values: Mapping[str, str | Secret], journal: Journal,
                     incident: Incident, redo: Redo = rerun) -> None:
    """The new credential (``values``: field -> value) into every file that held the exposed one."""
    assert incident.new_key is not None
    for holder in holders.files:
        assert holder.declaration is not None and holder.file is not None
        try:
            write_fields(holder.declaration, values)
        except ConnsyncError as exc:
            raise RotationFailed(f"writing {holder.file} failed ({exc.message}); {incident.state()}",
                                 hint=_finish_hint(holder, values, incident, redo)) from None
        incident.written.append(holder.file)
        journal.step("exposed-write-file", incident.new_key, f"wrote {incident.new_key} into {holder.file} "
                     "(sops; comments and other fields kept)")


def _finish_hint(holder: Holder, values: Mapping[str, str | Secret], incident: Incident, redo: Redo) -> str:
    """The new credential is shown nowhere: it is in the files already written, and only there."""
    if not incident.written:  # nothing changed: the exposed credential is still there to be found
        return f"fix {holder.file}, then {rerun(holder)}"
    done = incident.written[0]
    return (f"fix {holder.file}, then copy {', '.join(values)} from {done} (see them with 'sops -d "
            f"{shlex.quote(done)}') into it ('connsync edit {shlex.quote(str(holder.file))}'), or "
            f"{redo(holder)}")


def replace_then_retire(config: Config, holders: Holders, store: Store, journal: Journal, incident: Incident,
                        options: IncidentOptions, values: Mapping[str, str | Secret],
                        retire: Callable[[bool], None], take: Callable[[], None], redo: Redo = rerun) -> None:
    """The new credential into every file and (``--apply``) the stores, then ``retire`` the exposed one.

    Once a file holds the new credential, the exposed one is retired whatever happens next (a store
    that refuses it, a file that cannot be written, a ^C, a bug): containment never waits for the
    store. ``retire`` is told when a failure is under way; its own failure is then a note, and the
    failure's message says the state after it. Before any file holds it, the new credential is
    deleted again (``take``): it would be valid and written nowhere, one more on every re-run.
    """
    try:
        write_everywhere(holders, values, journal, incident, redo)
        if options.apply:
            store_everywhere(config, holders, store, journal, incident, options)
    except BaseException as exc:
        if not incident.written:
            before = incident.state()
            failed = take_back(incident, exc, take)
            if not isinstance(exc, ConnsyncError):
                raise  # ^C or a bug: the caller says the state (the new credential deleted again)
            raise RotationFailed(failed.message.replace(f"; {before}", "", 1),
                                 hint=exc.hint or failed.hint) from None
        before = incident.state()
        retire(True)
        if not isinstance(exc, ConnsyncError):
            raise  # ^C or a bug: the caller says the state (the exposed credential retired)
        message = exc.message.replace(before, incident.state())
        raise RotationFailed(message if message != exc.message else f"{exc.message}; {incident.state()}",
                             hint=exc.hint) from None
    retire(False)


def workspaces_to_apply(config: Config, holders: Holders) -> dict[str, list[Holder]]:
    """Each file goes to the configured workspace, and to every other one whose record holds the key."""
    files = {h.name.casefold(): h for h in holders.files}
    chosen: dict[str, list[Holder]] = {config.workspace: list(holders.files)} if holders.files else {}
    for record in holders.records:
        declared = files.get(record.name.casefold())
        if declared and record.workspace and record.workspace != config.workspace:
            chosen.setdefault(record.workspace, []).append(declared)
    return chosen


def store_everywhere(config: Config, holders: Holders, store: Store, journal: Journal, incident: Incident,
                      options: IncidentOptions) -> None:
    from connsync.providers.verification import verifier_for
    from connsync.reconcile.apply import execute
    from connsync.reconcile.pipeline import make_plan

    # The user still carries AWS's quarantine policy; its new key is what the runbook is for.
    settings = dataclasses.replace(config.verify, quarantine_accepted=frozenset({incident.arn or ""}))
    for workspace, files in sorted(workspaces_to_apply(config, holders).items()):
        here = dataclasses.replace(config, workspace=workspace)
        with opened(config.store_url, workspace) if workspace != config.workspace else _same(store) as target:
            lock = target.acquire_lock(timeout=options.lock_timeout)
            try:
                planned = make_plan(here, target, [h.file for h in files if h.file])
                refused = [c for c in planned.plan.changes if c.action == "conflict"]
                report = execute(planned.plan, planned.desired, target, verifier=verifier_for(settings),
                                 actor=actor(), git_revision=git_revision(config.root))
            finally:
                target.release_lock(lock)
        for change in refused:
            incident.notes.append(f"{change.name!r} in workspace {workspace!r} was made outside connsync: "
                                  "take it over with 'connsync apply --adopt'")
        if report.ended is not None and report.ended.interrupted:
            raise KeyboardInterrupt  # as a ^C during the writes always came here
        problem = report.failed[0]["error"] if report.failed else report.ended.cause if report.ended else None
        if problem is not None:
            raise RotationFailed(f"storing in workspace {workspace!r} failed ({problem}); "
                                 f"{incident.state()}", hint="fix that and run 'connsync apply' there")
        for applied in report.applied:
            incident.stored.append(f"{workspace}/{applied['name']}")
            journal.step("exposed-store", str(incident.new_key), f"stored {incident.new_key} in "
                         f"{applied['name']!r} of workspace {workspace!r} (verified)")


class _same:
    """The store already open, as a context manager that leaves it open."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> Store:
        return self._store

    def __exit__(self, *_: object) -> None:
        return None


def follow_up(holders: Holders, incident: Incident, options: IncidentOptions) -> list[str]:
    """What every runbook leaves to do: merge the files (GitOps), replace what no file declares."""
    steps = []
    if not options.apply and holders.files:
        files = " ".join(shlex.quote(h.file) for h in holders.files if h.file)
        steps.append(f"commit {files} and merge the pull request: its apply job stores the new "
                     f"{incident.credential}")
    stored = {s.split("/", 1)[1].casefold() for s in incident.stored}
    for record in holders.records:
        if record.name.casefold() not in stored and not any(
                f.name.casefold() == record.name.casefold() for f in holders.files):
            steps.append(f"{record.describe()} holds the exposed {incident.credential} and no file declares "
                         "it: replace it in the platform, or declare it ('connsync import') and apply")
    return steps
