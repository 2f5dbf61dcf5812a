"""Renderers: the same result as text for people, JSON for programs, and CI formats."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import click

from connsync.errors import ConnsyncError
from connsync.model import Finding, StoredConnection
from connsync.providers.base import Verdict
from connsync.reconcile.plan import Change, Plan

if TYPE_CHECKING:
    from connsync.reconcile.apply import ApplyReport
    from connsync.validate.policy_diff import PolicyReport


# --- escaping: one function per medium ---------------------------------------
#
# Everything a connection file, connsync.yaml or the store supplies (names,
# labels, descriptions, paths, values, messages that quote them) is data. It
# reaches a terminal (at the apply prompt), a GitHub Actions log (where a line
# starting with "::" -- after leading whitespace -- and "##[" anywhere in a line
# are commands to the runner) and a pull-request comment (Markdown and HTML).
# The renderers below pass every such value through the function for their
# medium, so no call site has to remember.

# Longer values are cut in the middle: enough to recognise, never a screenful.
MAX_SHOWN = 200
_LEGACY_COMMAND = "##["  # the runner's v1 command prefix, honoured anywhere in a line


def _escape_char(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _shorten(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    head, tail = value[: limit * 2 // 3], value[len(value) - limit // 3 :]
    return f"{head}…[{len(value):,} characters]…{tail}"


def text(value: object, limit: int = MAX_SHOWN) -> str:
    """A value as one safe line for a terminal or a CI log.

    Control, format, separator and other unprintable characters (ESC, CR, LF,
    U+200B, U+202E, U+2028, a lone surrogate, ...) are shown as Python-style
    escapes; "##[" and a leading "::" cannot be read as workflow commands;
    values longer than ``limit`` are shortened in the middle.
    """
    shown = _shorten(value if isinstance(value, str) else str(value), limit)
    if not shown.isprintable():
        shown = "".join(c if c.isprintable() else _escape_char(c) for c in shown)
    shown = shown.replace(_LEGACY_COMMAND, "#\\x23[")
    body = shown.lstrip()
    if body.startswith("::"):
        shown = shown[: len(shown) - len(body)] + "\\x3a" + body[1:]
    return shown


def text_lines(message: str, limit: int = 4 * MAX_SHOWN) -> str:
    """A message that may span lines (an error, a list of failures): each line made safe."""
    return "\n".join(text(line, limit) for line in message.split("\n"))


def md_code(value: object, limit: int = MAX_SHOWN) -> str:
    """A value as a Markdown code span, safe in a GFM table cell.

    Inside a code span nothing is markup: no HTML or comments, no links,
    emphasis, @mentions or #references (GitHub does not link them in code).
    Only the fence and the table's pipe need care.
    """
    shown = text(value, limit).replace("|", "\\|")
    if not shown:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", shown)), default=0) + 1)
    pad = " " if shown[0] == "`" or shown[-1] == "`" or (shown[0] == " " and shown[-1] == " ") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def dumps(value: Any) -> str:
    """JSON for programs; also safe for a terminal and a CI log (same value once parsed)."""
    out = json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False)
    # Outside strings JSON has only printable ASCII and newlines, so whatever is
    # unprintable is inside a string, where a \\u escape means the same value.
    if not out.replace("\n", "").isprintable():
        out = "".join(c if c == "\n" or c.isprintable() else json.dumps(c)[1:-1] for c in out)
    return out.replace(_LEGACY_COMMAND, "#\\u0023[")


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class Style:
    """Colour only when asked to (a TTY without NO_COLOR and without --no-color)."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, **kwargs: Any) -> str:
        return click.style(text, **kwargs) if self.color else text


# --- validate ---------------------------------------------------------------


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


# --- plan ---------------------------------------------------------------------

_SYMBOL = {"create": "+", "update": "~", "delete": "-", "noop": " ", "conflict": "!", "orphan": "?"}
_COLOUR = {"create": "green", "update": "yellow", "delete": "red", "conflict": "red", "orphan": "magenta"}


def _value(value: Any) -> str:
    return text(json.dumps(value, ensure_ascii=False)) if value is not None else "(none)"


def _field_line(name: str, change: Mapping[str, Any], action: str) -> str:
    if change.get("sensitive"):
        return f"{name} = (sensitive)" if action == "create" else f"{name} (sensitive, changed)"
    if action == "create":
        return f"{name} = {_value(change.get('after'))}"
    return f"{name}: {_value(change.get('before'))} -> {_value(change.get('after'))}"


