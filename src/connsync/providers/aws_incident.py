"""``rotate --exposed KEY_ID``: contain an exposed AWS access key, in the order AWS recommends.

1. Find every holder (:mod:`connsync.providers.key_holders`); none: nothing changes.
2. With an administrator's identity (never the exposed key: it signs nothing),
   find the key's IAM user (``GetAccessKeyLastUsed``, which also says when and
   where the key was last used), and **deactivate the key first**: from then
   on it is useless to whoever found it.
3. Create a new key (making room only by deleting an *inactive* second key,
   and only with ``--delete-inactive``), wait until STS accepts it, write it
   into every file that held the old one, and with ``--apply`` store it
   (verified) under each workspace's lock.
4. AWS's quarantine policy belongs to the user, not the key: this runbook's
   own verification accepts the new key of that user; ``--detach-quarantine``
   detaches the policy at the end, else the summary says how, once CloudTrail
   shows nothing more.

Every step is audited; the incident itself is an ``exposed KEY_ID`` entry for
each holder. A failure part way says which keys exist in which state.
"""

from __future__ import annotations

import shlex

from connsync.config import Config
from connsync.errors import ConnsyncError
from connsync.model import Secret
from connsync.providers import key_holders
from connsync.providers.aws import ACCESS_KEY_RE, account_from_key_id
from connsync.providers.aws_exposure import QUARANTINE_PREFIX
from connsync.providers.aws_keys import AccessKey, Iam, Identity, wait_until_accepted
from connsync.providers.incident import (
    Incident,
    IncidentOptions,
    Journal,
    Lookup,
    follow_up,
    record_exposed,
    store_everywhere,
    take_back,
    workspaces_to_apply,
    write_everywhere,
)
from connsync.providers.key_holders import Fields, Holders, normalised
from connsync.providers.rotation import Echo, RotationFailed
from connsync.store import Store

FIELDS = Fields("access_key_id", "account_id")  # where a connection holds the key id, and its account
CREDENTIAL = "key"
PLAN = "deactivate it first, then a new key into every file that held it"


def find_holders(config: Config, key_id: str, store: Store) -> Holders:
    return key_holders.find(config, key_id, store, FIELDS)


def check_key_id(raw: str) -> str:
    key_id = normalised(raw)
    if not ACCESS_KEY_RE.match(key_id):
        raise ConnsyncError(f"{key_id[:40]!r} is not an AWS access key id (AKIA and 16 characters A-Z, 2-7) "
                            "nor a GCP service-account key id (40 hex digits) nor an Azure client secret id "
                            "(a GUID); "
                            "nothing was changed")
    return key_id


def no_holder(holders: Holders) -> ConnsyncError:
    where = ", ".join(repr(w) for w in holders.searched_workspaces)
    return ConnsyncError(f"no connection holds {holders.key_id}: not a file under the connections "
                         f"directory, not a record in the store's workspaces ({where}); nothing was changed",
                         hint="check the key id in AWS's notice; a key no connection holds is not "
                         "connsync's to rotate (aws iam update-access-key --status Inactive)")


def _admin_identity(options: IncidentOptions, key_id: str, account: str, region: str) -> Identity:
    """Who signs: never the exposed key, and someone in the key's account."""
    session = options.admin.session(region)
    current = session.get_credentials()
    if current is not None and normalised(current.access_key or "") == key_id:
        raise ConnsyncError(f"the administrator credentials are the exposed key {key_id} itself; "
                            "nothing was changed", hint="use another identity: --admin-profile, --admin-env")
    try:
        found = session.client("sts").get_caller_identity()
    except Exception as exc:  # botocore's errors, and no credentials at all
        raise ConnsyncError(f"the administrator identity ({options.admin.describe()}) cannot call STS "
                            f"({type(exc).__name__}); nothing was changed",
                            hint="pass --admin-profile PROFILE, or set the standard AWS environment",
                            ) from None
    who = Identity(str(found["Account"]), str(found["Arn"]))
    if who.account != account:
        raise ConnsyncError(f"the administrator identity {who.arn} is in account {who.account}, the exposed "
                            f"key in account {account}; nothing was changed")
    return who


def _account(holders: Holders) -> str:
    encoded = account_from_key_id(holders.key_id)
    declared = holders.accounts()
    if encoded:
        declared.add(encoded)
    if len(declared) != 1:
        raise ConnsyncError(f"the connections holding {holders.key_id} name different accounts "
                            f"({', '.join(sorted(declared)) or 'none'}); nothing was changed")
    return declared.pop()


