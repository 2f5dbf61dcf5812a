"""Policy rules applied to connections: offline in validate, and which online checks verify owes.

Rules read a :class:`Declaration` as loaded, secrets still encrypted, and never decrypt: a CEL
expression sees the connection without its secret fields. Each violation is a finding
``policy/<id>`` at the offending value (the ``account_id`` value, the ``labels`` mapping, the name);
a waiver that names the rule and the connection, and has not expired, moves it to ``waived``.
"""

from __future__ import annotations

import functools
import gc
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from connsync.config import Config
from connsync.model import Declaration, Finding
from connsync.providers.base import OnlineRule
from connsync.validate import cel, loader, schema
from connsync.validate.policy import BrokenPolicy, PolicySet, Rule, Waiver, in_force, today


@dataclass(frozen=True)
class Waived:
    finding: Finding
    waiver: Waiver

    def as_json(self) -> dict[str, Any]:
        w = self.waiver
        return {**self.finding.as_json(), "waiver": {"file": w.where.file, "line": w.where.line,
                                                      "expires": w.expires.isoformat(), "reason": w.reason}}


@dataclass(frozen=True)
class Checked:
    findings: list[Finding]
    waived: list[Waived]


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@functools.cache
def _secret_fields(provider: str) -> frozenset[str]:
    return frozenset(schema.secret_fields(provider) if provider in schema.provider_names() else ())


def _one_of(value: Any, allowed: frozenset[str]) -> bool:
    return isinstance(value, str) and value in allowed


def _filled(value: Any) -> bool:
    """A required label's value: a string that is not blank."""
    return isinstance(value, str) and bool(value.strip())


class _Connection:
    """What rules read of one declaration, tolerant of a file the schema has already refused."""

    __slots__ = ("_patterns", "_plain", "decl", "hits", "labels", "metadata", "name", "outcomes",
                 "provider", "spec")

    def __init__(self, decl: Declaration, patterns: _Patterns | None = None) -> None:
        self.decl = decl
        data = decl.data  # what the loader makes: dicts (a plain isinstance is 5x a Mapping one)
        metadata = data.get("metadata")
        self.metadata: Mapping[str, Any] = metadata if isinstance(metadata, dict) else {}
        provider, name = data.get("provider"), self.metadata.get("name")
        self.provider = provider if isinstance(provider, str) else ""
        self.name = name if isinstance(name, str) else ""
        labels = self.metadata.get("labels")
        self.labels: Mapping[str, Any] = labels if isinstance(labels, dict) else {}
        spec = data.get("spec")
        self.spec: Mapping[str, Any] = spec if isinstance(spec, dict) else {}
        # which of the rules' patterns are in the name (rules share them): all at once for a check
        self._patterns = patterns
        self.hits = patterns.hits(self.name) if patterns is not None else frozenset()
        self._plain: dict[str, Any] | None = None
        self.outcomes: dict[str, cel.Outcome] = {}  # by expression, when worked out for many at once

    def name_has(self, pattern: Any) -> bool:
        index = self._patterns.index.get(pattern.pattern) if self._patterns is not None else None
        return pattern.search(self.name) is not None if index is None else index in self.hits

    def matches(self, rule: Rule) -> bool:
        if rule.providers is not None and self.provider not in rule.providers:
            return False
        if rule.match_labels and any(self.labels.get(k) != v for k, v in rule.match_labels.items()):
            return False
        return rule.names is None or self.name_has(rule.names)

    def plain_variables(self) -> dict[str, Any]:
        """The connection as a CEL expression sees it: no secret field, encrypted or not."""
        if self._plain is None:
            secret = _secret_fields(self.provider)
            self._plain = {
                "provider": self.provider, "name": self.name,
                "description": _text(self.metadata.get("description")),
                "labels": {str(k): str(v) for k, v in self.labels.items()},
                "spec": {str(k): v for k, v in self.spec.items() if k not in secret}}
        return self._plain

    def outcome(self, expression: cel.Program) -> cel.Outcome:
        known = self.outcomes.get(expression.source)
        if known is None:
            known = self.outcomes[expression.source] = expression.evaluate(self.plain_variables())
        return known

    def passes(self, rule: Rule) -> bool:
        """Whether the connection meets ``rule`` (which matches it): the quick answer, with no
        finding made; :func:`violations` says what is wrong, for the few that do not."""
        spec = self.spec
        if rule.accounts is not None and not _one_of(spec.get("account_id"), rule.accounts):
            return False
        if rule.regions is not None and not _one_of(spec.get("default_region"), rule.regions):
            return False
        if not all(_filled(self.labels.get(key)) for key in rule.labels):
            return False
        if rule.name is not None and not self.name_has(rule.name):
            return False
        return rule.expression is None or self.outcome(rule.expression) is True


