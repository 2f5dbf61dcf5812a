"""A plan with neither key nor store: the clear fields of the files against another checkout's.

For pull requests from forks, which GitHub runs without secrets: the base branch's files stand in
for the store. Secrets cannot be compared without the key (re-encrypting the same value changes the
ciphertext), so they are left out of the diff, and the plan says so and names the connections whose
encrypted values differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from connsync.config import Config
from connsync.model import Declaration, StoredConnection
from connsync.reconcile.pipeline import load_valid
from connsync.reconcile.plan import Intent, Plan, diff
from connsync.validate import rules


def _secret_fields(decl: Declaration) -> frozenset[str]:
    # Both checkouts were validated, and validation hands each declaration's secret fields forward;
    # a base file of a provider without a schema has none.
    return decl.secret_fields or frozenset()


def _record(decl: Declaration) -> StoredConnection:
    intent = Intent.from_declaration(decl, _secret_fields(decl))
    # Same bytes as the base file: a noop without looking further (synced, digest recorded).
    return StoredConnection(decl.name, decl.provider, intent.spec, {}, 1, True, decl.file, decl.digest, 1,
                            labels=intent.labels, description=intent.description)


def _ciphertexts(decl: Declaration) -> dict[str, object]:
    return {k: v for k, v in decl.spec.items() if k in _secret_fields(decl)}


def plan_against_files(config: Config, base_root: Path, paths: Sequence[str], *, prune: bool) -> Plan:
    head = load_valid(config, paths)
    base_dir = base_root / config.connections_dir.relative_to(config.root)
    # The base branch is what the store was made from; its own findings are not this PR's to fix.
    base = rules.validate_files((), base_dir).declarations if base_dir.is_dir() else []
    intents = [replace(Intent.from_declaration(d, _secret_fields(d)), fingerprints={})
               for d in head]
    result = diff(config.workspace, intents, [_record(d) for d in base], prune=prune, partial=bool(paths))
    base_by_name = {d.name.casefold(): d for d in base}
    reencrypted = sorted(
        d.name for d in head
        if d.name.casefold() in base_by_name and d.digest != base_by_name[d.name.casefold()].digest
        and _ciphertexts(d) != _ciphertexts(base_by_name[d.name.casefold()])
    )
    return replace(result, secrets_compared=False, reencrypted=tuple(reencrypted))
