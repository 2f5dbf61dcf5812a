"""validate's findings: text for people, JSON, GitHub workflow commands, and a pull-request table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from connsync.model import Finding
from connsync.render.envelope import json_output
from connsync.render.escape import MAX_SHOWN, Style, md_code, plural, refuse_secret_shapes, text

if TYPE_CHECKING:
    from connsync.validate.policy_diff import PolicyReport


def _waived(count: int) -> str:
    return f", {count} waived by policy waivers" if count else ""


def findings_text(findings: Sequence[Finding], files: int, style: Style, waived: int = 0) -> str:
    lines = []
    for f in findings:
        colour = "red" if f.severity == "error" else "yellow"
        lines.append(
            f"{text(f.file)}:{f.line}:{f.column}: {style(f.severity, fg=colour, bold=True)} "
            f"[{f.rule}] {text(f.path)}: {text(f.message, 4 * MAX_SHOWN)}"
        )
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    verdict = style("ok", fg="green") if not errors else style("failed", fg="red")
    lines.append(
        f"{plural(files, 'file')} checked: {plural(errors, 'error')}, "
        f"{plural(warnings, 'warning')}{_waived(waived)} - {verdict}"
    )
    return "\n".join(lines)


def findings_json(findings: Sequence[Finding], files: int,
                  waived: Sequence[Mapping[str, Any]] = ()) -> str:
    """``waived``: policy findings a waiver moved aside, each with its waiver (where, until, why)."""
    ok = not any(f.severity == "error" for f in findings)
    return json_output("validate", ok, {"files": files, "findings": [f.as_json() for f in findings],
                                        "waived": list(waived)})


def _escape_data(value: str) -> str:
    """A workflow command's message (the runner's own escaping, after :func:`text`)."""
    return text(value, 4 * MAX_SHOWN).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def findings_github(findings: Sequence[Finding], files: int, waived: int = 0) -> str:
    """GitHub Actions workflow commands: one inline annotation per finding."""
    lines = [
        f"::{f.severity} file={_escape_property(f.file)},line={f.line},col={f.column},"
        f"title={_escape_property('connsync ' + f.rule)}::{_escape_data(f.path + ': ' + f.message)}"
        for f in findings
    ]
    errors = sum(f.severity == "error" for f in findings)
    lines.append(f"{plural(files, 'file')} checked: {plural(errors, 'error')}{_waived(waived)}")
    return "\n".join(lines)


def findings_markdown(findings: Sequence[Finding]) -> str:
    """Findings as a table for a pull-request comment: where, rule and message, all file text in code."""
    rows = [f"| {f.severity} | {md_code(f.rule)} | {md_code(f'{f.file}:{f.line}:{f.column}')} | "
            f"{md_code(f.path)} {md_code(f.message, 4 * MAX_SHOWN)} |" for f in findings]
    return refuse_secret_shapes("\n".join(["| | Rule | Where | Finding |", "|---|---|---|---|", *rows]))


def policy_markdown(report: PolicyReport) -> str:
    """The plan comment's policy section: findings that did not stop the plan, waivers, and what the
    pull request changes in the policies (in force: the base branch's, until it merges)."""
    sections = []
    if report.findings:
        sections.append(f"**Policy**: {plural(len(report.findings), 'warning')}\n\n"
                        + findings_markdown(report.findings))
    if report.waived:
        waived = [f"- {md_code(w.finding.rule)} on {md_code(w.finding.file)}: waived until "
                  f"{w.waiver.expires.isoformat()} by {md_code(w.waiver.where.file)} line "
                  f"{w.waiver.where.line} ({md_code(w.waiver.reason)})" for w in report.waived]
        sections.append(f"**Policy**: {plural(len(report.waived), 'finding')} waived\n\n"
                        + "\n".join(waived))
    if report.changes:
        listed = [f"- {c.kind}: {md_code(c.subject)} ({md_code(c.detail, 2 * MAX_SHOWN)})"
                  for c in report.changes]
        sections.append("**Policy changes in this pull request** (the base branch's policy stays in force "
                        "until it merges):\n\n" + "\n".join(listed))
    elif report.compared:
        sections.append("No policy changes in this pull request.")
    return refuse_secret_shapes("\n\n".join(sections))
