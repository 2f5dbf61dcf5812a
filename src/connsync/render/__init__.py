"""Renderers: the same result as text for people, JSON for programs, and CI formats.

One module per kind of output; every value a file, connsync.yaml or the store supplies goes
through the escaping of its medium (:mod:`connsync.render.escape`). The names are imported here,
so callers write ``render.text``, ``render.plan_text``, ...
"""

from __future__ import annotations

from connsync.render.apply import (
    apply_text,
    early_end_lines,
)
from connsync.render.envelope import (
    JSON_COMMANDS,
    JSON_FORMAT_VERSION,
    envelope,
    error_envelope,
    json_command,
    json_output,
)
from connsync.render.escape import (
    MAX_SHOWN,
    Style,
    dumps,
    md_code,
    plural,
    refuse_secret_shapes,
    text,
    text_lines,
)
from connsync.render.findings import (
    findings_github,
    findings_json,
    findings_markdown,
    findings_text,
    policy_markdown,
)
from connsync.render.plan import (
    MARKDOWN_FOLD_ROWS,
    plan_markdown,
    plan_notes_markdown,
    plan_notes_text,
    plan_summary_line,
    plan_text,
)
from connsync.render.results import (
    record_json,
    records_text,
    verdict_line,
    verify_markdown,
    verify_summary,
)

__all__ = [
    "JSON_COMMANDS",
    "JSON_FORMAT_VERSION",
    "MARKDOWN_FOLD_ROWS",
    "MAX_SHOWN",
    "Style",
    "apply_text",
    "dumps",
    "early_end_lines",
    "envelope",
    "error_envelope",
    "findings_github",
    "findings_json",
    "findings_markdown",
    "findings_text",
    "json_command",
    "json_output",
    "md_code",
    "plan_markdown",
    "plan_notes_markdown",
    "plan_notes_text",
    "plan_summary_line",
    "plan_text",
    "plural",
    "policy_markdown",
    "record_json",
    "records_text",
    "refuse_secret_shapes",
    "text",
    "text_lines",
    "verdict_line",
    "verify_markdown",
    "verify_summary",
]
