"""The README is part of the feature: its command table, rules table, make targets and bench scripts
are kept in step with the code, so a reader never looks for what is not there or misses what is."""

from __future__ import annotations

import ast
import re

from connsync.cli import cli
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
MAKEFILE = (REPO / "Makefile").read_text(encoding="utf-8")
# Calls that carry a finding's rule id, and the position of that argument.
RULE_CALLS = {"Finding": 1, "_finding": 1, "finding": 1, "Issue": 0, "_RefusedNode": 0}
RULE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n#", start + len(title))
    return README[start:end if end != -1 else None]


def _first_cells(section: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^\| `([^`]+)`", section, re.M)]


def test_the_command_table_lists_every_command_and_no_other() -> None:
    documented = {cell.split()[0] for cell in _first_cells(_section("## Commands"))}
    assert documented == set(cli.commands)


def _emitted_rules() -> set[str]:
    rules: set[str] = set()
    for path in (REPO / "src/connsync").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            position = RULE_CALLS.get(name)
            if position is None:
                continue
            values = [*node.args[position:position + 1], *(k.value for k in node.keywords if k.arg == "rule")]
            rules |= {v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)
                      and RULE.match(v.value)}
    return rules


def test_the_rules_table_names_every_rule_the_code_can_report() -> None:
    table = _section("### validate's rules")
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    documented = {rule for cell in first_cells for rule in re.findall(r"`([^`]+)`", cell)}
    emitted = _emitted_rules()
    assert {"schema", "yaml", "duplicate-key", "plaintext-secret", "outside-connections"} <= emitted
    assert emitted - documented == set(), "rules the code reports that the README's table leaves out"


def test_every_make_target_the_readme_names_exists_and_every_documented_target_is_named() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE, re.M))
    named = set(re.findall(r"\bmake ([a-z][a-z-]*)", README))
    assert named <= targets, named - targets
    described = set(re.findall(r"^([a-z][a-z-]*):.*##", MAKEFILE, re.M))  # the targets meant for users
    assert described <= named, described - named


def test_every_bench_script_is_run_by_make_bench_and_described() -> None:
    scripts = {p.name for p in (REPO / "bench").glob("*.py") if p.name not in ("common.py", "__init__.py")}
    recipe = MAKEFILE[MAKEFILE.index("\nbench:"):]
    recipe = recipe[:recipe.find("\n\n")]
    assert scripts == set(re.findall(r"bench/([a-z_]+\.py)", recipe))
    assert scripts <= set(re.findall(r"bench/([a-z_]+\.py)", README))
