"""``connsync store copy``: move a workspace from one store to another (the laptop's file to PostgreSQL)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import click

from connsync import render
from connsync.config import resolve_store_url
from connsync.errors import EXIT_OK, ConnsyncError
from connsync.identity import actor
from connsync.store import EmptyStore, open_store
from connsync.store.sealing import KEY_VARIABLE


@contextlib.contextmanager
def _store_key_from(variable: str | None) -> Iterator[None]:
    """Two stores may have two keys: CONNSYNC_STORE_KEY is taken from ``variable`` meanwhile."""
    if variable is None:
        yield
        return
    saved = os.environ.get(KEY_VARIABLE)
    value = os.environ.get(variable)
    if not value:
        raise ConnsyncError(f"the environment variable {variable} (a store key) is not set")
    try:
        os.environ[KEY_VARIABLE] = value
        yield
    finally:
        if saved is None:
            os.environ.pop(KEY_VARIABLE, None)
        else:
            os.environ[KEY_VARIABLE] = saved


def copy_store(from_url: str, to_url: str, workspace: str, *, overwrite: bool, lock_timeout: float,
               from_key_env: str | None = None, to_key_env: str | None = None) -> int:
    source_url, target_url = (resolve_store_url(u, Path.cwd()) for u in (from_url, to_url))
    if source_url == target_url:
        raise ConnsyncError("the two store URLs name the same store")
    with _store_key_from(from_key_env):
        source = open_store(source_url, workspace, create=False)
    with contextlib.closing(source):
        if isinstance(source, EmptyStore):
            raise ConnsyncError(f"the store {render.text(source.describe())} does not exist; nothing to copy")
        with _store_key_from(to_key_env):
            target = open_store(target_url, workspace)
        with contextlib.closing(target):
            # Both locks, so no apply writes to either side while the copy runs.
            source_lock = source.acquire_lock(timeout=lock_timeout)
            try:
                target_lock = target.acquire_lock(timeout=lock_timeout)
                try:
                    snapshot = source.snapshot()
                    target.restore(snapshot, actor=actor(), overwrite=overwrite)
                finally:
                    target.release_lock(target_lock)
            finally:
                source.release_lock(source_lock)
            entries = "entry" if len(snapshot.audit) == 1 else "entries"
            click.echo(f"Copied {render.plural(len(snapshot.records), 'record')} and "
                       f"{len(snapshot.audit)} audit {entries} of workspace "
                       f"{render.text(repr(workspace))} from {render.text(source.describe())} to "
                       f"{render.text(target.describe())}.")
    return EXIT_OK
