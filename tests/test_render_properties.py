"""Property: whatever a name, label or value holds, every output format keeps it data.

Generated text covers every Unicode category, surrogates included (undecodable
bytes in file names arrive as lone surrogates).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from connsync import render
from connsync.errors import ConnsyncError
from connsync.model import Action, Finding, StoredConnection
from connsync.providers.base import Verdict
from connsync.reconcile.apply import ApplyReport
from connsync.reconcile.plan import Change, Plan
from tests.test_hostile_output import assert_annotations_safe, assert_log_safe, render_github

ANY_TEXT = st.text(st.characters(exclude_categories=()), min_size=1, max_size=60)
# Lines, commands and markup are made of these; mix them in so they are not left to chance.
PIECES = st.sampled_from(["\r", "\n", "::", "##[", "\x1b[2K", "<!--", "-->", "|", "`", "<img src=x>",
                          "@octocat", "#1", "\u2028", "\u202e", "\ufeff", "\u0085", " ", "\\", "\x00"])
HOSTILE_TEXT = st.lists(st.one_of(ANY_TEXT, PIECES), min_size=1, max_size=6).map("".join)
ROWS: tuple[Action, ...] = ("create", "update", "delete", "conflict", "orphan")


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    changes = []
    action: Action
    for action in draw(st.lists(st.sampled_from((*ROWS, "noop")), min_size=1, max_size=8)):
        label, value = draw(HOSTILE_TEXT), draw(HOSTILE_TEXT)
        fields: dict[str, dict[str, Any]] = {
            "metadata.labels": {"before": {}, "after": {label: value}},
            "metadata.description": {"before": draw(HOSTILE_TEXT), "after": value},
            "secret_access_key": {"sensitive": True, "changed": True},
        }
        changes.append(Change(action, draw(HOSTILE_TEXT), draw(HOSTILE_TEXT), draw(HOSTILE_TEXT),
                              fields=fields if action in ("create", "update") else {}))
    return Plan(draw(HOSTILE_TEXT), tuple(changes))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_every_output_format_keeps_hostile_text_as_data(plan: Plan) -> None:
    style = render.Style(False)
    try:
        markdown = render.plan_markdown(plan)
    except ConnsyncError:  # the generator made something shaped like a secret key: refused, fine
        assume(False)
        raise
    rows = [c for c in plan.changes if c.action != "noop"]
    assert_log_safe(markdown)
    rendered, parser = render_github(markdown)
    body = rendered.split("<tbody>", 1)
    assert (body[1].count("<tr>") if len(body) == 2 else 0) == len(rows)
    assert set(parser.tags) <= {"p", "strong", "code", "table", "thead", "tbody", "tr", "th", "td", "br",
                                "details", "summary"}, parser.tags
    outside = "".join(parser.outside)
    assert [x for x in ("<!--", "-->", "@", "#", "<img") if x in outside] == []

    text = render.plan_text(plan, style)
    assert_log_safe(text)
    as_json = render.dumps(plan.as_json())
    assert_log_safe(as_json)
    assert json.loads(as_json) == plan.as_json()

    names = [c.name for c in plan.changes]
    findings = [Finding("error", "schema", c.file or "", 1, 1, c.name, c.provider) for c in plan.changes]
    assert_log_safe(render.findings_text(findings, len(findings), style))
    assert_annotations_safe(render.findings_github(findings, len(findings)))
    records = [StoredConnection(n, n, {"x": n}, {}, 1, True, source=n, updated_at=n) for n in names]
    assert_log_safe(render.records_text(records))
    assert_log_safe(render.dumps([render.record_json(r) for r in records]))
    for change in plan.changes:
        assert_log_safe(render.verdict_line(Verdict(change.name, change.file or "", change.provider, "failed",
                                                    identity={"arn": change.name}, messages=(change.name,)),
                                            style))
    report = ApplyReport(plan, applied=[{"action": "create", "name": n} for n in names],
                         failed=[{"name": n, "error": n} for n in names], warnings=names)
    assert_log_safe(render.apply_text(report, style))
    assert_log_safe(render.text_lines("\n".join(names)))
