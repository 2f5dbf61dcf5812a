"""What a pull request changes in the organisation policy, for the plan comment.

In a pull request the base branch's policy is in force (the workflow passes it with ``--policy``);
the branch's own ``policies/`` only takes effect once merged. A pull request that relaxes a rule
and breaks it at once would pass unnoticed, so the plan comment lists what the branch changes:
rules added, removed, relaxed or otherwise changed, and waivers added or extended.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connsync.config import Config
from connsync.model import Declaration, Finding
from connsync.validate import policy_check
from connsync.validate.policy import PolicySet, Rule, Waiver, in_force, load


@dataclass(frozen=True)
class Change:
    kind: str  # "rule added" | "rule removed" | "rule relaxed" | "rule changed" | "waiver added" | ...
    subject: str  # the rule id, or "rule id / connection" for a waiver
    detail: str


@dataclass(frozen=True)
class PolicyReport:
    """The policy part of a plan comment: findings that do not stop the plan, waivers, changes."""

    findings: list[Finding]
    waived: list[policy_check.Waived]
    changes: list[Change]
    compared: bool  # False when the branch's own policy is the one in force: nothing to compare


def _list(value: Any) -> set[str]:
    return {str(v) for v in value} if isinstance(value, list) else set()


def _relaxations(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """How ``new`` asks less than ``old`` (same rule id)."""
    found = []
    if old.get("severity", "error") == "error" and new.get("severity", "error") == "warning":
        found.append("severity error -> warning")
    old_match, new_match = old.get("match") or {}, new.get("match") or {}
    for key in ("providers", "labels", "names"):
        if new_match.get(key) != old_match.get(key) and key in new_match:
            found.append(f"match.{key} now {new_match[key]!r} (was {old_match.get(key, 'any')!r})")
    old_req, new_req = old.get("require") or {}, new.get("require") or {}
    for key in ("accounts", "regions"):
        if key in old_req and key not in new_req:
            found.append(f"require.{key} removed")
        elif key in old_req and (more := _list(new_req[key]) - _list(old_req[key])):
            found.append(f"require.{key} also allows {', '.join(sorted(more))}")
    if _list(old_req.get("labels")) - _list(new_req.get("labels")):
        found.append(f"require.labels no longer asks for "
                     f"{', '.join(sorted(_list(old_req.get('labels')) - _list(new_req.get('labels'))))}")
    for key in ("name", "expression"):
        if key in old_req and new_req.get(key) != old_req[key]:
            found.append(f"require.{key} {'removed' if key not in new_req else 'changed'}")
    old_age, new_age = old_req.get("max_key_age_days"), new_req.get("max_key_age_days")
    if old_age is not None and (new_age is None or new_age > old_age):
        found.append(f"require.max_key_age_days {old_age} -> {new_age if new_age is not None else 'none'}")
    if old_req.get("least_privilege") and not new_req.get("least_privilege"):
        found.append("require.least_privilege no longer required")
    return found


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def changes(in_force_set: PolicySet, proposed: PolicySet) -> list[Change]:
    """What ``proposed`` (the branch's own policies) changes against the policy in force."""
    old: dict[str, Rule] = {r.id: r for r in in_force_set.rules}
    new: dict[str, Rule] = {r.id: r for r in proposed.rules}
    found: list[Change] = []
    for rule_id in sorted(new.keys() - old.keys()):
        found.append(Change("rule added", rule_id, new[rule_id].file))
    for rule_id in sorted(old.keys() - new.keys()):
        found.append(Change("rule removed", rule_id, "the branch's policies no longer have it"))
    for rule_id in sorted(old.keys() & new.keys()):
        if dict(old[rule_id].raw) == dict(new[rule_id].raw):
            continue
        relaxed = _relaxations(old[rule_id].raw, new[rule_id].raw)
        found.append(Change("rule relaxed", rule_id, "; ".join(relaxed)) if relaxed
                     else Change("rule changed", rule_id, "stricter or reworded"))
    found.extend(_waiver_changes(in_force_set.waivers, proposed.waivers))
    return found


def _waiver_changes(old: Iterable[Waiver], new: Iterable[Waiver]) -> list[Change]:
    before = {(w.rule, _key(w.connection)): w for w in old}
    found = []
    for waiver in new:
        was = before.get((waiver.rule, _key(waiver.connection)))
        subject = f"{waiver.rule} / {waiver.connection}"
        detail = f"until {waiver.expires.isoformat()}: {waiver.reason}"
        if was is None:
            found.append(Change("waiver added", subject, detail))
        elif waiver.expires > was.expires:
            found.append(Change("waiver extended", subject,
                                f"{detail} (was until {was.expires.isoformat()})"))
    return found


def report(config: Config, declarations: Iterable[Declaration]) -> PolicyReport:
    """The policy part of the plan comment for ``declarations`` (already valid under the policy)."""
    policies = in_force(config)
    checked = policy_check.check(declarations, policies)
    findings = sorted([*policies.findings, *checked.findings], key=Finding.sort_key)
    if config.repository_policies is None:
        return PolicyReport(findings, checked.waived, [], compared=False)
    own = load(list(config.repository_policies), config.root)
    return PolicyReport(findings, checked.waived, changes(policies, own), compared=True)
