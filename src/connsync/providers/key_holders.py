"""Who holds a key: every connection file of the repository and every record of every workspace.

An exposed key is contained only when every place that uses it moves to the
new key, so ``rotate --exposed`` first asks this module where the key id
appears (``access_key_id`` for AWS, ``private_key_id`` for GCP; for Azure, whose files hold
only the secret, :mod:`connsync.providers.azure_incident` asks Graph). Key ids are
compared after removing whitespace and upper-casing (what a person pastes from
an alert e-mail), never by prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from connsync.config import Config
from connsync.errors import ConnsyncError
from connsync.model import Declaration, StoredConnection
from connsync.store import Store, opened
from connsync.validate import rules


def normalised(key_id: str) -> str:
    return "".join(key_id.split()).upper()


@dataclass(frozen=True)
class Holder:
    """One connection that holds the key: a file (``declaration``) or a store record (``workspace``)."""

    name: str
    provider: str
    account: str | None
    region: str | None
    file: str | None = None
    workspace: str | None = None
    declaration: Declaration | None = None

    def describe(self) -> str:
        if self.file:
            return f"{self.file} ({self.name!r})"
        return f"the store's record {self.name!r} in workspace {self.workspace!r}"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "provider": self.provider, "file": self.file, "workspace": self.workspace}


@dataclass(frozen=True)
class Holders:
    key_id: str
    files: tuple[Holder, ...]
    records: tuple[Holder, ...]
    searched_workspaces: tuple[str, ...]
    note: str | None = None  # what could not be searched

    @property
    def all(self) -> tuple[Holder, ...]:
        return self.files + self.records

    def accounts(self) -> set[str]:
        """An Azure application id is a GUID, the same in any case (as its tenant is)."""
        return {h.account.lower() if h.provider == "azure" else h.account for h in self.all if h.account}


@dataclass(frozen=True)
class Fields:
    """Where a connection holds the key's id, and the account it belongs to."""

    key_id: str = "access_key_id"
    account: str = "account_id"

    def holds(self, spec: Any, key_id: str) -> bool:
        value = spec.get(self.key_id) if isinstance(spec, dict) else None
        return isinstance(value, str) and normalised(value) == normalised(key_id)

    def holds_file(self, decl: Declaration, key_id: str) -> bool:
        """A card whose files name only the secret (Azure) looks further than the clear fields."""
        return self.holds(decl.spec, key_id)

    def holds_record(self, store: Store, record: StoredConnection, key_id: str) -> bool:
        return self.holds(dict(record.spec), key_id)

    def may_hold(self, decl: Declaration, key_id: str) -> bool:
        """An invalid file that may hold the key, by what can be read of it: named, never skipped."""
        return self.holds(decl.spec, key_id)


def find(config: Config, key_id: str, store: Store, fields: Fields = Fields()) -> Holders:
    """``store`` is the configured workspace's; the others of the same store are opened read-only."""
    files, notes = _file_holders(config, key_id, fields)
    lister = getattr(store, "workspaces", None)
    workspaces: Sequence[str] = lister() if callable(lister) else []
    if not callable(lister):
        notes.append(f"{store.describe()} cannot list its workspaces: only workspace {config.workspace!r} "
                     "was searched")
    note = "; ".join(notes) or None
    records = [_record_holders(store, config.workspace, key_id, fields)]
    for workspace in workspaces:
        if workspace != config.workspace:
            with opened(config.store_url, workspace, create=False) as other:
                records.append(_record_holders(other, workspace, key_id, fields))
    searched = tuple(sorted({config.workspace, *workspaces}))
    return Holders(key_id, files, tuple(h for found in records for h in found), searched, note)


def _file_holders(config: Config, key_id: str, fields: Fields) -> tuple[tuple[Holder, ...], list[str]]:
    """The valid files that hold the key; an unrelated broken file is no reason to stop, but one that may
    hold the key (or cannot be read) is named: it keeps the exposed key until someone fixes it."""
    validation = rules.validate_files([], config.connections_dir)
    errors: dict[str, str] = {}
    for finding in validation.findings:
        if finding.severity == "error":
            errors.setdefault(finding.file, finding.message)
    holders, notes = [], []
    for decl in validation.declarations:
        if decl.file in errors:
            if fields.may_hold(decl, key_id):
                notes.append(f"{decl.file} is not valid ({errors[decl.file]}) and may hold {key_id}: it was "
                             "not changed; fix it ('connsync validate') and put the new key into it")
            continue
        try:
            held = fields.holds_file(decl, key_id)
        except ConnsyncError as exc:
            notes.append(f"{decl.file} could not be read ({exc.message}) and may hold {key_id}: it was not "
                         "changed")
            continue
        if held:
            holders.append(Holder(decl.name, decl.provider, _text(decl.spec, fields.account),
                                  _text(decl.spec, "default_region"), file=decl.file, declaration=decl))
    parsed = {d.file for d in validation.declarations}
    notes += [f"{file} does not parse ({message}): it may hold {key_id} and was not searched"
              for file, message in sorted(errors.items()) if file not in parsed]
    return tuple(holders), notes


def _record_holders(store: Store, workspace: str, key_id: str, fields: Fields) -> list[Holder]:
    return [Holder(r.name, r.provider, _text(r.spec, fields.account), _text(r.spec, "default_region"),
                   file=None, workspace=workspace)
            for r in store.records() if fields.holds_record(store, r, key_id)]


def _text(spec: Any, key: str) -> str | None:
    value = spec.get(key) if hasattr(spec, "get") else None
    return value if isinstance(value, str) else None
