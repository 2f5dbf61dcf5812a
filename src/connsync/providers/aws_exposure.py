"""Has AWS quarantined the IAM user behind a key? (``AWSCompromisedKeyQuarantine``, V2, V3)

When AWS finds an access key in public (a repository, a paste site), it
attaches one of its ``AWSCompromisedKeyQuarantine*`` managed policies to the
key's IAM user. The policy denies the user's own ``iam:CreateAccessKey``,
``UpdateAccessKey`` and ``DeleteAccessKey`` among much else, so the key still
passes STS while everything the platform does with it starts failing. It stays
attached until someone detaches it: "attached" means "this user's key was
exposed, and the incident is not closed".

Who asks IAM (``ListAttachedUserPolicies``): the key itself first; when it may
not read IAM, connsync's own identity (the job's ambient AWS chain), and only
when that identity is in the key's account (a user name means nothing in
another account). Never the other way round: the ambient identity never signs
for a key that could have answered, and the key never signs for anyone else.
A check that could not be made is ``unverifiable``, never a pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

QUARANTINE_PREFIX = "AWSCompromisedKeyQuarantine"
# The user's attached policies, one page: called with UserName (and Marker for the next page).
ListPage = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Exposure:
    state: Literal["clear", "exposed", "unverifiable"]
    message: str | None = None
    policies: tuple[str, ...] = ()


def exposed_message(user: str, policies: tuple[str, ...], key_id: str) -> str:
    return (f"exposed: AWS has quarantined IAM user {user} (policy {', '.join(policies)}); "
            f"run `connsync rotate --exposed {key_id}`")


def quarantine_policies(list_page: ListPage, user: str) -> tuple[str, ...]:
    """Names of the ``AWSCompromisedKeyQuarantine*`` policies attached to ``user`` (all pages)."""
    found: list[str] = []
    params: dict[str, Any] = {"UserName": user}
    while True:
        page = list_page(**params)
        found += [str(p.get("PolicyName", "")) for p in page.get("AttachedPolicies", [])
                  if str(p.get("PolicyName", "")).startswith(QUARANTINE_PREFIX)
                  and ":aws:policy/" in str(p.get("PolicyArn", ""))]  # AWS's own, not a look-alike
        if not page.get("IsTruncated") or not page.get("Marker"):
            return tuple(sorted(found))
        params["Marker"] = page["Marker"]


def _why(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or "unknown error"
    return type(exc).__name__


class Ambient:
    """connsync's own AWS identity (the standard chain), asked only when a key may not read IAM.

    Shared by one verification run: its identity is looked up once per region.
    ``make_client(service, region)`` builds a client from the standard chain.
    """

    def __init__(self, make_client: Callable[[str, str], Any]) -> None:
        self._make_client = make_client
        self._lock = threading.Lock()
        self._found: dict[str, tuple[Any, str, str] | str] = {}  # region -> (iam, account, arn) | why not

    def iam_for(self, account: str, region: str) -> tuple[Any, str | None]:
        """An IAM client signed by the ambient identity in ``account``, or None and why not."""
        with self._lock:
            if region not in self._found:
                try:
                    who = self._make_client("sts", region).get_caller_identity()
                    self._found[region] = (self._make_client("iam", region), str(who["Account"]),
                                           str(who["Arn"]))
                except (ClientError, BotoCoreError) as exc:
                    self._found[region] = f"connsync's own AWS identity is not usable ({_why(exc)})"
            found = self._found[region]
        if isinstance(found, str):
            return None, found
        iam, ambient_account, arn = found
        if ambient_account != account:
            return None, f"connsync's own AWS identity ({arn}) is in account {ambient_account}"
        return iam, None


def check(user: str, account: str, region: str, key_id: str, own: ListPage,
          ambient: Ambient | None) -> Exposure:
    """Ask with the key (``own``), else with the ambient identity in the same account."""
    try:
        policies = quarantine_policies(own, user)
    except (ClientError, BotoCoreError) as exc:
        own_reason = f"the key may not read its user's policies ({_why(exc)})"
        if ambient is None:
            return _unverifiable(own_reason)
        iam, refusal = ambient.iam_for(account, region)
        if iam is None:
            return _unverifiable(f"{own_reason}, and {refusal}")
        try:
            policies = quarantine_policies(iam.list_attached_user_policies, user)
        except (ClientError, BotoCoreError) as again:
            return _unverifiable(f"{own_reason}, nor may connsync's own identity ({_why(again)})")
    if policies:
        return Exposure("exposed", exposed_message(user, policies, key_id), policies)
    return Exposure("clear")


def judged(exposure: Exposure, *, accepted: bool) -> tuple[str | None, str | None]:
    """(why the key fails, a warning): ``accepted`` is the runbook's new key of a quarantined user.

    The policy belongs to the user, not the key: once ``rotate --exposed`` has
    deactivated the exposed key, the user's new key is fine, and the policy
    stays until someone has looked at CloudTrail and detaches it.
    """
    if exposure.state == "exposed" and not accepted:
        return exposure.message, None
    if exposure.state == "exposed":
        return None, (f"AWS's {', '.join(exposure.policies)} is still attached to the user (the exposed key "
                      "was deactivated): detach it once CloudTrail shows nothing more")
    return None, exposure.message


def _unverifiable(reason: str) -> Exposure:
    return Exposure("unverifiable", f"exposure unverifiable: could not see whether AWS has quarantined the "
                    f"key's IAM user: {reason}; allow iam:ListAttachedUserPolicies on the user itself, "
                    "or give the job an AWS identity in the same account that may read it")
