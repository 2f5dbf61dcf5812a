"""The report as data: the versioned envelope with ``workspace`` and one object per connection."""

from __future__ import annotations

from typing import Any

from connsync import render
from connsync.report.model import Fleet, Row


def document(fleet: Fleet) -> str:
    return render.json_output("report", True, {
        "workspace": fleet.workspace,
        "generated_at": fleet.generated_at,
        "store": fleet.store,
        "max_key_age_days": fleet.max_key_age_days,
        "summary": {"connections": len(fleet.rows), "problems": len(fleet.problems),
                    "exposed": len(fleet.exposed), "states": fleet.by_state(),
                    "verification": fleet.by_verification(),
                    "keys_overdue": sum(r.key_overdue for r in fleet.rows), "unmanaged": fleet.unmanaged},
        "connections": [connection(r) for r in fleet.rows],
        "file_findings": [f.as_json() for f in fleet.file_findings],
    })


def connection(row: Row) -> dict[str, Any]:
    last = row.last_verification
    return {
        "name": row.name,
        "provider": row.provider,
        "file": row.file,
        "state": row.state,
        "account": row.account,
        "region": row.region,
        "labels": dict(row.labels),
        "key_age_days": row.key_age_days,
        "key_overdue": row.key_overdue,
        "last_rotated": row.last_rotated,
        "last_verification": None if last is None else {
            "at": last.at, "status": last.status, "account": last.account, "messages": list(last.messages),
            "key_created": last.key_created},
        "history": list(row.history),
        "exposed": row.exposed,
        "problems": list(row.problems),
        "note": row.note,
        "findings": [f.as_json() for f in row.findings],
    }