def contain(config: Config, holders: Holders, lookup: Lookup, store: Store, options: IncidentOptions,
            echo: Echo | None, incident: Incident) -> Incident:
    """The runbook for one key; ``incident`` records the steps even when this raises.

    ``lookup`` finds the holders of another key id (an inactive second key must have none).
    """
    key_id = holders.key_id
    incident.holders = list(holders.all)
    if holders.note:
        incident.notes.append(holders.note)
    account = _account(holders)
    region = next((h.region for h in holders.all if h.region), "us-east-1")
    journal = Journal(incident, holders.all[0], store, config.root, echo)
    admin = _admin_identity(options, key_id, account, region)
    if echo:
        echo(f"  as {admin.arn}")
    iam = Iam(options.admin, region, options.timeout)
    user, incident.last_used = iam.last_used(key_id)
    incident.user = user
    keys = iam.keys(user)
    exposed = next((k for k in keys if k.key_id == key_id), None)
    if exposed is None:
        raise ConnsyncError(f"IAM does not list {key_id} among {user}'s keys; nothing was changed")
    incident.exposed_status = exposed.status.lower()
    others = [k for k in keys if k.key_id != key_id]

    # 1. Contain: the exposed key stops working before anything else happens.
    if not exposed.active:
        journal.step("exposed-already-inactive", key_id, f"{key_id} is already inactive", done=False)
    elif options.dry_run:
        journal.step("exposed-deactivate-key", key_id, f"deactivate {key_id} ({user})", done=False)
    else:
        iam.set_status(user, key_id, "Inactive")
        incident.exposed_status = "inactive"
        journal.step("exposed-deactivate-key", key_id, f"deactivated {key_id} ({user}): it signs nothing "
                     "more")
    if not options.dry_run:
        record_exposed(config, holders, store, journal)

    # 2. A new key, everywhere the old one was.
    for other in others:
        _make_room(lookup, journal, iam, user, other, options, incident)
    if options.dry_run:
        journal.step("exposed-create-key", "", f"create a new key for {user}", done=False)
        files = ", ".join(h.file for h in holders.files if h.file)
        journal.step("exposed-write-file", "", f"write it into {files or 'no file (none holds the key)'}",
                     done=False)
        if options.apply:
            journal.step("exposed-store", "", "store it, verified, in workspace " + ", ".join(
                sorted(workspaces_to_apply(config, holders))), done=False)
    else:
        new_secret = _new_key(iam, user, region, options, journal, incident)
        write_everywhere(holders, {"access_key_id": str(incident.new_key), "secret_access_key": new_secret},
                         journal, incident)
        if options.apply:
            store_everywhere(config, holders, store, journal, incident, options)

    # 3. The quarantine policy, on the user.
    attached = [(n, a) for n, a in iam.attached_policies(user)
                if n.startswith(QUARANTINE_PREFIX) and ":aws:policy/" in a]
    incident.quarantine = [n for n, _ in attached]
    if attached and options.detach_quarantine:
        for name, arn in attached:
            if options.dry_run:
                journal.step("exposed-detach-quarantine", key_id, f"detach {name} from {user}", done=False)
            else:
                iam.detach(user, arn)
                journal.step("exposed-detach-quarantine", key_id, f"detached {name} from {user}")
        incident.quarantine = [] if not options.dry_run else incident.quarantine
    incident.next_steps = _next_steps(config, holders, incident, region, attached, options)
    return incident


def _make_room(lookup: Lookup, journal: Journal, iam: Iam, user: str, other: AccessKey,
               options: IncidentOptions, incident: Incident) -> None:
    """AWS allows two keys per user: only an inactive second key may go, and only when asked."""
    if other.active:
        raise RotationFailed(
            f"{user} has a second active key, {other.describe()}; AWS allows two keys, so no new key can be "
            f"made, and connsync never touches an active second key. {incident.state()}",
            hint=f"if {other.key_id} is safe, put it into the files ('connsync set'); otherwise deactivate "
            "it yourself and run 'connsync rotate --exposed' again with --delete-inactive")
    if not options.delete_inactive:
        raise RotationFailed(f"{user} already has two keys ({other.describe()}); {incident.state()}",
                             hint=f"run again with --delete-inactive to delete the inactive {other.key_id}")
    declared = lookup(other.key_id).all
    if declared:
        held = ", ".join(h.describe() for h in declared)
        raise RotationFailed(f"{other.key_id} is inactive but still held by {held}; nothing was deleted; "
                             f"{incident.state()}")
    if options.dry_run:
        journal.step("exposed-delete-inactive-key", other.key_id, f"delete the inactive {other.key_id}",
                     done=False)
        return
    iam.delete(user, other.key_id)
    journal.step("exposed-delete-inactive-key", other.key_id, f"deleted the inactive {other.key_id}")


def _new_key(iam: Iam, user: str, region: str, options: IncidentOptions, journal: Journal,
             incident: Incident) -> Secret:
    new, secret = iam.create(user)
    incident.new_key = new.key_id
    try:
        journal.step("exposed-create-key", new.key_id, f"created {new.key_id} for {user}")
        accepted, tries = wait_until_accepted(new.key_id, secret, region, timeout=options.timeout,
                                              deadline_seconds=options.wait_seconds)
    except BaseException as exc:
        raise take_back(incident, exc, lambda: iam.delete(user, new.key_id)) from None
    incident.arn = accepted.arn
    journal.step("exposed-key-accepted", new.key_id, f"STS accepts {new.key_id} as {accepted.arn} "
                 f"(after {tries} {'try' if tries == 1 else 'tries'})")
    return secret


def _next_steps(config: Config, holders: Holders, incident: Incident, region: str,
                attached: list[tuple[str, str]], options: IncidentOptions) -> list[str]:
    key, user = incident.key_id, shlex.quote(incident.user or "USER")
    used = incident.last_used.get("LastUsedDate")
    steps = [
        (f"the exposed key was last used {used:%Y-%m-%d %H:%M} UTC" if hasattr(used, "strftime")
         else "IAM has no record of the exposed key being used")
        + (f" ({incident.last_used.get('ServiceName')}, {incident.last_used.get('Region')})" if used else "")
        + " (GetAccessKeyLastUsed)",
        f"see what it did: aws cloudtrail lookup-events --region {shlex.quote(region)} --lookup-attributes "
        f"AttributeKey=AccessKeyId,AttributeValue={key} (in every region you use; 90 days of history)",
    ]
    steps += follow_up(holders, incident, options)
    if attached and not options.detach_quarantine:
        steps.append("once CloudTrail shows nothing more, detach AWS's quarantine policy (until then "
                     "'connsync verify' and the apply job fail with the exposure message): "
                     + "; ".join(f"aws iam detach-user-policy --user-name {user} --policy-arn {a}"
                                 for _, a in attached))
    steps.append(f"when the investigation is over, delete the exposed key: aws iam delete-access-key "
                 f"--user-name {user} --access-key-id {key}")
    return steps
