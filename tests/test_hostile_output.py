"""Text from files and from the store is data in every output: no markup, no control, no commands.

Names here come from the store (records made in the platform's UI, which no
validate ever saw), so they reach plan, apply and list exactly as an attacker
wrote them. GitHub's own renderer (cmarkgfm) renders the PR comment.
"""

from __future__ import annotations

import html.parser
import json
import re
from pathlib import Path

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from connsync import render
from connsync.model import Finding, Secret
from connsync.providers.base import Verdict
from connsync.reconcile.plan import Change, Plan
from connsync.store import Write
from connsync.store.sqlite import SqliteStore
from tests.conftest import CANARY, Run

HOSTILE = [
    "A\r<!--",  # with the next one: an HTML comment around the rows between them
    "Z\r-->",
    "A\r::add-mask::s3cr3t\rB",
    "\x1b[2K\x1b[1A\x1b[2KAWS Prod",  # erases the lines above the apply prompt
    "<img src=x onerror=alert(1)>",
    "@octocat fixes #1 `rm -rf` **bold** [x](http://evil.example)",
    "a | b || c",
    "##[add-mask]legacy",
    "::error title=Approved::All verified",
    "  ::warning::indented",
    "new\nline",
    "rtl\u202eevil\u2066",
    "sep\u2028arator\u0085",
    "X" * 10_000,
]


def assert_log_safe(output: str) -> None:
    """What the Actions runner would read as a command, or a terminal as control."""
    # The runner splits lines on \r and \n alike; splitlines is stricter still.
    for line in output.splitlines():
        assert not line.lstrip().startswith("::"), line
        assert "##[" not in line, line
        assert line.isprintable(), repr(line)


_ANNOTATION = re.compile(r"::(error|warning) file=[^:,]*,line=\d+,col=\d+,title=[^:,]*::")


def assert_annotations_safe(output: str) -> None:
    """validate --format github: each line is one command of ours, or our summary."""
    lines = output.splitlines()
    for line in lines[:-1]:
        assert _ANNOTATION.match(line), line
        assert "##[" not in line and line.isprintable(), repr(line)
    assert_log_safe(lines[-1])


