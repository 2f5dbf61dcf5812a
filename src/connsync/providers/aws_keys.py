"""IAM access keys for ``connsync rotate``: who owns a key, list, create, wait, deactivate, delete.

Rotation works on one connection at a time with at most two keys and
optionally an administrator's credentials, so it uses plain boto3 sessions:
verify's shared clients (:mod:`connsync.providers.aws_verify`) are built for
thousands of keys and deliberately never hold credentials of their own.
Every error names the key ids involved (they are not secret) and never a
secret access key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from connsync.errors import ConnsyncError
from connsync.model import Secret

# STS's answers while IAM has not yet propagated a new key everywhere.
_NOT_YET = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied",
                      "Throttling", "ThrottlingException"})


class AwsError(ConnsyncError):
    """An AWS call failed; the message names the call and AWS's error code."""


@dataclass(frozen=True)
class Identity:
    account: str
    arn: str

    @property
    def user_name(self) -> str | None:
        """The IAM user's name for ``arn:aws:iam::123:user/path/name``, else None."""
        resource = self.arn.split(":", 5)[-1]
        return resource.rsplit("/", 1)[-1] if resource.startswith("user/") else None

    def refusal(self) -> str | None:
        """Why this principal's keys cannot be rotated here, or None."""
        if self.arn.endswith(":root"):
            return ("this is the account root user's key: root keys are not rotated, they are deleted; "
                    "give the platform an IAM user's key with only the permissions it needs")
        resource = self.arn.split(":", 5)[-1]
        if resource.startswith("assumed-role/"):
            return ("this key belongs to an assumed role (temporary credentials): they expire on their "
                    "own and cannot be rotated; the platform needs an IAM user's long-term key")
        if resource.startswith("federated-user/"):
            return "this key belongs to a federated user (temporary credentials): it cannot be rotated"
        if self.user_name is None:
            return f"{self.arn} is not an IAM user"
        return None


@dataclass(frozen=True)
class AccessKey:
    key_id: str
    status: str  # "Active" or "Inactive"
    created: datetime | None
    last_used: datetime | None = None
    last_service: str | None = None

    @property
    def active(self) -> bool:
        return self.status == "Active"

    def describe(self) -> str:
        created = self.created.strftime("%Y-%m-%d") if self.created else "?"
        used = (f"last used {self.last_used:%Y-%m-%d %H:%M} UTC"
                + (f" ({self.last_service})" if self.last_service and self.last_service != "N/A" else "")
                if self.last_used else "never used")
        return f"{self.key_id} ({self.status.lower()}, created {created}, {used})"

    def as_json(self) -> dict[str, Any]:
        return {"access_key_id": self.key_id, "status": self.status,
                "created": self.created.isoformat() if self.created else None,
                "last_used": self.last_used.isoformat() if self.last_used else None}


@dataclass(frozen=True)
class Credentials:
    """Who signs the IAM calls: a connection's own key, or a named profile, or the environment."""

    access_key_id: str | None = None
    secret: Secret | None = None
    profile: str | None = None  # None with no key: boto3's standard chain (AWS_* variables, ...)

    def describe(self) -> str:
        if self.access_key_id:
            return f"key {self.access_key_id}"
        return f"profile {self.profile}" if self.profile else "the standard AWS environment"

    def session(self, region: str) -> boto3.session.Session:
        if self.access_key_id and self.secret is not None:
            return boto3.session.Session(aws_access_key_id=self.access_key_id,
                                         aws_secret_access_key=self.secret.reveal(), region_name=region)
        return boto3.session.Session(profile_name=self.profile, region_name=region)


def _config(timeout: float) -> Config:
    return Config(connect_timeout=timeout, read_timeout=timeout, user_agent_extra="connsync-rotate",
                  retries={"mode": "standard", "total_max_attempts": 3})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) or "unknown error"


