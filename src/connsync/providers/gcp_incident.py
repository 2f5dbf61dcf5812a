"""``rotate --exposed KEY_ID`` for a GCP service-account key (``private_key_id``, 40 hex digits).

Google's order for a leaked key, with the environment's Google credentials
(an administrator's; never the exposed key, which signs nothing):

1. Find every holder (:mod:`connsync.providers.key_holders`); none: nothing changes.
2. A new key for the same service account (``keys.create``), used until Google
   accepts it, written into every file that held the old one (``sops set``),
   and with ``--apply`` stored (verified) under each workspace's lock.
3. **Disable the exposed key** (``keys.disable``, reversible); deleting it is
   left for when the investigation is over. Once a file holds the new key the
   exposed one is disabled whatever happens next (a store that refuses the
   new key): containment never waits for the store.

The shared steps (the journal, the ``exposed`` audit entries, storing) are
:mod:`connsync.providers.aws_incident`'s; what differs is the IAM API.
"""

from __future__ import annotations

import re
import shlex

from connsync.config import Config
from connsync.errors import ConnsyncError
from connsync.model import Declaration, Secret
from connsync.providers import gcp_keys, key_holders
from connsync.providers.incident import (
    Incident,
    IncidentOptions,
    Journal,
    Lookup,
    follow_up,
    record_exposed,
    replace_then_retire,
    take_back,
)
from connsync.providers.key_holders import Fields, Holders
from connsync.providers.rotation import Echo, RotationFailed
from connsync.store import Store

FIELDS = Fields("private_key_id", "client_email")  # where a connection holds the key id, and its account
CREDENTIAL = "key"
PLAN = "a new key into every file that held it, then disable it"
_KEY_ID_RE = re.compile(r"^[0-9a-f]{40}$")


def find_holders(config: Config, key_id: str, store: Store) -> Holders:
    return key_holders.find(config, key_id, store, FIELDS)


def key_id_of(raw: str) -> str | None:
    """The key id when ``raw`` is a GCP service-account key id (pasted with spaces or in upper case)."""
    key_id = "".join(raw.split()).lower()
    return key_id if _KEY_ID_RE.match(key_id) else None


def no_holder(holders: Holders) -> ConnsyncError:
    where = ", ".join(repr(w) for w in holders.searched_workspaces)
    return ConnsyncError(f"no connection holds the GCP key {holders.key_id}: not a file under the "
                         f"connections directory, not a record in the store's workspaces ({where}); "
                         "nothing was changed",
                         hint="a key no connection holds is not connsync's to rotate (gcloud iam "
                         "service-accounts keys disable KEY_ID --iam-account EMAIL)")


def _service_account(holders: Holders) -> str:
    emails = holders.accounts()
    if len(emails) != 1:
        raise ConnsyncError(f"the connections holding {holders.key_id} name different service accounts "
                            f"({', '.join(sorted(emails)) or 'none'}); nothing was changed")
    return emails.pop()


def _admin(key_id: str) -> object:
    credentials = gcp_keys.admin_credentials()
    signer = getattr(credentials, "signer", None)
    if getattr(signer, "key_id", None) == key_id:
        raise ConnsyncError(f"the environment's Google credentials are the exposed key {key_id} itself; "
                            "nothing was changed", hint="point GOOGLE_APPLICATION_CREDENTIALS at another "
                            "identity's key")
    return credentials