def plan_summary_line(plan: Plan) -> str:
    s = plan.summary
    line = (f"Plan: {s['create']} to create, {s['update']} to update, {s['delete']} to delete, "
            f"{s['noop']} unchanged")
    extras = [f"{s['conflict']} conflict{'s' if s['conflict'] != 1 else ''}" if s["conflict"] else "",
              f"{s['orphan']} orphaned" if s["orphan"] else ""]
    line += "".join(f", {e}" for e in extras if e) + "."
    if plan.ignored:
        line += f" ({plural(plan.ignored, 'unmanaged record')} not in any file, ignored.)"
    return line


def _note(change: Change) -> str:
    notes = []
    if change.drift:
        notes.append("changed outside connsync since the last apply")
    if change.adopt:
        notes.append("adopting a record made outside connsync")
    if change.action == "conflict":
        notes.append("exists in the store, not managed by connsync; --adopt takes it over")
    if change.action == "orphan":
        notes.append("managed, but no file declares it; --prune deletes it")
    return f"  [{'; '.join(notes)}]" if notes else ""


def plan_text(plan: Plan, style: Style) -> str:
    if not plan.has_changes:
        return f"No changes. The store matches the files ({plural(len(plan.changes), 'connection')}).\n" + (
            plan_summary_line(plan))
    workspace = text(repr(plan.workspace))
    lines = [f"connsync will make these changes in workspace {workspace}:" if plan.pending else
             f"Nothing to change in workspace {workspace}, but the store and the files differ here:", ""]
    for change in plan.changes:
        if change.action == "noop":
            continue
        colour = _COLOUR.get(change.action)
        head = f"  {_SYMBOL[change.action]} {change.action:<8} {text(change.name)}"
        where = (f" ({text(change.provider)}, {text(change.file)})" if change.file
                 else f" ({text(change.provider)})")
        lines.append(style(head, fg=colour, bold=True) + where + _note(change))
        for name, field_change in change.fields.items():
            lines.append(f"        {_field_line(text(name), field_change, change.action)}")
    lines += ["", plan_summary_line(plan)]
    return "\n".join(lines)


# Plans longer than this are folded in the comment, summary line still visible.
MARKDOWN_FOLD_ROWS = 10
_AWS_SECRET_SHAPE = re.compile(r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*[A-Z])"
                               r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_AGE_SECRET_SHAPE = re.compile(r"AGE-SECRET-KEY-", re.IGNORECASE)


def refuse_secret_shapes(text: str) -> str:
    """The last line of defence before a plan is posted where many can read it."""
    if _AGE_SECRET_SHAPE.search(text) or _AWS_SECRET_SHAPE.search(text):
        raise ConnsyncError(
            "refusing to print the plan: it contains something shaped like a secret key",
            hint="a label or description may hold a secret; remove it, and rotate the secret",
        )
    return text


def plan_markdown(plan: Plan) -> str:
    """A summary line and a table, fit for a pull-request comment."""
    return refuse_secret_shapes(_plan_markdown(plan))


def _plan_markdown(plan: Plan) -> str:
    lines = [f"**connsync plan** for workspace {md_code(plan.workspace)}: {plan_summary_line(plan)}", ""]
    rows = [c for c in plan.changes if c.action != "noop"]
    if not rows:
        lines.append("No changes.")
        return "\n".join(lines)
    folded = len(rows) > MARKDOWN_FOLD_ROWS
    if folded:
        lines += [f"<details><summary>{plural(len(rows), 'change')}</summary>", ""]
    lines += ["| | Action | Name | Provider | File | Changes |", "|---|---|---|---|---|---|"]
    for change in rows:
        fields = "<br>".join(md_code(_field_line(text(n), c, change.action), 2 * MAX_SHOWN)
                             for n, c in change.fields.items())
        note = _note(change).strip(" []")  # connsync's own words, no file text
        changes = "<br>".join(x for x in (fields, note) if x)
        lines.append(
            f"| {_SYMBOL[change.action].strip() or ' '} | {change.action} | {md_code(change.name)} | "
            f"{md_code(change.provider)} | {md_code(change.file or '')} | {changes} |"
        )
    if folded:
        lines += ["", "</details>"]
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


# --- apply --------------------------------------------------------------------


