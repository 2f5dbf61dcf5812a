"""The fleet as rows: what the platform's Connections page would show, from the files and the store.

Reads the declarations (validated offline, never decrypted) and what the store
holds (records, audit, verification history); no secret is ever read. Each
renderer (``html``, ``markdown``, ``json_view``) draws the same :class:`Fleet`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from connsync.model import Declaration, Finding, StoredConnection
from connsync.providers import key_age
from connsync.store import AuditEntry, Store, Verification

State = Literal["in-sync", "drift", "not-applied", "orphan"]
STATES: tuple[State, ...] = ("in-sync", "drift", "not-applied", "orphan")
STATE_LABELS: Mapping[str, str] = {"in-sync": "in sync", "drift": "drift", "not-applied": "not applied",
                                   "orphan": "orphan"}
# Where a provider's form keeps the account (subscription, project) and the region.
ACCOUNT_FIELDS = ("account_id", "subscription_id", "project_id")
REGION_FIELDS = ("default_region", "region", "location", "tenant_id")
EXPOSED_PREFIX = "exposed:"  # how verify words a key that AWS has quarantined
HISTORY_SHOWN = 10  # the newest results drawn beside the last one

# Worst first: the order of the page. Ranks below NOT_A_PROBLEM put a row among the problems.
_RANKS = {"exposed": 0, "verification failed": 1, "drift": 2, "key overdue": 3, "orphan": 4,
          "finding": 5, "verification warning": 6}
NOT_A_PROBLEM = 10


@dataclass(frozen=True, slots=True)  # slots: ten thousand of them for a large fleet
class Row:
    """One connection, as its card on the Connections page would show it."""

    name: str
    provider: str
    file: str | None
    state: State
    account: str | None
    region: str | None
    labels: Mapping[str, str]
    key_age_days: int | None
    key_overdue: bool
    last_rotated: str | None
    last_verification: Verification | None
    history: tuple[str, ...]  # statuses of the newest results, newest first
    findings: tuple[Finding, ...]
    problems: tuple[str, ...]  # short phrases, worst first; empty for a healthy connection
    note: str | None = None  # why a state is what it is, where that is not obvious

    @property
    def exposed(self) -> bool:
        return "exposed" in self.problems

    @property
    def rank(self) -> int:
        return min((_RANKS[p] for p in self.problems), default=NOT_A_PROBLEM)


@dataclass(frozen=True)
class Fleet:
    workspace: str
    generated_at: str  # ISO-8601, UTC
    store: str  # the store's own description: never a password
    max_key_age_days: int
    rows: list[Row]  # problems first, worst first, then by name
    unmanaged: int = 0  # records in the store that connsync does not manage and no file declares
    file_findings: list[Finding] = field(default_factory=list)  # files that did not load at all

    @property
    def problems(self) -> list[Row]:
        return [r for r in self.rows if r.problems]

    @property
    def healthy(self) -> list[Row]:
        return [r for r in self.rows if not r.problems]

    @property
    def exposed(self) -> list[Row]:
        return [r for r in self.rows if r.exposed]

    def by_state(self) -> dict[str, int]:
        counts = Counter(r.state for r in self.rows)
        return {state: counts.get(state, 0) for state in STATES}

    def by_provider(self) -> dict[str, list[Row]]:
        """Rows per provider card, in the rows' order (problems first), cards by name."""
        cards: dict[str, list[Row]] = {}
        for row in self.rows:
            cards.setdefault(row.provider, []).append(row)
        return dict(sorted(cards.items()))

    def by_verification(self) -> dict[str, int]:
        counts = Counter(r.last_verification.status if r.last_verification else "never" for r in self.rows)
        return {status: counts.get(status, 0) for status in ("ok", "warning", "failed", "skipped", "never")}


