"""The workspace lock of the Vault store: one KV secret, written with check-and-set, with a lease.

The lock is ``PREFIX/WORKSPACE/.lock``; its value names the holder and when its
lease runs out. Every change of it is a KV write with ``cas``, so of two
processes acting on the same version exactly one succeeds:

- taking a free lock writes with ``cas`` = the secret's current version (0 when it
  does not exist);
- the holder renews its lease every sixth of the lease with ``cas`` = the version
  it wrote last: a renewal refused by check-and-set means the lock was broken or
  taken over; one Vault did not answer is tried again until the lease runs out (an
  outage shorter than the lease costs nothing);
- a lease that has run out belongs to a holder that died: the next taker writes
  over it with ``cas`` = that version (a server cannot see a client's death, so
  the clocks of the machines involved must roughly agree); so does a lock whose
  holder ran on this machine, as this user, and has ended;
- releasing it (and ``connsync unlock``) writes a "released" version over the
  holder's with ``cas`` and soft-deletes that one, so KV versions only ever grow,
  a version number names one holder's lease, and the holder's next renewal fails;
- before every write the holder checks the secret is still at the version it
  wrote (fencing): after ``unlock`` or a take-over it writes nothing more.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, replace
from typing import Any

from connsync.errors import LockError, StoreError, StoreUnavailable
from connsync.store.base import LockInfo, holder_has_ended, take_leased_lock
from connsync.store.vault_client import http_errors, request
from connsync.store.vault_kv import is_live
from connsync.store.vault_layout import Target

_FIELDS = ("id", "workspace", "holder", "pid", "ci_run", "acquired_at")
UNREADABLE = "unreadable"  # the id of a lock secret whose value is not connsync's
_RELEASED = "released"  # the value of a released lock's last version


class LeaseLock:
    def __init__(self, client: Any, target: Target, workspace: str) -> None:
        self._client = client
        self._target = target
        self._workspace = workspace
        self._path = target.workspace_path(workspace) + ".lock"
        self._held: LockInfo | None = None
        self._version = 0  # the KV version of the lock we wrote last
        self._lost: str | None = None
        self._deadline = 0.0  # monotonic: our lease runs out then unless renewed
        self._mutex = threading.Lock()  # a renewal and a fencing check never interleave
        self._stop = threading.Event()

    def _errors(self, doing: str, kind: str, capability: str) -> Any:
        return http_errors(self._target.shown, doing, self._target.api(kind, self._path), capability,
                           client=self._client)

    # --- reading -----------------------------------------------------------------

    def _versions(self) -> tuple[int, bool]:
        """The lock secret's current version and whether it is live (0, False when never written)."""
        import hvac

        with self._errors("read the workspace lock", "metadata", "read"):
            try:
                meta = request(self._client, "get", self._target.api("metadata", self._path)) or {}
            except hvac.exceptions.InvalidPath:
                return 0, False
        data = meta.get("data") or {}
        current = int(data.get("current_version") or 0)
        return current, bool(current) and is_live((data.get("versions") or {}).get(str(current)))

    def _current_version(self) -> int:
        """The lock secret's live version; 0 when there is none (never written, deleted, released)."""
        current, live = self._versions()
        return current if live else 0

    def _read(self) -> tuple[int, LockInfo | None, float] | None:
        """The lock's version, holder and lease end (epoch seconds); None when it is free, and a holder
        of None for a released lock whose version is not deleted yet."""
        import hvac

        with self._errors("read the workspace lock", "data", "read"):
            try:
                answer = request(self._client, "get", self._target.api("data", self._path)) or {}
            except hvac.exceptions.InvalidPath:
                return None  # no live version
        version = int(((answer.get("data") or {}).get("metadata") or {}).get("version") or 0)
        value = (answer.get("data") or {}).get("data") or {}
        if value.get(_RELEASED):
            return version, None, 0.0
        try:
            return version, LockInfo(*(value[k] for k in _FIELDS)), float(value["expires"])
        except (KeyError, TypeError, ValueError):
            # Written by hand or by another tool: held, never taken over; 'connsync unlock unreadable'.
            return version, LockInfo(UNREADABLE, self._workspace, "a lock secret connsync cannot read", 0,
                                     None, "an unknown time"), float("inf")

    def current(self) -> LockInfo | None:
        state = self._read()
        return state[1] if state else None

    # --- writing -----------------------------------------------------------------

    def _write(self, lock: LockInfo, cas: int, doing: str) -> int | None:
        """Write the lock with check-and-set; its new version, or None when another writer was first."""
        import hvac

        body = {**{k: v for k, v in asdict(lock).items() if k in _FIELDS},
                "expires": time.time() + self._target.lock_lease_seconds}
        with self._errors(doing, "data", "create" if cas == 0 else "update"):
            try:
                answer = request(self._client, "post", self._target.api("data", self._path),
                                 json={"options": {"cas": cas}, "data": body}) or {}
            except hvac.exceptions.InvalidRequest as exc:
                if "check-and-set" in " ".join(str(e) for e in exc.errors or []):
                    return None
                raise
        return int((answer.get("data") or {}).get("version") or 0)

    def acquire(self, timeout: float) -> LockInfo:
        taken = take_leased_lock(self._workspace, self._try, self.current, timeout=timeout,
                                 lease_seconds=self._target.lock_lease_seconds)
        self._held, self._lost = taken, None
        self._deadline = time.monotonic() + self._target.lock_lease_seconds
        self._stop = threading.Event()
        threading.Thread(target=self._renew, args=(self._stop, taken), daemon=True,
                         name="connsync-lock-lease").start()
        return taken

    def _try(self, mine: LockInfo) -> LockInfo | None:
        current, live = self._versions()
        if not live:
            # Free: create it anew with cas = the version seen deleted. A taker that got in after that
            # read wrote current + 1, so this write fails and the next poll sees its lease. (Reading
            # the current version only after seeing the lock free let a second taker write over a
            # live lock: the holder then stopped after one write.)
            version = self._write(mine, current, "take the workspace lock")
            if version is None:
                return None
            self._version = version
            return mine
        state = self._read()
        if state is None:
            return None  # released between the two reads: the next poll takes it
        version, holder, expires = state
        if holder is None:  # released by its holder or by unlock, its version not yet deleted
            version = self._write(mine, version, "take the workspace lock")
            if version is None:
                return None
            self._version = version
            return mine
        because = "its lease ran out without renewal (the process died, or lost its way to Vault)"
        if expires > time.time():
            if not holder_has_ended(holder):
                return None
            because = f"its process (pid {holder.pid}) on this machine has ended"
        taken = self._write(mine, version, "take over the workspace lock")
        if taken is None:
            return None  # another taker won this one
        self._version = taken
        return replace(mine, replaced=holder, replaced_because=because)

    def _renew(self, stop: threading.Event, held: LockInfo) -> None:
        interval = self._target.lock_lease_seconds / 6
        while not stop.wait(interval):
            with self._mutex:
                if stop.is_set():
                    return
                if time.monotonic() >= self._deadline:
                    self._lost = "its lease ran out before it could be renewed"
                    return
                try:
                    self._renew_now(held)
                except LockError as exc:  # check-and-set refused: another holder, or none
                    self._lost = exc.message
                    return
                except StoreError:  # Vault did not answer: the lease still runs, try again
                    continue

    def _renew_now(self, held: LockInfo) -> None:
        """A renewal is a check-and-set on the version we wrote last: it succeeds only while nobody
        took the lock over, however late it comes (a starved renewal thread loses nothing)."""
        started = time.monotonic()
        version = self._write(held, self._version, "renew the workspace lock")
        if version is None and (current := self._ours(held)) > 0:
            version = self._write(held, current, "renew the workspace lock")
        if version is None:
            raise LockError("the lock was broken or taken over")
        self._version = version
        self._deadline = started + self._target.lock_lease_seconds

    def _ours(self, held: LockInfo) -> int:
        """The live version when it is still ours although not the one we wrote last: a renewal we
        gave up on (a timeout) may have landed. -1 when it is not ours."""
        state = self._read()
        return state[0] if state is not None and state[1] is not None and state[1].id == held.id else -1

    def check(self) -> None:
        """Before every write of a holder: is the lock still ours?"""
        held = self._held
        if held is None:
            return
        with self._mutex:
            if self._lost is not None:
                raise LockError(f"the workspace lock {held.id} was lost ({self._lost}); nothing more is "
                                "written", hint="run plan again")
            try:
                if time.monotonic() >= self._deadline - self._target.lock_lease_seconds / 3:
                    # Close to the end of the lease: renew it here (check-and-set) before writing, so
                    # that a write never lands after a taker could have seen the lease run out.
                    self._renew_now(held)
                elif self._current_version() != self._version:
                    current = self._ours(held)
                    if current < 0:
                        raise LockError("the lock was broken or taken over")
                    self._version = current
            except LockError:
                raise LockError(f"the workspace lock {held.id} was broken or taken over while this process "
                                "held it; nothing more is written", hint="run plan again") from None
            except StoreUnavailable as exc:  # about the lock: the record's own write was never sent
                raise StoreUnavailable(exc.message, hint=exc.hint) from None

    def release(self, lock: LockInfo) -> None:
        self._stop.set()
        with self._mutex:
            self._held = None
            self._retire(lock.id)

    def break_(self, lock_id: str) -> LockInfo | None:
        return self._retire(lock_id)

    def _retire(self, lock_id: str) -> LockInfo | None:
        """Release lock ``lock_id`` if it holds the lock: write a released version over it with
        check-and-set, then soft-delete that one. A holder still alive renews with check-and-set on
        the version it wrote, which is no longer current: after ``unlock`` it writes nothing more.
        (Deleting the holder's own version would leave it current, and its renewal would succeed.)"""
        for _ in range(5):  # the holder may renew between the read and the write: read again
            state = self._read()
            if state is None or state[1] is None or state[1].id != lock_id:
                return None
            released = self._write_released(state[0])
            if released is not None:
                self._delete(released)
                return state[1]
        return None

    def _write_released(self, version: int) -> int | None:
        import hvac

        with self._errors("release the workspace lock", "data", "update"):
            try:
                answer = request(self._client, "post", self._target.api("data", self._path),
                                 json={"options": {"cas": version}, "data": {_RELEASED: True}}) or {}
            except hvac.exceptions.InvalidRequest as exc:
                if "check-and-set" in " ".join(str(e) for e in exc.errors or []):
                    return None
                raise
        return int((answer.get("data") or {}).get("version") or 0)

    def _delete(self, version: int) -> None:
        with self._errors("remove the workspace lock", "delete", "update"):
            request(self._client, "post", self._target.api("delete", self._path),
                    json={"versions": [version]})

    def close(self) -> None:
        self._stop.set()
