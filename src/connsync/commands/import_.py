"""``connsync import``: store records -> encrypted files, then managed by connsync.

One record's failure (a name no file system can hold, a file in the way, a
store that moved) is reported and the others are imported. Files written
outside the repository (``--dir`` pointing elsewhere) are a copy for the user:
encrypted with the repository's rules, 0600, and the record stays unmanaged,
since no plan of this repository would ever see that file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_FAILED, EXIT_OK, ConnsyncError, UsageError
from connsync.identity import actor, git_revision
from connsync.model import StoredConnection
from connsync.reconcile.writer import inside, write_connection
from connsync.store import Store, Write, opened
from connsync.validate import schema
from connsync.validate.fields import slug
from connsync.validate.loader import display_path


def import_connections(config: Config, names: Sequence[str], *, all_records: bool, directory: str | None,
                       lock_timeout: float, style: render.Style) -> int:
    if not names and not all_records:
        raise UsageError("name the connections to import, or pass --all")
    target_dir = Path(directory) if directory else config.connections_dir
    failures = 0
    with opened(config.store_url, config.workspace) as store:
        lock = store.acquire_lock(timeout=lock_timeout)
        if lock.replaced:
            click.echo(render.text(lock.takeover_note(), 400), err=True)
        try:
            records = {r.name.casefold(): r for r in store.records()}
            missing = [n for n in names if n.casefold() not in records]
            if missing:
                raise ConnsyncError(f"not in the store: {', '.join(missing)}", hint="see 'connsync list'")
            chosen = ([records[n.casefold()] for n in names] if names
                      else [r for r in records.values() if not r.managed])
            revision = git_revision(config.root)
            for record in chosen:
                try:
                    shown = _import_one(store, record, target_dir / f"{slug(record.name)}.yaml", config,
                                        revision)
                    click.echo(f"Imported {render.text(repr(record.name))} to {render.text(shown)}")
                except ConnsyncError as exc:
                    failures += 1
                    click.echo(style(f"{render.text(record.name)}: FAILED: {render.text_lines(exc.message)}",
                                     fg="red"), err=True)
                except OSError as exc:  # the file system refused this one; the others go on
                    failures += 1
                    click.echo(style(f"{render.text(record.name)}: FAILED: cannot write its file: "
                                     f"{exc.strerror}",
                                     fg="red"), err=True)
        finally:
            store.release_lock(lock)
    if not chosen:
        click.echo("Nothing to import: every record is already managed by connsync.")
    return EXIT_FAILED if failures else EXIT_OK


def _import_one(store: Store, record: StoredConnection, target: Path, config: Config,
                revision: str | None) -> str:
    shown = display_path(target)
    if target.exists():
        raise ConnsyncError(f"{shown} already exists")
    secrets = store.read_secrets(record.name)
    metadata: dict[str, object] = {"name": record.name}
    if record.description:
        metadata["description"] = record.description
    if record.labels:
        metadata["labels"] = dict(record.labels)
    order = list(schema.get_schema(record.provider).get("properties", {}))
    spec = dict(sorted(record.spec.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
    document = {"apiVersion": "connsync/v1", "provider": record.provider, "metadata": metadata,
                "spec": spec}
    digest = write_connection(document, secrets, target, config.root,
                              connections_dir=config.connections_dir)
    if not inside(target, config.root):
        return f"{shown} (outside the repository: a 0600 copy; the record stays unmanaged)"
    if not inside(target, config.connections_dir):
        # plan only reads the connections directory: a managed record with its file elsewhere would
        # read as an orphan, and the next --prune would delete it.
        return f"{shown} (outside {display_path(config.connections_dir)}: the record stays unmanaged)"
    try:
        store.put(
            Write(name=record.name, provider=record.provider, spec=record.spec, secrets=secrets,
                  managed=True, actor=actor(), action="import", source=shown, source_digest=digest,
                  git_revision=revision, description=record.description,
                  labels=record.labels),
            expected_version=record.version,
        )
    except ConnsyncError:
        target.unlink(missing_ok=True)  # the store moved: leave no file it does not match
        raise
    return shown
