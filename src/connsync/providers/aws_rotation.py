"""Rotating an AWS connection's access key: AWS's documented procedure, made safe.

AWS's procedure: create a second key, update every consumer, check the old
key's last use, deactivate it, delete it. Here the consumer is the platform's
store, reached through git (GitOps) or directly (local mode):

1. ``start``: find the IAM user behind the key (STS), refuse root and
   temporary credentials, make room for a second key (only an *inactive* one
   is ever deleted, and only with ``--delete-inactive``), CreateAccessKey,
   wait until STS accepts the new key in the declared account, then write it
   into the file through ``sops set`` (comments and every other field kept).
2. The store takes the new key: the pull request's apply job, or ``--apply``.
3. ``finish``: deactivate the old key once the store holds the new one
   (fingerprint check), and with ``delete`` delete it once inactive and
   unused since the store took the new key.

Invariants: a key the store (or another connection) still holds is never
deactivated; the user is never left without a working key; a failure after
CreateAccessKey says which keys exist and how to finish or undo, and deletes
the new key itself when it was written nowhere. Every step is audited.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from connsync import sops
from connsync.config import Config
from connsync.errors import ConnsyncError
from connsync.model import Declaration, Desired, Secret
from connsync.providers.aws_keys import AccessKey, Credentials, Iam, Identity, identity, wait_until_accepted
from connsync.providers.rotation import (
    Echo,
    Journal,
    RotateOptions,
    Rotation,
    RotationFailed,
    write_fields,
)
from connsync.store import Store
from connsync.validate import rules

CREDENTIAL, RETIRE = "key", "deactivate"  # in rotate's questions and messages
DRY_RUN_NEXT = ("store the new key: the pull request's apply job, or --apply; then deactivate the old key: "
                "--finish")

# --- finding the connection and its user -------------------------------------------------------


def owner(desired: Desired, options: RotateOptions) -> Identity:
    spec = desired.spec
    who = identity(str(spec["access_key_id"]), desired.secrets["secret_access_key"],
                   str(spec["default_region"]), options.timeout)
    # A role's base key may belong to the platform's own account: only a key pair must be account_id's.
    if who.account != str(spec["account_id"]) and not spec.get("role_arn"):
        raise ConnsyncError(f"key {spec['access_key_id']} belongs to account {who.account}, not "
                            f"account_id {spec['account_id']}; nothing was rotated")
    refusal = who.refusal()
    if refusal:
        raise ConnsyncError(f"cannot rotate {desired.name!r}: {refusal}")
    return who


def _holders(config: Config, store: Store, key_id: str, except_name: str) -> list[str]:
    """Other connections (files or store records) that use ``key_id``: it must stay active."""
    found = [f"the store's record {r.name!r}" for r in store.records()
             if r.name.casefold() != except_name.casefold() and r.spec.get("access_key_id") == key_id]
    found += [f"{d.file}" for d in rules.validate_files([], config.connections_dir).declarations
              if d.name.casefold() != except_name.casefold() and d.spec.get("access_key_id") == key_id]
    return found


# --- step 1: a new key, in the file --------------------------------------------------------------


def start(config: Config, decl: Declaration, store: Store, options: RotateOptions,
          echo: Echo | None, rotation: Rotation | None = None) -> Rotation:
    """Create the new key and write it into the file; the old key stays active.

    ``rotation`` (if given) records the steps even when this raises.
    """
    rotation = rotation or Rotation(decl.name, decl.file)
    journal = Journal(rotation, store, config.root, echo)
    desired = sops.decrypt(decl, Path(decl.file))
    old_id, old_secret = str(desired.spec["access_key_id"]), desired.secrets["secret_access_key"]
    region = str(desired.spec["default_region"])
    rotation.old_key = old_id
    who = owner(desired, options)
    rotation.user = user = str(who.user_name)
    journal.note(f"IAM user {user} ({who.arn})")
    iam = Iam(options.admin or Credentials(old_id, old_secret), region, options.timeout)
    rotation.keys = keys = iam.keys(user)
    current = next((k for k in keys if k.key_id == old_id), None)
    if current is None:
        raise ConnsyncError(f"IAM does not list {old_id} among {user}'s keys; nothing was rotated")
    if not current.active:
        raise ConnsyncError(f"{old_id} is inactive, so the platform cannot be using it; nothing was rotated",
                            hint="if a rotation is under way, finish it with 'connsync rotate --finish'")
    for other in (k for k in keys if k.key_id != old_id):
        _make_room(config, store, journal, iam, user, current, other, options)

    if options.dry_run:
        journal.step("rotate-create-key", "", f"create a second key for {user}", done=False)
        journal.step("rotate-wait", "", "wait until STS accepts it in account "
                     f"{desired.spec['account_id']}", done=False)
        journal.step("rotate-write-file", "", f"write it into {decl.file} through sops", done=False)
        return rotation

    new, new_secret = iam.create(user)
    rotation.new_key = new.key_id
    try:  # from here on, a failure before the write deletes the new key again
        journal.step("rotate-create-key", new.key_id, f"created {new.key_id} for {user}")
        accepted, tries = wait_until_accepted(new.key_id, new_secret, region,
                                              deadline_seconds=options.wait_seconds, timeout=options.timeout)
        if accepted.arn != who.arn:
            raise ConnsyncError(f"STS says {new.key_id} is {accepted.arn}, not {who.arn}")
        journal.step("rotate-key-accepted", new.key_id, f"STS accepts {new.key_id} in account "
                     f"{accepted.account} (after {tries} {'try' if tries == 1 else 'tries'})")
        write_key(decl, new.key_id, new_secret)
    except BaseException as exc:
        raise _undo_new_key(rotation, journal, iam, user, old_id, new.key_id, exc) from None
    try:
        journal.step("rotate-write-file", new.key_id, f"wrote {new.key_id} into {decl.file} (sops; "
                     "comments, description and labels kept)")
    except ConnsyncError as exc:  # written, so kept: say where everything is
        refused = f"the audit log refused the entry ({exc.message})"
        raise RotationFailed(stranded(rotation, refused)) from None
    return rotation


def _make_room(config: Config, store: Store, journal: Journal, iam: Iam, user: str, current: AccessKey,
               other: AccessKey, options: RotateOptions) -> None:
    """AWS allows two keys per user: only an inactive second key may go, and only when asked."""
    both = f"{current.describe()} and {other.describe()}"
    if other.active:
        raise ConnsyncError(
            f"{user} already has two active keys: {both}; AWS allows two, and connsync never touches "
            "an active second key",
            hint="if a rotation is under way, finish it with 'connsync rotate --finish'; otherwise find "
            "what uses the second key (its last use above, CloudTrail) and retire it yourself",
        )
    if not options.delete_inactive:
        raise ConnsyncError(f"{user} already has two keys: {both}; AWS allows two",
                            hint=f"pass --delete-inactive to delete the inactive {other.key_id} first")
    holders = _holders(config, store, other.key_id, "")
    if holders:
        raise ConnsyncError(f"{other.key_id} is inactive but still declared by {', '.join(holders)}; "
                            "nothing was deleted")
    if options.dry_run:
        journal.step("rotate-delete-inactive-key", other.key_id, f"delete the inactive {other.key_id}",
                     done=False)
        return
    iam.delete(user, other.key_id)
    journal.step("rotate-delete-inactive-key", other.key_id, f"deleted the inactive {other.key_id}")


def write_key(decl: Declaration, key_id: str, secret: Secret) -> None:
    write_fields(decl, {"access_key_id": key_id, "secret_access_key": secret})


def _undo_new_key(rotation: Rotation, journal: Journal, iam: Iam, user: str, old_id: str, new_id: str,
                  cause: BaseException) -> BaseException:
    """The new key was written nowhere: delete it, so the user is left as before."""
    reason = cause.message if isinstance(cause, ConnsyncError) else (
        "interrupted" if isinstance(cause, KeyboardInterrupt) else type(cause).__name__)
    try:
        iam.delete(user, new_id)
    except ConnsyncError as exc:
        rotation.error = reason
        return RotationFailed(
            f"{reason}; then deleting the new key failed too ({exc.message}). {user} now has two keys: "
            f"{old_id} (still in {rotation.file}, active) and {new_id} (written nowhere)",
            hint=f"delete the new key: aws iam delete-access-key --user-name {user} --access-key-id {new_id}",
        )
    try:
        journal.step("rotate-delete-new-key", new_id, f"deleted {new_id} again: it was written nowhere")
    except ConnsyncError as exc:
        reason += f" (and the audit log refused the entry: {exc.message})"
    rotation.error = reason
    if isinstance(cause, KeyboardInterrupt):
        return cause
    return RotationFailed(f"{reason}; the new key {new_id} was deleted again, so nothing changed: "
                          f"{old_id} is still {user}'s key and still in {rotation.file}",
                          hint=getattr(cause, "hint", None))


def gitops_next_steps(rotation: Rotation) -> list[str]:
    # Names and paths are file text: quoted for a shell, so that pasted they stay one word.
    name, file = shlex.quote(rotation.name), shlex.quote(rotation.file)
    return [
        f"commit {rotation.file} and open a pull request; its apply job stores the new key",
        f"then: connsync rotate --finish {name}   (deactivates {rotation.old_key} once the store "
        "holds the new key)",
        f"later: connsync rotate --finish --delete {name}   (deletes it once unused since)",
        f"until then both keys work; to undo: git checkout {file} and aws iam delete-access-key "
        f"--user-name {rotation.user} --access-key-id {rotation.new_key}",
    ]


def stranded(rotation: Rotation, reason: str) -> str:
    return (f"{reason}; the new key {rotation.new_key} is in {rotation.file} but not in the store, and "
            f"{rotation.old_key} is still active: both keys work. To finish: 'connsync apply', then "
            f"'connsync rotate --finish'. To undo: git checkout {rotation.file}, then aws iam "
            f"delete-access-key --user-name {rotation.user} --access-key-id {rotation.new_key}")


# --- step 3: retire the old key ------------------------------------------------------------------


def finish(config: Config, decl: Declaration, store: Store, options: RotateOptions, *, delete: bool,
           echo: Echo | None, rotation: Rotation | None = None) -> Rotation:
    """Deactivate (and with ``delete`` delete) every other key of the user, once the store is ready."""
    rotation = rotation or Rotation(decl.name, decl.file)
    journal = Journal(rotation, store, config.root, echo)
    desired = sops.decrypt(decl, Path(decl.file))
    new_id, new_secret = str(desired.spec["access_key_id"]), desired.secrets["secret_access_key"]
    rotation.new_key = new_id
    who = owner(desired, options)  # proves the new key works, so the user keeps a working key
    rotation.user = user = str(who.user_name)
    iam = Iam(options.admin or Credentials(new_id, new_secret), str(desired.spec["default_region"]),
              options.timeout)
    rotation.keys = keys = iam.keys(user)
    mine = next((k for k in keys if k.key_id == new_id), None)
    if mine is None or not mine.active:
        raise ConnsyncError(f"{new_id} (in {decl.file}) is not an active key of {user}; nothing was changed")
    old = [k for k in keys if k.key_id != new_id]
    if not old:
        journal.note(f"nothing to finish: {new_id} is {user}'s only key")
        return rotation
    rotation.old_key = old[0].key_id
    switched = _store_holds(store, decl.name, new_id, new_secret, old)
    for key in old:
        holders = _holders(config, store, key.key_id, decl.name)
        if holders:
            raise ConnsyncError(f"{key.key_id} is still used by {', '.join(holders)}; it stays active")
        if key.active:
            if options.dry_run:
                journal.step("rotate-deactivate-key", key.key_id, f"deactivate {key.key_id}", done=False)
            else:
                iam.set_status(user, key.key_id, "Inactive")
                journal.step("rotate-deactivate-key", key.key_id, f"deactivated {key.key_id} (the store "
                             f"holds {new_id}); 'aws iam update-access-key --status Active' undoes it")
        if delete:
            _delete_old(journal, iam, user, key, switched, options)
    if not delete:
        rotation.next_steps.append("when nothing has broken: connsync rotate --finish --delete "
                                   + shlex.quote(decl.name))
    return rotation


def _store_holds(store: Store, name: str, key_id: str, secret: Secret, old: Sequence[AccessKey]) -> datetime:
    """Refuse unless the store's record holds exactly this key; returns when it was last written."""
    record = store.get(name)
    if record is None:
        raise ConnsyncError(f"the store has no record of {name!r}, so it cannot be shown to hold {key_id}; "
                            "nothing was deactivated", hint="apply the connection first ('connsync apply')")
    held = record.spec.get("access_key_id")
    same_secret = record.fingerprints.get("secret_access_key") == store.fingerprint("secret_access_key",
                                                                                    secret)
    if held != key_id or not same_secret:
        which = (f"the old key {held}" if held in {k.key_id for k in old}
                 else f"key {held}" if held != key_id else "another secret for this key id")
        raise ConnsyncError(
            f"the store still holds {which} for {name!r}, not the new {key_id}; nothing was deactivated",
            hint="merge the pull request and let its apply job run (or run 'connsync apply'), then "
            "run 'connsync rotate --finish' again",
        )
    try:
        at = datetime.fromisoformat(record.updated_at.replace("Z", "+00:00"))
    except ValueError:
        at = datetime.now(UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _delete_old(journal: Journal, iam: Iam, user: str, key: AccessKey, switched: datetime,
                options: RotateOptions) -> None:
    # The store records whole seconds; a use in the same second as the switch is not "after" it.
    if key.last_used is not None and key.last_used.replace(microsecond=0) > switched:
        raise ConnsyncError(
            f"{key.key_id} was last used at {key.last_used:%Y-%m-%d %H:%M} UTC, after the store took the "
            f"new key ({switched:%Y-%m-%d %H:%M} UTC): something else still uses it; nothing was deleted",
            hint="find the caller in CloudTrail; the key stays inactive, which is reversible",
        )
    if options.dry_run:
        journal.step("rotate-delete-key", key.key_id, f"delete {key.key_id}", done=False)
        return
    iam.delete(user, key.key_id)
    journal.step("rotate-delete-key", key.key_id, f"deleted {key.key_id} (inactive, unused since the "
                 "store took the new key)")
