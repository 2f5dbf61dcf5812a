"""The plan: text with colour for a terminal, a table for a pull-request comment, the notes beside it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from connsync.reconcile.plan import Change, Plan
from connsync.render.escape import MAX_SHOWN, Style, md_code, plural, refuse_secret_shapes, text

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


def plan_notes_text(plan: Plan) -> list[str]:
    return plan.warning_sentences(lambda name: text(repr(name)))


def plan_notes_markdown(plan: Plan) -> str:
    """Notes under the plan's table, so a kept orphan is visible without turning the PR red."""
    notes = plan.warning_sentences(md_code)
    return "".join(f"\n\n**Note:** {note}" for note in notes)
