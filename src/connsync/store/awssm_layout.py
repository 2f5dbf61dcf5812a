"""How the Secrets Manager store lays a workspace out: URL, secret names, tokens, metadata, errors.

One secret per connection at ``PREFIX/WORKSPACE/SLUG``. What a plan needs is in
the secret's Description (compact JSON, written in the same ``UpdateSecret``
call as the value, so the two never disagree); tags carry only what filters and
other tools need. Names that start with a dot (``PREFIX/.connsync``,
``PREFIX/WORKSPACE/.lock``) are connsync's own and never a connection: a slug
never starts with a dot.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connsync.errors import StoreError, StoreUnavailable, VersionConflict
from connsync.model import StoredConnection, connection_id, slug, unslug
from connsync.store.base import Snapshot, Write

SCHEME = "awssm"
MANAGED_TAG = ("managed-by", "connsync")
WORKSPACE_TAG = "connsync:workspace"
DESCRIPTION_LIMIT = 2048  # characters (botocore's DescriptionType)
NAME_LIMIT = 512
_PREFIX = re.compile(r"[A-Za-z0-9_+=.@-]+(/[A-Za-z0-9_+=.@-]+)*")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
_TOKENS = uuid.UUID("5d0c4f8e-8a55-4d39-9f5e-2f1d3c0e7a11")  # connsync's uuid5 namespace
POLICY_HINT = "grant it the least-privilege policy in the README (section 'AWS Secrets Manager store')"


@dataclass(frozen=True)
class Target:
    """``awssm://REGION/PREFIX?kms_key_id=…&endpoint_url=…&recovery_window_days=…&lock_lease_seconds=…``."""

    region: str
    prefix: str
    endpoint_url: str | None = None
    kms_key_id: str | None = None
    recovery_window_days: int = 7
    lock_lease_seconds: float = 60.0
    value_format: str = "connsync"  # or "airflow": AWS connections also in Airflow's Connection keys

    @property
    def shown(self) -> str:
        return f"{SCHEME}://{self.region}/{self.prefix}"

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        prefix = parts.path.strip("/")
        if parts.scheme != SCHEME or not parts.netloc or not prefix:
            raise StoreError(f"store URL {url[:120]!r} is not awssm://REGION/PREFIX",
                             hint="e.g. awssm://eu-west-1/platform/connections")
        if not _REGION.fullmatch(parts.netloc):
            raise StoreError(f"{parts.netloc[:40]!r} in the store URL is not an AWS region",
                             hint="e.g. awssm://eu-west-1/platform/connections")
        if not _PREFIX.fullmatch(prefix) or len(prefix) > 200:
            raise StoreError(f"the prefix {prefix[:80]!r} cannot start a secret name",
                             hint="letters, digits and /_+=.@- only, up to 200 characters")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = sorted(set(query) - {"endpoint_url", "kms_key_id", "recovery_window_days",
                                       "lock_lease_seconds", "format"})
        if unknown:
            raise StoreError(f"unknown option {unknown[0][:40]!r} in the store URL",
                             hint="known: endpoint_url, kms_key_id, recovery_window_days, "
                             "lock_lease_seconds, format")
        window = _number(query, "recovery_window_days", 7)
        if not 7 <= window <= 30 or window != int(window):
            raise StoreError("recovery_window_days must be a whole number from 7 to 30 "
                             "(Secrets Manager's range)",
                             hint="connsync never deletes without a recovery window")
        lease = _number(query, "lock_lease_seconds", 60)
        if not 1 <= lease <= 3600:
            raise StoreError("lock_lease_seconds must be from 1 to 3600")
        value_format = query.get("format") or "connsync"
        if value_format not in ("connsync", "airflow"):
            raise StoreError(f"format={value_format[:40]!r} in the store URL is not connsync or airflow")
        return cls(parts.netloc, prefix, query.get("endpoint_url") or None, query.get("kms_key_id") or None,
                   int(window), lease, value_format)

    # --- names -----------------------------------------------------------------

    def meta_name(self) -> str:
        return f"{self.prefix}/.connsync"

    def workspace_prefix(self, workspace: str) -> str:
        return f"{self.prefix}/{slug(workspace)}/"

    def lock_name(self, workspace: str) -> str:
        return f"{self.workspace_prefix(workspace)}.lock"

    def secret_name(self, workspace: str, name: str, conn_id: str | None = None) -> str:
        """Where connection ``name`` lives: its id, readable (``EU-Prod`` -> ``eu-prod``), is Airflow's
        conn_id under ``PREFIX/WORKSPACE`` as connections_prefix."""
        full = self.workspace_prefix(workspace) + connection_id(name, conn_id)
        if len(full) > NAME_LIMIT:
            raise StoreError(f"the secret name for {name[:60]!r} would be {len(full)} characters; "
                             f"Secrets Manager allows {NAME_LIMIT}", hint="use a shorter connection name")
        return full

    def resource(self, name: str) -> str:
        """The ARN pattern an IAM policy names for this secret (account and random suffix open)."""
        return f"arn:aws:secretsmanager:{self.region}:*:secret:{name}-??????"


