"""Online verification of a role connection: assume the role the way the platform will.

STS ``AssumeRole`` (with the external id, for the shortest session, 900 s) from
the base key pair or, without one, from the identity connsync itself runs as;
then ``GetCallerIdentity`` signed with the temporary credentials: the assumed
role must be the declared one, in the declared account. The temporary
credentials live in :class:`~connsync.model.Secret` values inside this call and
are dropped at its end: never returned, logged, stored or printed.

STS answers every refusal with the same ``AccessDenied`` (no such role, a trust
policy that does not name the caller, a wrong external id): when IAM lets the
base identity read the role (``iam:GetRole``), its trust policy and maximum
session duration say which, and are checked even when STS let the session
through (an endpoint that does not enforce them, or a trust policy that asks
for no external id at all).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from connsync.model import Desired, Secret
from connsync.providers.aws import RoleArn
from connsync.providers.base import Status, Verdict, VerifySettings

# Shortest session STS grants: the check needs seconds, and a leaked session would not last.
CHECK_SESSION_SECONDS = 900
SESSION_NAME = "connsync-verify"
NO_LONG_TERM_KEY = "no long-term key: the platform assumes the role (nothing to rotate)"


class RoleCheck:
    """The AWS calls a role check makes; ``call(client, operation, key, **params)`` signs with ``key``."""

    def __init__(self, sts: Any, iam: Any, call: Callable[..., Any], make_key: Callable[..., Any]) -> None:
        self.sts, self.iam, self.call, self.make_key = sts, iam, call, make_key


def verify_role(desired: Desired, settings: VerifySettings, check: RoleCheck, base: Any | None,
                result: Callable[..., Verdict], key_age: Callable[[], list[str]],
                exposure: Callable[[], tuple[str | None, str | None]] = lambda: (None, None)) -> Verdict:
    """``base`` is the base key (None: the identity connsync runs as); ``key_age`` its age warnings;
    ``exposure`` whether AWS has quarantined the base key's user (why it fails, a warning)."""
    spec = desired.spec
    role = RoleArn.parse(spec.get("role_arn"))
    if role is None:  # validate refuses such a file; an API caller may not have run it
        return result("failed", "role_arn is not an IAM role ARN")
    external_id: Secret | None = desired.secrets.get("external_id")
    declared_account = str(spec["account_id"])
    duration = spec.get("session_duration_seconds")

    # A base key is a long-term key: leaked, it assumes the role too. Asked first, since AWS's
    # quarantine policy may deny the AssumeRole below and hide why.
    exposed, note = exposure() if base is not None else (None, None)
    if exposed:
        return result("failed", f"base key {exposed}")
    params: dict[str, Any] = {"RoleArn": spec["role_arn"], "RoleSessionName": SESSION_NAME,
                              "DurationSeconds": CHECK_SESSION_SECONDS}
    if external_id is not None:
        params["ExternalId"] = external_id.reveal()
    try:
        session = check.call(check.sts.assume_role, base, **params)["Credentials"]
    except ClientError as exc:
        return result("failed", *_refusal(exc, role, external_id, check, base))
    except BotoCoreError as exc:
        return result("failed", f"STS AssumeRole failed: {type(exc).__name__}")
    finally:
        params.pop("ExternalId", None)

    temporary = check.make_key(str(session["AccessKeyId"]), Secret(str(session["SecretAccessKey"])),
                               Secret(str(session["SessionToken"])))
    del session
    try:
        who = check.call(check.sts.get_caller_identity, temporary)
    except (ClientError, BotoCoreError) as exc:
        return result("failed", f"the role's session was refused by STS GetCallerIdentity ({_name(exc)})")
    finally:
        del temporary
    identity = {"account": str(who["Account"]), "arn": str(who["Arn"])}
    assumed = _assumed_role_name(identity["arn"])
    if identity["account"] != declared_account:
        return result("failed", f"the role's session is in account {identity['account']}, not account_id "
                      f"{declared_account}", identity=identity)
    if assumed != role.name:
        return result("failed", f"the session is of role {assumed or identity['arn']!r}, not {role.name!r}",
                      identity=identity)

    described = _read_role(check, base, role)
    if described == "missing":  # AWS refuses to assume a role that is not there; some endpoints do not
        return result("failed", f"the role {role.name} does not exist in account {role.account}",
                      identity=identity)
    problems, warnings = _policy_findings(described, role, external_id, duration)
    if not problems and isinstance(described, Mapping):
        problems = _untrusted(check, base, described, role)
    if not problems and isinstance(duration, int) and duration > CHECK_SESSION_SECONDS and (
            not isinstance(described, Mapping) or "MaxSessionDuration" not in described):
        problems, unsure = _try_duration(check, base, params, external_id, duration, role)
        warnings.extend(unsure)
    warnings += [f"base key {note}"] if note else []
    if problems:
        return result("failed", *problems, identity=identity)
    if base is None:
        warnings.append(NO_LONG_TERM_KEY)
    else:
        warnings.extend(key_age())
    status: Status = "warning" if any(not w.startswith("no long-term key") for w in warnings) else "ok"
    return result(status, *warnings, identity=identity)


