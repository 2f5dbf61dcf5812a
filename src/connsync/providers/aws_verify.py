"""Online AWS verification: STS GetCallerIdentity with the connection's own key.

Proves more than the platform's form can: the key works, belongs to the
declared account, is not the account root, and (best effort, through IAM
ListAccessKeys with the same key) is active and not older than the rotation
limit. Error messages name the problem, never the secret.

Speed: building a boto3 session and two clients costs about 90 ms of CPU, far
more than the two calls. So one verification run shares one botocore session
and one client per service and region (:class:`AwsClients`); each request is
signed with the connection's own key, passed with the call and revealed only
in the signing hook. Clients never hold usable credentials of their own, so a
request that somehow lost its key is rejected rather than signed with the
environment's.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple

import botocore.session
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from connsync.model import Desired, Secret
from connsync.providers import aws_exposure, aws_privilege, key_age
from connsync.providers.aws import is_role
from connsync.providers.base import Status, Verdict, VerifySettings

# Tests (and only tests) use this to add botocore event handlers to each client.
ClientHook = Callable[[Any], None]

_REJECTED = {
    "InvalidClientTokenId": "AWS does not know this access key id (deleted, mistyped, or from "
    "another partition)",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "ExpiredToken": "the credentials have expired",
    "AccessDenied": "STS denied GetCallerIdentity (an explicit deny on the key's principal?)",
}
THROTTLING = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded",
                        "TooManyRequestsException"})
# botocore already makes 3 attempts per call; when all were throttled, wait and
# try again this many more times (about 0.5 + 1 + 2 + 4 + 8 s of backoff).
THROTTLE_ROUNDS = 5
THROTTLE_BACKOFF_SECONDS = 0.5
_KEY_PARAM = "ConnsyncKey"  # the connection's key, passed with each call (never a real API parameter)


class _Key(NamedTuple):
    access_key_id: str
    secret: Secret
    token: Secret | None = None  # a role session's temporary credentials have one


def _take_key(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    key = params.pop(_KEY_PARAM, None)
    if key is not None:
        context["connsync_key"] = key


def _sign_with_key(request: Any, **_: Any) -> None:
    key: _Key | None = request.context.get("connsync_key")
    if key is not None:  # the one place the secret leaves Secret: to sign this request
        signing = request.context.setdefault("signing", {})
        signing["request_credentials"] = Credentials(key.access_key_id, key.secret.reveal(),
                                                     key.token.reveal() if key.token else None)


class AwsClients:
    """STS and IAM clients for one verification run, shared by its threads.

    Clients are made once per service and region from one botocore session
    (model loading and endpoint resolution happen once) under a lock; botocore
    clients are safe to call from many threads once made.
    """

    def __init__(self, settings: VerifySettings, client_hook: ClientHook | None = None) -> None:
        self._session = botocore.session.get_session()
        self._config = Config(
            connect_timeout=settings.timeout_seconds,
            read_timeout=settings.timeout_seconds,
            retries={"mode": "standard", "total_max_attempts": 3},  # the first try and two retries
            max_pool_connections=max(10, settings.concurrency),
            user_agent_extra="connsync",
        )
        self._hook = client_hook
        self._clients: dict[tuple[str, str, bool], Any] = {}
        self._lock = threading.Lock()
        # connsync's own identity, for the exposure check of a key that may not read IAM
        self.ambient = aws_exposure.Ambient(lambda service, region: self._session.create_client(
            service, region_name=region, config=self._config))

    def get(self, service: str, region: str, *, ambient: bool = False) -> Any:
        """``ambient``: a client with connsync's own identity, for a role assumed without a base key."""
        with self._lock:
            client = self._clients.get((service, region, ambient))
            if client is None:
                # Empty credentials: never the environment's, whatever happens to the hooks.
                empty = {} if ambient else {"aws_access_key_id": "", "aws_secret_access_key": ""}
                client = self._session.create_client(service, region_name=region, config=self._config,
                                                     **empty)
                client.meta.events.register(f"provide-client-params.{service}", _take_key)
                client.meta.events.register(f"before-sign.{service}", _sign_with_key)
                if self._hook:
                    self._hook(client)
                self._clients[(service, region, ambient)] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