def gather(workspace: str, declarations: Sequence[Declaration], findings: Sequence[Finding], store: Store,
           *, max_key_age_days: int, complete: bool = True, now: datetime | None = None) -> Fleet:
    """The fleet from loaded declarations (with validate's findings) and an open store.

    ``complete``: the declarations are the whole repository, so a managed record without a file
    is an orphan (with only some paths asked about, nothing can be called an orphan).
    """
    now = now or datetime.now(UTC)
    records = {r.name.casefold(): r for r in store.records()}
    audit = store.audit()
    history: dict[str, list[Verification]] = {}
    for entry in store.verifications(per_connection=HISTORY_SHOWN):  # newest first
        history.setdefault(entry.name.casefold(), []).append(entry)
    rotated = _last_rotations(audit)
    created = key_age.created_from_audit(audit)
    by_file: dict[str, list[Finding]] = {}
    for finding in findings:
        by_file.setdefault(finding.file, []).append(finding)
    declared_files = {d.file for d in declarations}

    def row(name: str, provider: str, file: str | None, state: State, spec: Mapping[str, object],
            labels: Mapping[str, str], note: str | None) -> Row:
        key = name.casefold()
        seen = history.get(key, [])
        last = seen[0] if seen else None
        age = _age(last, spec, provider, created, now)
        overdue = age is not None and age > max_key_age_days
        own = tuple(by_file.get(file, ())) if file else ()
        return Row(name, provider, file, state, _first(spec, ACCOUNT_FIELDS), _first(spec, REGION_FIELDS),
                   labels, age, overdue, rotated.get(key), last, tuple(v.status for v in seen), own,
                   _problems(state, last, overdue, own), note)

    rows = []
    for decl in declarations:
        record = records.pop(decl.name.casefold(), None)
        state, note = _state(decl, record)
        metadata = decl.data.get("metadata")
        labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
        # A file with schema errors may hold anything here: labels are shown as text, whatever they are.
        shown = {str(k): v if isinstance(v, str) else str(v) for k, v in labels.items()} \
            if isinstance(labels, Mapping) else {}
        rows.append(row(decl.name, decl.provider, decl.file, state, decl.spec, shown, note))
    unmanaged = 0
    for record in records.values():
        if record.managed and complete:
            rows.append(row(record.name, record.provider, record.source, "orphan", record.spec, record.labels,
                            "the store holds it, and no file declares it any more"))
        elif not record.managed:
            unmanaged += 1
    rows.sort(key=lambda r: (r.rank, r.name.casefold()))
    stamp = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    return Fleet(workspace, stamp, store.describe(), max_key_age_days, rows, unmanaged,
                 [f for f in findings if f.file not in declared_files])


def _state(decl: Declaration, record: StoredConnection | None) -> tuple[State, str | None]:
    if record is None:
        return "not-applied", None
    if not record.managed:
        return "not-applied", "the store holds a record of this name that connsync does not manage " \
            "('connsync apply --adopt' takes it over)"
    if record.drifted:
        return "drift", "the store's record was changed outside connsync since the last apply"
    if record.source_digest != decl.digest:
        return "not-applied", "the file changed since the last apply"
    return "in-sync", None


def _problems(state: State, last: Verification | None, overdue: bool, findings: Iterable[Finding]) -> tuple[
        str, ...]:
    found = []
    failed = last is not None and last.status == "failed"
    if failed and last is not None and any(m.startswith(EXPOSED_PREFIX) for m in last.messages):
        found.append("exposed")
    if last is not None and last.status == "failed":
        found.append("verification failed")
    if state in ("drift", "orphan"):
        found.append(state)
    if overdue:
        found.append("key overdue")
    if any(True for _ in findings):
        found.append("finding")
    if last is not None and last.status == "warning":
        found.append("verification warning")
    return tuple(sorted(found, key=_RANKS.__getitem__))


def _first(spec: Mapping[str, object], keys: Sequence[str]) -> str | None:
    for key in keys:
        value = spec.get(key)
        if isinstance(value, str) and value and not value.startswith("ENC["):
            return value
    return None


def _age(last: Verification | None, spec: Mapping[str, object], provider: str,
         created: Mapping[str, datetime], now: datetime) -> int | None:
    """The key's age: from the provider at the last verification, else from rotate's audit entries."""
    if last is not None and last.key_created:
        try:
            when = datetime.fromisoformat(last.key_created.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is not None:
            return key_age.age_days(when if when.tzinfo else when.replace(tzinfo=UTC), now)
    key_id = key_age.key_id(provider, spec)
    if key_id is not None and key_id in created:
        return key_age.age_days(created[key_id], now)
    return None


def _last_rotations(audit: Iterable[AuditEntry]) -> dict[str, str]:
    """Casefolded name -> when connsync last made it a new key (``rotate-create-key`` and the like)."""
    rotated: dict[str, str] = {}
    for entry in audit:  # oldest first: the last one wins
        action = entry.action.split(" ", 1)[0]
        if action.startswith("rotate") and "create" in action:
            rotated[entry.name.casefold()] = entry.at
    return rotated


def ago(at: str | None, now: str) -> str:
    """'3 days ago', 'today', or '' for no time: how long before ``now`` (both ISO-8601)."""
    if not at:
        return ""
    try:
        then = datetime.fromisoformat(at.replace("Z", "+00:00"))
        current = datetime.fromisoformat(now.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = (current - (then if then.tzinfo else then.replace(tzinfo=UTC))).total_seconds()
    if seconds < 3600:
        minutes = max(0, int(seconds // 60))
        return "just now" if minutes < 1 else f"{minutes} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return f"{days} day{'s' if days != 1 else ''} ago"
