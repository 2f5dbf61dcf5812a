"""Stores, chosen by URL scheme; backends register under the ``connsync.stores`` entry points."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from connsync.errors import ConnsyncError, StoreError, UsageError
from connsync.store.base import (
    HISTORY_LIMIT,
    AuditEntry,
    EmptyStore,
    LockInfo,
    Snapshot,
    Store,
    Verification,
    Write,
)

__all__ = ["HISTORY_LIMIT", "AuditEntry", "EmptyStore", "LockInfo", "Snapshot", "Store", "Verification",
           "Write", "destroying", "ephemeral_store_warnings", "is_embedded", "open_store", "opened",
           "refuse_ephemeral_store"]


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
    if scheme == "awssm":
        from connsync.store.awssm import SecretsManagerStore

        return SecretsManagerStore.open(url, workspace, create=create)
    if scheme in ("vault", "vault+http"):
        from connsync.store.vault import VaultStore

        return VaultStore.open(url, workspace, create=create)
    from importlib.metadata import entry_points  # a plugin's scheme: only then scan the distributions

    for ep in entry_points(group="connsync.stores"):
        if ep.name == scheme:
            factory = ep.load()
            store: Store = factory.open(url, workspace)
            return store
    known = sorted({"sqlite", "postgresql", "awssm", "vault",
                    *(ep.name for ep in entry_points(group="connsync.stores"))})
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



def destroying(store: Store) -> None:
    """``apply --destroy``: deletes of this run remove every version, where a store keeps versions."""
    if not hasattr(store, "destroy_deletes"):
        raise UsageError("--destroy is for a store that keeps the versions of a deleted record (vault://); "
                         f"deletes in {store.describe()} are already final or have their own recovery window")
    store.destroy_deletes = True


def is_embedded(url: str) -> bool:
    """A store that is a file on this machine (gone with an ephemeral CI runner)."""
    return url.partition(":")[0] == "sqlite"


def ephemeral_store_warnings(store: Store, url: str, *, in_ci: bool) -> list[str]:
    """Why a plan against this store may not mean what it seems to."""
    # No URL in these words: connsync.yaml (and so the URL) may come from a pull request.
    warnings = []
    if in_ci and is_embedded(url):
        warnings.append(
            "the store is an embedded (sqlite:) file on this CI runner: it starts empty in every job and "
            "is lost when the job ends, so this plan is not against your team's store; set CONNSYNC_STORE "
            "to a shared store (postgresql://...)")
    if isinstance(store, EmptyStore):
        warnings.append("the store does not exist yet, so every connection plans as create; if it should "
                        "exist, check the store URL (--store, CONNSYNC_STORE or store: in connsync.yaml)")
    return warnings


def refuse_ephemeral_store(url: str, *, in_ci: bool, allowed: bool) -> None:
    """In CI, writing to an embedded store writes to a file the runner throws away."""
    if in_ci and is_embedded(url) and not allowed:
        raise ConnsyncError(
            f"refusing to write to the embedded store {url} on a CI runner: it is a file on this "
            "runner and is lost when the job ends, so nothing applied here would last",
            hint="set CONNSYNC_STORE to a shared store (postgresql://..., see the README's 'Teams and "
            "CI'); if a throwaway store is really what you want, pass --allow-embedded-store",
        )
