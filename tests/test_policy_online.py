"""The policy's online rules (least_privilege, max_key_age_days) in verify and apply, on a moto server
with credential checks on and AWS's managed policies loaded (MOTO_IAM_LOAD_MANAGED_POLICIES)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from connsync.providers import aws_privilege
from connsync.providers.aws_exposure import Ambient
from connsync.providers.base import OnlineRule
from tests.conftest import CANARY, MotoServer, Run, new_aws
from tests.test_verify import create_key

READ_SELF = ["iam:GetUser", "iam:ListUserPolicies", "iam:GetUserPolicy", "iam:ListAttachedUserPolicies",
             "iam:ListGroupsForUser", "iam:ListGroupPolicies", "iam:GetGroupPolicy",
             "iam:ListAttachedGroupPolicies", "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListAccessKeys"]


def allow(*actions: str, resource: str = "*") -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": resource}]})


def write_policy(repo: Path, body: str) -> None:
    (repo / "policies").mkdir(exist_ok=True)
    (repo / "policies/aws.yaml").write_text(
        "apiVersion: connsync/v1\nkind: Policy\nmetadata: {name: aws}\n" + body)


LEAST_PRIVILEGE = """\
rules:
  - id: least-privilege
    match: {providers: [aws]}
    require: {least_privilege: true}
"""


Keys = dict[str, tuple[str, str]]


def make_users(repo: Path, aws_endpoint: MotoServer, run: Run, monkeypatch: pytest.MonkeyPatch, *,
               managed: bool) -> tuple[Path, Keys]:
    """Users with the rights their names say; ``managed``: admin through AWS's AdministratorAccess
    (moto loads AWS's ~1,300 managed policies, seconds per reset), else through an inline * on *."""
    if managed:
        monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        aws_endpoint.reset()  # moto loads AWS's managed policies on reset
    iam = boto3.client("iam", region_name="us-east-1")
    keys = {}
    for user in ("admin", "scoped", "blind", "escalator", "grouped", "auditor"):
        iam.create_user(UserName=user)
    if managed:
        iam.attach_user_policy(UserName="admin", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    else:
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=allow("*"))
    iam.put_user_policy(UserName="scoped", PolicyName="work",
                        PolicyDocument=allow("s3:GetObject", *READ_SELF))
    iam.put_user_policy(UserName="blind", PolicyName="work",
                        PolicyDocument=allow("s3:GetObject", resource="arn:aws:s3:::reports/*"))
    iam.put_user_policy(UserName="escalator", PolicyName="work",
                        PolicyDocument=allow("s3:GetObject", "iam:CreatePolicyVersion", *READ_SELF))
    # An escalation split over the user's own policy and its group's: found on the union.
    iam.create_group(GroupName="builders")
    iam.add_user_to_group(GroupName="builders", UserName="grouped")
    iam.put_group_policy(GroupName="builders", PolicyName="lambda",
                         PolicyDocument=allow("lambda:CreateFunction", "lambda:InvokeFunction"))
    iam.put_user_policy(UserName="grouped", PolicyName="work",
                        PolicyDocument=allow("iam:PassRole", *READ_SELF))
    iam.put_user_policy(UserName="auditor", PolicyName="read", PolicyDocument=allow("iam:Get*", "iam:List*"))
    for user in ("admin", "scoped", "blind", "escalator", "grouped", "auditor"):
        keys[user] = create_key(iam, user)
    for user in ("admin", "scoped", "blind", "escalator", "grouped"):
        key_id, secret = keys[user]
        assert new_aws(run, monkeypatch, name=user.title(), secret=secret, access_key_id=key_id).code == 0
    write_policy(repo, LEAST_PRIVILEGE)
    aws_endpoint.require_auth()
    return repo, keys


@pytest.fixture
def iam_repo(repo: Path, aws_endpoint: MotoServer, run: Run,
             monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Keys]:
    return make_users(repo, aws_endpoint, run, monkeypatch, managed=False)


@pytest.fixture
def managed_repo(repo: Path, aws_endpoint: MotoServer, run: Run,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Keys]]:
    yield make_users(repo, aws_endpoint, run, monkeypatch, managed=True)
    monkeypatch.delenv("MOTO_IAM_LOAD_MANAGED_POLICIES")
    aws_endpoint.reset()  # the next test's server starts without the managed policies


def results(run: Run, *args: str) -> tuple[int, dict[str, Any]]:
    result = run("verify", "--format", "json", *args)
    assert CANARY not in result.out + result.err
    assert "Traceback" not in result.err, result.err[-3000:]
    return result.code, {r["name"]: r for r in json.loads(result.out)["results"]}


def use_job_identity(monkeypatch: pytest.MonkeyPatch, key: tuple[str, str]) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key[1])