class Iam:
    """The IAM calls of a rotation, signed with ``credentials``."""

    def __init__(self, credentials: Credentials, region: str, timeout: float = 10.0) -> None:
        self.credentials = credentials
        self._client = credentials.session(region).client("iam", config=_config(timeout))

    def _call(self, what: str, operation: Callable[..., Any], **params: Any) -> Any:
        try:
            return operation(**params)
        except ClientError as exc:
            hint = None
            if _code(exc) in ("AccessDenied", "AccessDeniedException"):
                hint = ("give the user the self-service policy in the README (iam:*AccessKey* and "
                        "iam:GetAccessKeyLastUsed on its own ARN), or pass --admin-profile")
            raise AwsError(f"IAM {what} with {self.credentials.describe()} failed: {_code(exc)}",
                           hint=hint) from None
        except BotoCoreError as exc:
            raise AwsError(f"IAM {what} failed: {type(exc).__name__}") from None

    def keys(self, user: str) -> list[AccessKey]:
        listed = self._call("ListAccessKeys", self._client.list_access_keys, UserName=user)
        keys = []
        for meta in listed["AccessKeyMetadata"]:
            used = self._call("GetAccessKeyLastUsed", self._client.get_access_key_last_used,
                              AccessKeyId=meta["AccessKeyId"]).get("AccessKeyLastUsed", {})
            keys.append(AccessKey(meta["AccessKeyId"], meta["Status"], meta.get("CreateDate"),
                                  used.get("LastUsedDate"), used.get("ServiceName")))
        return sorted(keys, key=lambda k: (k.created is None, k.created or datetime.min))

    def create(self, user: str) -> tuple[AccessKey, Secret]:
        made = self._call("CreateAccessKey", self._client.create_access_key, UserName=user)["AccessKey"]
        return (AccessKey(made["AccessKeyId"], made["Status"], made.get("CreateDate")),
                Secret(made["SecretAccessKey"]))

    def set_status(self, user: str, key_id: str, status: str) -> None:
        self._call("UpdateAccessKey", self._client.update_access_key, UserName=user, AccessKeyId=key_id,
                   Status=status)

    def delete(self, user: str, key_id: str) -> None:
        self._call("DeleteAccessKey", self._client.delete_access_key, UserName=user, AccessKeyId=key_id)

    def last_used(self, key_id: str) -> tuple[str, dict[str, Any]]:
        """The key's IAM user and its last use (date, service, region), without using the key."""
        found = self._call("GetAccessKeyLastUsed", self._client.get_access_key_last_used, AccessKeyId=key_id)
        return str(found["UserName"]), dict(found.get("AccessKeyLastUsed") or {})

    def attached_policies(self, user: str) -> list[tuple[str, str]]:
        """(name, ARN) of the managed policies attached to ``user``, every page."""
        pages = self._client.get_paginator("list_attached_user_policies").paginate(UserName=user)
        listed = self._call("ListAttachedUserPolicies", lambda: [p for page in pages
                                                                 for p in page["AttachedPolicies"]])
        return [(str(p["PolicyName"]), str(p["PolicyArn"])) for p in listed]

    def detach(self, user: str, policy_arn: str) -> None:
        self._call("DetachUserPolicy", self._client.detach_user_policy, UserName=user, PolicyArn=policy_arn)


def identity(key_id: str, secret: Secret, region: str, timeout: float = 10.0) -> Identity:
    """STS GetCallerIdentity signed with the key itself."""
    sts = Credentials(key_id, secret).session(region).client("sts", config=_config(timeout))
    try:
        found = sts.get_caller_identity()
    except ClientError as exc:
        raise AwsError(f"STS rejected key {key_id}: {_code(exc)}",
                       hint="check the key with 'connsync verify' first") from None
    except BotoCoreError as exc:
        raise AwsError(f"STS GetCallerIdentity failed: {type(exc).__name__}") from None
    return Identity(str(found["Account"]), str(found["Arn"]))


def wait_until_accepted(key_id: str, secret: Secret, region: str, *, deadline_seconds: float,
                        timeout: float = 10.0, sleep: Callable[[float], None] = time.sleep,
                        clock: Callable[[], float] = time.monotonic) -> tuple[Identity, int]:
    """Poll STS with the new key until it works (IAM is eventually consistent); returns the tries.

    Backoff doubles from 0.5 s up to 8 s and stops at ``deadline_seconds``.
    """
    sts = Credentials(key_id, secret).session(region).client("sts", config=_config(timeout))
    started, delay, tries = clock(), 0.5, 0
    while True:
        tries += 1
        try:
            found = sts.get_caller_identity()
            return Identity(str(found["Account"]), str(found["Arn"])), tries
        except ClientError as exc:
            code = _code(exc)
            if code not in _NOT_YET:
                raise AwsError(f"STS rejected the new key {key_id}: {code}") from None
        except BotoCoreError as exc:
            code = type(exc).__name__
        remaining = deadline_seconds - (clock() - started)
        if remaining <= 0:
            raise AwsError(f"STS still rejects the new key {key_id} after {tries} tries in "
                           f"{deadline_seconds:g}s ({code})")
        sleep(min(delay, remaining))
        delay = min(delay * 2, 8.0)
