"""Escaping, one function per medium: every value a file, connsync.yaml or the store supplies is data."""

from __future__ import annotations

import json
import re
from typing import Any

import click

from connsync.errors import ConnsyncError

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
