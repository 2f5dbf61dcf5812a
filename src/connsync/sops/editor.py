"""The editor that ``connsync edit`` gives ``sops edit``: the user's own, then one check, once.

sops writes the decrypted file to a private temporary file and runs ``$EDITOR`` on it; when what
the editor left does not parse, sops says "Press a key to return to the editor" and waits on
standard input, for ever when nobody is there to press one. Run as ``python -m
connsync.sops.editor FILE``, this module runs the user's editor on FILE and checks the result the
way connsync reads a connection file. When it does not parse, FILE gets its decrypted content back
(so sops sees an unchanged file, writes nothing and exits), and the problem (line, column, rule, a
message without any quoted text from the file) goes to the report file that connsync named in
``CONNSYNC_EDIT_REPORT``, for connsync to print. Nothing here prints the file's content.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from connsync.validate.loader import YamlProblem, parse

EDITOR_VARIABLE = "CONNSYNC_EDITOR"  # the user's editor command, as sops would have read it
REPORT_VARIABLE = "CONNSYNC_EDIT_REPORT"
_FALLBACKS = ("vim", "nano", "vi")  # what sops runs when no editor is set


def user_editor(environ: Mapping[str, str]) -> str | None:
    """The editor sops would run: ``SOPS_EDITOR``, then ``EDITOR``, then the first of vim, nano, vi."""
    for variable in ("SOPS_EDITOR", "EDITOR"):
        if environ.get(variable, "").strip():
            return environ[variable]
    found = next((shutil.which(name) for name in _FALLBACKS if shutil.which(name)), None)
    return shlex.quote(found) if found else None


def command() -> str:
    """This module as the editor command sops runs (sops splits it as a shell would)."""
    return f"{shlex.quote(sys.executable)} -m connsync.sops.editor"


def _problem(edited: bytes) -> tuple[int, int, str, str] | None:
    """Why sops (or connsync after it) could not take the edited file: line, column, rule, message."""
    try:
        data = parse(edited.decode("utf-8"))
    except UnicodeDecodeError:
        return 1, 1, "yaml", "the file is not UTF-8 text"
    except YamlProblem as problem:
        # The parser's words may quote the file (a plain value, a tag): the location says where.
        # A single quoted character is the parser's own (expected ':'), never a secret.
        message = re.sub(r"'[^'\n]{2,}'|\"[^\"\n]{2,}\"", "'…'", problem.message)
        return problem.line, problem.column, problem.rule, message
    if not isinstance(data, dict):
        return 1, 1, "schema", "the file must be a mapping (apiVersion, provider, metadata, spec)"
    if "sops" in data:
        return 1, 1, "yaml", "a top-level 'sops' key is sops's own; remove it"
    return None


def run(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    path = Path(argv[-1])
    report = Path(environ[REPORT_VARIABLE])
    original = path.read_bytes()
    editor = environ.get(EDITOR_VARIABLE)

    def refuse(line: int, column: int, rule: str, message: str) -> int:
        path.write_bytes(original)  # unchanged: sops writes nothing and ends
        report.write_text(json.dumps({"line": line, "column": column, "rule": rule, "message": message}))
        return 0

    if not editor:
        return refuse(0, 0, "editor", "no editor: set EDITOR (or SOPS_EDITOR), e.g. EDITOR=nano")
    try:
        status = subprocess.run([*shlex.split(editor), str(path)], check=False).returncode
    except (OSError, ValueError):
        return refuse(0, 0, "editor", "the editor in SOPS_EDITOR or EDITOR could not be started")
    if status != 0:
        return refuse(0, 0, "editor", f"the editor exited with status {status}; nothing was saved")
    edited = path.read_bytes()
    if edited == original:
        return 0
    problem = _problem(edited)
    return refuse(*problem) if problem else 0


def main() -> int:
    try:
        return run(sys.argv[1:], os.environ)
    except Exception as exc:  # one line, never a traceback that may quote the file
        print(f"connsync: the edit check failed ({type(exc).__name__}); nothing was saved", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
