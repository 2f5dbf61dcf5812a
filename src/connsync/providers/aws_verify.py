"""Online AWS verification: STS GetCallerIdentity with the connection's own key.

Proves more than the platform's form can: the key works, belongs to the
declared account, is not the account root, and (best effort, through IAM
ListAccessKeys with the same key) is active and not older than the rotation
limit. Error messages name the problem, never the secret.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from connsync.model import Desired
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


def _config(settings: VerifySettings) -> Config:
    return Config(
        connect_timeout=settings.timeout_seconds,
        read_timeout=settings.timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": 3},  # the first try and two retries
        user_agent_extra="connsync",
    )


def verify(desired: Desired, settings: VerifySettings, client_hook: ClientHook | None = None) -> Verdict:
    spec = desired.spec
    region = str(spec["default_region"])
    declared_account = str(spec["account_id"])

    def result(status: Status, *messages: str, identity: dict[str, str] | None = None) -> Verdict:
        return Verdict(desired.name, desired.declaration.file, "aws", status, identity or {},
                       tuple(messages))

    session = boto3.session.Session(
        aws_access_key_id=str(spec["access_key_id"]),
        aws_secret_access_key=desired.secrets["secret_access_key"].reveal(),
        region_name=region,
    )
    config = _config(settings)
    sts = session.client("sts", config=config)
    if client_hook:
        client_hook(sts)
    try:
        identity = sts.get_caller_identity()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
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

    warnings = _key_age_warnings(session, config, str(spec["access_key_id"]), settings, client_hook)
    return result("warning" if warnings else "ok", *warnings, identity=who)


def _key_age_warnings(session: boto3.session.Session, config: Config, key_id: str,
                      settings: VerifySettings, client_hook: ClientHook | None) -> list[str]:
    iam = session.client("iam", config=config)
    if client_hook:
        client_hook(iam)
    try:
        # Without UserName, IAM lists the calling user's own keys.
        keys = iam.list_access_keys()["AccessKeyMetadata"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("AccessDenied", "AccessDeniedException"):
            return ["key age unknown: IAM denied ListAccessKeys (allow iam:ListAccessKeys on the "
                    "user itself to check rotation)"]
        return [f"key age unknown: IAM ListAccessKeys failed ({code})"]
    except BotoCoreError as exc:
        return [f"key age unknown: IAM ListAccessKeys failed ({type(exc).__name__})"]
    mine = next((k for k in keys if k.get("AccessKeyId") == key_id), None)
    if mine is None:
        return ["key age unknown: IAM did not list this key"]
    warnings = []
    if mine.get("Status") != "Active":
        warnings.append(f"the key is {str(mine.get('Status', 'inactive')).lower()}")
    created = mine.get("CreateDate")
    if isinstance(created, datetime):
        age = (datetime.now(UTC) - created).days
        if age > settings.max_key_age_days:
            warnings.append(f"the key is {age} days old, past max_key_age_days "
                            f"({settings.max_key_age_days}): rotate it")
    return warnings
