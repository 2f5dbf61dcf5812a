"""The report as GitHub Markdown: a job summary (at most 1 MiB) or a pull-request comment (65,536).

A summary line, the exposed keys, the problems in a table, everything else folded in
``<details>``. A table that would not fit is cut between two rows, and a line says how
many rows were left out: the result is never a broken table and never over the limit.
The limit is counted in UTF-8 bytes, so it also holds as characters. Every value from a
file or the store is a code span (:func:`render.md_code`): no markup, mention or link.
"""

from __future__ import annotations

from connsync import render
from connsync.report.model import STATE_LABELS, STATES, Fleet, Row, ago

STEP_SUMMARY_LIMIT = 1024 * 1024  # GitHub's $GITHUB_STEP_SUMMARY limit per step
COMMENT_LIMIT = 65_536  # GitHub's limit on an issue or pull-request comment
MIN_SIZE = 2_000  # below this not even the summary and the cut notes fit
_MESSAGE_LIMIT = 160
_HEAD = ("| Connection | Provider | Account / region | State | Last verification | Key age | Problems |\n"
         "|---|---|---|---|---|---|---|\n")
_CUT = "\n_{count:,} more row{s} left out to stay within {limit:,} characters: see the HTML report._\n"


def page(fleet: Fleet, max_size: int = STEP_SUMMARY_LIMIT) -> str:
    if max_size < MIN_SIZE:
        raise ValueError(f"--max-size must be at least {MIN_SIZE:,}")
    head = _summary(fleet) + _exposure(fleet, listed=True)
    if _size(head) > max_size // 2:  # a tight limit keeps the count of exposed keys, not each message
        head = _summary(fleet) + _exposure(fleet, listed=False)
    problems, rest = fleet.problems, fleet.healthy
    problems_title = f"\n### Needs attention ({len(problems):,})\n\n"
    details_open = f"\n<details><summary>Everything else ({len(rest):,})</summary>\n\n"
    details_close = "\n</details>\n"
    budget = max_size - _size(head)
    out = [head]
    if problems:
        # Room is kept for the folded section's frame and its cut line, so it can always close.
        reserve = _size(details_open + details_close + _cut(len(rest), max_size)) if rest else 0
        room = budget - _size(problems_title) - reserve
        table, budget = _table(problems, fleet.generated_at, room, max_size)
        out += [problems_title, table]
        budget += reserve
    else:
        nothing = "\nNothing needs attention.\n"
        out.append(nothing)
        budget -= _size(nothing)
    if rest:
        frame = _size(details_open) + _size(details_close)
        if budget - frame >= _size(_cut(len(rest), max_size)):
            table, _ = _table(rest, fleet.generated_at, budget - frame, max_size)
            out += [details_open, table, details_close]
    text = "".join(out)
    assert _size(text) <= max_size  # the arithmetic above guarantees it; a bug must not post an oversize
    return text


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut(count: int, limit: int) -> str:
    return _CUT.format(count=count, s="" if count == 1 else "s", limit=limit)


def _table(rows: list[Row], now: str, budget: int, limit: int) -> tuple[str, int]:
    """As many whole rows as fit in ``budget`` (a cut line included when some are left out)."""
    lines = [_HEAD]
    used = _size(_HEAD)
    worst_cut = _size(_cut(len(rows), limit))
    for index, row in enumerate(rows):
        line = _row(row, now)
        size = _size(line)
        left = len(rows) - index - 1
        # The next row fits if, after it, there is still room for the cut line of what remains.
        if used + size + (worst_cut if left else 0) > budget:
            note = _cut(len(rows) - index, limit)
            if used + _size(note) > budget:  # not even the header and the note: just the note
                return note, budget - _size(note)
            lines.append(note)
            used += _size(note)
            return "".join(lines), budget - used
        lines.append(line)
        used += size
    return "".join(lines), budget - used


def _summary(fleet: Fleet) -> str:
    states = fleet.by_state()
    checks = fleet.by_verification()
    overdue = sum(r.key_overdue for r in fleet.rows)
    count = len(fleet.rows)
    parts = ", ".join(f"{states[s]:,} {STATE_LABELS[s]}" for s in STATES if states[s])
    verified = ", ".join(f"{n:,} {status if status != 'never' else 'never verified'}"
                         for status, n in checks.items() if n)
    line = (f"**{count:,} connection{'s' if count != 1 else ''}**" + (f": {parts}" if parts else "")
            + f" · **{len(fleet.problems):,} need{'s' if len(fleet.problems) == 1 else ''} attention**"
            + (f" · verification: {verified}" if verified else "")
            + (f" · {overdue:,} key{'s' if overdue != 1 else ''} over {fleet.max_key_age_days} days"
               if overdue else ""))
    unmanaged = (f"\n\n{fleet.unmanaged:,} record(s) in the store are not managed by connsync and not "
                 "declared." if fleet.unmanaged else "")
    unreadable = (f"\n\n**{len(fleet.file_findings):,} file(s) could not be read as connections**: "
                  "run `connsync validate`." if fleet.file_findings else "")
    return (f"## Connections: workspace {render.md_code(fleet.workspace)}\n\n"
            f"{line}{unmanaged}{unreadable}\n\n"
            f"<sub>Generated {fleet.generated_at} by `connsync report` from the files and the store; "
            "no secret was read.</sub>\n")


def _exposure(fleet: Fleet, *, listed: bool) -> str:
    exposed = fleet.exposed[:20] if listed else []  # a handful is an incident; the table lists them all
    if not fleet.exposed:
        return ""
    lines = "".join(f"> - {render.md_code(r.name)} ({render.md_code(r.provider)}): "
                    f"{render.md_code(_exposed(r), _MESSAGE_LIMIT)}\n" for r in exposed)
    return (f"\n> [!CAUTION]\n> **{len(fleet.exposed):,} exposed key(s)**, quarantined by the provider: "
            f"contain now with `connsync rotate --exposed KEY_ID`.\n{lines}")


def _exposed(row: Row) -> str:
    messages = row.last_verification.messages if row.last_verification else ()
    return next((m for m in messages if m.startswith("exposed")), "exposed")


def _row(row: Row, now: str) -> str:
    last = row.last_verification
    place = " ".join(render.md_code(v, 80) for v in (row.account, row.region) if v) or "—"
    if last is None:
        verified = "never"
    else:
        first = next(iter(last.messages), "")
        verified = (f"**{last.status}** {ago(last.at, now)}"
                    + (f" {render.md_code(first, _MESSAGE_LIMIT)}" if first else ""))
    age = "—" if row.key_age_days is None else f"{row.key_age_days:,} d" + (" ⚠" if row.key_overdue else "")
    problems = [p for p in row.problems if p != "finding"]
    problems += [f"{render.md_code(f.rule, 60)} {render.md_code(f.message, _MESSAGE_LIMIT)}"
                 for f in row.findings[:3]]
    if len(row.findings) > 3:
        problems.append(f"and {len(row.findings) - 3} more finding(s)")
    state = STATE_LABELS[row.state] + (" ⚠" if row.state in ("drift", "orphan") else "")
    return (f"| {render.md_code(row.name)} | {render.md_code(row.provider, 40)} | {place} | {state} | "
            f"{verified} | {age} | {'<br>'.join(problems) or '—'} |\n")
