"""The one key-age rule, shared by verify, plan, list and ``rotate --older-than``.

A key is due for rotation once it is *more than* ``verify.max_key_age_days``
whole days old. IAM knows every key's CreateDate (verify and rotate ask it);
offline, the store's audit log knows the keys that ``connsync rotate``
created, which is how ``plan`` and ``list`` can say something without calling AWS.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from datetime import UTC, datetime

from connsync.store import AuditEntry, Store

# The audit action of a key that connsync created: "rotate-create-key AKIA...".
CREATED_ACTION = "rotate-create-key"


def age_days(created: datetime, now: datetime | None = None) -> int:
    """Whole days since ``created``."""
    return max(0, ((now or datetime.now(UTC)) - created).days)


def overdue(created: datetime, max_days: int, now: datetime | None = None) -> bool:
    return age_days(created, now) > max_days


def overdue_message(created: datetime, max_days: int, now: datetime | None = None) -> str | None:
    """The warning verify and plan print for an overdue key, else None."""
    age = age_days(created, now)
    if age <= max_days:
        return None
    return f"the key is {age} days old, past max_key_age_days ({max_days}): rotate it ('connsync rotate')"


def describe(age: int | None) -> str:
    return "unknown" if age is None else f"{age} day" + ("" if age == 1 else "s")


def created_from_audit(entries: Iterable[AuditEntry]) -> dict[str, datetime]:
    """access key id -> when connsync created it, from ``rotate-create-key`` audit entries."""
    found: dict[str, datetime] = {}
    for entry in entries:
        action, _, key_id = entry.action.partition(" ")
        if action != CREATED_ACTION or not key_id:
            continue
        try:
            at = datetime.fromisoformat(entry.at.replace("Z", "+00:00"))
        except ValueError:
            continue
        found[key_id] = at if at.tzinfo else at.replace(tzinfo=UTC)
    return found


def known_ages(store: Store, now: datetime | None = None) -> dict[str, int]:
    """Casefolded connection name -> age in days of its AWS key, where the audit log knows it."""
    created = created_from_audit(store.audit())
    ages = {}
    for record in store.records():
        key_id = record.spec.get("access_key_id") if record.provider == "aws" else None
        if isinstance(key_id, str) and key_id in created:
            ages[record.name.casefold()] = age_days(created[key_id], now)
    return ages


def plan_notes(store: Store, max_days: int) -> list[str]:
    """Plan's notes: connections whose key is known to be past the limit."""
    created = created_from_audit(store.audit())
    notes = []
    for record in store.records():
        key_id = record.spec.get("access_key_id") if record.provider == "aws" else None
        when = created.get(key_id) if isinstance(key_id, str) else None
        if when is not None and overdue(when, max_days):
            notes.append(f"{record.name!r}: access key {key_id} is {age_days(when)} days old, past "
                         f"max_key_age_days ({max_days}): connsync rotate {shlex.quote(record.name)}")
    return notes
