"""The one key-age rule, shared by verify, plan, list and ``rotate --older-than``.

A key is due for rotation once it is *more than* ``verify.max_key_age_days``
whole days old. IAM knows every key's CreateDate (verify and rotate ask it);
offline, the store's audit log knows the keys that ``connsync rotate``
created, which is how ``plan`` and ``list`` can say something without calling AWS.
The key's id is in the record for every card (``access_key_id``,
``private_key_id``, and ``client_secret_id`` for an Azure secret rotate made).

An Azure client secret also has an end: ``client_secret_expires`` (written by
rotate, as Graph's endDateTime). In its last ``EXPIRY_WARNING_DAYS`` days
verify and plan warn, whatever its age.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from connsync.store import AuditEntry, Store

# The audit action of a key that connsync created: "rotate-create-key AKIA...".
CREATED_ACTION = "rotate-create-key"
# Where each card holds the id of its key (the audit entries name keys by it).
KEY_ID_FIELDS = {"aws": "access_key_id", "gcp": "private_key_id", "azure": "client_secret_id"}
EXPIRES_FIELD = "client_secret_expires"
EXPIRY_WARNING_DAYS = 30  # Entra ID's own reminders start a month ahead, too


def key_id(provider: str, spec: Mapping[str, object]) -> str | None:
    value = spec.get(KEY_ID_FIELDS.get(provider, ""))
    return value if isinstance(value, str) else None


def expires(spec: Mapping[str, object]) -> datetime | None:
    """When an Azure client secret ends, where the connection says (``client_secret_expires``)."""
    value = spec.get(EXPIRES_FIELD)
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        return None
    return at if at is None or at.tzinfo else at.replace(tzinfo=UTC)


def expiry_message(spec: Mapping[str, object], now: datetime | None = None) -> str | None:
    """The warning for a client secret in its last days (or past its end), else None; the caller says
    how to rotate it."""
    end = expires(spec)
    if end is None:
        return None
    left = end - (now or datetime.now(UTC))
    if left.total_seconds() <= 0:
        return f"the client secret expired on {end:%Y-%m-%d %H:%M} UTC (client_secret_expires)"
    if left.days >= EXPIRY_WARNING_DAYS:
        return None
    days = f"{left.days} day" + ("" if left.days == 1 else "s") if left.days else "less than a day"
    return f"the client secret expires on {end:%Y-%m-%d %H:%M} UTC, in {days} (client_secret_expires)"


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
    """Casefolded connection name -> age in days of its key, where the audit log knows it."""
    created = created_from_audit(store.audit())
    ages = {}
    for record in store.records():
        held = key_id(record.provider, record.spec)
        if held is not None and held in created:
            ages[record.name.casefold()] = age_days(created[held], now)
    return ages


def plan_notes(store: Store, max_days: int) -> list[str]:
    """Plan's notes: connections whose key is known to be past the limit."""
    created = created_from_audit(store.audit())
    notes = []
    for record in store.records():
        held = key_id(record.provider, record.spec)
        when = created.get(held) if held is not None else None
        what = "access key" if record.provider == "aws" else "client secret" if record.provider == "azure" \
            else "key"
        if when is not None and overdue(when, max_days):
            notes.append(f"{record.name!r}: {what} {held} is {age_days(when)} days old, past "
                         f"max_key_age_days ({max_days}): connsync rotate {shlex.quote(record.name)}")
        ending = expiry_message(record.spec) if record.provider == "azure" else None
        if ending is not None:
            notes.append(f"{record.name!r}: {ending}: connsync rotate {shlex.quote(record.name)}")
    return notes