class _Outside(html.parser.HTMLParser):
    """The text of a rendered comment that is not inside <code>: where markup could act."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.outside: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.depth += tag == "code"

    def handle_endtag(self, tag: str) -> None:
        self.depth -= tag == "code"

    def handle_data(self, data: str) -> None:
        if not self.depth:
            self.outside.append(data)

    def handle_comment(self, data: str) -> None:
        self.outside.append(f"<!--{data}-->")


def render_github(markdown: str) -> tuple[str, _Outside]:
    # UNSAFE: GitHub passes (sanitised) HTML through, so assume the worst.
    rendered = cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    parser = _Outside()
    parser.feed(rendered)
    return rendered, parser


def assert_comment_shows_every_row(markdown: str, names: list[str]) -> None:
    assert_log_safe(markdown)  # action.yml tees the comment into the log
    rendered, parser = render_github(markdown)
    body = rendered.split("<tbody>", 1)[1]
    assert body.count("<tr>") == len(names), rendered
    assert set(parser.tags) <= {"p", "strong", "code", "table", "thead", "tbody", "tr", "th", "td", "br",
                                "details", "summary"}, parser.tags
    outside = "".join(parser.outside)
    for forbidden in ("<!--", "-->", "@octocat", "#1", "<img", "evil.example"):
        assert forbidden not in outside, (forbidden, outside)
    rows = body.split("<tr>")[1:]
    for name, row in zip(sorted(names, key=str.casefold), rows, strict=True):
        start = render.text(name)[:20].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert start in row.replace("&quot;", '"'), (name, row)


def orphan_plan(names: list[str]) -> Plan:
    changes = tuple(sorted((Change("orphan", n, "aws", f"connections/{n}.yaml", store_version=1)
                            for n in names), key=lambda c: c.name.casefold()))
    return Plan("default", changes)


def test_hostile_plan_renders_every_row_in_the_pr_comment() -> None:
    assert_comment_shows_every_row(render.plan_markdown(orphan_plan(HOSTILE)), HOSTILE)


def test_field_values_cannot_break_out_of_their_code_span() -> None:
    values = ["`` </code><img src=x> ``", "a|b", "\r<!--", "-->", "@octocat"]
    changes = tuple(
        Change("update", f"AWS {i}", "aws", f"connections/{i}.yaml",
               fields={"metadata.description": {"before": "x", "after": value},
                       "metadata.labels": {"before": {}, "after": {value: value}}})
        for i, value in enumerate(values)
    )
    markdown = render.plan_markdown(Plan("default", changes))
    assert_comment_shows_every_row(markdown, [c.name for c in changes])


def test_text_renderers_escape_every_hostile_name(tmp_path: Path) -> None:
    plan = orphan_plan(HOSTILE)
    style = render.Style(False)
    outputs = [
        render.plan_text(plan, style),
        render.dumps(plan.as_json()),
        render.findings_text([Finding("error", "schema", n, 1, 1, "$", n) for n in HOSTILE], 1, style),
        *(render.verdict_line(Verdict(n, n, "aws", "failed", messages=(n,)), style) for n in HOSTILE),
    ]
    for output in outputs:
        assert_log_safe(output)
        # Shortened for people; JSON is for programs and keeps the value whole.
        assert "X" * 1000 not in output or output is outputs[1]
    assert json.loads(outputs[1]) == plan.as_json()  # JSON escapes; the value is the same
    assert_annotations_safe(
        render.findings_github([Finding("error", "schema", n, 1, 1, "$", n) for n in HOSTILE], 1))


def test_github_annotations_keep_one_command_per_finding() -> None:
    findings = [Finding("error", "schema", "connections/a,b:c.yaml", 1, 2, "$.x", "a\r\n::error::b %0A")]
    (line, summary) = render.findings_github(findings, 1).splitlines()
    assert line.startswith("::error file=connections/a%2Cb%3Ac.yaml,line=1,col=2,")
    assert line.endswith("::$.x: a\\x0d\\x0a::error::b %250A")  # one command, data shown as written
    assert summary == "1 file checked: 1 error"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("AWS Prod", "AWS Prod"),
        ("\x1b[2K", "\\x1b[2K"),
        ("a\rb\nc", "a\\x0db\\x0ac"),
        ("zw\u200bsp", "zw\\u200bsp"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("lone\udcff", "lone\\udcff"),
        ("::x", "\\x3a:x"),
        ("  ::x", "  \\x3a:x"),
        ("a::b", "a::b"),
        ("x##[y", "x#\\x23[y"),
        ("nb\u00a0sp", "nb\\xa0sp"),
    ],
)
def test_text_escapes_controls_and_workflow_commands(value: str, shown: str) -> None:
    assert render.text(value) == shown


def test_long_values_are_shortened_in_the_middle() -> None:
    shown = render.text("a" * 5000 + "END")
    assert len(shown) < 260 and "5,003 characters" in shown and shown.endswith("END")


def _hostile_store(repo: Path) -> None:
    store = SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default")
    try:
        for name in HOSTILE:
            store.put(Write(name=name, provider="aws", spec={"account_id": "123456789012"}, secrets={},
                            managed=True, actor="ui", action="create", source=f"connections/{name}.yaml",
                            description=name, labels={name: name}),
                      expected_version=None)
    finally:
        store.close()


def test_plan_list_and_apply_print_store_names_safely(repo: Path, run: Run) -> None:
    _hostile_store(repo)
    for args in (("plan",), ("plan", "--format", "markdown"), ("plan", "--format", "json"),
                 ("plan", "--prune"), ("list",), ("list", "--format", "json")):
        result = run(*args)
        assert result.code == 0, result.err
        assert_log_safe(result.out + result.err)
        assert "X" * 1000 not in result.out or args[-1] == "json"
    assert_comment_shows_every_row(run("plan", "--format", "markdown").out, HOSTILE)
    applied = run("apply", "--prune", "--auto-approve", "--skip-verify", "--max-deletes", "100")
    assert applied.code == 0, applied.err
    assert_log_safe(applied.out + applied.err)
    assert applied.out.count("deleted") >= len(HOSTILE)


def test_config_values_in_errors_cannot_forge_commands(workdir: Path, run: Run) -> None:
    (workdir / "connsync.yaml").write_text(
        'workspace: default\n"x\\n::error title=Approved::All verified\\r\\x1b[2K": 1\n')
    result = run("validate")
    assert result.code == 1
    assert_log_safe(result.out + result.err)
    assert "connsync.yaml" in result.err


def test_import_prints_store_names_safely(repo: Path, run: Run) -> None:
    store = SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default")
    try:
        for name in [*HOSTILE[:6], HOSTILE[-1]]:
            store.put(Write(name=name, provider="aws",
                            spec={"account_id": "123456789012", "default_region": "us-east-1",
                                  "access_key_id": "AKIAIOSFODNN7EXAMPLE"},
                            secrets={"secret_access_key": Secret(CANARY)}, managed=False, actor="ui",
                            action="ui-create"), expected_version=None)
    finally:
        store.close()
    result = run("import", "--all")
    assert_log_safe(result.out + result.err)
    assert CANARY not in result.out + result.err and "X" * 1000 not in result.out + result.err


def test_audit_prints_what_another_client_wrote_safely(repo: Path, run: Run) -> None:
    """The audit table is the store's: a client other than connsync may have written any row."""
    import sqlite3

    _hostile_store(repo)
    db = sqlite3.connect(repo / ".connsync/store.db")
    try:
        for index, value in enumerate(HOSTILE, start=1):
            db.execute("UPDATE audit SET at = ?, actor = ?, action = ?, git_revision = ?, source = ? "
                       "WHERE id = ?", (value, value, value, value, value, index))
        db.commit()
        for args in (("audit",), ("audit", "--format", "json")):
            result = run(*args)
            assert result.code == 0, result.err
            assert_log_safe(result.out + result.err)
            assert "X" * 1000 not in result.out or args[-1] == "json"
        # A value of another type (a BLOB where connsync writes text) is one clear error, not a crash.
        db.execute("UPDATE audit SET at = ? WHERE id = 2", (b"\x1b[2K::error::x",))
        db.commit()
    finally:
        db.close()
    for args in (("audit",), ("audit", "--format", "json")):
        damaged = run(*args)
        assert damaged.code == 1, damaged.err
        assert "the store's audit entry 2 (" in damaged.err and "is damaged: its at is bytes" in damaged.err
        assert_log_safe(damaged.out + damaged.err)
