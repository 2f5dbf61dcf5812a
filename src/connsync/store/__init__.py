"""Stores, chosen by URL scheme; backends register under the ``connsync.stores`` entry points."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib.metadata import entry_points

from connsync.errors import StoreError
from connsync.store.base import AuditEntry, LockInfo, Store, Write

__all__ = ["AuditEntry", "LockInfo", "Store", "Write", "open_store", "opened"]


def open_store(url: str, workspace: str) -> Store:
    scheme, sep, _ = url.partition(":")
    if not sep:
        raise StoreError(f"store URL {url!r} has no scheme", hint="use e.g. sqlite:.connsync/store.db")
    if scheme == "sqlite":  # built in; no entry-point lookup on the common path
        from connsync.store.sqlite import SqliteStore

        return SqliteStore.open(url, workspace)
    for ep in entry_points(group="connsync.stores"):
        if ep.name == scheme:
            factory = ep.load()
            store: Store = factory.open(url, workspace)
            return store
    known = sorted({"sqlite", *(ep.name for ep in entry_points(group="connsync.stores"))})
    raise StoreError(f"no store backend for {scheme}:", hint=f"known schemes: {', '.join(known)}")


@contextlib.contextmanager
def opened(url: str, workspace: str) -> Iterator[Store]:
    store = open_store(url, workspace)
    try:
        yield store
    finally:
        store.close()
