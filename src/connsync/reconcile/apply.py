"""Carry out a plan under the workspace lock, one atomic write per connection.

A failure on one connection (verification, a version conflict, a value the
store refuses) is recorded and the others go on; nothing is ever half-written
because each write is a single store transaction. A failure after which nothing
more can be written (the store gone or given up on, the lock lost, a full disk,
^C) ends the apply early: the report is then an ``EarlyEnd`` with what the store
confirmed, what was not written, and the one write that may be in doubt, for
every caller (and every store) to render alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connsync.errors import ConnsyncError, LockError, StoreError, StoreUnavailable
from connsync.model import Desired, StoredConnection
from connsync.providers import Verdict
from connsync.reconcile.history import record
from connsync.reconcile.plan import Change, Plan
from connsync.store import HISTORY_LIMIT, Store, Write
from connsync.store.base import now

Verifier = Callable[[Sequence[Desired]], Mapping[str, Verdict]]  # keyed by casefolded name


WRITES = ("create", "update", "delete")
RERUN_HINT = "run apply again: what was written is not written twice, and it finishes the rest"


@dataclass(frozen=True)
class EarlyEnd:
    """Why an apply stopped before the end of its plan: the store went away, the lock was lost,
    the disk filled up, or ^C. A value, so that every store and every caller reports it alike."""

    cause: str  # one line, the store's own words
    interrupted: bool = False  # ^C: exit 130 rather than 1
    before_writes: bool = False  # it came during verification: nothing was written
    in_doubt: bool = False  # the write under way may still land although the store does not show it yet
    store_hint: str | None = None  # what to do about the store first (unseal it, check the address)

    @property
    def hint(self) -> str:
        return f"{self.store_hint}; then {RERUN_HINT}" if self.store_hint else RERUN_HINT


@dataclass
class ApplyReport:
    plan: Plan
    applied: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verified: int = 0  # connections checked with their provider before writing
    rejected: int = 0  # of those, the ones that failed and so were not written
    unverified: list[str] = field(default_factory=list)  # written, but their provider cannot verify them
    ended: EarlyEnd | None = None
    not_written: list[dict[str, Any]] = field(default_factory=list)  # planned writes that did not happen
    # The write under way when the store went away, when the store could not be read afterwards to
    # say whether it landed: it is whole either way, and a re-run finds out.
    in_doubt: dict[str, Any] | None = None
    counted_from_store: bool = False  # applied was read back from the store after an early end
    notes: list[str] = field(default_factory=list)  # after the report: a lock that could not be released
    actor: str = ""
    started_at: str = ""  # when the writes began, as the store's updated_at reads
    in_flight: Change | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.failed and self.ended is None

    @property
    def interrupted(self) -> bool:
        return self.ended is not None and self.ended.interrupted

    def counts(self) -> dict[str, int]:
        return {a: sum(1 for i in self.applied if i["action"] == a) for a in WRITES}

    def as_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "ok": self.ok, "applied": self.applied, "failed": self.failed, "summary": self.plan.summary,
            "warnings": self.warnings, "interrupted": self.interrupted, "unverified": self.unverified}
        if self.ended is not None:
            payload["ended_early"] = {
                "cause": self.ended.cause, "interrupted": self.ended.interrupted,
                "counted_from": "store" if self.counted_from_store else "confirmed writes",
                "not_written": self.not_written, "in_doubt": self.in_doubt, "hint": self.ended.hint}
        if self.notes:
            payload["notes"] = self.notes
        return payload


def check_deletes(plan: Plan, max_deletes: int) -> None:
    deletes = plan.summary["delete"]
    if deletes > max_deletes:
        raise ConnsyncError(
            f"the plan deletes {deletes} connections, more than max_deletes ({max_deletes}); "
            "nothing was applied",
            hint="check the plan; if it is right, pass --max-deletes N",
        )


def execute(
    plan: Plan,
    desired: Mapping[str, Desired],
    store: Store,
    *,
    verifier: Verifier | None,
    actor: str,
    git_revision: str | None,
    history: int = HISTORY_LIMIT,
) -> ApplyReport:
    """Carry out ``plan``; an early end (store gone, lock lost, disk full, ^C) is in the report."""
    report = ApplyReport(plan, actor=actor)
    writes = [c for c in plan.changes if c.action in ("create", "update")]
    try:
        verdicts = verifier([desired[c.name.casefold()] for c in writes]) if verifier and writes else {}
    except KeyboardInterrupt:
        report.ended = EarlyEnd("interrupted (^C) while verifying", interrupted=True, before_writes=True)
        report.not_written = [_item(c) for c in plan.changes if c.action in WRITES]
        return report
    report.verified = sum(v.status != "skipped" for v in verdicts.values())
    report.rejected = sum(v.status == "failed" for v in verdicts.values())
    report.started_at = now()
    try:
        not_kept = record(store, verdicts.values(), history)  # what report shows as the last verification
        if not_kept:
            report.warnings.append(not_kept)
        for change in plan.changes:
            report.in_flight = change
            _carry_out(change, desired, verdicts, store, report, actor, git_revision)
        report.in_flight = None
    except KeyboardInterrupt:
        # Each write is one transaction: the one under way when ^C came is whole, written or not.
        report.ended = EarlyEnd("interrupted (^C)", interrupted=True)
    except (StoreUnavailable, LockError) as exc:
        report.ended = EarlyEnd(exc.message, in_doubt=getattr(exc, "in_doubt", False),
                               store_hint=exc.hint if isinstance(exc, StoreUnavailable) else None)
    return report


def settle(report: ApplyReport, held: Sequence[StoredConnection] | None) -> None:
    """After an early end, what was written: the writes the store confirmed, and the one under way
    as the store shows it now (``held``: its records; None when it cannot be read).

    Only the write under way can differ from the loop's list: its commit may have landed as ^C
    came or as the connection broke. It counts as ours only when the store holds it at the
    version after the planned one, written by this actor since this apply began: another apply
    may have taken the lock over and written the same record meanwhile.
    """
    failed = {i["name"].casefold() for i in report.failed}
    confirmed = {i["name"].casefold() for i in report.applied}
    under_way = report.in_flight
    if under_way is not None and (under_way.action not in WRITES
                                  or under_way.name.casefold() in confirmed | failed):
        under_way = None
    report.not_written = [_item(c) for c in report.plan.changes if c.action in WRITES and c is not under_way
                          and c.name.casefold() not in confirmed | failed]
    report.counted_from_store = held is not None
    if under_way is None:
        return
    if held is None:
        report.in_doubt = _item(under_way)
        return
    stored = {r.name.casefold(): r for r in held}.get(under_way.name.casefold())
    if under_way.action == "delete":
        landed = stored is None
    else:
        landed = (stored is not None and stored.version == (under_way.store_version or 0) + 1
                  and stored.updated_by == report.actor and stored.updated_at >= report.started_at)
    if landed:
        report.applied.append(_item(under_way) | ({"version": stored.version} if stored else {}))
    elif report.ended is not None and report.ended.in_doubt:
        report.in_doubt = _item(under_way)  # given up on while the server held it: it may still land
    else:
        report.not_written.insert(0, _item(under_way))


def _item(change: Change) -> dict[str, Any]:
    return {"action": change.action, "name": change.name}


def _carry_out(change: Change, desired: Mapping[str, Desired], verdicts: Mapping[str, Verdict],
               store: Store, report: ApplyReport, actor: str, git_revision: str | None) -> None:
    try:
        if change.action in ("create", "update"):
            verdict = verdicts.get(change.name.casefold())
            if verdict is not None and verdict.status == "failed":
                report.failed.append({"name": change.name, "action": change.action,
                                      "error": "verification failed: " + "; ".join(verdict.messages)})
                return
            if verdict is not None and verdict.status in ("warning", "skipped"):
                report.warnings += [f"{change.name}: {m}" for m in verdict.messages]
            if verdict is not None and verdict.status == "skipped":
                report.unverified.append(change.name)
            record = store.put(
                _write(change, desired[change.name.casefold()], actor, git_revision),
                expected_version=change.store_version,
            )
            report.applied.append({"action": change.action, "name": change.name,
                                   "version": record.version})
        elif change.action == "delete":
            assert change.store_version is not None
            store.delete(change.name, expected_version=change.store_version, actor=actor,
                         git_revision=git_revision)
            report.applied.append({"action": "delete", "name": change.name})
        elif change.action == "conflict":
            report.failed.append({
                "name": change.name, "action": "conflict",
                "error": "exists in the store but is not managed by connsync; "
                "pass --adopt to take it over",
            })
        elif change.resync and change.file and change.digest and change.store_version is not None:
            store.record_source(change.name, expected_version=change.store_version,
                                source=change.file, source_digest=change.digest)
    except (StoreUnavailable, LockError):
        raise  # nothing more can be written: the apply ends here
    except StoreError as exc:
        report.failed.append({"name": change.name, "action": change.action, "error": exc.message})


def _write(change: Change, desired: Desired, actor: str, git_revision: str | None) -> Write:
    metadata = desired.declaration.data["metadata"]
    return Write(
        name=desired.name, provider=desired.provider, spec=desired.spec, secrets=desired.secrets,
        managed=True, actor=actor, action="adopt" if change.adopt else change.action,
        source=desired.declaration.file, source_digest=desired.declaration.digest,
        git_revision=git_revision, description=metadata.get("description"),
        labels=dict(metadata.get("labels") or {}), conn_id=metadata.get("id"),
    )
