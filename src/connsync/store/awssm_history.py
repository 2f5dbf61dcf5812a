"""How the Secrets Manager store keeps verification history in a secret's Description.

One secret per verified connection (``PREFIX/W/.verified/SLUG``); its Description is
compact JSON with the newest results first. A Description holds 2,048 characters, so
the oldest results go first, and a single result too long to fit loses message text,
never the result itself.
"""

from __future__ import annotations

from typing import Any

from connsync.store.awssm_layout import DESCRIPTION_LIMIT, compact
from connsync.store.base import Verification


def history_meta(name: str, newest_first: list[Verification]) -> dict[str, Any]:
    return {"connsync": 1, "kind": "verifications", "n": name,
            # An entry's own spelling of the name only where it differs from the newest one.
            "h": [[v.at, v.status, v.account, list(v.messages), v.key_created,
                   *([v.name] if v.name != name else [])] for v in newest_first]}


def history_entries(meta: dict[str, Any] | None) -> list[Verification]:
    """The results kept in a Description, newest first; anything not connsync's reads as none."""
    if meta is None or meta.get("kind") != "verifications" or not isinstance(meta.get("n"), str):
        return []
    found = []
    for row in meta.get("h") or []:
        try:
            at, status, account, messages, key_created, *spelled = row
            found.append(Verification(str(spelled[0]) if spelled else meta["n"], str(at), str(status),
                                      account, tuple(map(str, messages)), key_created))
        except (TypeError, ValueError):
            continue  # a hand-edited entry is skipped, not a crash of report
    return found


def fit_history(meta: dict[str, Any]) -> str:
    """The history as a Description: the oldest entries go first, then the last one's messages shrink."""
    history = list(meta["h"])
    while True:
        text = compact({**meta, "h": history})
        if len(text) <= DESCRIPTION_LIMIT:
            return text
        if len(history) > 1:
            history.pop()
            continue
        at, status, account, messages, key_created, *spelled = history[0]
        if not messages:  # names are far shorter than a Description (the schema caps them)
            return text
        over = len(text) - DESCRIPTION_LIMIT
        last = messages[-1]
        messages = [*messages[:-1], last[:max(0, len(last) - over - 1)] + "…"] if len(last) > over + 1 \
            else messages[:-1]
        history = [[at, status, account, messages, key_created, *spelled]]
