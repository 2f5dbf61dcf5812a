"""From files and a store to a plan: validate, decrypt only what must be compared, diff."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from connsync import providers, sops
from connsync.config import Config
from connsync.errors import ConnsyncError
from connsync.identity import in_ci
from connsync.model import Declaration, Desired, Finding
from connsync.reconcile import plan
from connsync.store import Store, ephemeral_store_warnings
from connsync.validate import policy, rules


class InvalidDeclarations(ConnsyncError):
    """The files have validation errors; nothing is planned from broken input."""

    def __init__(self, findings: list[Finding]) -> None:
        policy_files = len({f.file for f in findings if f.rule == policy.FILE_RULE})
        files = len({f.file for f in findings}) - policy_files
        broken = [f"{files} connection file(s)"] if files else []
        broken += [f"{policy_files} policy file(s)"] if policy_files else []
        super().__init__(
            f"{' and '.join(broken)} have errors; nothing was planned",
            hint="run 'connsync validate' for the details",
        )
        self.findings = findings


def load_valid(config: Config, paths: Sequence[str]) -> list[Declaration]:
    """The declarations, or InvalidDeclarations: nothing acts on a broken file."""
    validation = rules.validate_files(paths, config.connections_dir, config.root, policy.in_force(config))
    errors = [f for f in validation.findings if f.severity == "error"]
    if errors:
        raise InvalidDeclarations(errors)
    return validation.declarations


def secret_fields(decl: Declaration) -> frozenset[str]:
    """The secret fields validation handed forward with a declaration; only validated
    declarations are planned, so a declaration without them is a bug, not a file to plan."""
    if decl.secret_fields is None:
        raise ConnsyncError(f"{decl.file}: planned without being validated (a bug in connsync)")
    return decl.secret_fields


@dataclass(frozen=True)
class Planned:
    plan: plan.Plan
    desired: dict[str, Desired]  # casefolded name -> decrypted declaration, for create and update


def make_plan(
    config: Config,
    store: Store,
    paths: Sequence[str] = (),
    *,
    prune: bool = False,
    adopt: bool = False,
    declarations: list[Declaration] | None = None,
) -> Planned:
    """The plan for ``paths`` (or the already loaded ``declarations``) against ``store``."""
    if declarations is None:
        declarations = load_valid(config, paths)
    records = {r.name.casefold(): r for r in store.records()}
    look_alikes = rules.confusable_with_store(declarations, [r.name for r in records.values()])
    if look_alikes:
        raise InvalidDeclarations(look_alikes)
    intents = [plan.Intent.from_declaration(d, secret_fields(d)) for d in declarations]

    to_decrypt = [
        (decl, Path(decl.file))
        for decl, intent in zip(declarations, intents, strict=True)
        if plan.needs_fingerprints(intent, records.get(intent.name.casefold()), adopt)
    ]
    decrypted = sops.decrypt_many(to_decrypt)
    failures = [r for r in decrypted if isinstance(r, ConnsyncError)]
    if len(failures) == 1:
        raise failures[0]  # its own message and hint say what to do
    if failures:
        raise ConnsyncError(
            f"cannot decrypt {len(failures)} files:\n  " + "\n  ".join(f.message for f in failures),
            hint="'connsync verify' reports each file with what to do about it",
        )
    desired = {d.name.casefold(): d for d in decrypted if isinstance(d, Desired)}
    malformed = providers.secret_shapes(desired.values())
    if malformed:  # never planned, never written, whatever --skip-verify says
        raise InvalidDeclarations(malformed)
    fingerprinted = [
        replace(i, fingerprints={k: store.fingerprint(k, v)
                                 for k, v in desired[i.name.casefold()].secrets.items()})
        if i.name.casefold() in desired else i
        for i in intents
    ]
    result = plan.diff(store.workspace, fingerprinted, records.values(), prune=prune, adopt=adopt,
                       partial=bool(paths))
    warnings = ephemeral_store_warnings(store, config.store_url, in_ci=in_ci())
    return Planned(replace(result, store_warnings=tuple(warnings)), desired)