def _policy_finding(conn: _Connection, rule: Rule, parts: list[str | int], default: str, *,
                    own_words: bool = False) -> Finding:
    line, column = conn.decl.position(parts)
    said = default if own_words else (rule.message or default)
    message = f"{said} (rule {rule.id!r} of policy {rule.policy!r}, {rule.file})"
    return Finding(rule.severity, f"policy/{rule.id}", conn.decl.file, line, column,
                   loader.json_path(parts), message)


_SPEC_FIELD = re.compile(r"\bspec\s*\.\s*([A-Za-z_]\w*)")


def _expression_target(conn: _Connection, source: str) -> list[str | int]:
    """Where a failed expression points: the one spec field it reads, if it reads one that exists."""
    fields = {f for f in _SPEC_FIELD.findall(source) if f in conn.spec}
    if len(fields) == 1:
        return ["spec", fields.pop()]
    if "labels" in source and "labels" in conn.metadata and "spec" not in source:
        return ["metadata", "labels"]
    return ["metadata", "name"] if "name" in conn.metadata else ["metadata"]


def violations(conn: _Connection, rule: Rule) -> list[Finding]:
    """What ``conn`` breaks of ``rule``'s offline requirements (it is known to match)."""
    found = []
    account = conn.spec.get("account_id")
    if rule.accounts is not None and not _one_of(account, rule.accounts):
        where: list[str | int] = ["spec", "account_id"] if "account_id" in conn.spec else ["spec"]
        shown = repr(account) if isinstance(account, str) else "missing"
        found.append(_policy_finding(conn, rule, where, f"account_id {shown} is not one of the allowed "
                                     f"accounts ({', '.join(sorted(rule.accounts))})"))
    region = conn.spec.get("default_region")
    if rule.regions is not None and not _one_of(region, rule.regions):
        where = ["spec", "default_region"] if "default_region" in conn.spec else ["spec"]
        shown = repr(region) if isinstance(region, str) else "missing"
        found.append(_policy_finding(conn, rule, where, f"default_region {shown} is not one of the "
                                     f"allowed regions ({', '.join(sorted(rule.regions))})"))
    missing = [k for k in rule.labels if not _filled(conn.labels.get(k))]
    if missing:
        where = ["metadata", "labels"] if "labels" in conn.metadata else ["metadata"]
        found.append(_policy_finding(conn, rule, where, f"missing required label(s): {', '.join(missing)} "
                                     "(each with a non-empty value)"))
    if rule.name is not None and not conn.name_has(rule.name):
        found.append(_policy_finding(conn, rule, ["metadata", "name"],
                                     f"name {conn.name!r} does not match {rule.name.pattern!r}"))
    if rule.expression is not None:
        outcome = conn.outcome(rule.expression)
        if outcome is False:
            found.append(_policy_finding(conn, rule, _expression_target(conn, rule.expression.source),
                                         f"expression {rule.expression.source!r} is false"))
        elif outcome is not True:  # an error is a finding, never a pass, and says what went wrong
            found.append(_policy_finding(conn, rule, _expression_target(conn, rule.expression.source),
                                         f"expression {rule.expression.source!r} could not be "
                                         f"evaluated: {outcome}", own_words=True))
    return found


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """The check makes ~100 short-lived objects per connection, all freed by reference counting;
    the collector's passes over every loaded declaration cost a quarter of the check (bench/policy.py)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def check(declarations: Iterable[Declaration], policies: PolicySet, *, on: date | None = None) -> Checked:
    """Offline policy findings for ``declarations``, with what waivers moved aside."""
    offline = [r for r in policies.rules if r.offline]
    if not offline:
        return Checked([], [])
    with _cyclic_gc_paused():
        return _check(declarations, offline, policies, on or today())


class _Patterns:
    """Every distinct RE2 pattern of the rules (``match.names``, ``require.name``) in one RE2 set:
    one scan of a name says which of them it contains (~1 us, where each search from Python costs
    ~3.5 us). Still RE2, so a hostile pattern cannot backtrack."""

    def __init__(self, patterns: Iterable[Any]) -> None:
        compiled = {p.pattern: p for p in patterns}
        self._compiled = compiled
        self.patterns = list(compiled)
        self.index = {pattern: index for index, pattern in enumerate(self.patterns, start=1)}
        self._set: Any = None
        if not compiled:
            return
        import re2

        # Same options as the patterns (_regex: no logging). Index 0 is the empty pattern, in every
        # name: a set whose automaton ran out of memory answers "none", which is then told apart
        # from "none of the patterns" and each pattern is searched on its own, as without a set.
        regex_set = re2.Set.SearchSet(next(iter(compiled.values())).options)
        try:
            regex_set.Add("")
            for pattern in self.patterns:
                regex_set.Add(pattern)
            regex_set.Compile()
        except re2.error:  # too big for one automaton: search each pattern on its own
            return
        self._set = regex_set

    @property
    def set_compiled(self) -> bool:
        return self._set is not None

    def hits(self, name: str) -> frozenset[int]:
        """The :attr:`index` of each pattern that is in ``name`` (and 0, the empty pattern)."""
        hits = self._set.Match(name.encode()) if self._set is not None else None
        if not hits:  # not even the empty pattern: the set failed
            return frozenset([0, *(self.index[pattern] for pattern, compiled in self._compiled.items()
                                   if compiled.search(name) is not None)])
        return frozenset(hits)


# A rule's other match conditions, made once: (rule, match.labels items, match.names pattern's
# index in _Patterns, 0 when it has none: the empty pattern, in every name).
_Candidate = tuple[Rule, tuple[tuple[str, str], ...], int]


def _by_provider(offline: list[Rule], patterns: _Patterns) -> tuple[dict[str, list[_Candidate]],
                                                                   list[_Candidate]]:
    """The rules that may match each provider's connections, in policy order (a rule with no
    ``providers`` may match any), and those for a provider no rule names."""
    def candidates(rules: Iterable[Rule]) -> list[_Candidate]:
        return [(r, tuple(r.match_labels.items()),
                 patterns.index[r.names.pattern] if r.names is not None else 0) for r in rules]

    named = {p for r in offline if r.providers is not None for p in r.providers}
    return ({p: candidates(r for r in offline if r.providers is None or p in r.providers) for p in named},
            candidates(r for r in offline if r.providers is None))


class _Plan:
    """The rules that match a kind of connection, their expressions, and what all the rules
    require besides, together: the accounts and regions every rule allows, the labels any rule
    requires, the name patterns. A connection that meets those and whose expressions all hold
    breaks no rule, which is checked in a few lookups instead of a pass over each rule."""

    def __init__(self, matched: list[Rule], patterns: _Patterns, evaluator: cel.Evaluator) -> None:
        self.matched = matched
        self.expressions = evaluator.together(
            tuple(rule.expression for rule in matched if rule.expression is not None))
        self.accounts = _all_allow(rule.accounts for rule in matched)
        self.regions = _all_allow(rule.regions for rule in matched)
        self.labels = tuple({key: None for rule in matched for key in rule.labels})
        self.names = frozenset(patterns.index[rule.name.pattern] for rule in matched if rule.name is not None)

    def passed(self, conn: _Connection, outcomes: list[cel.Outcome]) -> bool:
        """Whether ``conn`` meets every matched rule, ``outcomes`` those of its expressions."""
        spec, labels = conn.spec, conn.labels
        if self.accounts is not None and not _one_of(spec.get("account_id"), self.accounts):
            return False
        if self.regions is not None and not _one_of(spec.get("default_region"), self.regions):
            return False
        for key in self.labels:
            if not _filled(labels.get(key)):
                return False
        return self.names <= conn.hits and all(outcome is True for outcome in outcomes)


def _all_allow(allowed: Iterable[frozenset[str] | None]) -> frozenset[str] | None:
    """What every rule that limits a value allows, or None when none limits it."""
    limits = [values for values in allowed if values is not None]
    return frozenset.intersection(*limits) if limits else None


def _check(declarations: Iterable[Declaration], offline: list[Rule], policies: PolicySet,
           when: date) -> Checked:
    waivers = {(w.rule, _key(w.connection)): w for w in policies.waivers if w.active(when)}
    findings: list[Finding] = []
    waived: list[Waived] = []
    patterns = _Patterns(p for r in offline for p in (r.names, r.name) if p is not None)
    by_provider, anywhere = _by_provider(offline, patterns)
    label_keys = tuple({k for r in offline for k in r.match_labels})
    # Which rules match depends only on the provider, the patterns in the name and the values of
    # the labels that rules match on: worked out once for each such combination.
    plans: dict[tuple[Any, ...], _Plan] = {}
    evaluator = cel.Evaluator()
    for decl in declarations:
        conn = _Connection(decl, patterns)
        labels, hits = conn.labels, conn.hits
        # Any label value that is not a string matches no rule's (string) value, as a missing one.
        key = (conn.provider, hits,
               tuple([v if isinstance(v, str) else None for v in map(labels.get, label_keys)]))
        plan = plans.get(key)
        if plan is None:
            # _Connection.matches, with the providers already sorted out and the names searched
            matched = [rule for rule, match_labels, names in by_provider.get(conn.provider, anywhere)
                       if not (match_labels and any(labels.get(k) != v for k, v in match_labels))
                       and names in hits]
            plan = plans[key] = _Plan(matched, patterns, evaluator)
        expressions = plan.expressions
        outcomes = expressions.outcomes(conn.plain_variables()) if expressions.programs else []
        if plan.passed(conn, outcomes):
            continue
        conn.outcomes = dict(zip((e.source for e in expressions.programs), outcomes, strict=True))
        for rule in plan.matched:
            if conn.passes(rule):
                continue
            broken = violations(conn, rule)
            waiver = waivers.get((rule.id, _key(conn.name))) if broken else None
            if waiver is None:
                findings.extend(broken)
            else:
                waived.extend(Waived(f, waiver) for f in broken)
    return Checked(findings, waived)


class OnlineRequirements:
    """What verify owes each connection under the policy: the rules with online requirements that
    match it and are not waived for it. Called by the provider verifiers (see VerifySettings)."""

    def __init__(self, policies: PolicySet, *, on: date | None = None) -> None:
        when = on or today()
        self._rules = [r for r in policies.rules if r.online]
        self._waived = {(w.rule, _key(w.connection)) for w in policies.waivers if w.active(when)}

    def __bool__(self) -> bool:
        return bool(self._rules)

    def __call__(self, decl: Declaration) -> tuple[OnlineRule, ...]:
        conn = _Connection(decl)
        return tuple(
            OnlineRule(f"policy/{r.id}", r.severity, r.max_key_age_days, r.least_privilege, r.message)
            for r in self._rules
            if conn.matches(r) and (r.id, _key(conn.name)) not in self._waived
        )


def with_online_rules(config: Config, doing: str = "verified") -> Config:
    """``config`` whose verify settings carry the policy's online rules (verify, and apply before it
    writes); a policy file that is not valid stops both, rather than leave its rules unchecked."""
    policies = in_force(config)
    if policies.broken:
        raise BrokenPolicy([f for f in policies.findings if f.severity == "error"], doing)
    requirements = OnlineRequirements(policies)
    if not requirements:
        return config
    return replace(config, verify=replace(config.verify, policy=requirements))
