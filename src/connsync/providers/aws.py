"""AWS: offline checks of DESIGN §8 and STS/IAM verification."""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import importlib.util
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from connsync.model import Desired
from connsync.providers.base import Issue, Provider, Verdict, VerifySettings

ACCESS_KEY_RE = re.compile(r"^AKIA[A-Z2-7]{16}$")
SECRET_KEY_LENGTH = 40
# arn:PARTITION:iam::ACCOUNT:role/PATH/NAME, as aws.schema.json's pattern says.
ROLE_ARN_RE = re.compile(r"^arn:(?P<partition>aws(?:-[a-z]+)*):iam::(?P<account>[0-9]{12}):role/"
                         r"(?P<path>(?:[!-.0-~]+/)*)(?P<name>[A-Za-z0-9+=,.@_-]{1,64})$")
# What STS accepts as sts:ExternalId (AssumeRole's API reference).
EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
# Key ids whose fifth character is one of these encode the owning account.
_NEW_FORMAT_MARKERS = frozenset("QRSTUVWXYZ234567")


@functools.cache
def known_regions() -> dict[str, str]:
    """Every region botocore knows, in every partition: region -> partition.

    Read from botocore's data file directly: importing botocore's loader costs
    more than validating a hundred files.
    """
    spec = importlib.util.find_spec("botocore")
    data = Path(spec.submodule_search_locations[0]) / "data" / "endpoints.json" if (
        spec and spec.submodule_search_locations) else None
    if data is not None and data.is_file():
        endpoints = json.loads(data.read_text(encoding="utf-8"))
    else:  # a botocore that ships its data compressed, or elsewhere
        from botocore.loaders import create_loader

        endpoints = create_loader().load_data("endpoints")
    return {
        region: partition["partition"]
        for partition in endpoints["partitions"]
        for region in partition["regions"]
    }


def account_from_key_id(key_id: str) -> str | None:
    """The account id encoded in a new-format access key id, or None for old keys."""
    if len(key_id) != 20 or key_id[4] not in _NEW_FORMAT_MARKERS:
        return None
    try:
        raw = base64.b32decode(key_id[4:])
    except (binascii.Error, ValueError):
        return None
    number = int.from_bytes(raw[:6], "big")
    return f"{(number & 0x7FFFFFFFFF80) >> 7:012d}"


def _role_issues(spec: Mapping[str, Any]) -> list[Issue]:
    """The role lives in ``account_id``, in the partition of ``default_region``."""
    role = RoleArn.parse(spec.get("role_arn"))
    if role is None:
        return []
    issues = []
    account = spec.get("account_id")
    if isinstance(account, str) and role.account != account:
        issues.append(Issue("aws-role-account", "role_arn",
                            f"the role is in account {role.account}, not account_id {account}"))
    partition = known_regions().get(str(spec.get("default_region")))
    if partition is not None and partition != role.partition:
        issues.append(Issue("aws-role-partition", "role_arn",
                            f"the role is in partition {role.partition!r} and default_region "
                            f"{spec.get('default_region')} in {partition!r}; STS of one partition cannot "
                            "assume a role of another"))
    return issues


