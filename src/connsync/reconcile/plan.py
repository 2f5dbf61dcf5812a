"""The plan: a pure diff of what the files declare against what the store holds.

Nothing here does I/O. Secrets are compared by fingerprint only, and a plan
(in memory or saved) never holds a secret, only ``{"sensitive": true}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from connsync.errors import StalePlan
from connsync.model import ACTIONS, Action, Declaration, StoredConnection

PLAN_FORMAT = 1
PENDING_ACTIONS = frozenset({"create", "update", "delete", "conflict"})


@dataclass(frozen=True)
class Intent:
    """What one file declares, in the terms the diff needs."""

    name: str
    provider: str
    file: str
    digest: str
    spec: Mapping[str, Any]  # clear fields only
    description: str | None
    labels: Mapping[str, str]
    fingerprints: Mapping[str, str] | None = None  # None until decrypted

    @classmethod
    def from_declaration(cls, decl: Declaration, secret_fields: Iterable[str]) -> Intent:
        secrets = set(secret_fields)
        metadata = decl.data["metadata"]
        return cls(
            name=decl.name, provider=decl.provider, file=decl.file, digest=decl.digest,
            spec={k: v for k, v in decl.spec.items() if k not in secrets},
            description=metadata.get("description"), labels=dict(metadata.get("labels") or {}),
        )


@dataclass(frozen=True)
class Change:
    action: Action
    name: str
    provider: str
    file: str | None
    drift: bool = False
    adopt: bool = False
    fields: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    digest: str | None = None  # of the file, as the plan saw it
    store_version: int | None = None  # of the record, as the plan saw it
    # A noop whose record should learn the file's new digest (same values, other
    # bytes), so that the next plan needs no decryption.
    resync: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.action, "name": self.name, "provider": self.provider, "file": self.file,
            "drift": self.drift, "adopt": self.adopt, "fields": {k: dict(v) for k, v in self.fields.items()},
            "digest": self.digest, "store_version": self.store_version, "resync": self.resync,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            action=data["action"], name=data["name"], provider=data["provider"], file=data.get("file"),
            drift=bool(data.get("drift")), adopt=bool(data.get("adopt")), fields=data.get("fields") or {},
            digest=data.get("digest"), store_version=data.get("store_version"),
            resync=bool(data.get("resync")),
        )


@dataclass(frozen=True)
class Plan:
    workspace: str
    changes: tuple[Change, ...]
    ignored: int = 0  # unmanaged records that no file declares
    prune: bool = False
    adopt: bool = False
    partial: bool = False  # only some files were planned: no orphans are looked for
    # False when planned without the key (plan --base): secret changes were not compared.
    secrets_compared: bool = True
    reencrypted: tuple[str, ...] = ()  # plan --base: names whose encrypted values differ
    # What the store said of itself (in CI and embedded; not created yet): connsync's own words.
    store_warnings: tuple[str, ...] = ()

    @property
    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(ACTIONS, 0)
        for change in self.changes:
            counts[change.action] += 1
        return counts

    @property
    def pending(self) -> bool:
        """Whether apply with the same settings would act: what --detailed-exitcode's 2 means.

        Orphans that prune is not asked to delete are settled, not pending (else a kept orphan
        keeps a PR label and a drift issue red forever); a conflict is pending, since apply
        fails on it until someone adopts the record or renames the file.
        """
        return any(c.action in PENDING_ACTIONS for c in self.changes)

    @property
    def has_changes(self) -> bool:
        return any(c.action != "noop" for c in self.changes)

    @property
    def warnings(self) -> list[str]:
        return self.warning_sentences(repr)

    def warning_sentences(self, quote: Callable[[str], str]) -> list[str]:
        """What to say beside the plan; ``quote`` makes a name safe for the medium it goes to."""
        sentences = list(self.store_warnings)
        if not self.secrets_compared:
            sentences.append("secret fields were not compared: this run has no decryption key (a pull "
                             "request from a fork gets no secrets), so the plan covers the clear fields only")
        if self.reencrypted:
            sentences.append("the encrypted values of " + ", ".join(quote(n) for n in self.reencrypted)
                             + " differ from the base branch; whether the secrets changed cannot be told "
                             "without the key")
        kept = [quote(c.name) for c in self.changes if c.action == "orphan"]
        if kept:
            sentences.append(f"{len(kept)} managed record(s) no longer declared by any file are kept, "
                             "because prune is off (apply.prune in connsync.yaml, or --prune): "
                             + ", ".join(kept))
        return sentences

    def as_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT, "workspace": self.workspace,
            "changes": [c.as_json() for c in self.changes], "summary": self.summary,
            "ignored": self.ignored, "prune": self.prune, "adopt": self.adopt, "partial": self.partial,
            "pending": self.pending, "secrets_compared": self.secrets_compared, "warnings": self.warnings,
        }

    def as_output(self) -> dict[str, Any]:
        """The plan as a command's JSON output: the envelope's format_version versions it, so the
        saved plan file's own ``format`` is left out."""
        return {k: v for k, v in self.as_json().items() if k != "format"}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """A plan from its JSON; the caller has checked ``data`` against the plan-file schema."""
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"unsupported plan format {data.get('format')!r}")
        return cls(
            workspace=data["workspace"], changes=tuple(Change.from_json(c) for c in data["changes"]),
            ignored=int(data.get("ignored", 0)), prune=bool(data.get("prune")),
            adopt=bool(data.get("adopt")), partial=bool(data.get("partial")),
            secrets_compared=bool(data.get("secrets_compared", True)),
        )


