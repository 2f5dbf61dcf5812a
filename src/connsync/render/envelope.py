"""The JSON envelope (format_version 1).

Every --format json output is one object: the version, the command, ok, and the command's
own fields at the top level (what scripts read stays where it was). Errors too, on stdout.
The JSON Schemas are in connsync/outputs/<command>.schema.json (and docs/schemas/).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from connsync.errors import ConnsyncError
from connsync.render.escape import dumps

JSON_FORMAT_VERSION = 1
JSON_COMMANDS = frozenset({"validate", "verify", "plan", "show", "apply", "rotate", "list", "audit", "report",
                           "schema"})
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
