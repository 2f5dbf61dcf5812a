"""The policy check's one-scan name matching (an RE2 set) answers as each pattern's own search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import re2
import yaml

from connsync.model import Declaration
from connsync.validate import cel, loader, policy, policy_check
from connsync.validate.policy import _regex
from connsync.validate.policy_check import _Patterns

PATTERNS = ["^AWS Account 0000[0-9]$", "^AWS", "prod", r"\d{3}$", "^$", "^Zürich-[a-z]+", "(?i)^aws"]
NAMES = ["AWS Account 00003", "AWS Account 12345", "aws-prod-001", "", "Zürich-ops", "zürich-OPS",
         "my prod account 999", "AWS"]


def _searched(patterns: list[Any], name: str) -> dict[str, bool]:
    return {p.pattern: p.search(name) is not None for p in patterns}


def _found(patterns: _Patterns, name: str) -> dict[str, bool]:
    """What one scan says of each pattern."""
    hits = patterns.hits(name)
    return {pattern: index in hits for pattern, index in patterns.index.items()}


def test_one_scan_says_what_each_search_says() -> None:
    compiled = [_regex(p) for p in PATTERNS]
    patterns = _Patterns(compiled)
    assert patterns.set_compiled  # the quick path is the one under test
    for name in NAMES:
        assert _found(patterns, name) == _searched(compiled, name), name


def test_a_set_too_big_for_its_memory_falls_back_to_each_search() -> None:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 4096  # enough for the pattern alone, not for the set of it and the empty one
    compiled = [re2.compile("(x+x+)+y|[a-q][^u-z]{13}x", options), _regex("^AWS")]
    patterns = _Patterns(compiled)
    assert not patterns.set_compiled
    for name in ["abcdefghijklmnopqrstuvwxyz" * 3 + "ahhhhhhhhhhhhhx", "AWS 1", "xxxy"]:
        assert _found(patterns, name) == _searched(compiled, name), name



MIXED_POLICY = """\
apiVersion: connsync/v1
kind: Policy
metadata: {name: mixed}
rules:
  - id: prod-accounts
    match: {providers: [aws], labels: {env: prod}, names: '^AWS'}
    require: {accounts: ["111111111111"]}
  - id: dev-regions
    match: {labels: {env: dev, team: a}}
    require: {regions: [eu-west-1]}
  - id: cel-aws
    match: {providers: [aws]}
    require: {expression: 'spec.default_region.startsWith("eu-")'}
  - id: cel-and-label
    match: {names: 'Prod'}
    require: {expression: 'size(name) < 12', labels: [owner]}
  - id: name-style
    match: {providers: [azure]}
    require: {name: '^[a-z-]+$'}
  - id: other-accounts
    match: {providers: [aws]}
    require: {accounts: ["222222222222"], regions: [eu-west-1, us-east-1]}
  - id: two-labels
    match: {names: 'AWS'}
    require: {labels: [owner, env], name: 'account$'}
