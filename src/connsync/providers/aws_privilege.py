"""The organisation policy's online rules for AWS keys: least privilege and the key's age.

``least_privilege``: the IAM user behind the key (its inline and attached policies, those of its
groups, and its permission boundary) holds no administrator-equivalent right: ``*`` on ``*``,
``iam:*``, or one of the privilege-escalation paths (``iam:CreatePolicyVersion``,
``iam:AttachUserPolicy``, ``iam:PassRole`` with ``lambda:CreateFunction``, ...). The analysis is
Salesforce's cloudsplaining (over policy_sentry's database of every AWS action, kept current with
AWS), run on the union of the user's statements, so that an escalation split over two policies is
still one; a permission boundary removes what it does not also grant.

Who reads IAM: the connection's own key first (``iam:Get*``/``iam:List*`` on itself); when IAM
denies it, the job's own AWS identity (the ambient chain: environment, OIDC role). Whichever reads,
the user inspected is always the key's, never the job's. When neither may read, the rule is
``unverifiable``: reported, and never a pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from connsync.providers import key_age
from connsync.providers.aws_exposure import Ambient
from connsync.providers.base import OnlineRule, VerifySettings

# reader("list_groups_for_user", UserName="x") -> the IAM API's response.
Reader = Callable[..., Mapping[str, Any]]
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
_ESCALATION = "privilege escalation "
# A key whose age the policy bounds is not also held to verify.max_key_age_days: the policy's
# limit replaces it (and says so with the rule's id and severity).
_NO_LIMIT = 10**6


class Unverifiable(Exception):
    """Neither the key nor the job's identity could read what a rule needs."""


def key_age_settings(settings: VerifySettings, rules: Sequence[OnlineRule]) -> VerifySettings:
    """The settings for verify's own key-age warning: off when a policy rule sets the limit."""
    if any(r.max_key_age_days is not None for r in rules):
        return dataclasses.replace(settings, max_key_age_days=_NO_LIMIT)
    return settings


class _Iam:
    """IAM reads with the key, then (after IAM denied the key) with the job's own identity, in the
    key's account (a user name means nothing in another)."""

    def __init__(self, with_key: Reader, ambient: Ambient, account: str, region: str) -> None:
        self._with_key: Reader | None = with_key
        self._ambient, self._account, self._region = ambient, account, region
        self.via_job = False
        self.key_denied: str | None = None
        self.policies: dict[str, UserPolicies] = {}

    def __call__(self, operation: str, **params: Any) -> Mapping[str, Any]:
        if self._with_key is not None:
            try:
                return self._with_key(operation, **params)
            except ClientError as exc:
                if _code(exc) not in _DENIED:
                    raise Unverifiable(f"IAM {_api(operation)} failed ({_code(exc)})") from None
                self.key_denied, self._with_key, self.via_job = _api(operation), None, True
        iam, why_not = self._ambient.iam_for(self._account, self._region)
        if iam is None:
            raise Unverifiable(f"IAM denied the key {self.key_denied}, and {why_not}")
        try:
            return dict(getattr(iam, operation)(**params))
        except ClientError as exc:
            code = _code(exc)
            if code in _DENIED:
                raise Unverifiable(f"neither the key nor the job's AWS identity may read the user's IAM "
                                   f"policies (IAM denied the key {self.key_denied}, the job's identity "
                                   f"{_api(operation)})") from None
            raise Unverifiable(f"IAM denied the key {self.key_denied}, and IAM {_api(operation)} with the "
                               f"job's AWS identity failed ({code})") from None
        except BotoCoreError as exc:
            raise Unverifiable(f"IAM {_api(operation)} failed ({type(exc).__name__})") from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) or "unknown error"


def _api(operation: str) -> str:
    return "iam:" + "".join(part.title() for part in operation.split("_"))


def _pages(read: Reader, operation: str, key: str, **params: Any) -> list[Any]:
    items: list[Any] = []
    marker: str | None = None
    for _ in range(100):  # 100 pages of 100: far beyond IAM's own quotas
        page = read(operation, **params, MaxItems=100, **({"Marker": marker} if marker else {}))
        items.extend(page.get(key, []))
        marker = page.get("Marker") if page.get("IsTruncated") else None
        if not marker:
            break
    return items


