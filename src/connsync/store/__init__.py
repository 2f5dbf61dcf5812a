"""Stores, chosen by URL scheme; backends register under the ``connsync.stores`` entry points."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

from connsync.errors import StoreError
from connsync.store.base import AuditEntry, EmptyStore, LockInfo, Snapshot, Store, Write

__all__ = ["AuditEntry", "EmptyStore", "LockInfo", "Snapshot", "Store", "Write", "open_store", "opened"]


def open_store(url: str, workspace: str, *, create: bool = True) -> Store:
    """The store at ``url``; with ``create=False`` a missing embedded store reads as empty."""
    scheme, sep, rest = url.partition(":")
    if not sep:
        raise StoreError(f"store URL {url!r} has no scheme", hint="use e.g. sqlite:.connsync/store.db")
    if scheme == "sqlite":  # built in; no entry-point lookup on the common path
        from connsync.store.sqlite import SqliteStore

        if not create and rest and _nothing_at(Path(rest).expanduser()):
            return EmptyStore(workspace, url)
        return SqliteStore.open(url, workspace)
    if scheme in ("postgresql", "postgres"):  # libpq takes both spellings
        from connsync.store.postgres import PostgresStore

        return PostgresStore.open(url, workspace, create=create)
    for ep in entry_points(group="connsync.stores"):
        if ep.name == scheme:
            factory = ep.load()
            store: Store = factory.open(url, workspace)
            return store
    known = sorted({"sqlite", "postgresql", *(ep.name for ep in entry_points(group="connsync.stores"))})
    raise StoreError(f"no store backend for {scheme[:40]}:", hint=f"known schemes: {', '.join(known)}")


def _nothing_at(path: Path) -> bool:
    """True when no store exists at ``path`` yet, though one could be created there."""
    if path.exists():
        return False
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise StoreError(f"cannot open store {path}: {parent} is not a directory")
    return True


@contextlib.contextmanager
def opened(url: str, workspace: str, *, create: bool = True) -> Iterator[Store]:
    store = open_store(url, workspace, create=create)
    try:
        yield store
    finally:
        store.close()