def contain(config: Config, holders: Holders, lookup: Lookup, store: Store, options: IncidentOptions,
            echo: Echo | None, incident: Incident) -> Incident:
    """The runbook for one GCP key; ``incident`` records the steps even when this raises."""
    del lookup  # a service account may have ten keys: there is no second key to make room from
    key_id = holders.key_id
    incident.holders = list(holders.all)
    if holders.note:
        incident.notes.append(holders.note)
    incident.user = email = _service_account(holders)
    files = [h for h in holders.files if h.declaration is not None and h.file]
    if not files:
        raise ConnsyncError(f"no file declares {key_id} (only the store's records hold it), so a new key "
                            "would be written nowhere; nothing was changed",
                            hint=f"gcloud iam service-accounts keys disable {key_id} --iam-account {email}")
    journal = Journal(incident, holders.all[0], store, config.root, echo)
    api = gcp_keys.KeysApi(_admin(key_id), email, config.verify, "the environment's Google credentials")
    try:
        listed = api.keys()
        exposed = next((k for k in listed if k.key_id == key_id), None)
        if exposed is None:
            raise ConnsyncError(f"IAM does not list {key_id} among {email}'s keys; nothing was changed")
        incident.exposed_status = exposed.status.lower()
        if options.dry_run:
            journal.step("exposed-create-key", "", f"create a new key for {email}", done=False)
            journal.step("exposed-write-file", "", "write it into " + ", ".join(str(h.file) for h in files),
                         done=False)
            if options.apply:
                journal.step("exposed-store", "", "store it, verified", done=False)
            journal.step("exposed-disable-key", key_id, f"disable {key_id} ({email})", done=False)
        else:
            record_exposed(config, holders, store, journal)
            assert files[0].declaration is not None
            pem = _new_key(api, email, files[0].declaration, config, options, journal, incident)
            assert incident.new_key is not None
            replace_then_retire(config, holders, store, journal, incident, options,
                                {FIELDS.key_id: incident.new_key, "private_key": pem},
                                lambda failing: _disable(api, exposed, email, journal, incident, failing),
                                lambda: api.delete(str(incident.new_key)))
    finally:  # after a failure too: the exposed key was out there either way
        api.close()
        incident.next_steps = _next_steps(holders, incident, options)
    return incident


def _disable(api: gcp_keys.KeysApi, exposed: gcp_keys.SaKey, email: str, journal: Journal,
             incident: Incident, failing: bool) -> None:
    key_id = exposed.key_id
    if exposed.disabled:
        journal.step("exposed-already-disabled", key_id, f"{key_id} is already disabled", done=False)
        return
    try:
        api.disable(key_id)
    except ConnsyncError as exc:
        if failing:  # the failure under way is the one to report; this one is in the state
            incident.notes.append(f"disabling the exposed key failed too ({exc.message})")
            return
        raise RotationFailed(f"disabling {key_id} failed ({exc.message}); {incident.state()}",
                             hint=f"gcloud iam service-accounts keys disable {key_id} --iam-account "
                             f"{email}") from None
    incident.exposed_status = "disabled"
    journal.step("exposed-disable-key", key_id, f"disabled {key_id} ({email}): it signs nothing more; "
                 "'gcloud iam service-accounts keys enable' undoes it")


def _new_key(api: gcp_keys.KeysApi, email: str, decl: Declaration, config: Config, options: IncidentOptions,
             journal: Journal, incident: Incident) -> Secret:
    new, new_email, pem = api.create()
    incident.new_key = new.key_id
    try:
        journal.step("exposed-create-key", new.key_id, f"created {new.key_id} for {email}")
        tries = gcp_keys.accepted(decl.spec, decl, email, new_email, new.key_id, pem, config.verify,
                                  options.wait_seconds)
    except BaseException as exc:
        raise take_back(incident, exc, lambda: api.delete(new.key_id)) from None
    journal.step("exposed-key-accepted", new.key_id, f"Google accepts {new.key_id} (after {tries} "
                 f"{'try' if tries == 1 else 'tries'})")
    return pem


def _next_steps(holders: Holders, incident: Incident, options: IncidentOptions) -> list[str]:
    key, email = incident.key_id, shlex.quote(incident.user or "EMAIL")
    steps = [f"see what it did: the project's Cloud Audit Logs, filtered on "
             f"protoPayload.authenticationInfo.serviceAccountKeyName ending in {key}"]
    steps += follow_up(holders, incident, options)
    steps.append(f"when the investigation is over, delete the exposed key: gcloud iam service-accounts keys "
                 f"delete {key} --iam-account {email}")
    return steps