def _number(query: Mapping[str, str], key: str, default: float) -> float:
    try:
        return float(query.get(key) or default)
    except ValueError:
        raise StoreError(f"{key} in the store URL is not a number") from None


def version_token(workspace: str, name: str, life: str, version: int) -> str:
    """The ClientRequestToken (and so the VersionId) of one record version.

    Deterministic: two writers of the same next version send the same token, and
    Secrets Manager accepts only one value per token. ``life`` is new for each
    creation, so a name deleted and created again never reuses a token.
    """
    return str(uuid.uuid5(_TOKENS, f"{workspace}\0{name.casefold()}\0{life}\0{version}"))


def current_version_id(entry: Mapping[str, Any]) -> str | None:
    stages = entry.get("SecretVersionsToStages") or entry.get("VersionIdsToStages") or {}
    return next((vid for vid, labels in stages.items() if "AWSCURRENT" in labels), None)


def tags_of(entry: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in entry.get("Tags") or []}


def is_managed(entry: Mapping[str, Any]) -> bool:
    return tags_of(entry).get(MANAGED_TAG[0]) == MANAGED_TAG[1]


def compact(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def airflow_fields(provider: str, spec: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """What Airflow's SecretsManagerBackend reads as a Connection from a JSON secret.

    It picks ``conn_type``, ``login``, ``password``, ``extra`` (and host, port, schema) by key and
    ignores every other key, so these sit beside connsync's own in the same value. The extras are
    the ones the providers' hooks read: the amazon provider's AwsConnectionWrapper (``region_name``,
    ``role_arn``, ``assume_role_method``, ``assume_role_kwargs``), the microsoft-azure provider's
    AzureBaseHook (``tenantId``, ``subscriptionId``; client id and secret as login and password) and
    the google provider's GoogleBaseHook (``keyfile_dict``, ``project``).
    """
    if provider == "aws":
        extra: dict[str, Any] = {"region_name": spec.get("default_region")}
        if spec.get("role_arn"):
            kwargs: dict[str, Any] = {}
            if "external_id" in secrets:
                kwargs["ExternalId"] = secrets["external_id"]
            if "session_duration_seconds" in spec:
                kwargs["DurationSeconds"] = spec["session_duration_seconds"]
            extra.update(role_arn=spec["role_arn"], assume_role_method="assume_role",
                         assume_role_kwargs=kwargs)
        # A role without a base key: Airflow's own identity assumes it (no login, no password).
        return {"conn_type": "aws", "login": spec.get("access_key_id"),
                "password": secrets.get("secret_access_key"), "extra": extra}
    if provider == "azure":
        return {"conn_type": "azure", "login": spec.get("client_id"),
                "password": secrets.get("client_secret"),
                "extra": {"tenantId": spec.get("tenant_id"), "subscriptionId": spec.get("subscription_id")}}
    if provider == "gcp":
        keyfile = {"type": "service_account", "project_id": spec.get("project_id"),
                   "private_key_id": spec.get("private_key_id"), "private_key": secrets.get("private_key"),
                   "client_email": spec.get("client_email"), "token_uri": "https://oauth2.googleapis.com/token"}
        return {"conn_type": "google_cloud_platform",
                "extra": {"project": spec.get("project_id"), "keyfile_dict": keyfile}}
    return {}


def parse_meta(text: str | None) -> dict[str, Any] | None:
    """connsync's metadata from a Description, or None for anybody else's description."""
    if not text or not text.startswith('{"'):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("connsync") == 1 else None


# What connsync writes in a record's Description: key -> (type, may it be null). Anyone who may
# edit the secret may edit its Description; a value of another type is a damaged record.
_META_TYPES: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "n": (str, False), "p": (str, False), "s": (dict, False), "f": (dict, False), "v": (int, False),
    "sv": (int, True), "m": (bool, False), "src": (str, True), "dg": (str, True), "g": (str, True),
    "at": (str, False), "by": (str, False), "d": (str, True), "l": (dict, True), "life": (str, False),
}
_LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()  # the last second iso() can show


def check_meta(meta: dict[str, Any], secret: str, *, record: bool = True) -> dict[str, Any]:
    """``meta`` when its values have the types connsync writes; else a StoreError naming the secret."""
    problem = _meta_problem(meta, record)
    if problem:
        raise StoreError(f"the secret {secret[:300]} holds a connsync Description that is damaged "
                         f"({problem}); nothing was changed",
                         hint="another client edited its Description; restore it from the secret's "
                         "previous version, or delete the record and apply again")
    return meta


def _meta_problem(meta: dict[str, Any], record: bool) -> str | None:
    for key, (kind, nullable) in (_META_TYPES.items() if record else ()):
        value = meta.get(key)
        if value is None and nullable:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"{key!r} is {_kind(value)}"
    history = meta.get("h")
    if not isinstance(history, (list, type(None))):
        return f"its audit history is {_kind(history)}"
    return next((p for p in map(_history_problem, history or []) if p), None)


def _history_problem(row: object) -> str | None:
    if not isinstance(row, list) or len(row) < 7:
        return f"an audit entry is {_kind(row)}, not a list of 7 or 8 values"
    action, before, after, actor, at, git_revision, source, *named = row
    if not isinstance(at, (int, float)) or isinstance(at, bool) or not 0 <= at <= _LATEST:
        return f"an audit time is {_kind(at)}, not a time in seconds since 1970"
    texts = [action, actor, *named[:1]]
    if not all(isinstance(t, str) for t in texts) or not all(isinstance(t, (str, type(None)))
                                                             for t in (git_revision, source)):
        return "an audit entry's action, actor, revision or source is not text"
    if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (before, after)):
        return "an audit entry's version is not a whole number"
    return None