@contextmanager
def clients_for(settings: VerifySettings) -> Iterator[Callable[[Desired], Verdict]]:
    """A verifier for one run: every connection it verifies shares the clients."""
    clients = AwsClients(settings)
    try:
        yield lambda desired: verify(desired, settings, clients=clients)
    finally:
        clients.close()


def _call(operation: Callable[..., Any], key: _Key | None, **params: Any) -> Any:
    """``operation`` signed with ``key`` (None: the client's own identity); throttling waits and retries."""
    if key is not None:
        params[_KEY_PARAM] = key
    for round_ in range(THROTTLE_ROUNDS + 1):
        try:
            return operation(**params)
        except ClientError as exc:
            if _code(exc) not in THROTTLING or round_ == THROTTLE_ROUNDS:
                raise
            # Full jitter: many connections throttled together do not retry together.
            time.sleep(random.uniform(0, THROTTLE_BACKOFF_SECONDS * 2 ** round_))
    raise AssertionError("unreachable")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def verify(desired: Desired, settings: VerifySettings, client_hook: ClientHook | None = None,
           clients: AwsClients | None = None) -> Verdict:
    if clients is None:  # one connection on its own (tests, plugins): clients just for it
        own = AwsClients(settings, client_hook)
        try:
            return verify(desired, settings, clients=own)
        finally:
            own.close()
    spec = desired.spec
    region = str(spec["default_region"])
    declared_account = str(spec["account_id"])

    def result(status: Status, *messages: str, identity: dict[str, str] | None = None) -> Verdict:
        return Verdict(desired.name, desired.declaration.file, "aws", status, identity or {},
                       tuple(messages))

    base = _Key(str(spec["access_key_id"]), desired.secrets["secret_access_key"]) \
        if "access_key_id" in spec else None
    if is_role(spec):
        return _verify_role(desired, settings, clients, region, base, result)
    assert base is not None  # the schema requires a key pair or a role
    key = base

    sts = clients.get("sts", region)
    try:
        identity = _call(sts.get_caller_identity, key)
    except ClientError as exc:
        code = _code(exc)
        if code in THROTTLING:
            return result("failed", f"STS kept throttling the requests ({code}) after "
                          f"{THROTTLE_ROUNDS} rounds of retries: try again later or lower "
                          "verify.concurrency")
        return result("failed", f"key rejected by STS: {_REJECTED.get(code, code or 'unknown error')}")
    except (ConnectTimeoutError, ReadTimeoutError) as exc:
        return result("failed", f"STS did not answer within {settings.timeout_seconds:g}s "
                      f"({type(exc).__name__} at {sts.meta.endpoint_url})")
    except EndpointConnectionError:
        return result("failed", f"could not connect to STS at {sts.meta.endpoint_url}")
    except BotoCoreError as exc:
        return result("failed", f"STS call failed: {type(exc).__name__}")

    who = {"account": str(identity["Account"]), "arn": str(identity["Arn"])}
    if who["account"] != declared_account:
        return result("failed", f"the key belongs to account {who['account']}, not account_id "
                      f"{declared_account}", identity=who)
    if who["arn"].endswith(":root"):
        return result("failed", "this is the account root user's key: use an IAM user's key with only "
                      "the permissions the platform needs, and delete the root key", identity=who)

    iam = clients.get("iam", region)
    policy_rules = settings.policy_rules(desired)  # the organisation policy's online rules, if any
    warnings, created = _key_age_warnings(iam, key, aws_privilege.key_age_settings(settings, policy_rules))
    failure, note = _exposure(iam, key, who, region, clients, settings)
    if failure:
        return replace(result("failed", failure, *warnings, identity=who), key_created=created)
    warnings += [note] if note else []
    if policy_rules:
        failures, notes = aws_privilege.check(policy_rules, who, key.access_key_id,
                                              functools.partial(_read_with_key, iam, key), clients.ambient,
                                              region)
        if failures:
            return replace(result("failed", *failures, *notes, *warnings, identity=who), key_created=created)
        warnings += notes
    return replace(result("warning" if warnings else "ok", *warnings, identity=who), key_created=created)