def _did_you_mean(region: object) -> str:
    """``; did you mean 'us-east-1'?`` for a near miss among botocore's regions, else ''."""
    if not isinstance(region, str):
        return ""
    typed = region.strip().lower()
    # Swapped letters first (us-esat-1): difflib alone ranks us-west-1 above us-east-1 there.
    swapped = [r for r in known_regions() if len(r) == len(typed) and sorted(r) == sorted(typed)
               and sum(a != b for a, b in zip(r, typed, strict=True)) == 2]
    close = swapped or difflib.get_close_matches(typed, known_regions(), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


class RoleArn(NamedTuple):
    partition: str
    account: str
    path: str  # "/" or "/data/" as IAM writes it
    name: str

    @classmethod
    def parse(cls, arn: object) -> RoleArn | None:
        match = ROLE_ARN_RE.match(arn) if isinstance(arn, str) else None
        if match is None:
            return None
        return cls(match["partition"], match["account"], "/" + match["path"], match["name"])


def is_role(spec: Mapping[str, Any]) -> bool:
    """A role connection: the platform assumes ``role_arn``; any key pair is only the base identity."""
    return bool(spec.get("role_arn"))


class AwsProvider(Provider):
    def __init__(self) -> None:
        super().__init__("aws")

    def schema_hint(self, field: str, validator: str, instance: Any) -> str | None:
        if field == "account_id" and validator == "type" and isinstance(instance, int):
            return (
                "must be a quoted string: YAML read an unquoted number (and drops leading zeros); "
                'write account_id: "123456789012"'
            )
        if field == "account_id" and validator == "pattern":
            return "must be exactly 12 digits, like 123456789012"
        if field == "access_key_id" and validator == "pattern":
            if isinstance(instance, str) and instance.startswith("ASIA"):
                return (
                    "is a temporary key (ASIA...) from STS; it expires and the platform would lose "
                    "access: use a long-term access key (AKIA...) of an IAM user"
                )
            return "must be a long-term access key id: AKIA followed by 16 characters A-Z or 2-7"
        if field == "default_region" and validator == "pattern":
            return "must be an AWS region code like us-east-1" + _did_you_mean(instance)
        if field == "role_arn" and validator == "pattern":
            return ("must be an IAM role ARN, arn:aws:iam::123456789012:role/NAME (or role/PATH/NAME; "
                    "the partition may be aws-cn, aws-us-gov, ...)")
        if field == "session_duration_seconds" and validator in ("minimum", "maximum", "type"):
            return "must be a whole number of seconds from 900 (15 minutes) to 43200 (12 hours)"
        if validator == "dependentRequired":
            if field in ("external_id", "session_duration_seconds"):
                return "it applies only when assuming a role; add role_arn or remove it"
            return "a key pair is both the access key id and its secret"
        return None

    def check(self, spec: Mapping[str, Any]) -> list[Issue]:
        issues: list[Issue] = []
        region = spec.get("default_region")
        if isinstance(region, str) and region not in known_regions():
            issues.append(
                Issue("aws-region", "default_region",
                      f"{region!r} is not an AWS region botocore knows"
                      + (_did_you_mean(region) or " (if it is new, upgrade botocore)"))
            )
        issues.extend(_role_issues(spec))
        key_id, account = spec.get("access_key_id"), spec.get("account_id")
        # A role's base key may well live in another account (the platform's): that is the point.
        if isinstance(key_id, str) and isinstance(account, str) and ACCESS_KEY_RE.match(key_id) \
                and not is_role(spec):
            encoded = account_from_key_id(key_id)
            if encoded is not None and encoded != account:
                issues.append(
                    Issue(
                        "aws-key-account",
                        "access_key_id",
                        f"this access key belongs to account {encoded}, not account_id {account}",
                    )
                )
        return issues

    def check_secret(self, field: str, value: str) -> str | None:
        if field == "secret_access_key" and len(value) != SECRET_KEY_LENGTH:
            return f"must be {SECRET_KEY_LENGTH} characters (got {len(value)})"
        if field == "external_id" and not EXTERNAL_ID_RE.match(value):
            return (f"must be 2 to 1224 characters of letters, digits and _+=,.@:/- as STS accepts "
                    f"(got {len(value)} characters)")
        return None

    def rate_scope(self, spec: Mapping[str, Any]) -> str | None:
        return str(spec.get("account_id"))  # STS and IAM limit requests per account

    @contextmanager
    def verifying(self, settings: VerifySettings) -> Iterator[Callable[[Desired], Verdict]]:
        from connsync.providers.aws_verify import clients_for

        with clients_for(settings) as verifier:
            yield verifier