def test_an_admin_key_fails_and_a_scoped_one_passes(managed_repo: tuple[Path, Keys], run: Run,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, keys = managed_repo
    use_job_identity(monkeypatch, keys["auditor"])
    code, by_name = results(run)
    assert code == 1
    assert by_name["Scoped"]["status"] == "ok", by_name["Scoped"]["messages"]
    admin = by_name["Admin"]
    assert admin["status"] == "failed"
    assert admin["messages"] == [
        "policy/least-privilege: least privilege: IAM user 'admin' holds administrator-equivalent rights: "
        "* on * (every action on every resource) through policy AdministratorAccess"]
    assert by_name["Escalator"]["status"] == "failed"
    assert by_name["Escalator"]["messages"] == [
        "policy/least-privilege: least privilege: IAM user 'escalator' holds administrator-equivalent "
        "rights: privilege escalation by CreateNewPolicyVersion (iam:createpolicyversion), through "
        "inline policy work"]
    grouped = " ".join(by_name["Grouped"]["messages"])
    assert by_name["Grouped"]["status"] == "failed"
    assert "PassExistingRoleToNewLambdaThenInvoke (iam:passrole + lambda:createfunction + " \
           "lambda:invokefunction)" in grouped and "through its policies together" in grouped
    # The key may not read IAM: the job's identity reads the key's user (never its own).
    blind = by_name["Blind"]
    assert blind["status"] == "warning", blind
    assert blind["messages"][-1] == ("the policy's IAM reads used the job's own AWS identity: IAM denied "
                                     "the key iam:ListUserPolicies")


def test_neither_identity_may_read_iam_is_unverifiable_never_a_pass(
        iam_repo: tuple[Path, Keys], run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    _, keys = iam_repo
    use_job_identity(monkeypatch, keys["blind"])  # the job's identity may not read IAM either
    code, by_name = results(run, "connections/blind.yaml")
    assert code == 1
    message = by_name["Blind"]["messages"][0]
    assert by_name["Blind"]["status"] == "failed"
    assert message == ("policy/least-privilege: unverifiable: neither the key nor the job's AWS identity "
                       "may read the user's IAM policies (IAM denied the key iam:ListUserPolicies, the "
                       "job's identity iam:ListUserPolicies)")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, by_name = results(run, "connections/blind.yaml")
    assert code == 1 and by_name["Blind"]["messages"][0] == (
        "policy/least-privilege: unverifiable: IAM denied the key iam:ListUserPolicies, and connsync's own "
        "AWS identity is not usable (NoCredentialsError)")


def test_a_warning_rule_warns_and_a_waiver_exempts(iam_repo: tuple[Path, Keys],
                                                  run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, keys = iam_repo
    use_job_identity(monkeypatch, keys["auditor"])
    expires = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
    write_policy(repo, LEAST_PRIVILEGE.replace("    match:", "    severity: warning\n    match:")
                 + f"waivers:\n  - {{rule: least-privilege, connection: escalator, expires: {expires}, "
                 "reason: 'SEC-12, the break-glass user'}\n")
    code, by_name = results(run, "connections/admin.yaml", "connections/escalator.yaml")
    assert code == 0
    assert by_name["Admin"]["status"] == "warning" and "* on *" in by_name["Admin"]["messages"][0]
    assert by_name["Escalator"]["status"] == "ok"


def test_apply_does_not_write_a_key_that_breaks_the_policy(iam_repo: tuple[Path, Keys],
                                                           run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    _, keys = iam_repo
    use_job_identity(monkeypatch, keys["auditor"])
    result = run("apply", "--auto-approve", "--format", "json")
    assert result.code == 1
    report = json.loads(result.out)
    assert sorted(a["name"] for a in report["applied"]) == ["Blind", "Scoped"]
    assert sorted(f["name"] for f in report["failed"]) == ["Admin", "Escalator", "Grouped"]


def test_the_policy_key_age_replaces_the_configured_one(iam_repo: tuple[Path, Keys],
                                                        run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, keys = iam_repo
    use_job_identity(monkeypatch, keys["auditor"])
    write_policy(repo, "rules:\n  - id: rotation\n    require: {max_key_age_days: 30}\n")
    code, by_name = results(run, "connections/scoped.yaml")
    assert code == 0 and by_name["Scoped"]["status"] == "ok"  # a key made today


# --- the analysis and the key age, on documents and dates (no AWS needed) -------------------------


def test_a_permission_boundary_takes_away_what_it_does_not_grant() -> None:
    admin = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    boundary = json.loads(allow("s3:*"))
    assert "* on *" in aws_privilege.effective_admin_rights(aws_privilege.UserPolicies([("p", admin)], None))
    assert aws_privilege.effective_admin_rights(aws_privilege.UserPolicies([("p", admin)], boundary)) == {}
    iam_everything = json.loads(allow("iam:*"))
    rights = aws_privilege.effective_admin_rights(aws_privilege.UserPolicies([("p", iam_everything)], None))
    assert "iam:*" in rights and "privilege escalation AttachUserPolicy" in rights
    denied = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:CreatePolicyVersion", "Resource": "*"},
        {"Effect": "Deny", "Action": "iam:CreatePolicyVersion", "Resource": "*"}]}
    assert aws_privilege.admin_rights([denied]) == {}


def test_an_old_key_breaks_the_policy_key_age() -> None:
    created = datetime.now(UTC) - timedelta(days=45)

    def read(operation: str, **params: Any) -> dict[str, Any]:
        assert operation == "list_access_keys" and params == {"UserName": "platform"}
        return {"AccessKeyMetadata": [{"AccessKeyId": "AKIAOLD", "CreateDate": created, "Status": "Active"}]}

    rules = [OnlineRule("policy/rotation", "error", max_key_age_days=30)]
    who = {"account": "123456789012", "arn": "arn:aws:iam::123456789012:user/platform"}
    nobody = Ambient(lambda service, region: pytest.fail("the key could read: the job is not asked"))
    failures, warnings = aws_privilege.check(rules, who, "AKIAOLD", read, nobody, "us-east-1")
    assert failures == ["policy/rotation: the key is 45 days old, past the policy's max_key_age_days (30): "
                        "rotate it ('connsync rotate')"] and warnings == []
    failures, _ = aws_privilege.check(rules, who, "AKIANEW", read, nobody, "us-east-1")
    assert failures == ["policy/rotation: unverifiable: IAM did not list this key"]
