"""Verification history: what ``verify`` and ``apply`` leave in the store for ``report``.

A result is kept whether or not the store holds the connection yet (a connection is
verified before its first apply). Keeping it is a side effect of the command, never its
purpose: a store that cannot take it costs a warning, not the command's exit status.
"""

from __future__ import annotations

from collections.abc import Iterable

from connsync.errors import ConnsyncError
from connsync.providers import Verdict
from connsync.store import EmptyStore, Store, Verification, opened
from connsync.store.base import now


def as_history(verdicts: Iterable[Verdict], at: str | None = None) -> list[Verification]:
    """The verdicts as the store keeps them: time, status, account seen, messages; never a secret."""
    when = at or now()
    return [
        Verification(v.name, when, v.status, _account(v), tuple(v.messages),
                     v.key_created.isoformat(timespec="seconds").replace("+00:00", "Z")
                     if v.key_created else None)
        for v in verdicts
    ]


def _account(verdict: Verdict) -> str | None:
    # AWS says "account"; GCP's verifier names the project, Azure's the tenant.
    for key in ("account", "subscription", "project", "tenant"):
        value = verdict.identity.get(key)
        if value:
            return str(value)
    return None


def record(store: Store, verdicts: Iterable[Verdict], keep: int) -> str | None:
    """Keep the verdicts in ``store``; a warning to print when that was not possible."""
    history = as_history(verdicts)
    if not history:
        return None
    if isinstance(store, EmptyStore):
        return ("verification results were not kept: the store does not exist yet "
                "('connsync apply' creates it; 'connsync report' shows the results)")
    try:
        store.record_verifications(history, keep=keep)
    except ConnsyncError as exc:
        return f"verification results were not kept in the store: {exc.message}"
    return None


def record_at(url: str, workspace: str, verdicts: Iterable[Verdict], keep: int) -> str | None:
    """Open the store (never creating it) just to keep the verdicts; a warning when that failed."""
    try:
        with opened(url, workspace, create=False) as store:
            return record(store, verdicts, keep)
    except ConnsyncError as exc:
        return f"verification results were not kept in the store: {exc.message}"