def _try_duration(check: RoleCheck, base: Any | None, params: Mapping[str, Any], external_id: Secret | None,
                  duration: int, role: RoleArn) -> tuple[list[str], list[str]]:
    """IAM would not show the role's maximum: ask STS for a session as long as the platform's."""
    longer = {**params, "DurationSeconds": duration}
    if external_id is not None:
        longer["ExternalId"] = external_id.reveal()
    try:
        check.call(check.sts.assume_role, base, **longer)  # the session is dropped unread
    except ClientError as exc:
        text = str(exc.response.get("Error", {}).get("Message", ""))
        if "DurationSeconds" in text or "MaxSessionDuration" in text:
            return [f"session_duration_seconds {duration} exceeds what STS grants for {role.name} (the "
                    "role's maximum session duration, or 1 hour when the base identity is itself a "
                    "role session): lower it, or raise the role's MaxSessionDuration"], []
        return [], [f"a {duration}-second session could not be checked ({_name(exc)})"]
    except BotoCoreError as exc:
        return [], [f"a {duration}-second session could not be checked ({_name(exc)})"]
    finally:
        longer.clear()
    return [], []


def _refusal(exc: ClientError, role: RoleArn, external_id: Secret | None, check: RoleCheck,
             base: Any | None) -> list[str]:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    text = str(exc.response.get("Error", {}).get("Message", ""))
    if code == "ValidationError" and "DurationSeconds" in text:
        return [f"STS refused a {CHECK_SESSION_SECONDS}-second session of {role.name}: {code}"]
    if code in ("InvalidClientTokenId", "SignatureDoesNotMatch"):
        return [f"the base key was rejected by STS ({code}): check access_key_id and secret_access_key"]
    if code == "RegionDisabledException":
        return ["STS is not activated in this region for the account: activate it, or pick another "
                "default_region"]
    if code != "AccessDenied":
        return [f"STS AssumeRole of {role.name} failed: {code or 'unknown error'}"]
    got = _read_role(check, base, role)
    if got == "missing":
        return [f"the role {role.name} does not exist in account {role.account} (STS denied AssumeRole)"]
    if isinstance(got, Mapping):
        problems, _ = _policy_findings(got, role, external_id, None)
        return problems or _untrusted(check, base, got, role) or [
            f"STS denied AssumeRole of {role.name} although its trust policy seems to allow this identity "
            "(a condition, a permissions boundary or an SCP?)"]
    return [f"STS denied AssumeRole of {role.name}: the role does not exist, its trust policy does not "
            "name this identity, or the external id is wrong (STS does not say which; allowing "
            "iam:GetRole on the role lets connsync tell)"]


def _untrusted(check: RoleCheck, base: Any | None, described: Mapping[str, Any], role: RoleArn) -> list[str]:
    """The trust policy names no principal that is the caller: AWS would refuse the session."""
    try:
        caller = str(check.call(check.sts.get_caller_identity, base)["Arn"])
    except (ClientError, BotoCoreError):
        return []  # who is asking is unknown; nothing to say
    if _trusts(_trust_policy(described.get("AssumeRolePolicyDocument")), caller):
        return []
    return [f"the trust policy of {role.name} does not let {caller} assume it: add it as a Principal "
            "with sts:AssumeRole"]


