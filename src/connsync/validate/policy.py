"""Organisation policy files (``kind: Policy``): loaded, checked as code, turned into values.

A policy file that is not valid is never half-applied: each problem is a located ``policy-file``
finding in the policy file, the rules of that file are not used, and plan and apply refuse while
one exists (a broken rule that silently matched nothing would be a pass). Regular expressions go
through RE2 (linear time, as sops's do) and CEL expressions are compiled here, once per run, so
that a bad one is found before any connection is looked at.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from connsync.config import Config
from connsync.errors import ConfigError, ConnsyncError
from connsync.model import Finding, Severity, SourceMap
from connsync.validate import cel, discovery, loader, schema

FILE_RULE = "policy-file"
WAIVER_RULE = "policy-waiver"
# A waiver is a decision to revisit, not a switch left off: at most this far ahead.
MAX_WAIVER_DAYS = 366
_ITEM = re.compile(r"^\$\.(rules|waivers)\[(\d+)\]")


@dataclass(frozen=True)
class Where:
    file: str
    line: int
    column: int
    path: str


@dataclass(frozen=True)
class Rule:
    id: str
    policy: str  # metadata.name of its file
    file: str
    severity: Severity
    # match
    providers: frozenset[str] | None
    match_labels: Mapping[str, str]
    names: Any  # a compiled RE2 pattern, or None
    # require (offline)
    accounts: frozenset[str] | None
    regions: frozenset[str] | None
    labels: tuple[str, ...]
    name: Any  # a compiled RE2 pattern, or None
    expression: cel.Program | None
    # require (online)
    max_key_age_days: int | None
    least_privilege: bool
    message: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)  # for the pull request's policy diff

    @property
    def offline(self) -> bool:
        return bool(self.accounts or self.regions or self.labels or self.name or self.expression)

    @property
    def online(self) -> bool:
        return self.max_key_age_days is not None or self.least_privilege


@dataclass(frozen=True)
class Waiver:
    rule: str
    connection: str
    expires: date
    reason: str
    where: Where

    def active(self, today: date) -> bool:
        return today <= self.expires


@dataclass(frozen=True)
class PolicySet:
    """Every policy in force for a run, and what is wrong with the policy files."""

    rules: tuple[Rule, ...] = ()
    waivers: tuple[Waiver, ...] = ()
    files: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()  # policy-file findings (and expired waivers, as warnings)

    @property
    def broken(self) -> bool:
        return any(f.severity == "error" for f in self.findings)


NONE = PolicySet()


class BrokenPolicy(ConnsyncError):
    """A policy file is not valid: nothing is checked against half a policy."""

    def __init__(self, findings: list[Finding], doing: str) -> None:
        files = len({f.file for f in findings})
        super().__init__(f"{files} policy file(s) have errors; nothing was {doing}",
                         hint="run 'connsync validate' for the details")
        self.findings = findings


def today() -> date:
    return datetime.now(UTC).date()


def load(paths: Sequence[Path], root: Path, *, on: date | None = None) -> PolicySet:
    """The policies in ``paths`` (files, or directories searched for *.yaml) as one set."""
    if not paths:
        return NONE
    found = discovery.discover(paths, root, root)
    findings: list[Finding] = list(found.findings)
    rules: list[Rule] = []
    waivers: list[Waiver] = []
    seen: dict[str, Rule] = {}
    when = on or today()
    for path in found.files:
        item = loader.load_file(path)
        if isinstance(item, Finding):
            findings.append(item._replace(rule=FILE_RULE, message=f"policy file: {item.message}"))
            continue
        file_rules, file_waivers, problems = _read(item.file, item.data, item, when)
        for rule in file_rules:
            first = seen.get(rule.id)
            if first is not None:
                where = _where(item.file, item, ["rules", file_rules.index(rule), "id"])
                problems.append(_problem(where, f"rule id {rule.id!r} is already used in {first.file}; "
                                                "rule ids are unique across all policy files"))
            else:
                seen[rule.id] = rule
        findings.extend(problems)
        if not any(p.severity == "error" for p in problems):
            rules.extend(file_rules)
            waivers.extend(file_waivers)
    known = {r.id for r in rules}
    broken_files = {f.file for f in findings if f.severity == "error"}
    for waiver in waivers:
        if waiver.rule not in known and not broken_files:
            findings.append(_problem(waiver.where, f"waiver names rule {waiver.rule!r}, which no policy "
                                     "file defines"))
    findings.sort(key=Finding.sort_key)
    return PolicySet(tuple(rules), tuple(waivers), tuple(loader.display_path(p) for p in found.files),
                     tuple(findings))


def _problem(where: Where, message: str, severity: Severity = "error") -> Finding:
    return Finding(severity, FILE_RULE, where.file, where.line, where.column, where.path, message)


def _where(file: str, text: SourceMap, parts: list[str | int], *, at_key: bool = False) -> Where:
    line, column = text.position(parts, at_key=at_key)
    return Where(file, line, column, loader.json_path(parts))


def _read(file: str, data: Mapping[str, Any], text: SourceMap,
          when: date) -> tuple[list[Rule], list[Waiver], list[Finding]]:
    problems = [_problem(Where(file, line, column, path), message)
                for line, column, path, message in schema.document_problems(schema.POLICY, data, text)]
    # Each rule and waiver the schema accepted is checked further, so one pass shows every mistake;
    # a problem outside them (no rules, a wrong kind) leaves nothing to check.
    invalid = {m.groups() for p in problems if (m := _ITEM.match(p.path))}
    if len(invalid) < len(problems):
        return [], [], problems
    policy = str(data["metadata"]["name"])
    rules = []
    for index, raw in enumerate(data["rules"]):
        if ("rules", str(index)) in invalid:
            continue
        rule, rule_problems = _rule(file, text, policy, index, raw)
        problems.extend(rule_problems)
        if rule is not None:
            rules.append(rule)
    waivers = []
    for index, raw in enumerate(data.get("waivers") or ()):
        if ("waivers", str(index)) in invalid:
            continue
        where = _where(file, text, ["waivers", index])
        expires = _date(str(raw["expires"]))
        if expires is None:
            problems.append(_problem(_where(file, text, ["waivers", index, "expires"]),
                                     f"expires {str(raw['expires'])!r} is not a date (YYYY-MM-DD)"))
            continue
        if expires > when + timedelta(days=MAX_WAIVER_DAYS):
            problems.append(_problem(_where(file, text, ["waivers", index, "expires"]),
                                     f"expires {expires.isoformat()} is more than a year ahead; a waiver "
                                     "is reviewed at least once a year"))
            continue
        waiver = Waiver(str(raw["rule"]), str(raw["connection"]), expires, str(raw["reason"]), where)
        if not waiver.active(when):
            problems.append(_problem(where, f"waiver of rule {waiver.rule!r} for {waiver.connection!r} "
                                     f"expired on {expires.isoformat()}; it no longer waives anything "
                                     "(renew it with a new reason, or remove it)", "warning")
                            ._replace(rule=WAIVER_RULE))
        waivers.append(waiver)
    return rules, waivers, problems


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _rule(file: str, text: SourceMap, policy: str, index: int,
          raw: Mapping[str, Any]) -> tuple[Rule | None, list[Finding]]:
    problems: list[Finding] = []
    match: Mapping[str, Any] = raw.get("match") or {}
    require: Mapping[str, Any] = raw["require"]

    def regex(section: str, key: str, value: str | None) -> Any:
        if value is None:
            return None
        compiled = _regex(value)
        if isinstance(compiled, str):
            problems.append(_problem(_where(file, text, ["rules", index, section, key]),
                                     f"{section}.{key} is not a valid RE2 regular expression: {compiled}"))
            return None
        return compiled

    names = regex("match", "names", match.get("names"))
    name = regex("require", "name", require.get("name"))
    program = None
    if "expression" in require:
        compiled = cel.compile_expression(str(require["expression"]))
        if isinstance(compiled, str):
            problems.append(_problem(_where(file, text, ["rules", index, "require", "expression"]),
                                     f"require.expression does not compile: {compiled}"))
        else:
            program = compiled
    if problems:
        return None, problems

    def strings(value: Any) -> frozenset[str] | None:
        return frozenset(str(v) for v in value) if value else None

    rule = Rule(
        id=str(raw["id"]), policy=policy, file=file, severity=raw.get("severity", "error"),
        providers=strings(match.get("providers")), match_labels=dict(match.get("labels") or {}),
        names=names, accounts=strings(require.get("accounts")), regions=strings(require.get("regions")),
        labels=tuple(str(v) for v in require.get("labels") or ()), name=name, expression=program,
        max_key_age_days=require.get("max_key_age_days"),
        least_privilege=bool(require.get("least_privilege", False)),
        message=raw.get("message"), raw=raw,
    )
    return rule, []


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> Any:
    """A compiled RE2 pattern, or why it is not one."""
    import re2  # for a policy that has a pattern: a repository without one starts without RE2

    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        return (reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
                ).removeprefix("b'").removesuffix("'") or "RE2 refuses it"


# --- where the policies are ------------------------------------------------------------------


def in_force(config: Config) -> PolicySet:
    """The policies of this run: those named by ``--policy`` or connsync.yaml's ``policies`` (each
    must exist), else the default ``policies/`` beside connsync.yaml when there is one."""
    if not config.policies_set:
        return load([p for p in config.policies if p.is_dir()], config.root)
    missing = [p for p in config.policies if not os.path.lexists(p)]
    if missing:
        raise ConfigError(f"no policy file or directory at {loader.display_path(missing[0])}",
                          hint="check --policy, or 'policies:' in connsync.yaml")
    return load(config.policies, config.root)


def with_flags(config: Config, flags: Sequence[str]) -> Config:
    """``--policy`` replaces connsync.yaml's ``policies``: in a pull request the base branch's policy
    is in force, not one the branch brings along (with its own waivers)."""
    if not flags:
        return config
    own = config.policies if config.policies_set else tuple(p for p in config.policies if p.is_dir())
    return replace(config, policies=tuple(Path.cwd() / f for f in flags), policies_set=True,
                   repository_policies=own)
