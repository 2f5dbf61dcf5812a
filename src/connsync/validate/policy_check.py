"""Policy rules applied to connections: offline in validate, and which online checks verify owes.

Rules read a :class:`Declaration` as loaded, secrets still encrypted, and never decrypt: a CEL
expression sees the connection without its secret fields. Each violation is a finding
``policy/<id>`` at the offending value (the ``account_id`` value, the ``labels`` mapping, the name);
a waiver that names the rule and the connection, and has not expired, moves it to ``waived``.
"""

from __future__ import annotations

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


class _Connection:
    """What rules read of one declaration, tolerant of a file the schema has already refused."""

    def __init__(self, decl: Declaration, patterns: _Patterns | None = None) -> None:
        self.decl = decl
        data = decl.data
        metadata = data.get("metadata")
        self.metadata: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
        self.provider = _text(data.get("provider")) or ""
        self.name = _text(self.metadata.get("name")) or ""
        labels = self.metadata.get("labels")
        self.labels: Mapping[str, Any] = labels if isinstance(labels, Mapping) else {}
        spec = data.get("spec")
        self.spec: Mapping[str, Any] = spec if isinstance(spec, Mapping) else {}
        # pattern -> whether it is in the name (rules share them): all at once for a check
        self._found: dict[str, bool] = patterns.found(self.name) if patterns is not None else {}
        self._activation: Any = None
        self._plain: dict[str, Any] | None = None
        self.expressions_hold = False  # every expression of the rules that match it is true

    def name_has(self, pattern: Any) -> bool:
        known = self._found.get(pattern.pattern)
        if known is None:
            known = self._found[pattern.pattern] = pattern.search(self.name) is not None
        return known

    def matches(self, rule: Rule) -> bool:
        if rule.providers is not None and self.provider not in rule.providers:
            return False
        if rule.match_labels and any(self.labels.get(k) != v for k, v in rule.match_labels.items()):
            return False
        return rule.names is None or self.name_has(rule.names)

    def plain_variables(self) -> dict[str, Any]:
        """The connection as a CEL expression sees it: no secret field, encrypted or not."""
        if self._plain is None:
            secret = schema.secret_fields(self.provider) if self.provider in schema.provider_names() else ()
            self._plain = {
                "provider": self.provider, "name": self.name,
                "description": _text(self.metadata.get("description")),
                "labels": {str(k): str(v) for k, v in self.labels.items()},
                "spec": {str(k): v for k, v in self.spec.items() if k not in secret}}
        return self._plain

    def variables(self) -> Any:
        """The same, converted for the engine once, for the expressions evaluated one by one."""
        if self._activation is None:
            self._activation = cel.context(self.plain_variables())
        return self._activation

    def passes(self, rule: Rule) -> bool:
        """Whether the connection meets ``rule`` (which matches it): the quick answer, with no
        finding made; :func:`violations` says what is wrong, for the few that do not."""
        spec = self.spec
        if rule.accounts is not None and spec.get("account_id") not in rule.accounts:
            return False
        if rule.regions is not None and spec.get("default_region") not in rule.regions:
            return False
        for key in rule.labels:
            value = self.labels.get(key)
            if not (isinstance(value, str) and value.strip()):
                return False
        if rule.name is not None and not self.name_has(rule.name):
            return False
        return (rule.expression is None or self.expressions_hold
                or rule.expression.evaluate(self.variables()) is True)


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
    if rule.accounts is not None and account not in rule.accounts:
        where: list[str | int] = ["spec", "account_id"] if "account_id" in conn.spec else ["spec"]
        shown = repr(account) if isinstance(account, str) else "missing"
        found.append(_policy_finding(conn, rule, where, f"account_id {shown} is not one of the allowed "
                                     f"accounts ({', '.join(sorted(rule.accounts))})"))
    region = conn.spec.get("default_region")
    if rule.regions is not None and region not in rule.regions:
        where = ["spec", "default_region"] if "default_region" in conn.spec else ["spec"]
        shown = repr(region) if isinstance(region, str) else "missing"
        found.append(_policy_finding(conn, rule, where, f"default_region {shown} is not one of the "
                                     f"allowed regions ({', '.join(sorted(rule.regions))})"))
    missing = [k for k in rule.labels if not (isinstance(conn.labels.get(k), str) and conn.labels[k].strip())]
    if missing:
        where = ["metadata", "labels"] if "labels" in conn.metadata else ["metadata"]
        found.append(_policy_finding(conn, rule, where, f"missing required label(s): {', '.join(missing)} "
                                     "(each with a non-empty value)"))
    if rule.name is not None and not conn.name_has(rule.name):
        found.append(_policy_finding(conn, rule, ["metadata", "name"],
                                     f"name {conn.name!r} does not match {rule.name.pattern!r}"))
    if rule.expression is not None:
        outcome = rule.expression.evaluate(conn.variables())
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

    def found(self, name: str) -> dict[str, bool]:
        """Whether each pattern is in ``name``."""
        hits = self._set.Match(name) if self._set is not None else None
        if not hits:  # not even the empty pattern: the set failed
            return {pattern: compiled.search(name) is not None
                    for pattern, compiled in self._compiled.items()}
        hit = set(hits)
        return {pattern: index in hit for index, pattern in enumerate(self.patterns, start=1)}