def _exposure(iam: Any, key: _Key, who: dict[str, str], region: str, clients: AwsClients,
              settings: VerifySettings) -> tuple[str | None, str | None]:
    """Has AWS quarantined the IAM user ``who`` of ``key``? (why the key fails, a warning)"""
    listing = iam.list_attached_user_policies
    exposure = aws_exposure.check(who["arn"].rsplit("/", 1)[-1], who["account"], region, key.access_key_id,
                                  lambda **p: _call(functools.partial(listing, **p), key), clients.ambient)
    return aws_exposure.judged(exposure, accepted=who["arn"] in settings.quarantine_accepted)


def _base_key_exposure(clients: AwsClients, region: str, base: _Key,
                       settings: VerifySettings) -> tuple[str | None, str | None]:
    """The exposure check of a role connection's base key: a leaked base key assumes the role too."""
    try:
        identity = _call(clients.get("sts", region).get_caller_identity, base)
    except (ClientError, BotoCoreError) as exc:
        why = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        return None, f"exposure unverifiable: STS did not say whose the base key is ({why})"
    who = {"account": str(identity["Account"]), "arn": str(identity["Arn"])}
    if ":user/" not in who["arn"]:
        return None, None  # not an IAM user's key: AWS quarantines users only
    return _exposure(clients.get("iam", region), base, who, region, clients, settings)


def _read_with_key(iam: Any, key: _Key, operation: str, **params: Any) -> Any:
    return _call(functools.partial(getattr(iam, operation), **params), key)


def _verify_role(desired: Desired, settings: VerifySettings, clients: AwsClients, region: str,
                 base: _Key | None, result: Callable[..., Verdict]) -> Verdict:
    """A role connection: see :mod:`connsync.providers.aws_role`."""
    from connsync.providers import aws_role

    ambient = base is None
    check = aws_role.RoleCheck(clients.get("sts", region, ambient=ambient),
                               clients.get("iam", region, ambient=ambient), _call, _Key)
    return aws_role.verify_role(desired, settings, check, base, result,
                                lambda: _key_age_warnings(clients.get("iam", region), base, settings)[0]
                                if base else [],
                                lambda: _base_key_exposure(clients, region, base, settings)
                                if base else (None, None))


def _key_age_warnings(iam: Any, key: _Key, settings: VerifySettings) -> tuple[list[str], datetime | None]:
    """What IAM says about the key's age and status, and when it was created (None: unknown)."""
    try:
        # Without UserName, IAM lists the calling user's own keys.
        keys = _call(iam.list_access_keys, key)["AccessKeyMetadata"]
    except ClientError as exc:
        code = _code(exc)
        if code in ("AccessDenied", "AccessDeniedException"):
            return ["key age unknown: IAM denied ListAccessKeys (allow iam:ListAccessKeys on the "
                    "user itself to check rotation)"], None
        return [f"key age unknown: IAM ListAccessKeys failed ({code})"], None
    except BotoCoreError as exc:
        return [f"key age unknown: IAM ListAccessKeys failed ({type(exc).__name__})"], None
    mine = next((k for k in keys if k.get("AccessKeyId") == key.access_key_id), None)
    if mine is None:
        return ["key age unknown: IAM did not list this key"], None
    warnings = []
    if mine.get("Status") != "Active":
        warnings.append(f"the key is {str(mine.get('Status', 'inactive')).lower()}")
    created = mine.get("CreateDate")
    if isinstance(created, datetime):  # the one key-age rule, shared with plan, list and rotate
        overdue = key_age.overdue_message(created, settings.max_key_age_days)
        if overdue:
            warnings.append(overdue)
        return warnings, created
    return warnings, None