def apply_text(report: ApplyReport, style: Style) -> str:
    lines = []
    if report.verified:
        # "Verified" alone above a FAILED line would read as a pass: say how each check ended.
        lines.append(f"Checked {plural(report.verified, 'connection')} with their providers before writing: "
                     f"{report.verified - report.rejected} passed"
                     + (f", {report.rejected} failed (not written)." if report.rejected else "."))
    for item in report.applied:
        version = f" (version {item['version']})" if "version" in item else ""
        lines.append(f"{text(item['name'])}: {item['action']}d{version}")
    for warning in report.warnings:
        lines.append(style(f"warning: {text(warning, 4 * MAX_SHOWN)}", fg="yellow"))
    for item in report.failed:
        lines.append(style(f"{text(item['name'])}: FAILED: {text(item['error'], 4 * MAX_SHOWN)}", fg="red"))
    counts = report.counts()
    done = f"{counts['create']} created, {counts['update']} updated, {counts['delete']} deleted"
    if report.ended is None:
        verdict = "Apply complete" if report.ok else "Apply finished with failures"
        lines.append(f"{verdict}: {done}, {len(report.failed)} failed.")
        return "\n".join(lines)
    verdict = "Apply interrupted" if report.ended.interrupted else "Apply ended early"
    held = " (as the store holds them)" if report.counted_from_store else ""
    failed = f", {len(report.failed)} failed" if report.failed else ""
    doubt = ", 1 in doubt" if report.in_doubt else ""
    lines.append(style(f"{verdict}: {done}{held}; {len(report.not_written)} not written{doubt}{failed}.",
                       fg="red"))
    return "\n".join(lines)


def early_end_lines(report: ApplyReport) -> list[str]:
    """Why an apply ended before its plan did, what it did not write, and that a re-run converges."""
    end = report.ended
    if end is None:
        return []
    if end.before_writes:
        return [f"{text(end.cause[:1].upper() + end.cause[1:])}: nothing was written. Run apply again when "
                "ready."]
    written = len(report.applied)
    held = "as the store holds them" if report.counted_from_store else "confirmed by the store"
    rest = f"the other {len(report.not_written)} were not written"
    if report.in_doubt:
        rest += (f"; the one under way ({report.in_doubt['action']} {text(repr(report.in_doubt['name']))}) "
                 "may or may not have landed, whole either way")
    failed = f"; {plural(len(report.failed), 'connection')} failed (listed above)" if report.failed else ""
    planned = written + len(report.not_written) + (1 if report.in_doubt else 0)
    if end.interrupted:
        return [f"Interrupted (^C) after {written} of {plural(planned, 'write')} ({held}); {rest}{failed}; "
                "each record is whole. Run apply again to finish."]
    lines = [f"connsync: error: {text_lines(end.cause)}",
             f"Written: {written} of {plural(planned, 'write')} ({held}); {rest}{failed}."]
    if report.not_written:
        names = [text(repr(i["name"])) for i in report.not_written[:5]]
        more = f" and {len(report.not_written) - 5} more" if len(report.not_written) > 5 else ""
        lines.append(f"Not written: {', '.join(names)}{more}.")
    lines.append(f"hint: each record is whole (written or not at all); {text(end.hint)}")
    return lines


# --- list ---------------------------------------------------------------------


def record_json(record: StoredConnection) -> dict[str, Any]:
    return {
        "name": record.name, "provider": record.provider, "managed": record.managed,
        "source": record.source, "file": record.source,  # "file", as verify and plan say
        "version": record.version, "spec": dict(record.spec),
        "secrets": sorted(record.fingerprints), "updated_at": record.updated_at,
        "updated_by": record.updated_by, "drift": record.drifted,
        "description": record.description, "labels": dict(record.labels),
    }


