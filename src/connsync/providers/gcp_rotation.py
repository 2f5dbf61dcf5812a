"""Rotating a GCP connection's service-account key: the AWS procedure, on Google's IAM API.

1. ``start``: a new key (``serviceAccounts.keys.create``), used until Google
   accepts it, then written into the file (``private_key_id`` and
   ``private_key``, through ``sops set``); the old key stays enabled.
2. The store takes the new key: the pull request's apply job, or ``--apply``.
3. ``finish``: once the store holds the new key (fingerprint), disable every
   other user-managed key of the account; with ``delete``, delete the
   disabled ones. Google keeps no last-use date per key in this API, so
   deletion relies on the key having been disabled first (reversible) and on
   nobody else declaring it.

The calls are signed with the connection's own key, or with ``--admin-env``:
the environment's Google credentials. Every step is audited; a failure after
``keys.create`` deletes the new key again when it was written nowhere.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from connsync import sops
from connsync.config import Config
from connsync.errors import ConnsyncError
from connsync.model import Declaration, Desired, Secret
from connsync.providers import gcp_keys
from connsync.providers.rotation import (
    Echo,
    Journal,
    RotateOptions,
    Rotation,
    RotationFailed,
    write_fields,
)
from connsync.store import Store

CREDENTIAL, RETIRE = "key", "disable"  # in rotate's questions and messages
DRY_RUN_NEXT = ("store the new key: the pull request's apply job, or --apply; then disable the old key: "
                "--finish")


def keys_api(desired: Desired, config: Config, options: RotateOptions) -> gcp_keys.KeysApi:
    email = str(desired.spec["client_email"])
    if options.admin is not None:
        return gcp_keys.KeysApi(gcp_keys.admin_credentials(), email, config.verify,
                                "the environment's Google credentials")
    return gcp_keys.KeysApi(gcp_keys.own_credentials(desired, config.verify), email, config.verify,
                            f"key {desired.spec['private_key_id']}")


def _holders(config: Config, store: Store, key_id: str, except_name: str) -> list[str]:
    from connsync.validate import rules

    found = [f"the store's record {r.name!r}" for r in store.records()
             if r.name.casefold() != except_name.casefold() and r.spec.get("private_key_id") == key_id]
    found += [d.file for d in rules.validate_files([], config.connections_dir).declarations
              if d.name.casefold() != except_name.casefold() and d.spec.get("private_key_id") == key_id]
    return found


def start(config: Config, decl: Declaration, store: Store, options: RotateOptions, echo: Echo | None,
          rotation: Rotation) -> Rotation:
    journal = Journal(rotation, store, config.root, echo)
    desired = sops.decrypt(decl, Path(decl.file))
    rotation.old_key = old_id = str(desired.spec["private_key_id"])
    rotation.user = email = str(desired.spec["client_email"])
    api = keys_api(desired, config, options)
    try:
        keys = api.keys()
        rotation.keys = []  # gcp_keys.SaKey has the same JSON shape as an AWS key
        current = next((k for k in keys if k.key_id == old_id), None)
        if current is None or current.disabled:
            raise ConnsyncError(f"{old_id} is not an enabled key of {email}; nothing was rotated",
                                hint="if a rotation is under way, finish it with 'connsync rotate --finish'")
        if options.dry_run:
            journal.step("rotate-create-key", "", f"create a new key for {email}", done=False)
            journal.step("rotate-write-file", "", f"write it into {decl.file} through sops", done=False)
            return rotation
        new, new_email, pem = api.create()
        rotation.new_key = new.key_id
        try:
            journal.step("rotate-create-key", new.key_id, f"created {new.key_id} for {email}")
            tries = gcp_keys.accepted(desired.spec, decl, email, new_email, new.key_id, pem, config.verify,
                                      options.wait_seconds)
            journal.step("rotate-key-accepted", new.key_id, f"Google accepts {new.key_id} (after {tries} "
                         f"{'try' if tries == 1 else 'tries'})")
            write_fields(decl, {"private_key_id": new.key_id, "private_key": pem})
        except BaseException as exc:
            raise _undo(rotation, api, new.key_id, exc) from None
        journal.step("rotate-write-file", new.key_id, f"wrote {new.key_id} into {decl.file} (sops; comments, "
                     "description and labels kept)")
        return rotation
    finally:
        api.close()


def _undo(rotation: Rotation, api: gcp_keys.KeysApi, new_id: str, cause: BaseException) -> BaseException:
    reason = cause.message if isinstance(cause, ConnsyncError) else type(cause).__name__
    rotation.error = reason
    try:
        api.delete(new_id)
    except ConnsyncError as exc:
        return RotationFailed(
            f"{reason}; then deleting the new key failed too ({exc.message}): {rotation.user} has "
            f"{rotation.old_key} (still in {rotation.file}, enabled) and {new_id} (written nowhere)",
            hint=f"gcloud iam service-accounts keys delete {new_id} --iam-account {rotation.user}")
    if isinstance(cause, KeyboardInterrupt):
        return cause
    return RotationFailed(f"{reason}; the new key {new_id} was deleted again, so nothing changed: "
                          f"{rotation.old_key} is still in {rotation.file}",
                          hint=getattr(cause, "hint", None))


def gitops_next_steps(rotation: Rotation) -> list[str]:
    name = shlex.quote(rotation.name)
    return [f"commit {rotation.file} and open a pull request; its apply job stores the new key",
            f"then: connsync rotate --finish {name}   (disables {rotation.old_key} once the store holds the "
            "new key)",
            f"later: connsync rotate --finish --delete {name}   (deletes it)"]


def stranded(rotation: Rotation, reason: str) -> str:
    """Storing failed after the file took the new key: both keys are enabled, the file has the new one."""
    return (f"{reason}; the new GCP key {rotation.new_key} is in {rotation.file} but not in the store, and "
            f"{rotation.old_key} is still enabled: both keys work. To finish: 'connsync apply', then "
            f"'connsync rotate --finish'. To undo: git checkout {rotation.file}, then gcloud iam "
            f"service-accounts keys delete {rotation.new_key} --iam-account {rotation.user}")


def finish(config: Config, decl: Declaration, store: Store, options: RotateOptions, *, delete: bool,
           echo: Echo | None, rotation: Rotation) -> Rotation:
    journal = Journal(rotation, store, config.root, echo)
    desired = sops.decrypt(decl, Path(decl.file))
    rotation.new_key = new_id = str(desired.spec["private_key_id"])
    rotation.user = email = str(desired.spec["client_email"])
    _store_holds(store, decl.name, new_id, desired.secrets["private_key"])
    api = keys_api(desired, config, options)
    try:
        keys = api.keys()
        mine = next((k for k in keys if k.key_id == new_id), None)
        if mine is None or mine.disabled:
            raise ConnsyncError(f"{new_id} (in {decl.file}) is not an enabled key of {email}; nothing was "
                                "changed")
        old = [k for k in keys if k.key_id != new_id]
        if not old:
            journal.note(f"nothing to finish: {new_id} is {email}'s only key")
        rotation.old_key = old[0].key_id if old else None
        for key in old:
            _retire(config, store, decl, journal, api, key, delete=delete, dry_run=options.dry_run)
    finally:
        api.close()
    if not delete and old:
        rotation.next_steps.append("when nothing has broken: connsync rotate --finish --delete "
                                   + shlex.quote(decl.name))
    return rotation


def _retire(config: Config, store: Store, decl: Declaration, journal: Journal, api: gcp_keys.KeysApi,
            key: gcp_keys.SaKey, *, delete: bool, dry_run: bool) -> None:
    holders = _holders(config, store, key.key_id, decl.name)
    if holders:
        raise ConnsyncError(f"{key.key_id} is still used by {', '.join(holders)}; it stays enabled")
    if not key.disabled:
        if dry_run:
            journal.step("rotate-disable-key", key.key_id, f"disable {key.key_id}", done=False)
        else:
            api.disable(key.key_id)
            journal.step("rotate-disable-key", key.key_id, f"disabled {key.key_id} (the store holds the new "
                         f"key); 'gcloud iam service-accounts keys enable' undoes it")
    if delete:
        if dry_run:
            journal.step("rotate-delete-key", key.key_id, f"delete {key.key_id}", done=False)
        else:
            api.delete(key.key_id)
            journal.step("rotate-delete-key", key.key_id, f"deleted {key.key_id} (disabled first)")


def _store_holds(store: Store, name: str, key_id: str, pem: Secret) -> None:
    record = store.get(name)
    if record is None:
        raise ConnsyncError(f"the store has no record of {name!r}, so it cannot be shown to hold {key_id}; "
                            "nothing was disabled", hint="apply the connection first ('connsync apply')")
    same = record.fingerprints.get("private_key") == store.fingerprint("private_key", pem)
    if record.spec.get("private_key_id") != key_id or not same:
        held = record.spec.get("private_key_id")
        raise ConnsyncError(f"the store still holds key {held} for {name!r}, not the new {key_id}; nothing "
                            "was disabled", hint="merge the pull request and let its apply job run (or run "
                            "'connsync apply'), then run 'connsync rotate --finish' again")
