"""The report as one self-contained HTML page: the Connections page of the whole fleet.

Inline CSS and one inline script (filter, sort), nothing loaded from anywhere: the
page's Content-Security-Policy forbids every request and every script but that one,
so even a mistake in escaping could neither run nor fetch anything. Every text from a
file or the store goes through :func:`esc` (visible escapes for control characters,
then HTML escaping); colour always comes with a word or a symbol.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from importlib import resources

from connsync import render
from connsync.report.model import STATE_LABELS, STATES, Fleet, Row, ago

_SPECIAL = re.compile(r"[&<>\"']")
STATUS_MARKS = {"ok": "✓", "warning": "!", "failed": "✗", "skipped": "-", "never": "·"}
STATE_MARKS = {"in-sync": "✓", "drift": "≠", "not-applied": "○", "orphan": "⚠"}
MESSAGE_LIMIT = 400


def esc(value: object, limit: int = render.MAX_SHOWN) -> str:
    """File or store text as HTML text or attribute value: never markup, never a control character.

    Control and format characters become visible escapes and long values are shortened
    (:func:`render.text`); then HTML escaping, quotes included, so a value is safe in text and
    in any quoted attribute. The common case (short, printable, nothing to escape) costs one scan.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit or not text.isprintable():
        text = render.text(text, limit)
    return html.escape(text, quote=True) if _SPECIAL.search(text) else text


@cache
def _asset(name: str) -> str:
    return resources.files("connsync.report").joinpath(name).read_text(encoding="utf-8")


def page(fleet: Fleet) -> str:
    return "".join(chunks(fleet))


def chunks(fleet: Fleet) -> Iterator[str]:
    """The page in pieces (a row each), so a fleet's page is written out without being whole in memory."""
    script = "\n" + _asset("page.js")  # the hash is of the element's exact text
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
              "img-src 'none'; base-uri 'none'; form-action 'none'")
    title = f"Connections · {esc(fleet.workspace)} · connsync"
    yield ("<!doctype html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
           f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
           "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
           "<meta name='color-scheme' content='light dark'>\n"
           "<meta name='referrer' content='no-referrer'>\n"
           f"<title>{title}</title>\n<style>\n{_asset('page.css')}</style>\n</head>\n<body>\n<main>\n")
    yield _header(fleet) + _exposure(fleet) + _tiles(fleet) + _cards(fleet) + _controls(fleet)
    yield from _section("problems", "Needs attention", fleet.problems, fleet.generated_at,
                        "Nothing needs attention: every connection is in sync, verified and within its key "
                        "age.")
    yield from _section("healthy", "Everything else", fleet.healthy, fleet.generated_at,
                        "No other connections.")
    yield _file_findings(fleet)
    yield ("<footer>Written by <code>connsync report</code> from the connection files and the store; no "
           "secret was read. Colours repeat what the words say.</footer>\n"
           f"</main>\n<script>{script}</script>\n</body>\n</html>\n")


def _header(fleet: Fleet) -> str:
    return (f"<header>\n<h1>Connections</h1>\n<p>Workspace <strong>{esc(fleet.workspace)}</strong> · "
            f"{len(fleet.rows)} connection{'s' if len(fleet.rows) != 1 else ''} · store "
            f"<code>{esc(fleet.store)}</code> · generated <time datetime='{esc(fleet.generated_at)}'>"
            f"{esc(fleet.generated_at)}</time></p>\n</header>\n")


def _exposure(fleet: Fleet) -> str:
    exposed = fleet.exposed
    if not exposed:
        return ""
    items = "".join(
        f"<li><span class='name'>{esc(r.name)}</span> ({esc(r.provider)}): "
        f"{esc(_exposed_message(r), MESSAGE_LIMIT)}</li>\n" for r in exposed)
    return (f"<section class='alert' role='alert' id='exposed'>\n<h2>⚠ Exposed: {len(exposed)} key"
            f"{'s' if len(exposed) != 1 else ''} quarantined by the provider</h2>\n<ul>\n{items}</ul>\n"
            "<p>Contain it now: <code>connsync rotate --exposed KEY_ID</code> (see the README, "
            "'A key is exposed').</p>\n</section>\n")


def _exposed_message(row: Row) -> str:
    messages = row.last_verification.messages if row.last_verification else ()
    return next((m for m in messages if m.startswith("exposed")), "exposed")