def _managed(read: Reader, arn: str) -> Mapping[str, Any]:
    policy = read("get_policy", PolicyArn=arn)["Policy"]
    version = read("get_policy_version", PolicyArn=arn, VersionId=policy["DefaultVersionId"])
    return _document(version["PolicyVersion"]["Document"])


def _document(raw: Any) -> Mapping[str, Any]:
    if isinstance(raw, str):  # botocore decodes it; a URL-encoded string only from odd endpoints
        import json
        import urllib.parse

        return dict(json.loads(urllib.parse.unquote(raw)))
    return dict(raw)


@dataclasses.dataclass
class UserPolicies:
    """The user's policy documents, each with where it comes from."""

    identity: list[tuple[str, Mapping[str, Any]]]
    boundary: Mapping[str, Any] | None


def user_policies(read: Reader, user: str) -> UserPolicies:
    found: list[tuple[str, Mapping[str, Any]]] = []
    for name in _pages(read, "list_user_policies", "PolicyNames", UserName=user):
        found.append((f"inline policy {name}",
                      _document(read("get_user_policy", UserName=user, PolicyName=name)["PolicyDocument"])))
    for attached in _pages(read, "list_attached_user_policies", "AttachedPolicies", UserName=user):
        found.append((f"policy {attached['PolicyName']}", _managed(read, attached["PolicyArn"])))
    for group in _pages(read, "list_groups_for_user", "Groups", UserName=user):
        name = group["GroupName"]
        for policy in _pages(read, "list_group_policies", "PolicyNames", GroupName=name):
            document = read("get_group_policy", GroupName=name, PolicyName=policy)["PolicyDocument"]
            found.append((f"group {name}'s inline policy {policy}", _document(document)))
        for attached in _pages(read, "list_attached_group_policies", "AttachedPolicies", GroupName=name):
            found.append((f"group {name}'s policy {attached['PolicyName']}",
                          _managed(read, attached["PolicyArn"])))
    boundary_arn = (read("get_user", UserName=user)["User"].get("PermissionsBoundary") or {}).get(
        "PermissionsBoundaryArn")
    return UserPolicies(found, _managed(read, boundary_arn) if boundary_arn else None)


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statement = document.get("Statement", [])
    return [s for s in (statement if isinstance(statement, list) else [statement]) if isinstance(s, Mapping)]


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or ()]


