"""What the SQL stores share: the columns of a record and how a row becomes one."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from connsync.errors import StoreError
from connsync.model import StoredConnection

COLUMNS = (
    "name, provider, spec, fingerprints, version, managed, source, source_digest, synced_version, "
    "git_revision, updated_at, updated_by, labels, description"
)


def record_from_row(row: Sequence[Any]) -> StoredConnection:
    """A record from a row in COLUMNS order; a damaged row is a StoreError naming the record."""
    try:
        record = StoredConnection(
            name=str(row[0]), provider=str(row[1]), spec=_mapping(row[2]), fingerprints=_mapping(row[3]),
            version=_integer(row[4]), managed=bool(row[5]), source=row[6], source_digest=row[7],
            synced_version=None if row[8] is None else _integer(row[8]), git_revision=row[9],
            updated_at=str(row[10]), updated_by=str(row[11]), labels=_mapping(row[12]),
            description=row[13],
        )
    except (ValueError, TypeError) as exc:
        raise StoreError(
            f"the store's record {str(row[0])[:80]!r} is damaged ({exc}); nothing was changed",
            hint="restore the record from a backup, or delete it from the store and apply again",
        ) from None
    return record


def _mapping(value: Any) -> dict[str, Any]:
    """JSON text (SQLite) or an already decoded object (PostgreSQL jsonb) that must be a mapping."""
    decoded = json.loads(value) if isinstance(value, (str, bytes)) else value
    if not isinstance(decoded, dict):
        raise ValueError(f"expected a JSON object, found {type(decoded).__name__}")
    return decoded


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer version, found {type(value).__name__}")
    return value
