"""apply's report: what was written, what failed, and, after an early end, what was not."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connsync.render.escape import MAX_SHOWN, Style, plural, text, text_lines

if TYPE_CHECKING:
    from connsync.reconcile.apply import ApplyReport


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