def is_fast_noop(intent: Intent, record: StoredConnection | None) -> bool:
    """Unchanged without decrypting: same file bytes as the last apply, store not moved since."""
    return (
        record is not None and record.managed and not record.drifted
        and record.source_digest == intent.digest and record.provider == intent.provider
    )


def needs_fingerprints(intent: Intent, record: StoredConnection | None, adopt: bool) -> bool:
    if is_fast_noop(intent, record):
        return False
    return record is None or record.managed or adopt


def field_changes(intent: Intent, record: StoredConnection | None) -> dict[str, dict[str, Any]]:
    before_spec: Mapping[str, Any] = record.spec if record else {}
    before_secrets: Mapping[str, str] = record.fingerprints if record else {}
    after_secrets = intent.fingerprints or {}
    changes: dict[str, dict[str, Any]] = {}
    if record and record.provider != intent.provider:
        changes["provider"] = {"before": record.provider, "after": intent.provider}
    for key in [*intent.spec, *(k for k in before_spec if k not in intent.spec)]:
        if intent.spec.get(key) != before_spec.get(key):
            changes[key] = {"before": before_spec.get(key), "after": intent.spec.get(key)}
    for key in [*after_secrets, *(k for k in before_secrets if k not in after_secrets)]:
        if after_secrets.get(key) != before_secrets.get(key):
            changes[key] = {"sensitive": True, "changed": True}
    if (record.description if record else None) != intent.description:
        changes["metadata.description"] = {
            "before": record.description if record else None, "after": intent.description
        }
    if dict(record.labels if record else {}) != dict(intent.labels):
        changes["metadata.labels"] = {
            "before": dict(record.labels) if record else {}, "after": dict(intent.labels)
        }
    return changes


def diff(
    workspace: str,
    intents: Iterable[Intent],
    records: Iterable[StoredConnection],
    *,
    prune: bool = False,
    adopt: bool = False,
    partial: bool = False,
) -> Plan:
    by_key = {r.name.casefold(): r for r in records}
    changes: list[Change] = []
    declared: set[str] = set()
    for intent in intents:
        key = intent.name.casefold()
        declared.add(key)
        record = by_key.get(key)
        base = Change("noop", intent.name, intent.provider, intent.file, digest=intent.digest,
                      store_version=record.version if record else None)
        if record is None:
            changes.append(replace(base, action="create", fields=field_changes(intent, None)))
        elif is_fast_noop(intent, record):
            changes.append(base)
        elif not record.managed and not adopt:
            changes.append(replace(base, action="conflict"))
        else:
            fields = field_changes(intent, record)
            adopting = not record.managed
            if fields or adopting:
                changes.append(replace(base, action="update", fields=fields, drift=record.drifted,
                                       adopt=adopting))
            else:
                changes.append(replace(base, drift=record.drifted, resync=True))
    ignored = 0
    if not partial:
        for key, record in by_key.items():
            if key in declared:
                continue
            if record.managed:
                action: Action = "delete" if prune else "orphan"
                changes.append(Change(action, record.name, record.provider, record.source,
                                      store_version=record.version, drift=record.drifted))
            else:
                ignored += 1
    changes.sort(key=lambda c: (c.name.casefold(), c.action))
    return Plan(workspace, tuple(changes), ignored, prune, adopt, partial)


def _version(version: int | None) -> str:
    return "no record" if version is None else f"version {version}"


def check_stale(saved: Plan, fresh: Plan) -> None:
    """Refuse a saved plan whose inputs moved, saying what moved: a file or the store, and for whom.

    ``fresh`` is re-derived from the current files and store with the saved plan's settings, so every
    decision apply takes is one the files and flags make now, never one read from the plan file.
    """
    again = "run 'connsync plan --out FILE' again and review the new plan"
    if saved.workspace != fresh.workspace:
        raise StalePlan(f"stale plan: it was made for workspace {saved.workspace!r}, "
                        f"not {fresh.workspace!r}", hint=again)
    fresh_by_name = {c.name.casefold(): c for c in fresh.changes}
    for old in saved.changes:
        new = fresh_by_name.pop(old.name.casefold(), None)
        if new is not None and new.store_version != old.store_version:
            raise StalePlan(
                f"stale plan: {old.name!r} changed in the store since the plan was made "
                f"({_version(old.store_version)} then, {_version(new.store_version)} now)", hint=again)
        if new is None or new.digest != old.digest:
            what = "was removed or renamed" if new is None else "changed"
            raise StalePlan(f"stale plan: the file {old.file or '?'} of {old.name!r} {what} since the "
                            "plan was made", hint=again)
        if new.action != old.action:
            raise StalePlan(f"stale plan: {old.name!r} would now be {new.action}, not {old.action}",
                            hint=again)
    added = [c for c in fresh_by_name.values() if c.action != "noop"]
    if added:
        names = ", ".join(f"{c.name!r} (file {c.file})" if c.action == "create" and c.file
                          else f"{c.name!r} (in the store)" for c in added)
        raise StalePlan(f"stale plan: {names} appeared since the plan was made", hint=again)
