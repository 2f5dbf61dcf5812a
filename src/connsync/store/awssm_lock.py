"""The workspace lock of the Secrets Manager store: one lock secret with a lease a live holder renews.

Why a lock secret and not an S3 object with ``If-None-Match`` (Terraform's S3
backend): the store then needs one service, one IAM resource prefix and no
bucket; and S3's object lock has no notion of a dead holder either, so it would
need the same lease. The secret is ``PREFIX/WORKSPACE/.lock``:

- taking a free lock is ``CreateSecret`` — the name is unique, so one taker wins;
- releasing it (and ``connsync unlock``) force-deletes the secret, so applies do
  not pile versions onto it (a secret keeps ~100 versions);
- the holder renews its lease in the Description every sixth of the lease, from
  a daemon thread, with its own client whose calls time out within that sixth: a
  renewal that fails is tried again, and the lock is lost only when the lease has
  really run out, so an outage shorter than the lease keeps it; a Description-only
  ``UpdateSecret`` adds no version;
- a lease that has run out belongs to a holder that died: the next taker writes
  a new version with the token ``uuid5(stale lock id)``, so of two takers of the
  same stale lock exactly one wins (the same token with another value fails);
- every write of the holder first checks the lock is still its own (fencing):
  after ``unlock`` or a takeover the holder writes nothing more;
- a lock whose holder ran on this machine (same user@host, no other CI run) and
  whose process has ended is taken over at once: a re-run after a failed apply
  does not wait out its own dead predecessor's lease.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from connsync.errors import LockError, LockLost
from connsync.store.awssm_layout import MANAGED_TAG, Target, aws_errors, compact, current_version_id
from connsync.store.base import LockInfo, holder_has_ended, take_leased_lock

_LOCK_TOKENS = uuid.UUID("0b6f1d7c-3f47-4a55-8a8e-5c2b7e3d9a20")
_FIELDS = ("id", "workspace", "holder", "pid", "ci_run", "acquired_at")


UNREADABLE = "unreadable"  # the id of a lock secret whose description is not connsync's


class LeaseLock:
    def __init__(self, client: Any, target: Target, workspace: str,
                 renewer: Callable[[], Any] | None = None) -> None:
        self._client = client
        # The renewals' own client, made when the lock is taken: calls that time out within a
        # sixth of the lease, so that a renewal is never stuck past the margin it has.
        self._make_renewer = renewer or (lambda: client)
        self._renewer: Any = None
        self._target = target
        self._workspace = workspace
        self._name = target.lock_name(workspace)
        self._held: LockInfo | None = None
        self._token: str | None = None  # the version id of the lock secret while we hold it
        self._lost: str | None = None
        self._deadline = 0.0  # monotonic: our lease runs out then unless renewed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- reading the lock secret -----------------------------------------------

    def _describe(self, client: Any = None) -> dict[str, Any] | None:
        client = client or self._client
        with aws_errors(self._target, "read the workspace lock", self._name):
            try:
                entry: dict[str, Any] = client.describe_secret(SecretId=self._name)
            except client.exceptions.ResourceNotFoundException:
                return None
        return entry

    def _state(self, entry: dict[str, Any]) -> tuple[LockInfo, float] | None:
        """The holder and when its lease ends (epoch seconds); None for a lock being deleted.

        A lock secret whose description connsync cannot read (edited by hand, or written by
        another tool) is held, never taken over, and ``connsync unlock unreadable`` removes it.
        """
        if entry.get("DeletedDate"):
            return None
        try:
            data = json.loads(entry.get("Description") or "")
            return LockInfo(*(data[k] for k in _FIELDS)), float(data["expires"])
        except (ValueError, KeyError, TypeError):
            return LockInfo(UNREADABLE, self._workspace, "a lock secret connsync cannot read", 0, None,
                            "an unknown time"), float("inf")

    def current(self) -> LockInfo | None:
        entry = self._describe()
        state = self._state(entry) if entry else None
        return state[0] if state else None

    # --- taking and giving back --------------------------------------------------

    def _body(self, lock: LockInfo) -> str:
        return compact({**{k: v for k, v in asdict(lock).items() if k in _FIELDS},
                        "expires": time.time() + self._target.lock_lease_seconds})

    def acquire(self, timeout: float) -> LockInfo:
        taken = take_leased_lock(self._workspace, self._try, self.current, timeout=timeout,
                                 lease_seconds=self._target.lock_lease_seconds)
        self._held, self._lost = taken, None
        if self._renewer is None:
            self._renewer = self._make_renewer()
        self._deadline = time.monotonic() + self._target.lock_lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, args=(self._stop,), daemon=True,
                                        name="connsync-lock-lease")
        self._thread.start()
        return taken

    def _try(self, mine: LockInfo) -> LockInfo | None:
        entry = self._describe()
        body = self._body(mine)
        errors = self._client.exceptions
        if entry is None:
            token = str(uuid.uuid5(_LOCK_TOKENS, mine.id))
            with aws_errors(self._target, "take the workspace lock", self._name):
                try:
                    self._client.create_secret(
                        Name=self._name, SecretString=body, Description=body, ClientRequestToken=token,
                        Tags=[{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}],
                        **({"KmsKeyId": self._target.kms_key_id} if self._target.kms_key_id else {}))
                except (errors.ResourceExistsException, errors.InvalidRequestException):
                    return None  # another taker was first, or the last holder's lock is still being deleted
            self._token = token
            return mine
        state = self._state(entry)
        if state is None:
            return None
        stale = state[0]
        because = "its lease ran out without renewal (the process died, or lost its way to AWS)"
        if state[1] > time.time():
            if not holder_has_ended(stale):
                return None
            because = f"its process (pid {stale.pid}) on this machine has ended"
        token = str(uuid.uuid5(_LOCK_TOKENS, f"takeover\0{stale.id}"))
        with aws_errors(self._target, "take over the workspace lock", self._name):
            try:
                self._client.update_secret(SecretId=self._name, SecretString=body, Description=body,
                                           ClientRequestToken=token)
            except (errors.ResourceExistsException, errors.InvalidRequestException,
                    errors.ResourceNotFoundException):
                return None  # another taker won this one
        self._token = token
        return replace(mine, replaced=stale, replaced_because=because)

    def _renew(self, stop: threading.Event) -> None:
        """Renew every sixth of the lease; a failed renewal is tried again at the next turn.

        The lease is lost only when it has run out (a taker acts only then), or when the lock
        secret shows another holder: an outage shorter than the lease costs nothing.
        """
        interval = self._target.lock_lease_seconds / 6
        while not stop.wait(interval):
            held = self._held
            if held is None:
                return
            sent = time.monotonic()
            if sent >= self._deadline:
                self._lost = "its lease ran out before it could be renewed"
                return
            try:
                self._check(held, self._renewer)
                self._renewer.update_secret(SecretId=self._name, Description=self._body(held))
            except LockError as exc:  # the lock secret names another holder, or none
                if not stop.is_set():
                    self._lost = exc.message
                return
            except Exception:  # noqa: S112 - AWS did not answer in time: the lease still runs, try again
                continue
            # Counted from when the renewal was sent: the new expiry was computed no earlier.
            self._deadline = sent + self._target.lock_lease_seconds

    def _check(self, held: LockInfo, client: Any = None) -> None:
        entry = self._describe(client)
        state = self._state(entry) if entry else None
        if state is None or state[0].id != held.id or current_version_id(entry or {}) != self._token:
            raise LockLost(f"the workspace lock {held.id} was broken or taken over while this process "
                           "held it; nothing more is written", hint="run plan again")

    def check(self) -> None:
        """Before every write of a holder: is the lock still ours?"""
        held = self._held
        if held is None:
            return
        if self._lost is not None:
            raise LockLost(f"the workspace lock {held.id} was lost ({self._lost}); nothing more is written",
                           hint="run plan again")
        if time.monotonic() >= self._deadline:
            raise LockLost(f"the lease of the workspace lock {held.id} ran out without renewal; nothing "
                           "more is written", hint="run plan again")
        self._check(held)

    def release(self, lock: LockInfo) -> None:
        self._stop.set()
        self._held = None
        entry = self._describe()
        state = self._state(entry) if entry else None
        if state is not None and state[0].id == lock.id:
            self._delete()

    def break_(self, lock_id: str) -> LockInfo | None:
        entry = self._describe()
        state = self._state(entry) if entry else None
        if state is None or state[0].id != lock_id:
            return None
        self._delete()
        return state[0]

    def _delete(self) -> None:
        with aws_errors(self._target, "remove the workspace lock", self._name), \
                contextlib.suppress(self._client.exceptions.ResourceNotFoundException):
            self._client.delete_secret(SecretId=self._name, ForceDeleteWithoutRecovery=True)

    def close(self) -> None:
        self._stop.set()