# A rule's other match conditions, made once: (rule, match.labels items, match.names pattern).
_Candidate = tuple[Rule, tuple[tuple[str, str], ...], str | None]


def _by_provider(offline: list[Rule]) -> tuple[dict[str, list[_Candidate]], list[_Candidate]]:
    """The rules that may match each provider's connections, in policy order (a rule with no
    ``providers`` may match any), and those for a provider no rule names."""
    def candidates(rules: Iterable[Rule]) -> list[_Candidate]:
        return [(r, tuple(r.match_labels.items()), r.names.pattern if r.names is not None else None)
                for r in rules]

    named = {p for r in offline if r.providers is not None for p in r.providers}
    return ({p: candidates(r for r in offline if r.providers is None or p in r.providers) for p in named},
            candidates(r for r in offline if r.providers is None))


class _Plan:
    """The rules that match a kind of connection, their expressions, and those rules that require
    more than an expression (all a connection whose expressions all hold may still break)."""

    def __init__(self, matched: list[Rule]) -> None:
        self.matched = matched
        programs = tuple(rule.expression for rule in matched if rule.expression is not None)
        self.expressions = cel.combine(programs) if programs else None
        self.unsettled = [rule for rule in matched if rule.expression is None or rule.accounts is not None
                          or rule.regions is not None or rule.labels or rule.name is not None]


def _check(declarations: Iterable[Declaration], offline: list[Rule], policies: PolicySet,
           when: date) -> Checked:
    waivers = {(w.rule, _key(w.connection)): w for w in policies.waivers if w.active(when)}
    findings: list[Finding] = []
    waived: list[Waived] = []
    patterns = _Patterns(p for r in offline for p in (r.names, r.name) if p is not None)
    by_provider, anywhere = _by_provider(offline)
    label_keys = tuple({k for r in offline for k in r.match_labels})
    # Which rules match depends only on the provider, the patterns in the name and the values of
    # the labels that rules match on: worked out once for each such combination.
    plans: dict[tuple[Any, ...], _Plan] = {}
    for decl in declarations:
        conn = _Connection(decl, patterns)
        labels, found = conn.labels, conn._found
        # Any label value that is not a string matches no rule's (string) value, as a missing one.
        key = (conn.provider, tuple(found.values()),
               tuple(v if isinstance(v, str) else None for v in map(labels.get, label_keys)))
        plan = plans.get(key)
        if plan is None:
            # _Connection.matches, with the providers already sorted out and the names searched
            matched = [rule for rule, match_labels, names in by_provider.get(conn.provider, anywhere)
                       if not (match_labels and any(labels.get(k) != v for k, v in match_labels))
                       and (names is None or found[names])]
            plan = plans[key] = _Plan(matched)
        conn.expressions_hold = (plan.expressions is not None
                                 and plan.expressions.all_true(conn.plain_variables()))
        for rule in plan.unsettled if conn.expressions_hold else plan.matched:
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
