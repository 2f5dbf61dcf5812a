"""The policy check's one-scan name matching (an RE2 set) answers as each pattern's own search."""

from __future__ import annotations

from typing import Any

import re2

from connsync.validate.policy import _regex
from connsync.validate.policy_check import _Patterns

PATTERNS = ["^AWS Account 0000[0-9]$", "^AWS", "prod", r"\d{3}$", "^$", "^Zürich-[a-z]+", "(?i)^aws"]
NAMES = ["AWS Account 00003", "AWS Account 12345", "aws-prod-001", "", "Zürich-ops", "zürich-OPS",
         "my prod account 999", "AWS"]


def _searched(patterns: list[Any], name: str) -> dict[str, bool]:
    return {p.pattern: p.search(name) is not None for p in patterns}


def test_one_scan_says_what_each_search_says() -> None:
    compiled = [_regex(p) for p in PATTERNS]
    patterns = _Patterns(compiled)
    assert patterns.set_compiled  # the quick path is the one under test
    for name in NAMES:
        assert patterns.found(name) == _searched(compiled, name), name


def test_a_set_too_big_for_its_memory_falls_back_to_each_search() -> None:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 4096  # enough for the pattern alone, not for the set of it and the empty one
    compiled = [re2.compile("(x+x+)+y|[a-q][^u-z]{13}x", options), _regex("^AWS")]
    patterns = _Patterns(compiled)
    assert not patterns.set_compiled
    for name in ["abcdefghijklmnopqrstuvwxyz" * 3 + "ahhhhhhhhhhhhhx", "AWS 1", "xxxy"]:
        assert patterns.found(name) == _searched(compiled, name), name

