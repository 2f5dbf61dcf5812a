"""What every card's rotation shares: the options, the record of what happened, the audit journal,
writing new values into a file through sops, and storing the file (verified) in local mode.

The procedures themselves are per provider: :mod:`connsync.providers.aws_rotation`,
:mod:`connsync.providers.gcp_rotation` and :mod:`connsync.providers.azure_rotation`, each with
``start``, ``finish``, ``gitops_next_steps`` and ``stranded``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connsync import render, sops
from connsync.config import Config
from connsync.errors import ConnsyncError
from connsync.identity import actor, git_revision
from connsync.model import Declaration, Secret
from connsync.providers.aws_keys import AccessKey, Credentials
from connsync.reconcile.writer import update_fields
from connsync.store import Store
from connsync.validate import loader, rules
from connsync.validate.fields import find_connection

Echo = Callable[[str], None]
ROTATABLE = ("aws", "azure", "gcp")


class RotationFailed(ConnsyncError):
    """A rotation stopped; the message says which keys exist and what to do next."""


@dataclass(frozen=True)
class RotateOptions:
    admin: Credentials | None = None  # None: the connection's own key signs the IAM calls
    delete_inactive: bool = False
    wait_seconds: float = 60.0
    dry_run: bool = False
    timeout: float = 10.0
    expires_in_days: int = 180  # Azure: the lifetime of a new client secret


@dataclass
class Step:
    action: str  # also the audit action, followed by the key id
    text: str
    done: bool = True

    def as_json(self) -> dict[str, Any]:
        return {"action": self.action, "text": self.text, "done": self.done}


@dataclass
class Rotation:
    """What happened to one connection, for text and JSON."""

    name: str
    file: str
    user: str | None = None
    old_key: str | None = None
    new_key: str | None = None
    steps: list[Step] = field(default_factory=list)
    keys: list[AccessKey] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "user": self.user, "old_key": self.old_key,
                "new_key": self.new_key, "steps": [s.as_json() for s in self.steps],
                "keys": [k.as_json() for k in self.keys], "next": self.next_steps, "error": self.error}


class Journal:
    """Each step: shown as it happens, kept in the report, and written to the store's audit log."""

    def __init__(self, rotation: Rotation, store: Store, root: Path, echo: Echo | None) -> None:
        self.rotation = rotation
        self._store = store
        self._echo = echo
        self._actor = actor()
        self._revision = git_revision(root)

    def step(self, action: str, key_id: str, text: str, *, done: bool = True) -> None:
        self.rotation.steps.append(Step(action, text, done))
        if done:
            self._store.record_event(self.rotation.name, f"{action} {key_id}", actor=self._actor,
                                     git_revision=self._revision, source=self.rotation.file)
        if self._echo:  # names, ids and dates from files and cloud APIs: data, never terminal control
            self._echo(f"  {'✓' if done else '-'} {render.text(text, limit=600)}")

    def note(self, text: str) -> None:
        if self._echo:
            self._echo(f"    {render.text(text, limit=600)}")


def find(config: Config, name: str) -> Declaration:
    """The AWS connection ``name`` (or the file at ``name``), valid, or an error saying why not."""
    decl = find_connection(name, config.connections_dir)
    errors = [f for f in rules.check_declaration(decl) if f.severity == "error"]
    if errors:
        raise ConnsyncError(f"{decl.file} has errors ({errors[0].message}); nothing was rotated",
                            hint="run 'connsync validate' and fix the file first")
    if decl.provider not in ROTATABLE:
        raise ConnsyncError(f"{decl.name!r} is a {decl.provider} connection; rotate supports "
                            f"{', '.join(ROTATABLE)} keys")
    if decl.provider == "aws" and "access_key_id" not in decl.spec:
        raise ConnsyncError(f"{decl.name!r} has no long-term key: the platform assumes its role, and "
                            "role sessions expire on their own; nothing to rotate")
    return decl


def write_fields(decl: Declaration, values: Mapping[str, str | Secret]) -> None:
    """Write ``values`` into the file through sops; the file as written must validate and decrypt to them."""
    path = Path(decl.file)
    meta = decl.data.get("sops")

    def check(data: bytes, written: Path) -> None:
        loaded = loader.load_bytes(data, decl.file)
        if not isinstance(loaded, Declaration):
            raise ConnsyncError(f"{decl.file}: sops wrote a file that does not parse: {loaded.message}")
        errors = [f for f in rules.check_declaration(loaded) if f.severity == "error"]
        if errors:
            raise ConnsyncError(f"{decl.file}: the new key does not validate: {errors[0].message}")
        got = sops.decrypt(loaded, written)
        if any((got.secrets if isinstance(v, Secret) else got.spec).get(k) != v for k, v in values.items()):
            raise ConnsyncError(f"{decl.file}: the file did not read back with the new key")

    update_fields(path, dict(values), shown=decl.file, sops_meta=meta if isinstance(meta, dict) else {},
                  check=check)


# --- step 2 in local mode: the store takes the new key ---------------------------------------------


def store_new_key(config: Config, decl: Declaration, store: Store, rotation: Rotation, echo: Echo | None,
                  stranded: Callable[[Rotation, str], str]) -> None:
    """Apply this one connection (verified), as 'connsync apply FILE' would; the caller holds the lock.

    ``stranded`` is the provider's sentence for a failure here: where the old and new credential are
    and how to finish or undo.
    """
    from connsync.providers.verification import verifier_for
    from connsync.reconcile.apply import execute
    from connsync.reconcile.pipeline import make_plan

    journal = Journal(rotation, store, config.root, echo)
    planned = make_plan(config, store, [decl.file])
    [change] = planned.plan.changes
    if change.action == "conflict":
        raise RotationFailed(stranded(rotation, f"the store's record of {decl.name!r} was made outside "
                                       "connsync"), hint="take it over with 'connsync apply --adopt'")
    report = execute(planned.plan, planned.desired, store, verifier=verifier_for(config.verify),
                     actor=actor(), git_revision=git_revision(config.root))
    if report.ended is not None and report.ended.interrupted:
        raise KeyboardInterrupt  # the rotation's own ^C handling says where both keys are
    problem = report.failed[0]["error"] if report.failed else report.ended.cause if report.ended else None
    if problem is not None:
        raise RotationFailed(stranded(rotation, str(problem)),
                             hint="fix that, run 'connsync apply', then 'connsync rotate --finish'")
    version = report.applied[0].get("version") if report.applied else None
    journal.note(f"stored {rotation.new_key} in the store" + (f" (version {version})" if version else ""))
