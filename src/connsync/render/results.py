"""What the store holds (list) and what the providers said (verify)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connsync.model import StoredConnection
from connsync.providers.base import Verdict
from connsync.render.escape import MAX_SHOWN, Style, md_code, plural, refuse_secret_shapes, text


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
