"""Saved plans (``plan --out``, ``apply PLANFILE``, ``show PLANFILE``): written 0600, read strictly.

A saved plan is tamper-evident: it carries an HMAC-SHA256 over its canonical JSON, keyed by the
store's own fingerprint key (the per-store salt, sealed in the store), so whoever can edit the file
but cannot open the store cannot turn an orphan into a delete or a conflict into an adopt. A plan
made before the store existed has no key to sign with; such a plan is accepted only while the store
still does not exist (once it does, removing the MAC would be the way around it), only without
``prune`` and ``adopt``, and apply re-derives every decision from the files anyway (see
:func:`connsync.reconcile.plan.check_stale`), so what it may do is what a fresh apply would do.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from connsync.errors import ConnsyncError, StalePlan, UsageError
from connsync.fsutil import write_atomic
from connsync.model import Secret
from connsync.reconcile.plan import Plan
from connsync.store import Store
from connsync.store.base import EmptyStore

MAC_FIELD = "connsync-plan-mac/v1"  # the domain of the MAC, apart from every secret field's


@dataclass(frozen=True)
class SavedPlan:
    plan: Plan
    paths: tuple[str, ...]
    signed: bool


def _payload(plan: Plan, paths: Sequence[str]) -> dict[str, Any]:
    return {**plan.as_json(), "paths": list(paths)}


def _canonical(payload: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in payload.items() if k != "mac"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True)


def _mac(store: Store, payload: Mapping[str, Any]) -> str:
    return "hmac-sha256:" + store.fingerprint(MAC_FIELD, Secret(_canonical(payload)))


def save(path: Path, plan: Plan, paths: Sequence[str], store: Store) -> None:
    """Write the plan, readable by its owner only (it names every connection and clear value)."""
    if not path.parent.is_dir():  # as terraform plan -out: a mistyped directory is not created
        raise UsageError(f"{path}: no directory {path.parent} to save the plan in")
    payload = _payload(plan, paths)
    if not isinstance(store, EmptyStore):
        payload["mac"] = _mac(store, payload)
    write_atomic(path, (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode(),
                 mode=0o600, overwrite=True)


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    text = (resources.files("connsync") / "outputs" / "plan-file.schema.json").read_text(encoding="utf-8")
    return Draft202012Validator(json.loads(text))


def read(path: str) -> SavedPlan:
    """The plan in ``path``, checked against its schema; malformed plans are one clear error."""
    return _load(path)[0]


def _load(path: str) -> tuple[SavedPlan, dict[str, Any]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read plan file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConnsyncError(f"{path}: not a connsync plan file (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        if Path(path).suffix.lower() in (".yaml", ".yml"):  # a connection file, not a plan
            raise UsageError(f"{path}: apply takes a plan file, not a connection file",
                             hint="to apply the connection files run 'connsync apply' "
                                  "(or 'connsync plan FILE --out PLANFILE', then 'connsync apply PLANFILE')"
                             ) from None
        raise ConnsyncError(f"{path}: not a connsync plan file (not JSON: {exc})") from None
    error = next(iter(sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise ConnsyncError(f"{path}: not a valid connsync plan file: {where}: {_short(error.message)}",
                            hint="make a new one with 'connsync plan --out FILE'")
    return SavedPlan(Plan.from_json(data), tuple(data["paths"]), "mac" in data), data


def _short(message: str, limit: int = 120) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def verify(path: str, store: Store, *, store_existed: bool) -> SavedPlan:
    """Read ``path`` and check its MAC under ``store``'s key: an edited plan is refused.

    ``store_existed``: whether the store was there before this run opened (and so created) it.
    """
    saved, data = _load(path)  # once: the plan that is checked is the plan that is used
    if saved.signed or store_existed:
        if (not saved.signed or isinstance(store, EmptyStore)
                or not hmac.compare_digest(str(data["mac"]), _mac(store, data))):
            raise StalePlan(
                f"{path}: the plan file was changed after it was made, or made for another store; "
                "nothing was applied", hint="make a new plan with 'connsync plan --out FILE'")
    elif saved.plan.prune or saved.plan.adopt:
        raise StalePlan(f"{path}: an unsigned plan cannot prune or adopt; nothing was applied",
                        hint="make a new plan with 'connsync plan --out FILE' now that the store exists")
    return saved