"""


def _declarations(tmp_path: Path,
                  specs: list[tuple[str, str, object, dict[str, object]]]) -> list[Declaration]:
    """Connections from (provider, name, labels, spec), loaded as validate loads them."""
    declarations = []
    for index, (provider, name, labels, spec) in enumerate(specs):
        data = {"apiVersion": "connsync/v1", "provider": provider,
                "metadata": {"name": name, "labels": labels}, "spec": spec}
        file = tmp_path / f"c{index:02d}.yaml"
        file.write_text(yaml.safe_dump(data))
        loaded = loader.load_file(file)
        assert isinstance(loaded, Declaration)
        declarations.append(loaded)
    return declarations


def _rule_by_rule(declarations: list[Declaration], policies: policy.PolicySet) -> list[Any]:
    """Each rule applied on its own, each expression evaluated by the engine on the whole
    connection (as it sees it: no secret field)."""
    expected = []
    for decl in declarations:
        conn = policy_check._Connection(decl)
        whole = tuple((name, None) for name in cel.VARIABLES)
        conn.outcomes = {r.expression.source: r.expression._replace(reads=whole).evaluate(
            conn.plain_variables()) for r in policies.rules if r.expression is not None}
        for rule in policies.rules:
            if conn.matches(rule):
                expected.extend(policy_check.violations(conn, rule))
    return expected


def test_matching_worked_out_once_per_kind_gives_what_each_rule_on_its_own_gives(tmp_path: Path) -> None:
    """The check (one set scan, plans per kind of connection) against the rules applied one by one
    to connections that share and do not share provider, patterns and label values."""
    (tmp_path / "mixed.yaml").write_text(MIXED_POLICY)
    policies = policy.load([tmp_path / "mixed.yaml"], tmp_path)
    assert not policies.findings and len(policies.rules) == 7
    labels: list[object] = [{"env": "prod"}, {"env": "dev", "team": "a"}, {"env": "dev", "team": 1},
                            {"env": "prod", "owner": "x"}, {}, {"env": ["prod"]}, "not a mapping"]
    declarations = _declarations(tmp_path, [
        (("aws", "azure", "gcp", "aws")[index % 4],
         ("AWS Prod", "AWS Prod account", "azure-dev", "Prod", "AWS")[index % 5],
         labels[index % len(labels)],
         {"account_id": "111111111111" if index % 3 else "222222222222",
          "default_region": ("eu-west-1", "us-east-1")[index % 2]})
        for index in range(28)])
    expected = _rule_by_rule(declarations, policies)
    assert policy_check.check(declarations, policies).findings == expected
    assert len({f.rule for f in expected}) == 7  # every rule is broken somewhere


FOLDED_POLICY = """\
apiVersion: connsync/v1
kind: Policy
metadata: {name: folded}
rules:
  - id: one-account
    require: {accounts: ["111111111111"], regions: [eu-west-1]}
  - id: two-accounts
    require: {accounts: ["111111111111", "222222222222"], regions: [eu-west-1, us-east-1]}
  - id: owner
    require: {labels: [owner]}
  - id: env
    require: {labels: [env]}
  - id: style
    require: {name: '^c-'}
  - id: short
    require: {name: '^.{1,4}$', expression: 'has(spec.account_id)'}
"""


def test_the_requirements_of_rules_together_are_what_each_requires(tmp_path: Path) -> None:
    """The accounts and regions every rule allows, the labels any rule requires, every name
    pattern: a connection that meets one rule's and not another's is found by that other."""
    (tmp_path / "folded.yaml").write_text(FOLDED_POLICY)
    policies = policy.load([tmp_path / "folded.yaml"], tmp_path)
    assert not policies.findings
    full, A, B = {"owner": "o", "env": "e"}, "111111111111", "222222222222"
    declarations = _declarations(tmp_path, [
        ("aws", "c-1", full, {"account_id": A, "default_region": "eu-west-1"}),  # breaks nothing
        ("aws", "c-2", full, {"account_id": B, "default_region": "eu-west-1"}),  # one-account
        ("aws", "c-3", full, {"account_id": A, "default_region": "us-east-1"}),  # one-account
        ("aws", "c-4", {"owner": "o"}, {"account_id": A, "default_region": "eu-west-1"}),  # env
        ("aws", "c-5", {"env": "e", "owner": " "}, {"account_id": A, "default_region": "eu-west-1"}),
        ("aws", "x-6", full, {"account_id": A, "default_region": "eu-west-1"}),  # style
        ("aws", "c-long", full, {"account_id": A, "default_region": "eu-west-1"}),  # short
        ("aws", "c-8", full, {"default_region": "eu-west-1"}),  # both accounts rules, short
        ("aws", "c-9", full, {"account_id": int(A), "default_region": "eu-west-1"}),  # not a string
    ])
    expected = _rule_by_rule(declarations, policies)
    assert policy_check.check(declarations, policies).findings == expected
    broken = {(f.file.rsplit("/", 1)[-1], f.rule.removeprefix("policy/")) for f in expected}
    assert broken == {
        ("c01.yaml", "one-account"), ("c02.yaml", "one-account"), ("c03.yaml", "env"),
        ("c04.yaml", "owner"), ("c05.yaml", "style"), ("c06.yaml", "short"),
        ("c07.yaml", "one-account"), ("c07.yaml", "two-accounts"), ("c07.yaml", "short"),
        ("c08.yaml", "one-account"), ("c08.yaml", "two-accounts")}
