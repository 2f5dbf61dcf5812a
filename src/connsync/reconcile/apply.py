"""Carry out a plan under the workspace lock, one atomic write per connection.

A failure on one connection (verification, a version conflict, the store)
is recorded and the others go on; nothing is ever half-written because each
write is a single store transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connsync.errors import ConnsyncError, StoreError
from connsync.model import Desired
from connsync.providers import Verdict
from connsync.reconcile.history import record
from connsync.reconcile.plan import Change, Plan
from connsync.store import HISTORY_LIMIT, Store, Write

Verifier = Callable[[Sequence[Desired]], Mapping[str, Verdict]]  # keyed by casefolded name


@dataclass
class ApplyReport:
    plan: Plan
    applied: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verified: int = 0  # connections checked with their provider before writing
    rejected: int = 0  # of those, the ones that failed and so were not written
    interrupted: bool = False  # ^C between two writes: what is in applied was written, whole
    unverified: list[str] = field(default_factory=list)  # written, but their provider cannot verify them

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "applied": self.applied, "failed": self.failed,
                "summary": self.plan.summary, "warnings": self.warnings, "interrupted": self.interrupted,
                "unverified": self.unverified}


class ApplyInterrupted(Exception):
    """^C during the writes; carries the report of what was written before it."""

    def __init__(self, report: ApplyReport) -> None:
        super().__init__("apply interrupted")
        self.report = report


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
    report = ApplyReport(plan)
    writes = [c for c in plan.changes if c.action in ("create", "update")]
    verdicts = verifier([desired[c.name.casefold()] for c in writes]) if verifier and writes else {}
    report.verified = sum(v.status != "skipped" for v in verdicts.values())
    report.rejected = sum(v.status == "failed" for v in verdicts.values())
    not_kept = record(store, verdicts.values(), history)  # what report shows as the last verification
    if not_kept:
        report.warnings.append(not_kept)

    try:
        for change in plan.changes:
            _carry_out(change, desired, verdicts, store, report, actor, git_revision)
    except KeyboardInterrupt:
        # Each write is one transaction: the one under way when ^C came is rolled back, whole.
        report.interrupted = True
        raise ApplyInterrupted(report) from None
    return report


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
    except StoreError as exc:
        report.failed.append({"name": change.name, "action": change.action, "error": exc.message})


def _write(change: Change, desired: Desired, actor: str, git_revision: str | None) -> Write:
    metadata = desired.declaration.data["metadata"]
    return Write(
        name=desired.name, provider=desired.provider, spec=desired.spec, secrets=desired.secrets,
        managed=True, actor=actor, action="adopt" if change.adopt else change.action,
        source=desired.declaration.file, source_digest=desired.declaration.digest,
        git_revision=git_revision, description=metadata.get("description"),
        labels=dict(metadata.get("labels") or {}),
    )
