"""``rotate --exposed SECRET_ID`` for an Azure client secret (Graph's passwordCredential ``keyId``, a GUID).

Files hold the secret, not its id, and Graph shows a secret only by its key id
and ``hint`` (its first three characters). So the holders are found through
Graph, with the environment's app (AZURE_TENANT_ID / AZURE_CLIENT_ID /
AZURE_CLIENT_SECRET, an administrator's, allowed Application.Read.All or
more): every application the Azure connections name in that tenant is listed
once; the one whose ``passwordCredentials`` has the key id is the exposed
secret's app, and a connection of that app holds the exposed secret when its
secret begins with the hint (or its ``client_secret_id`` is the key id).

The order, which differs from AWS's: an Azure client secret cannot be
disabled, only removed, and a removal cannot be undone. Removing it first
would leave every consumer without a working secret until the new one is
written and stored, and with nothing at all if ``addPassword`` then failed. So:

1. ``addPassword`` (the new secret, valid ``--expires-in-days``), used until
   Entra ID issues a token with it;
2. written into every file that held the exposed secret (``sops set``), and
   with ``--apply`` stored (verified) under each workspace's lock;
3. ``removePassword`` of the exposed secret, in the same command, seconds
   after step 1 — and as soon as the new secret is in a file, even when
   storing fails: containment never waits for the store.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Callable
from pathlib import Path

from connsync import sops
from connsync.config import Config
from connsync.errors import ConnsyncError
from connsync.model import Declaration, Secret, StoredConnection
from connsync.providers import azure_secrets as graph
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
from connsync.providers.key_holders import Fields, Holder, Holders
from connsync.providers.rotation import Echo, RotationFailed
from connsync.store import Store, opened
from connsync.validate import rules

CREDENTIAL = "client secret"
PLAN = "a new client secret into every file that held it, then remove it"
_GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def key_id_of(raw: str) -> str | None:
    """The key id when ``raw`` is a GUID (the portal's "Secret ID"; pasted with spaces, braces, any case)."""
    key_id = "".join(raw.split()).strip("{}").lower()
    return key_id if _GUID_RE.match(key_id) else None


@dataclasses.dataclass(frozen=True)
class SecretOf(Fields):
    """Holds the exposed secret: a connection of ``client_id`` whose secret begins with ``hint``."""

    client_id: str = ""
    hint: str = ""
    decrypt: Callable[[Declaration], Secret] | None = None

    def _declared(self, spec: object, key_id: str) -> bool | None:
        """True when the connection names ``key_id`` (``client_secret_id``), False when it is another
        application's, else None: ask the secret. A named id that is stale (a secret set by hand) still
        leaves the secret to be asked: a holder too many gets a new secret, one too few keeps the leak."""
        if not isinstance(spec, dict) or str(spec.get("client_id", "")).lower() != self.client_id.lower():
            return False
        named = spec.get("client_secret_id")
        return True if isinstance(named, str) and named.lower() == key_id else None

    def holds_file(self, decl: Declaration, key_id: str) -> bool:
        if decl.provider != "azure":
            return False
        declared = self._declared(decl.spec, key_id)
        if declared is not None:
            return declared
        if not self.hint:  # Graph shows no first characters: every connection of the app (find_holders)
            return True
        secret = (self.decrypt or _secret_in)(decl)
        return secret is not None and secret.reveal().startswith(self.hint)

    def holds_record(self, store: Store, record: StoredConnection, key_id: str) -> bool:
        if record.provider != "azure":
            return False
        declared = self._declared(dict(record.spec), key_id)
        if declared is not None:
            return declared
        if not self.hint:
            return True
        secret = store.read_secrets(record.name).get("client_secret")
        return secret is not None and secret.reveal().startswith(self.hint)

    def may_hold(self, decl: Declaration, key_id: str) -> bool:
        return decl.provider == "azure" and self._declared(decl.spec, key_id) is not False


def _secret_in(decl: Declaration) -> Secret | None:
    return sops.decrypt(decl, Path(decl.file)).secrets.get("client_secret")


@dataclasses.dataclass(frozen=True)
class _App:
    client_id: str
    tenant: str
    cloud: str


def _apps(config: Config, store: Store) -> list[_App]:
    """Every application the Azure connections name: files, and records of every workspace."""
    found: dict[str, _App] = {}

    def add(spec: object) -> None:
        if isinstance(spec, dict) and isinstance(spec.get("client_id"), str):
            app = _App(str(spec["client_id"]).lower(), str(spec.get("tenant_id", "")).lower(),
                       str(spec.get("cloud") or "AzureCloud"))
            found.setdefault(app.client_id, app)

    for decl in rules.validate_files([], config.connections_dir).valid_declarations():
        if decl.provider == "azure":
            add(decl.spec)
    lister = getattr(store, "workspaces", None)
    for workspace in sorted({config.workspace, *(lister() if callable(lister) else [])}):
        with opened(config.store_url, workspace, create=False) as other:
            for record in other.records():
                if record.provider == "azure":
                    add(dict(record.spec))
    return sorted(found.values(), key=lambda a: a.client_id)


def find_holders(config: Config, key_id: str, store: Store) -> Holders:
    """Which connections hold the secret ``key_id``: one Graph listing per application, as the admin."""
    from connsync.providers import key_holders

    signer = graph.environment_signer()
    apps = _apps(config, store)
    here = [a for a in apps if a.tenant == signer.tenant.lower()]
    notes = [f"app {a.client_id} is in tenant {a.tenant}, not the environment's tenant {signer.tenant}: "
             "not searched" for a in apps if a not in here]
    owner: _App | None = None
    exposed: graph.Password | None = None
    same_hint: list[str] = []
    token = graph.token(signer, here[0].cloud, config.verify) if here else ""
    for app in here:
        try:
            listing = graph.Applications(signer, app.client_id, app.cloud, config.verify, token_text=token)
        except graph.GraphError as exc:
            notes.append(f"app {app.client_id} could not be searched ({exc.message})")
            continue
        try:
            passwords = listing.passwords()
        except graph.GraphError as exc:
            notes.append(f"app {app.client_id} could not be searched ({exc.message})")
            continue
        finally:
            listing.close()
        exposed = next((p for p in passwords if p.key_id.lower() == key_id), None)
        if exposed is not None:
            owner = app
            same_hint = [p.key_id for p in passwords if p.key_id.lower() != key_id and exposed.hint
                         and p.hint == exposed.hint]
            break
    if owner is None or exposed is None:
        found = key_holders.Holders(key_id, (), (), (config.workspace,))
        return dataclasses.replace(found, note="; ".join(notes) or None)
    _not_the_exposed_secret(signer, owner, exposed)
    if not exposed.hint:
        notes.append(f"Graph shows no hint (first characters) for {key_id}, as for secrets made before it "
                     f"had them: every connection of app {owner.client_id} is counted as a holder (each gets "
                     "the new secret; only the exposed one is removed), since a holder missed would lose "
                     "its secret with it")
    if same_hint:
        notes.append(f"Graph shows secrets only by their first three characters, and "
                     f"{', '.join(same_hint)} begin{'s' if len(same_hint) == 1 else ''} as {key_id} does: a "
                     "connection holding one of them is counted as a holder too (it gets the new secret; "
                     "only the exposed one is removed)")
    fields = SecretOf("", "client_id", owner.client_id, exposed.hint)
    holders = key_holders.find(config, key_id, store, fields)
    return dataclasses.replace(holders, note="; ".join(filter(None, [holders.note, *notes])) or None)


def _not_the_exposed_secret(signer: graph.Signer, app: _App, exposed: graph.Password) -> None:
    if signer.client.lower() == app.client_id and exposed.hint and signer.secret.reveal().startswith(
            exposed.hint):
        raise ConnsyncError(f"the environment's client secret is (by its first characters) the exposed "
                            f"secret {exposed.key_id} itself; nothing was changed",
                            hint="set AZURE_CLIENT_ID / AZURE_CLIENT_SECRET to another app's (an "
                            "administrator's, allowed Application.ReadWrite.All)")


def no_holder(holders: Holders) -> ConnsyncError:
    where = ", ".join(repr(w) for w in holders.searched_workspaces)
    searched = f" ({holders.note})" if holders.note else ""
    return ConnsyncError(f"no connection holds the Azure client secret {holders.key_id}: no application the "
                         f"connections name lists it with a secret they hold (files under the connections "
                         f"directory, records in the store's workspaces: {where}){searched}; nothing was "
                         "changed", hint="check the Secret ID (Certificates & secrets in the app "
                         "registration); a secret no connection holds is not connsync's to rotate (az ad app "
                         "credential delete --id APP_ID --key-id SECRET_ID)")


def contain(config: Config, holders: Holders, lookup: Lookup, store: Store, options: IncidentOptions,
            echo: Echo | None, incident: Incident) -> Incident:
    """The runbook for one client secret; ``incident`` records the steps even when this raises."""
    del lookup  # an application may have many secrets: there is no second one to make room from
    key_id = holders.key_id
    incident.holders = list(holders.all)
    if holders.note:
        incident.notes.append(holders.note)
    apps = holders.accounts()
    if len(apps) != 1:
        raise ConnsyncError(f"the connections holding {key_id} name different applications "
                            f"({', '.join(sorted(apps)) or 'none'}); nothing was changed")
    client = apps.pop()
    incident.user = f"app {client}"
    files = [h for h in holders.files if h.declaration is not None and h.file]
    if not files:
        raise ConnsyncError(f"no file declares {key_id} (only the store's records hold it), so a new secret "
                            "would be written nowhere; nothing was changed",
                            hint=f"az ad app credential delete --id {client} --key-id {key_id}")
    first = files[0].declaration
    assert first is not None
    tenant, cloud = str(first.spec.get("tenant_id", "")), str(first.spec.get("cloud") or "AzureCloud")
    journal = Journal(incident, holders.all[0], store, config.root, echo)
    signer = graph.environment_signer()
    api = graph.Applications(signer, client, cloud, config.verify)
    try:
        exposed = next((p for p in api.passwords() if p.key_id.lower() == key_id), None)
        if exposed is None:
            raise ConnsyncError(f"Graph does not list {key_id} among app {client}'s secrets; nothing was "
                                "changed")
        incident.exposed_status = f"valid until {exposed.expires or '?'}"
        if options.dry_run:
            _dry_run(journal, client, files, options)
        else:
            record_exposed(config, holders, store, journal)
            _replace(config, holders, store, api, tenant, client, cloud, options, journal, incident)
    finally:  # after a failure too: the exposed secret was out there either way
        api.close()
        incident.next_steps = _next_steps(holders, incident, options, client, first)
    return incident


def _dry_run(journal: Journal, client: str, files: list[Holder], options: IncidentOptions) -> None:
    journal.step("exposed-create-key", "", f"add a client secret to app {client}, expiring in "
                 f"{options.expires_in_days} days", done=False)
    journal.step("exposed-write-file", "", "write it into " + ", ".join(str(h.file) for h in files),
                 done=False)
    if options.apply:
        journal.step("exposed-store", "", "store it, verified", done=False)
    journal.step("exposed-remove-secret", journal.incident.key_id, f"remove {journal.incident.key_id} "
                 f"(app {client})", done=False)


def _replace(config: Config, holders: Holders, store: Store, api: graph.Applications, tenant: str,
             client: str, cloud: str, options: IncidentOptions, journal: Journal,
             incident: Incident) -> None:
    """The new secret, accepted, then in every file and (``--apply``) the store; then the exposed one goes."""
    from connsync.providers.azure_rotation import secret_fields, wait_accepted

    new, secret = api.add(options.expires_in_days)
    incident.new_key = new.key_id
    try:
        journal.step("exposed-create-key", new.key_id, f"added secret {new.key_id} to app {client}, expiring "
                     f"{new.expires or '?'} (in {options.expires_in_days} days)")
        tries = wait_accepted(tenant, client, cloud, secret, config.verify, options.wait_seconds)
    except BaseException as exc:
        raise take_back(incident, exc, lambda: api.remove(new.key_id)) from None
    journal.step("exposed-key-accepted", new.key_id, f"Entra ID accepts {new.key_id} (after {tries} "
                 f"{'try' if tries == 1 else 'tries'})")
    replace_then_retire(config, holders, store, journal, incident, options, secret_fields(new, secret),
                        lambda failing: _remove_exposed(api, holders.key_id, client, journal, incident,
                                                        failing=failing),
                        lambda: api.remove(new.key_id), _redo)


def _redo(holder: Holder) -> str:
    """Not ``rotate --exposed`` again: the exposed secret is gone from Graph, and the runbook finds holders
    through Graph; the file's own rotation, signed by the administrator app, gives it a secret of its own."""
    return f"give it a secret of its own: connsync rotate --admin-env {shlex.quote(holder.name)}"


def _remove_exposed(api: graph.Applications, key_id: str, client: str, journal: Journal, incident: Incident,
                    *, failing: bool = False) -> None:
    try:
        api.remove(key_id)
    except ConnsyncError as exc:
        if failing:  # the failure under way is the one to report; this one is in the state
            incident.notes.append(f"removing the exposed secret failed too ({exc.message})")
            return
        raise RotationFailed(f"removing {key_id} failed ({exc.message}); {incident.state()}",
                             hint=f"remove it now: az ad app credential delete --id {client} --key-id "
                             f"{key_id}") from None
    incident.exposed_status = "removed"
    journal.step("exposed-remove-secret", key_id, f"removed {key_id} from app {client}: it signs nothing "
                 "more (a removed secret cannot come back)")


def _next_steps(holders: Holders, incident: Incident, options: IncidentOptions, client: str,
                decl: Declaration) -> list[str]:
    key = incident.key_id
    subscription = shlex.quote(str(decl.spec.get("subscription_id", "SUBSCRIPTION")))
    steps = [f"see when it signed in: Entra ID's sign-in logs, service principal sign-ins of application "
             f"{client}, credential key id {key}",
             f"see what it did: az monitor activity-log list --subscription {subscription} --caller {client} "
             "--offset 30d (and the other subscriptions the app may reach)"]
    steps += follow_up(holders, incident, options)
    if incident.exposed_status != "removed":
        steps.append(f"remove the exposed secret: az ad app credential delete --id {client} --key-id {key}")
    return steps