def _trusts(policy: Mapping[str, Any], caller: str) -> bool:
    """An Allow statement for sts:AssumeRole names the caller, its account, or everyone.

    A role session (``assumed-role/NAME/SESSION``) is named by its role's ARN, whose path the session
    ARN does not carry: the role's name is compared.
    """
    partition, account = caller.split(":")[1], caller.split(":")[4]
    resource = caller.split(":", 5)[-1]
    session_role = resource.split("/")[1] if resource.startswith("assumed-role/") else None
    for statement in _statements(policy):
        if statement.get("Effect") != "Allow" or not _names_assume_role(statement.get("Action")):
            continue
        principal = statement.get("Principal")
        if principal == "*":
            return True
        named = principal.get("AWS") if isinstance(principal, Mapping) else None
        for name in named if isinstance(named, list) else [named]:
            text = str(name)
            if text in ("*", caller, account, f"arn:{partition}:iam::{account}:root"):
                return True
            if session_role and text.startswith(f"arn:{partition}:iam::{account}:role/") \
                    and text.rsplit("/", 1)[-1] == session_role:
                return True
    return False


def _statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statements = policy.get("Statement")
    if isinstance(statements, Mapping):
        statements = [statements]
    return [s for s in statements if isinstance(s, Mapping)] if isinstance(statements, list) else []


def _read_role(check: RoleCheck, base: Any | None, role: RoleArn) -> Mapping[str, Any] | str:
    """The role as IAM describes it, ``"missing"``, or ``"unknown"`` when IAM will not say."""
    try:
        return dict(check.call(check.iam.get_role, base, RoleName=role.name)["Role"])
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return "missing" if code == "NoSuchEntity" else "unknown"
    except BotoCoreError:
        return "unknown"


def _policy_findings(described: Mapping[str, Any] | str, role: RoleArn, external_id: Secret | None,
                     duration: object) -> tuple[list[str], list[str]]:
    """(failures, warnings) from the role's trust policy and maximum session, when IAM shows them."""
    if not isinstance(described, Mapping):
        return [], []
    problems: list[str] = []
    warnings: list[str] = []
    maximum = described.get("MaxSessionDuration")
    if isinstance(duration, int) and isinstance(maximum, int) and duration > maximum:
        problems.append(f"session_duration_seconds {duration} exceeds the role's maximum session "
                        f"duration ({maximum} s): lower it, or raise the role's MaxSessionDuration")
    required = _required_external_ids(_trust_policy(described.get("AssumeRolePolicyDocument")))
    if required and external_id is None:
        problems.append(f"the trust policy of {role.name} requires an external id (sts:ExternalId) and "
                        "the connection has none: set external_id")
    elif required and external_id is not None and external_id.reveal() not in required:
        problems.append(f"external_id is not the one the trust policy of {role.name} requires "
                        "(sts:ExternalId): neither value is shown")
    elif not required and external_id is not None:
        warnings.append(f"the trust policy of {role.name} does not check sts:ExternalId, so external_id "
                        "protects nothing: add the condition to the trust policy")
    return problems, warnings


def _trust_policy(document: object) -> Mapping[str, Any]:
    """IAM returns the document URL-encoded on the wire; boto3 decodes it, some endpoints do not."""
    if isinstance(document, Mapping):
        return document
    if isinstance(document, str):
        try:
            parsed = json.loads(urllib.parse.unquote(document))
        except ValueError:
            return {}
        return parsed if isinstance(parsed, Mapping) else {}
    return {}


def _required_external_ids(policy: Mapping[str, Any]) -> set[str]:
    """The external ids the Allow statements for sts:AssumeRole insist on (empty: none asked)."""
    wanted: set[str] = set()
    for statement in _statements(policy):
        if statement.get("Effect") != "Allow":
            continue
        if not _names_assume_role(statement.get("Action")):
            continue
        conditions = statement.get("Condition")
        for operator, tests in (conditions.items() if isinstance(conditions, Mapping) else ()):
            if not str(operator).startswith("StringEquals") or not isinstance(tests, Mapping):
                continue
            for key, value in tests.items():
                if str(key).lower() == "sts:externalid":
                    wanted.update(value if isinstance(value, list) else [value])
    return {str(v) for v in wanted}


def _names_assume_role(action: object) -> bool:
    actions: Iterable[object] = action if isinstance(action, list) else [action]
    return any(str(a).lower() in ("sts:assumerole", "sts:*", "*") for a in actions)


def _assumed_role_name(arn: str) -> str | None:
    """``arn:aws:sts::123:assumed-role/NAME/SESSION`` -> NAME."""
    resource = arn.split(":", 5)[-1]
    parts = resource.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == "assumed-role" else None


def _name(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or "unknown error"
    return type(exc).__name__