def _tiles(fleet: Fleet) -> str:
    states = fleet.by_state()
    checks = fleet.by_verification()
    overdue = sum(r.key_overdue for r in fleet.rows)
    tiles = [("Connections", len(fleet.rows), ""), ("Need attention", len(fleet.problems),
                                                    "bad" if fleet.problems else "ok")]
    tiles += [(STATE_LABELS[s].capitalize(), states[s],
               "ok" if s == "in-sync" else "warn" if s == "not-applied" else "bad" if states[s] else "")
              for s in STATES]
    tiles += [("Verification failed", checks["failed"], "bad" if checks["failed"] else ""),
              ("Never verified", checks["never"], "warn" if checks["never"] else ""),
              (f"Keys over {fleet.max_key_age_days} days", overdue, "bad" if overdue else "")]
    if fleet.unmanaged:
        tiles.append(("Unmanaged in the store", fleet.unmanaged, ""))
    body = "".join(f"<div class='tile {cls}'><span class='n'>{n:,}</span>"
                   f"<span class='l'>{label}</span></div>\n" for label, n, cls in tiles)
    return f"<section class='tiles' aria-label='Summary'>\n{body}</section>\n"


def _cards(fleet: Fleet) -> str:
    cards = []
    for provider, rows in fleet.by_provider().items():
        states = {s: sum(r.state == s for r in rows) for s in STATES}
        failed = sum(1 for r in rows if r.last_verification and r.last_verification.status == "failed")
        problems = sum(1 for r in rows if r.problems)
        badge = (f"<span class='badge s-problem'>✗ {problems} need attention</span>" if problems
                 else "<span class='badge s-ok'>✓ all healthy</span>")
        items = "".join(f"<dt>{STATE_LABELS[s]}</dt><dd>{states[s]:,}</dd>" for s in STATES)
        cards.append(
            f"<article class='card' data-provider='{esc(provider)}'>\n<h3><span>{esc(provider)} "
            f"<span class='sub'>{len(rows):,} connection{'s' if len(rows) != 1 else ''}</span></span>"
            f"{badge}</h3>\n<dl>{items}<dt>verification failed</dt><dd>{failed:,}</dd></dl>\n</article>\n")
    if not cards:
        return "<h2>Providers</h2>\n<p class='empty'>No connections are declared or stored yet.</p>\n"
    return f"<h2>Providers</h2>\n<section class='cards'>\n{''.join(cards)}</section>\n"


def _controls(fleet: Fleet) -> str:
    states = "".join(f"<option value='{s}'>{STATE_LABELS[s]}</option>" for s in STATES)
    providers = "".join(f"<option value='{esc(p)}'>{esc(p)}</option>" for p in fleet.by_provider())
    return (
        "<div class='controls' id='controls' hidden>\n"
        "<label><span class='visually-hidden'>Filter</span><input type='search' id='q' "
        "placeholder='Filter by name, account, label, file…' size='34'></label>\n"
        f"<label>State <select id='state'><option value=''>any</option>{states}</select></label>\n"
        f"<label>Provider <select id='provider'><option value=''>any</option>{providers}</select></label>\n"
        "<label><input type='checkbox' id='problems-only'> problems only</label>\n"
        "<output id='shown' aria-live='polite'></output>\n</div>\n")


_COLUMNS = (("name", "Connection", False), ("provider", "Provider", False),
            ("account", "Account / region", False), ("", "Labels", False), ("state", "State", False),
            ("age", "Key age", True),
            ("rotated", "Last rotation", False), ("verified", "Last verification", False),
            ("", "History", False), ("findings", "Findings", True))


def _section(anchor: str, title: str, rows: list[Row], now: str, empty: str) -> Iterator[str]:
    head = "".join("<th scope='col'" + (f" data-key='{key}'" if key else "")
                   + (" data-numeric" if numeric else "") + f">{label}</th>"
                   for key, label, numeric in _COLUMNS)
    if not rows:
        yield f"<h2 id='{anchor}'>{title} (0)</h2>\n<p class='empty'>{empty}</p>\n"
        return
    yield (f"<h2 id='{anchor}'>{title} ({len(rows):,})</h2>\n<div class='table-wrap'>\n"
           f"<table data-sortable>\n<thead><tr>{head}</tr></thead>\n<tbody>\n")
    for row in rows:
        yield _row(row, now)
    yield "</tbody>\n</table>\n</div>\n"