def records_text(records: Sequence[StoredConnection], key_ages: Mapping[str, int] | None = None) -> str:
    """``key_ages``: casefolded name -> days, for the keys whose age is known (rotate's audit entries)."""
    if not records:
        return "The store holds no connections in this workspace."
    ages = key_ages or {}

    def age(r: StoredConnection) -> str:
        if r.provider not in ("aws", "gcp", "azure"):
            return "-"
        if r.provider == "aws" and "access_key_id" not in r.spec:  # a role: no key of its own
            return "no long-term key"
        days = ages.get(r.name.casefold())
        return "unknown" if days is None else f"{days}d"

    header = ("NAME", "PROVIDER", "MANAGED", "VERSION", "KEY AGE", "SOURCE", "UPDATED")
    rows = [header] + [
        (text(r.name), text(r.provider), "yes" + (" (drift)" if r.drifted else "") if r.managed else "no",
         str(r.version), age(r), text(r.source or "-"), text(r.updated_at))
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


# --- verify -------------------------------------------------------------------

_STATUS_COLOUR = {"ok": "green", "warning": "yellow", "failed": "red", "skipped": "cyan"}


def verdict_line(verdict: Verdict, style: Style) -> str:
    status = style(f"{verdict.status:<7}", fg=_STATUS_COLOUR[verdict.status], bold=True)
    principal = verdict.identity.get("arn") or verdict.identity.get("principal")
    who = f"  {text(principal)}" if principal else ""
    lines = [f"{status}  {text(verdict.name)} ({text(verdict.provider)}, {text(verdict.file)}){who}"]
    lines += [f"         - {text(message, 4 * MAX_SHOWN)}" for message in verdict.messages]
    return "\n".join(lines)


def verify_summary(verdicts: Sequence[Verdict]) -> str:
    counts = {s: sum(v.status == s for v in verdicts) for s in ("ok", "warning", "failed", "skipped")}
    # Skipped connections were not verified: they are never in the verified count.
    skipped = f"; {counts['skipped']} skipped (not verifiable)" if counts["skipped"] else ""
    return (f"{plural(len(verdicts) - counts['skipped'], 'connection')} verified: {counts['ok']} ok, "
            f"{plural(counts['warning'], 'warning')}, {counts['failed']} failed{skipped}")


def verify_markdown(verdicts: Sequence[Verdict]) -> str:
    """The summary, and a row for each credential that did not simply pass, for the PR comment.

    An exposed key's message (the command that contains it) is what a reviewer must not miss.
    """
    failed = " failed" if any(v.status == "failed" for v in verdicts) else ""
    lines = [f"**connsync verify{failed}**: {verify_summary(verdicts)}"]
    rows = [v for v in verdicts if v.status != "ok"]
    if rows:
        lines += ["", "| Status | Name | Provider | File | Messages |", "|---|---|---|---|---|"]
    for v in rows:
        messages = "<br>".join(md_code(m, 4 * MAX_SHOWN) for m in v.messages)
        lines.append(f"| {v.status} | {md_code(v.name)} | {md_code(v.provider)} | {md_code(v.file)} "
                     f"| {messages} |")
    return refuse_secret_shapes("\n".join(lines))


# --- the JSON envelope (format_version 1) -----------------------------------------
# Every --format json output is one object: the version, the command, ok, and the command's
# own fields at the top level (what scripts read stays where it was). Errors too, on stdout.
# The JSON Schemas are in connsync/outputs/<command>.schema.json (and docs/schemas/).

JSON_FORMAT_VERSION = 1
# The commands with --format json (each has connsync/outputs/<command>.schema.json).
JSON_COMMANDS = frozenset({"validate", "verify", "plan", "show", "apply", "rotate", "list", "audit", "report",
                           "schema"})
# Set by a command running with --format json, so that its errors come out as JSON too.
json_command: ContextVar[str | None] = ContextVar("json_command", default=None)


def envelope(command: str, ok: bool, payload: Mapping[str, Any]) -> dict[str, Any]:
    return {"format_version": JSON_FORMAT_VERSION, "command": command, "ok": ok,
            **{k: v for k, v in payload.items() if k != "ok"}}


def json_output(command: str, ok: bool, payload: Mapping[str, Any]) -> str:
    return dumps(envelope(command, ok, payload))


def error_envelope(command: str, error: ConnsyncError, exit_code: int | None = None) -> str:
    payload: dict[str, Any] = {"error": {"message": error.message, "hint": error.hint,
                                         "exit_code": error.exit_code if exit_code is None else exit_code}}
    findings = getattr(error, "findings", None)
    if findings is not None:
        payload["findings"] = [f.as_json() for f in findings]
    return json_output(command, False, payload)


# --- notes beside a plan (orphans kept, secrets not compared) ---------------------


def plan_notes_text(plan: Plan) -> list[str]:
    return plan.warning_sentences(lambda name: text(repr(name)))


def plan_notes_markdown(plan: Plan) -> str:
    """Notes under the plan's table, so a kept orphan is visible without turning the PR red."""
    notes = plan.warning_sentences(md_code)
    return "".join(f"\n\n**Note:** {note}" for note in notes)