def _kind(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"the number {value!r:.40}"
    return "missing" if value is None else f"a {type(value).__name__}"


def fit_description(meta: dict[str, Any], name: str) -> str:
    """The metadata as a Description: the oldest audit entries go first; the record itself must fit."""
    history = list(meta.get("h") or [])
    while True:
        text = compact({**meta, "h": history})
        if len(text) <= DESCRIPTION_LIMIT:
            return text
        if len(history) <= 1:
            raise StoreError(
                f"the record of {name[:80]!r} needs {len(text)} characters of metadata and a Secrets "
                f"Manager description holds {DESCRIPTION_LIMIT}; nothing was written",
                hint="shorten its description, labels or clear fields")
        history.pop(0)


def record_meta(record: StoredConnection, life: str, history: list[Any],
                conn_id: str | None = None) -> dict[str, Any]:
    return {"connsync": 1, **({"id": conn_id} if conn_id else {}), "n": record.name, "p": record.provider,
            "s": dict(record.spec),
            "f": dict(record.fingerprints), "v": record.version, "sv": record.synced_version,
            "m": record.managed, "src": record.source, "dg": record.source_digest, "g": record.git_revision,
            "at": record.updated_at, "by": record.updated_by, "d": record.description,
            "l": dict(record.labels), "life": life, "h": history}


def foreign_record(segment: str, entry: dict[str, Any]) -> StoredConnection:
    """A secret at our path that connsync did not write: unmanaged, version 0, nothing known.

    Only a segment that is the slug of its own decoding is taken as a connection's name: any other
    (``AWS Prod`` with capitals, say) is a secret no connection maps to, named so in ``list``.
    """
    try:
        name = unslug(segment)
        canonical = slug(name) == segment
    except (ValueError, UnicodeDecodeError, IndexError):
        canonical = False
    if not canonical:
        name = f"{segment} (not a connsync secret name)"
    changed = entry.get("LastChangedDate") or entry.get("CreatedDate")
    at = iso(changed.timestamp() if isinstance(changed, datetime) else float(changed or 0))
    return StoredConnection(name=name, provider="unknown", spec={}, fingerprints={}, version=0, managed=False,
                            updated_at=at, updated_by="outside connsync")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def epoch(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def check_restorable(held: list[StoredConnection], workspace: str, shown: str, overwrite: bool,
                     service: str) -> None:
    """What ``store copy`` refuses before writing into a workspace of Secrets Manager or Vault: records
    there without --replace, and secrets that are not connsync's (never deleted by it)."""
    if held and not overwrite:
        raise StoreError(f"workspace {workspace!r} of {shown} already holds {len(held)} record(s); nothing "
                         "was copied", hint="pass --replace to overwrite them")
    foreign = [r.name for r in held if not r.version]
    if foreign:
        raise StoreError(f"{len(foreign)} secret(s) in workspace {workspace!r} of {shown} are not connsync's "
                         f"(e.g. {foreign[0][:80]!r}); nothing was copied",
                         hint=f"move or delete them in {service} first: connsync never deletes them")


def copies(snapshot: Snapshot, actor: str) -> Iterator[tuple[StoredConnection, Write, list[list[Any]]]]:
    """Each record of ``snapshot`` as the write that copies it, with its audit entries as history rows
    (kept in the order the snapshot had them: equal times get a microsecond apart)."""
    order = {id(entry): index for index, entry in enumerate(snapshot.audit)}
    for record, values in snapshot.records:
        history = [[a.action, a.version_before, a.version_after, a.actor,
                    epoch(a.at) + order[id(a)] * 1e-6, a.git_revision, a.source, a.name]
                   for a in snapshot.audit if a.name.casefold() == record.name.casefold()]
        yield record, Write(record.name, record.provider, record.spec, values, record.managed, actor, "copy",
                            record.source, record.source_digest, record.git_revision, record.description,
                            record.labels, record.conn_id), history


def describe_secret(client: Any, target: Target, name: str) -> dict[str, Any] | None:
    with aws_errors(target, "read the store", name):
        try:
            entry: dict[str, Any] = client.describe_secret(SecretId=name)
        except client.exceptions.ResourceNotFoundException:
            return None
    return entry


def is_record_segment(segment: str) -> bool:
    """A connection's own name under the workspace prefix: not nested, not connsync's (``.lock``)."""
    return "/" not in segment and not segment.startswith(".")


def kms_option(target: Target) -> dict[str, str]:
    return {"KmsKeyId": target.kms_key_id} if target.kms_key_id else {}


def conflict(name: str, current: StoredConnection | None, expected: int | None) -> VersionConflict:
    return VersionConflict(f"{name!r} changed in the store meanwhile (version "
                           f"{current.version if current else None}, expected {expected})",
                           hint="run plan again")


def check_id_kept(write: Write, current: StoredConnection | None, found: str, home: str, where: str) -> None:
    """An update finds its record at ``found``; its file's metadata.id says ``home``. A secret cannot
    be renamed, and writing the record where it is under another id would disown it: so a changed,
    added or removed metadata.id is refused (a record of the older layout, without an id, is not)."""
    if current is None or found == home or (current.conn_id is None and write.conn_id is None):
        return
    said = f"metadata.id {write.conn_id!r}" if write.conn_id else "no metadata.id"
    raise StoreError(f"{write.name!r} is stored under id {current.conn_id or found.rsplit('/', 1)[-1]!r} "
                     f"and its file now has {said}: {where} cannot rename a secret; nothing was written",
                     hint="put the id back, or remove the file, apply with --prune, then add it back")


class _NoSecretValues(logging.Filter):
    """botocore logs request and response bodies at DEBUG: never those that carry a secret value."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SecretString" not in record.getMessage()


_QUIET = _NoSecretValues()
for _name in ("botocore.endpoint", "botocore.parsers", "botocore.hooks", "botocore.httpchecksum"):
    logging.getLogger(_name).addFilter(_QUIET)


# --- errors ---------------------------------------------------------------------

_THROTTLED = {"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "Throttling"}
_DENIED = {"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"}
_BAD_CREDENTIALS = {"UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
                    "InvalidClientTokenId", "SignatureDoesNotMatch"}
_KMS = {"EncryptionFailure", "DecryptionFailure", "KMSInvalidStateException", "KMSDisabledException",
        "KMSNotFoundException", "KMSAccessDeniedException"}


@contextlib.contextmanager
def aws_errors(target: Target, doing: str, secret: str | None = None) -> Iterator[None]:
    """An AWS failure is one line that says what to do; no AWS message is echoed but KMS's own code.

    botocore's error texts never hold a secret value, but they are long and vary;
    these lines name the IAM action and resource instead.
    """
    from botocore import exceptions as bx

    try:
        yield
    except bx.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        action = f"secretsmanager:{exc.operation_name}"
        resource = target.resource(secret) if secret else "*"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _DENIED or (status == 403 and code not in _BAD_CREDENTIALS):
            kms = " or the KMS key" if "kms" in _message(exc).lower() else ""
            raise StoreError(f"AWS denied {action} on {resource}{kms} ({target.shown}); nothing more "
                             "was written", hint=POLICY_HINT) from None
        if code in _BAD_CREDENTIALS:
            raise StoreError(f"AWS rejected the credentials used for {target.shown} ({code})",
                             hint="check AWS_PROFILE / AWS_ACCESS_KEY_ID, or the runner's role") from None
        if code in _THROTTLED:
            raise StoreError(f"Secrets Manager kept throttling {action} in {target.region} after "
                             "botocore's retries with backoff; nothing more was written",
                             hint="run apply again later, or raise the account's request quota") from None
        if code in _KMS or (code == "InvalidRequestException" and "kms" in _message(exc).lower()):
            key = target.kms_key_id or "aws/secretsmanager (the default key)"
            raise StoreError(f"the KMS key {key} cannot be used to {doing} in {target.shown} ({code})",
                             hint="check that the key exists, is enabled, is in this region and that its "
                             "key policy lets this principal use kms:GenerateDataKey and kms:Decrypt",
                             ) from None
        raise StoreError(f"Secrets Manager refused to {doing} ({action}, {code}) in {target.shown}") from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError, bx.ConnectionClosedError,
            bx.HTTPClientError) as exc:
        # After botocore's retries: the endpoint is gone for this run, whatever comes next.
        raise StoreUnavailable(
            f"cannot reach Secrets Manager in {target.region} ({type(exc).__name__}) to {doing}",
            hint=_unreachable_hint(target)) from None
    except bx.NoCredentialsError:
        raise StoreError(f"no AWS credentials for {target.shown}",
                         hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with a "
                         "role") from None
    except bx.BotoCoreError as exc:
        raise StoreError(f"talking to Secrets Manager failed to {doing} ({type(exc).__name__})") from None


def _message(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def _unreachable_hint(target: Target) -> str:
    if target.endpoint_url:
        return f"is the endpoint_url of the store URL ({target.endpoint_url[:80]}) up?"
    import boto3

    known = boto3.session.Session().get_available_regions("secretsmanager") + \
        boto3.session.Session().get_available_regions("secretsmanager", "aws-us-gov") + \
        boto3.session.Session().get_available_regions("secretsmanager", "aws-cn")
    if target.region not in known:
        return (f"botocore knows no Secrets Manager endpoint in {target.region!r}: check the region in the "
                "store URL")
    return "check this machine's network path (proxy, VPC endpoint) to Secrets Manager"
