from __future__ import annotations

import click

from connsync import render
from connsync.config import Config
from connsync.errors import EXIT_OK, ConnsyncError
from connsync.store import opened


def unlock(config: Config, lock_id: str) -> int:
    with opened(config.store_url, config.workspace, create=False) as store:
        broken = store.break_lock(lock_id)
    if broken is None:
        raise ConnsyncError(f"no lock with id {lock_id!r} in workspace {config.workspace!r}")
    click.echo(f"Released the lock held by {render.text(broken.describe())}.")
    return EXIT_OK
