"""Renderers: the same result as text for people, JSON for programs, and CI formats."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from connsync.model import Finding


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class Style:
    """Colour only when asked to (a TTY without NO_COLOR and without --no-color)."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, **kwargs: Any) -> str:
        return click.style(text, **kwargs) if self.color else text


# --- validate ---------------------------------------------------------------


def findings_text(findings: Sequence[Finding], files: int, style: Style) -> str:
    lines = []
    for f in findings:
        colour = "red" if f.severity == "error" else "yellow"
        lines.append(
            f"{f.file}:{f.line}:{f.column}: {style(f.severity, fg=colour, bold=True)} "
            f"[{f.rule}] {f.path}: {f.message}"
        )
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    verdict = style("ok", fg="green") if not errors else style("failed", fg="red")
    lines.append(
        f"{plural(files, 'file')} checked: {plural(errors, 'error')}, "
        f"{plural(warnings, 'warning')} - {verdict}"
    )
    return "\n".join(lines)


def findings_json(findings: Sequence[Finding], files: int) -> str:
    ok = not any(f.severity == "error" for f in findings)
    return dumps({"ok": ok, "files": files, "findings": [f.as_json() for f in findings]})


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def findings_github(findings: Sequence[Finding], files: int) -> str:
    """GitHub Actions workflow commands: one inline annotation per finding."""
    lines = [
        f"::{f.severity} file={_escape_property(f.file)},line={f.line},col={f.column},"
        f"title={_escape_property('connsync ' + f.rule)}::{_escape_data(f.path + ': ' + f.message)}"
        for f in findings
    ]
    errors = sum(f.severity == "error" for f in findings)
    lines.append(f"{plural(files, 'file')} checked: {plural(errors, 'error')}")
    return "\n".join(lines)
