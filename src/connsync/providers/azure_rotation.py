"""Rotating an Azure connection's client secret: a new one through Microsoft Graph, the old one removed.

1. ``start``: ``addPassword`` on the application (expiring after
   ``--expires-in-days``, default 180), used until Entra ID issues a token
   with it, then written into the file (``client_secret`` with its
   ``client_secret_id`` and ``client_secret_expires``, through ``sops set``).
   The old secret keeps working.
2. The store takes the new secret: the pull request's apply job, or ``--apply``.
3. ``finish``: once the store holds the new secret (fingerprint), every other
   secret of the application is removed (``removePassword``); an app that
   another connection also declares is refused, as its other secrets may be
   theirs. Graph shows a secret only by its ``hint`` (first three
   characters): the secret in the file is told apart from the others by its
   ``client_secret_id`` (written with it), else by that hint.

Signed with the connection's own secret, or with ``--admin-env`` the
environment's app. A failure after ``addPassword`` removes the new secret
again when it was written nowhere.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from connsync import sops
from connsync.config import Config
from connsync.errors import ConnsyncError
from connsync.model import Declaration, Desired, Secret
from connsync.providers import azure_secrets as graph
from connsync.providers import key_age
from connsync.providers.base import VerifySettings
from connsync.providers.rotation import (
    Echo,
    Journal,
    RotateOptions,
    Rotation,
    RotationFailed,
    write_fields,
)
from connsync.store import Store

CREDENTIAL, RETIRE = "client secret", "remove"  # in rotate's questions and messages
DRY_RUN_NEXT = ("store the new client secret: the pull request's apply job, or --apply; then remove the old "
                "one: --finish")

# Entra ID may take a moment to accept a new secret everywhere.
_RETRY_DELAYS = (0.5, 1, 2, 4, 8, 8, 8, 8, 8)


def applications(desired: Desired, config: Config, options: RotateOptions) -> graph.Applications:
    spec = desired.spec
    signer = graph.environment_signer() if options.admin is not None else graph.Signer(
        str(spec["tenant_id"]), str(spec["client_id"]), desired.secrets["client_secret"],
        f"app {spec['client_id']}")
    return graph.Applications(signer, str(spec["client_id"]), _cloud(desired), config.verify)


def _cloud(desired: Desired) -> str:
    return str(desired.spec.get("cloud") or "AzureCloud")


def mine(passwords: list[graph.Password], desired: Desired) -> list[graph.Password]:
    """The secrets that may be the file's: by ``client_secret_id`` when the file names it, else by the
    first three characters (Graph's ``hint``, all it shows of a secret)."""
    secret = desired.secrets["client_secret"].reveal()
    by_hint = [p for p in passwords if p.hint and secret.startswith(p.hint)]
    named = desired.spec.get("client_secret_id")
    # A secret set by hand ('connsync set') leaves an old id behind: the id counts only when it fits.
    by_id = [p for p in by_hint if isinstance(named, str) and p.key_id.lower() == named.lower()]
    return by_id or by_hint


def secret_fields(new: graph.Password, secret: Secret) -> dict[str, str | Secret]:
    """What a file holds of a new client secret: the secret, its id and its end (the key's age and
    expiry, for list, plan, verify and the report, and ``rotate --exposed`` without asking Graph)."""
    fields: dict[str, str | Secret] = {"client_secret": secret, "client_secret_id": new.key_id}
    end = key_age.expires({key_age.EXPIRES_FIELD: new.expires})
    if end is not None:
        fields[key_age.EXPIRES_FIELD] = end.strftime("%Y-%m-%dT%H:%M:%SZ")
    return fields


def start(config: Config, decl: Declaration, store: Store, options: RotateOptions, echo: Echo | None,
          rotation: Rotation) -> Rotation:
    journal = Journal(rotation, store, config.root, echo)
    desired = sops.decrypt(decl, Path(decl.file))
    rotation.user = f"app {desired.spec['client_id']}"
    apps = applications(desired, config, options)
    try:
        current = mine(apps.passwords(), desired)
        rotation.old_key = current[0].key_id if len(current) == 1 else None
        if options.dry_run:
            journal.step("rotate-create-key", "", f"add a client secret to {rotation.user}, expiring in "
                         f"{options.expires_in_days} days", done=False)
            journal.step("rotate-write-file", "", f"write it into {decl.file} through sops", done=False)
            return rotation
        new, secret = apps.add(options.expires_in_days)
        rotation.new_key = new.key_id
        try:
            journal.step("rotate-create-key", new.key_id, f"added secret {new.key_id} to {rotation.user}, "
                         f"expiring {new.expires or '?'} (in {options.expires_in_days} days)")
            spec = desired.spec
            tries = wait_accepted(str(spec["tenant_id"]), str(spec["client_id"]), _cloud(desired), secret,
                                  config.verify, options.wait_seconds)
            journal.step("rotate-key-accepted", new.key_id, f"Entra ID accepts {new.key_id} (after {tries} "
                         f"{'try' if tries == 1 else 'tries'})")
            write_fields(decl, secret_fields(new, secret))
        except BaseException as exc:
            raise _undo(rotation, apps, new.key_id, exc) from None
        journal.step("rotate-write-file", new.key_id, f"wrote secret {new.key_id} into {decl.file} (sops; "
                     "comments, description and labels kept)")
        return rotation
    finally:
        apps.close()


def wait_accepted(tenant: str, client: str, cloud: str, secret: Secret, settings: VerifySettings,
                  wait_seconds: float) -> int:
    """Ask for a token with the new secret until Entra ID issues one; returns the number of tries."""
    import time

    signer = graph.Signer(tenant, client, secret, "the new secret")
    waited = 0.0
    for tries, delay in enumerate((*_RETRY_DELAYS, None), start=1):
        try:
            graph.token(signer, cloud, settings)
            return tries
        except graph.GraphError:
            if delay is None or waited + delay > wait_seconds:
                raise
        time.sleep(delay)
        waited += delay
    raise AssertionError("unreachable")


def _undo(rotation: Rotation, apps: graph.Applications, new_id: str, cause: BaseException) -> BaseException:
    reason = cause.message if isinstance(cause, ConnsyncError) else type(cause).__name__
    rotation.error = reason
    try:
        apps.remove(new_id)
    except ConnsyncError as exc:
        return RotationFailed(f"{reason}; then removing the new secret failed too ({exc.message}): "
                              f"{rotation.user} has the old secret (still in {rotation.file}) and {new_id} "
                              "(written nowhere)", hint=f"remove secret {new_id} in the portal (App "
                              "registrations, Certificates & secrets)")
    if isinstance(cause, KeyboardInterrupt):
        return cause
    return RotationFailed(f"{reason}; the new secret {new_id} was removed again, so nothing changed",
                          hint=getattr(cause, "hint", None))


def gitops_next_steps(rotation: Rotation) -> list[str]:
    name = shlex.quote(rotation.name)
    return [f"commit {rotation.file} and open a pull request; its apply job stores the new secret",
            f"then: connsync rotate --finish {name}   (removes the other secrets of {rotation.user} once the "
            "store holds the new one)"]


def stranded(rotation: Rotation, reason: str) -> str:
    """Storing failed after the file took the new secret: both secrets sign in, the file has the new one."""
    app = (rotation.user or "app CLIENT_ID").removeprefix("app ")
    return (f"{reason}; the new client secret {rotation.new_key} is in {rotation.file} but not in the "
            f"store, and the old secret{' ' + rotation.old_key if rotation.old_key else ''} still signs in: "
            "both work. To finish: 'connsync apply', then 'connsync rotate --finish'. To undo: git "
            f"checkout {rotation.file}, then az ad app credential delete --id {app} --key-id "
            f"{rotation.new_key}")


def finish(config: Config, decl: Declaration, store: Store, options: RotateOptions, *, delete: bool,
           echo: Echo | None, rotation: Rotation) -> Rotation:
    """``delete`` changes nothing here: a removed client secret cannot be disabled first."""
    journal = Journal(rotation, store, config.root, echo)
    desired = sops.decrypt(decl, Path(decl.file))
    secret = desired.secrets["client_secret"]
    rotation.user = f"app {desired.spec['client_id']}"
    _store_holds(store, decl.name, secret)
    _shared(config, store, decl)
    apps = applications(desired, config, options)
    try:
        passwords = apps.passwords()
        held = mine(passwords, desired)
        if len(held) != 1:
            raise ConnsyncError(f"Graph lists {len(held)} secrets of {rotation.user} that could be the one "
                                f"in {decl.file} (by their first characters); nothing was removed",
                                hint="remove the old secrets in the portal (App registrations, Certificates "
                                "& secrets)")
        rotation.new_key = held[0].key_id
        others = [p for p in passwords if p.key_id != held[0].key_id]
        if not others:
            journal.note(f"nothing to finish: {held[0].key_id} is {rotation.user}'s only secret")
        rotation.old_key = others[0].key_id if others else None
        for other in others:
            if options.dry_run:
                journal.step("rotate-remove-secret", other.key_id, f"remove secret {other.key_id}",
                             done=False)
                continue
            apps.remove(other.key_id)
            journal.step("rotate-remove-secret", other.key_id, f"removed secret {other.key_id} "
                         f"({other.display_name or 'no name'}); the store holds {held[0].key_id}")
    finally:
        apps.close()
    return rotation


def _store_holds(store: Store, name: str, secret: Secret) -> None:
    record = store.get(name)
    held = record.fingerprints.get("client_secret") if record else None
    if held is None or held != store.fingerprint("client_secret", secret):
        raise ConnsyncError(f"the store does not hold the new secret for {name!r} yet; nothing was "
                            "removed", hint="merge the pull request and let its apply job run (or run "
                            "'connsync apply'), then run 'connsync rotate --finish' again")


def _shared(config: Config, store: Store, decl: Declaration) -> None:
    from connsync.validate import rules

    client = decl.spec.get("client_id")
    others = [d.file for d in rules.validate_files([], config.connections_dir).declarations
              if d.provider == "azure" and d.spec.get("client_id") == client and d.file != decl.file]
    others += [f"the store's record {r.name!r}" for r in store.records() if r.provider == "azure"
               and r.spec.get("client_id") == client and r.name.casefold() != decl.name.casefold()]
    if others:
        raise ConnsyncError(f"app {client} is also declared by {', '.join(others)}; its other secrets may "
                            "be theirs, so none was removed")