def admin_rights(documents: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Administrator-equivalent rights the documents grant together: a short name -> what grants it."""
    from cloudsplaining.scan.policy_document import PolicyDocument  # policy_sentry's database: ~0.3 s

    statements = [s for d in documents for s in _statements(d)]
    rights: dict[str, str] = {}
    for s in statements:
        if s.get("Effect") != "Allow" or s.get("Condition") or "*" not in _as_list(s.get("Resource")):
            continue
        if "*" in _as_list(s.get("Action")):
            # Everything, escalations included: naming each of them would only hide this one.
            return {"* on *": "every action on every resource"}
        if s.get("NotAction"):  # everything but a list: as broad, and slow to expand action by action
            rights["NotAction on *"] = "every action but " + ", ".join(_as_list(s.get("NotAction")))
    if rights:
        return rights
    merged = PolicyDocument({"Version": "2012-10-17", "Statement": statements})
    if "iam" in merged.service_wildcard:
        rights["iam:*"] = "every IAM action"
    for escalation in merged.allows_privilege_escalation:
        rights[_ESCALATION + escalation["type"]] = " + ".join(escalation["actions"])
    return rights


def effective_admin_rights(policies: UserPolicies) -> dict[str, str]:
    """What the user may do, less what its permission boundary does not also allow."""
    rights = admin_rights(d for _, d in policies.identity)
    if policies.boundary is not None:
        bounded = admin_rights([policies.boundary])
        rights = {name: why for name, why in rights.items() if name in bounded or "* on *" in bounded}
    return rights


def _grants(policies: UserPolicies, rights: Iterable[str]) -> dict[str, list[str]]:
    """Right -> the policies that grant it on their own (none: only the policies together do)."""
    each = [(source, admin_rights([document])) for source, document in policies.identity]
    return {right: [source for source, own in each if right in own] for right in rights}


_SHOWN_ESCALATIONS = 4


def _describe(rights: Mapping[str, str], sources: Mapping[str, list[str]]) -> str:
    """One sentence: the broad rights with what grants them, then the escalation paths, the first few."""
    def through(right: str) -> str:
        return ", ".join(sources[right]) or "its policies together"

    broad = [f"{right} ({why}) through {through(right)}" for right, why in sorted(rights.items())
             if not right.startswith(_ESCALATION)]
    paths = sorted(r.removeprefix(_ESCALATION) for r in rights if r.startswith(_ESCALATION))
    if paths:
        first = paths[:_SHOWN_ESCALATIONS]
        named = ", ".join(f"{p} ({rights[_ESCALATION + p]})" for p in first)
        more = f" and {len(paths) - len(first)} more" if len(paths) > len(first) else ""
        broad.append(f"privilege escalation by {named}{more}, through "
                     f"{through(_ESCALATION + first[0])}")
    return "; ".join(broad)


def _user_name(arn: str) -> str | None:
    resource = arn.split(":", 5)[-1]
    return resource.rsplit("/", 1)[-1] if resource.startswith("user/") else None


def check(rules: Sequence[OnlineRule], who: Mapping[str, str], access_key_id: str, with_key: Reader,
          ambient: Ambient, region: str) -> tuple[list[str], list[str]]:
    """(failures, warnings) of ``rules`` for the key ``access_key_id`` of the principal ``who`` (STS's
    account and arn); ``ambient`` is the job's own identity, asked only when IAM denies the key."""
    failures: list[str] = []
    warnings: list[str] = []
    read = _Iam(with_key, ambient, who["account"], region)
    for rule in rules:
        problems = _rule_problems(rule, who["arn"], access_key_id, read)
        if problems:
            said = f" ({rule.message})" if rule.message else ""
            (failures if rule.severity == "error" else warnings).extend(
                f"{rule.rule}: {p}{said}" for p in problems)
    if read.via_job:
        warnings.append(f"the policy's IAM reads used the job's own AWS identity: IAM denied the key "
                        f"{read.key_denied}")
    return failures, warnings


def _rule_problems(rule: OnlineRule, arn: str, access_key_id: str, read: _Iam) -> list[str]:
    user = _user_name(arn)
    problems = []
    try:
        if rule.max_key_age_days is not None:
            problems += _age_problems(rule.max_key_age_days, access_key_id, read, user)
        if rule.least_privilege:
            if user is None:
                raise Unverifiable(f"{arn} is not an IAM user")
            policies = _cached_policies(read, user)
            rights = effective_admin_rights(policies)
            if rights:
                problems.append(f"least privilege: IAM user {user!r} holds administrator-equivalent rights: "
                                + _describe(rights, _grants(policies, rights)))
    except Unverifiable as exc:
        problems.append(f"unverifiable: {exc}")
    return problems


def _cached_policies(read: _Iam, user: str) -> UserPolicies:
    """One read of the user's policies per connection, however many rules ask."""
    if user not in read.policies:
        read.policies[user] = user_policies(read, user)
    return read.policies[user]


def _age_problems(limit: int, access_key_id: str, read: _Iam, user: str | None) -> list[str]:
    keys = read("list_access_keys", **({"UserName": user} if user else {}))["AccessKeyMetadata"]
    mine = next((k for k in keys if k.get("AccessKeyId") == access_key_id), None)
    created = mine.get("CreateDate") if mine else None
    if not isinstance(created, datetime):
        raise Unverifiable("IAM did not list this key")
    overdue = key_age.overdue_message(created, limit)
    return [overdue.replace("max_key_age_days", "the policy's max_key_age_days")] if overdue else []