def _row(row: Row, now: str) -> str:
    last = row.last_verification
    status = last.status if last else "never"
    searchable = " ".join([row.name, row.provider, row.account or "", row.region or "", row.file or "",
                           *(f"{k}={v}" for k, v in row.labels.items())]).lower()
    age_key = "" if row.key_age_days is None else str(row.key_age_days)
    attributes = (f" data-name='{esc(row.name.casefold())}' data-provider='{esc(row.provider)}'"
                  f" data-state='{row.state}' data-problem='{1 if row.problems else 0}'"
                  f" data-account='{esc(row.account or '')}' data-age='{age_key}'"
                  f" data-rotated='{esc(row.last_rotated or '')}'"
                  f" data-verified='{esc(last.at if last else '')}'"
                  f" data-findings='{len(row.findings)}' data-search='{esc(searchable, 2000)}'")
    problems = "".join(f" <span class='badge s-problem'>{esc(p)}</span>" for p in row.problems
                       if p not in ("verification failed", "drift", "orphan", "verification warning"))
    place = " · ".join(esc(v) for v in (row.account, row.region) if v) or "—"
    note = f"<span class='sub'>{esc(row.note, MESSAGE_LIMIT)}</span>" if row.note else ""
    age = "—" if row.key_age_days is None else f"{row.key_age_days:,} d"
    age_cell = f"<span class='overdue'>⚠ {age}</span>" if row.key_overdue else age
    return (
        ("<tr class='problem'" if row.problems else "<tr") + f"{attributes}>"
        f"<td><span class='name'>{esc(row.name)}</span>{problems}"
        f"<span class='sub'>{esc(row.file) if row.file else 'no file'}</span></td>"
        f"<td>{esc(row.provider)}</td><td class='mono'>{place}</td><td>{_labels(row.labels)}</td>"
        f"<td><span class='badge s-{row.state}'>{STATE_MARKS[row.state]} {STATE_LABELS[row.state]}</span>"
        f"{note}</td>"
        f"<td class='num'>{age_cell}</td><td>{_when(row.last_rotated, now)}</td>"
        f"<td><span class='badge s-{status}'>{STATUS_MARKS.get(status, '?')} {esc(status)}</span>"
        f"{_when(last.at, now) if last else ''}{_messages(last.messages if last else ())}</td>"
        f"<td class='hist'>{_history(row.history)}</td><td>{_findings(row)}</td></tr>\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return "—"
    chips = "".join(f"<span class='label'>{esc(k, 60)}={esc(v, 80)}</span>"
                    for k, v in sorted(labels.items()))
    return f"<span class='labels'>{chips}</span>"


def _when(at: str | None, now: str) -> str:
    if not at:
        return "<span class='sub'>never</span>"
    return f"<span class='sub'><time datetime='{esc(at)}'>{esc(at)}</time> ({esc(ago(at, now))})</span>"


def _messages(messages: Iterable[str]) -> str:
    items = "".join(f"<li>{esc(m, MESSAGE_LIMIT)}</li>" for m in messages)
    return f"<ul class='msgs'>{items}</ul>" if items else ""


_HISTORY_MARKS = {s: f"<span class='h-{s}' title='{s}'>{mark}</span>" for s, mark in STATUS_MARKS.items()}


def _history(statuses: tuple[str, ...]) -> str:
    if not statuses:
        return "<span class='sub'>none</span>"
    marks = "".join(_HISTORY_MARKS.get(s) or f"<span title='{esc(s)}'>?</span>" for s in reversed(statuses))
    return f"<span aria-label='last {len(statuses)} results, oldest first'>{marks}</span>"


def _findings(row: Row) -> str:
    if not row.findings:
        return "—"
    items = "".join(f"<li><span class='badge s-{'failed' if f.severity == 'error' else 'warning'}'>"
                    f"{esc(f.severity)}</span> <code>{esc(f.rule)}</code> {esc(f.message, MESSAGE_LIMIT)} "
                    f"<span class='sub'>line {f.line}</span></li>" for f in row.findings)
    return f"<ul class='msgs'>{items}</ul>"


def _file_findings(fleet: Fleet) -> str:
    if not fleet.file_findings:
        return ""
    items = "".join(f"<li><code>{esc(f.file)}:{f.line}:{f.column}</code> <code>{esc(f.rule)}</code> "
                    f"{esc(f.message, MESSAGE_LIMIT)}</li>\n" for f in fleet.file_findings)
    return (f"<h2 id='files'>Files that could not be read as connections ({len(fleet.file_findings)})</h2>\n"
            f"<ul class='msgs'>\n{items}</ul>\n")
