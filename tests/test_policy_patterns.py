"""The policy check's one-scan name matching (an RE2 set) answers as each pattern's own search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import re2
import yaml

from connsync.model import Declaration
from connsync.validate import loader, policy, policy_check
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


def test_matching_worked_out_once_per_kind_gives_what_each_rule_on_its_own_gives(tmp_path: Path) -> None:
    """The check (one set scan, plans per kind of connection) against the rules applied one by one
    to connections that share and do not share provider, patterns and label values."""
    (tmp_path / "mixed.yaml").write_text(MIXED_POLICY)
    policies = policy.load([tmp_path / "mixed.yaml"], tmp_path)
    assert not policies.findings and len(policies.rules) == 7
    labels: list[object] = [{"env": "prod"}, {"env": "dev", "team": "a"}, {"env": "dev", "team": 1},
                            {"env": "prod", "owner": "x"}, {}, {"env": ["prod"]}, "not a mapping"]
    declarations = []
    for index in range(28):
        provider = ("aws", "azure", "gcp", "aws")[index % 4]
        name = ("AWS Prod", "AWS Prod account", "azure-dev", "Prod", "AWS")[index % 5]
        data = {"apiVersion": "connsync/v1", "provider": provider,
                "metadata": {"name": name, "labels": labels[index % len(labels)]},
                "spec": {"account_id": "111111111111" if index % 3 else "222222222222",
                         "default_region": ("eu-west-1", "us-east-1")[index % 2]}}
        file = tmp_path / f"c{index:02d}.yaml"
        file.write_text(yaml.safe_dump(data))
        loaded = loader.load_file(file)
        assert isinstance(loaded, Declaration)
        declarations.append(loaded)
    checked = policy_check.check(declarations, policies)
    expected = []
    for decl in declarations:
        conn = policy_check._Connection(decl)
        for rule in policies.rules:
            if conn.matches(rule):
                expected.extend(policy_check.violations(conn, rule))
    assert checked.findings == expected
    assert len({f.rule for f in expected}) == 7  # every rule is broken somewhere
    # two rules allow it different accounts (no account meets both): it breaks one, or the other
    by_file: dict[str, set[str]] = {}
    for finding in expected:
        by_file.setdefault(finding.file, set()).add(finding.rule)
    both = [rules for rules in by_file.values() if "policy/prod-accounts" in rules]
    assert both and all("policy/other-accounts" not in rules for rules in both)
    assert any("policy/other-accounts" in rules for rules in by_file.values())
