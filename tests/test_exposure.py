"""``verify`` sees AWS's quarantine policy, on a moto server with credential checks on.

moto loads AWS's managed policies (AWSCompromisedKeyQuarantineV3 among them)
only when ``MOTO_IAM_LOAD_MANAGED_POLICIES`` is true when its IAM backend is
made; the fixture sets it and resets the in-process server, so only these
tests pay for the 1,600 policies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import CANARY, MotoServer, Run, new_aws
from tests.github.fake_api import FakeGitHub
from tests.test_github_scripts import NODE, PR_NUMBER, PR_SCRIPT, run_script
from tests.test_outputs import checked

QUARANTINE = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3"
READ_OWN_POLICIES = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["iam:ListAccessKeys", "iam:ListAttachedUserPolicies"],
                   "Resource": "*"}],
}


@pytest.fixture
def managed_policies(aws_endpoint: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    aws_endpoint.reset()  # the IAM backend is made again, now with AWS's managed policies
    assert boto3.client("iam").get_policy(PolicyArn=QUARANTINE)["Policy"]["PolicyName"]
    return aws_endpoint


def user_with_key(iam: Any, user: str, policy: dict[str, Any] | None = None) -> dict[str, str]:
    iam.create_user(UserName=user)
    if policy:
        iam.put_user_policy(UserName=user, PolicyName="own", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


HOSTILE = "Leak <img src=x onerror=alert(1)> | @admins"


@pytest.fixture
def quarantined(repo: Path, managed_policies: MotoServer, run: Run, monkeypatch: pytest.MonkeyPatch,
                ) -> dict[str, dict[str, str]]:
    """'Leaked' (its user quarantined, may read its own policies), 'Blind' (quarantined, may read
    nothing) and 'Fine' (not quarantined); and an admin key, not yet in the environment."""
    iam = boto3.client("iam", region_name="us-east-1")
    keys = {"Leaked": user_with_key(iam, "leaked", READ_OWN_POLICIES),
            "Blind": user_with_key(iam, "blind"),
            "Fine": user_with_key(iam, "fine", READ_OWN_POLICIES),
            "admin": user_with_key(iam, "admin")}
    iam.attach_user_policy(UserName="admin", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    for user in ("leaked", "blind"):
        iam.attach_user_policy(UserName=user, PolicyArn=QUARANTINE)
    for name in ("Leaked", "Blind", "Fine"):
        result = new_aws(run, monkeypatch, name=name, secret=keys[name]["secret"],
                         access_key_id=keys[name]["id"])
        assert result.code == 0, result.err
    managed_policies.require_auth()
    return keys


def exposed(user: str, key_id: str) -> str:
    return (f"exposed: AWS has quarantined IAM user {user} (policy AWSCompromisedKeyQuarantineV3); "
            f"run `connsync rotate --exposed {key_id}`")


def test_a_quarantined_key_fails_verify(quarantined: dict[str, dict[str, str]], run: Run,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # no identity of connsync's own: the key asks alone
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = run("verify", "--format", "json")
    assert result.code == 1
    by_name = {r["name"]: r for r in checked("verify", result, ok=False)["results"]}
    assert by_name["Leaked"]["status"] == "failed"
    assert by_name["Leaked"]["messages"][0] == exposed("leaked", quarantined["Leaked"]["id"])
    assert by_name["Fine"]["status"] == "ok", by_name["Fine"]["messages"]
    # The key may not read IAM and connsync has no identity of its own: said, never a pass.
    assert by_name["Blind"]["status"] == "warning"
    assert any(m.startswith("exposure unverifiable: ") and "ListAttachedUserPolicies" in m
               for m in by_name["Blind"]["messages"])

    text = run("verify")
    assert text.code == 1
    assert exposed("leaked", quarantined["Leaked"]["id"]) in text.out
    assert "exposure unverifiable" in text.out
    for output in (result, text):
        assert CANARY not in output.out + output.err
        assert all(k["secret"] not in output.out + output.err for k in quarantined.values())


def test_the_jobs_own_identity_sees_what_the_key_may_not(quarantined: dict[str, dict[str, str]], run: Run,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", quarantined["admin"]["id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", quarantined["admin"]["secret"])
    result = run("verify", "--format", "json")
    by_name = {r["name"]: r for r in checked("verify", result, ok=False)["results"]}
    assert by_name["Blind"]["status"] == "failed"
    assert by_name["Blind"]["messages"][0] == exposed("blind", quarantined["Blind"]["id"])
    assert by_name["Fine"]["status"] == "ok"


def test_an_ambient_identity_that_does_not_work_is_unverifiable(
        quarantined: dict[str, dict[str, str]], run: Run) -> None:
    # The environment's "testing" key is unknown to moto once credential checks are on.
    result = run("verify", "--format", "json", "connections/blind.yaml")
    [verdict] = checked("verify", result, ok=True)["results"]
    assert verdict["status"] == "warning"
    assert "connsync's own AWS identity is not usable (InvalidClientTokenId)" in verdict["messages"][-1]


def test_a_role_whose_base_key_is_quarantined_fails_verify(
        quarantined: dict[str, dict[str, str]], run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """A base key assumes the role: leaked, the role is as exposed as a key connection."""
    from tests.test_aws_role_verify import new_role, trust

    admin = boto3.client("iam", region_name="us-east-1", aws_access_key_id=quarantined["admin"]["id"],
                         aws_secret_access_key=quarantined["admin"]["secret"])
    for user in ("leaked", "fine"):
        admin.create_role(RoleName=f"for-{user}",
                          AssumeRolePolicyDocument=trust(f"arn:aws:iam::123456789012:user/{user}"))
    leaked, fine = quarantined["Leaked"], quarantined["Fine"]
    for name, role, key in (("Leaked Role", "for-leaked", leaked), ("Fine Role", "for-fine", fine)):
        new_role(run, monkeypatch, name, role, external_id=None, base=(key["id"], key["secret"]))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # no identity of connsync's own: each base key asks alone
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = run("verify", "--format", "json", "connections/leaked-role.yaml", "connections/fine-role.yaml")
    by_name = {r["name"]: r for r in checked("verify", result, ok=False)["results"]}
    assert by_name["Leaked Role"]["status"] == "failed"
    assert by_name["Leaked Role"]["messages"] == ["base key " + exposed("leaked", leaked["id"])]
    # The other base key's user is not quarantined: its verdict is about the role, not exposure.
    assert not any("expos" in m for m in by_name["Fine Role"]["messages"]), by_name["Fine Role"]
    assert all(k["secret"] not in result.out + result.err for k in quarantined.values())


def test_apply_does_not_store_a_quarantined_key(quarantined: dict[str, dict[str, str]], run: Run) -> None:
    result = run("apply", "--auto-approve", "--format", "json")
    assert result.code == 1
    report = checked("apply", result, ok=False)
    assert [f["name"] for f in report["failed"]] == ["Leaked"]
    assert exposed("leaked", quarantined["Leaked"]["id"]) in report["failed"][0]["error"]
    assert sorted(a["name"] for a in report["applied"]) == ["Blind", "Fine"]


@pytest.mark.skipif(NODE is None, reason="node is not installed (apt-get install nodejs)")
def test_the_pull_request_comment_says_the_key_is_exposed(
        quarantined: dict[str, dict[str, str]], run: Run, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    admin_key = quarantined["admin"]
    admin = boto3.client("iam", region_name="us-east-1", aws_access_key_id=admin_key["id"],
                         aws_secret_access_key=admin_key["secret"])
    hostile_key = user_with_key(admin, "hostile", READ_OWN_POLICIES)
    admin.attach_user_policy(UserName="hostile", PolicyArn=QUARANTINE)
    assert new_aws(run, monkeypatch, name=HOSTILE, secret=hostile_key["secret"],
                   access_key_id=hostile_key["id"]).code == 0
    # What the PR workflow's verify step writes, then its comment script posts with the plan.
    result = run("verify", "--require-verified", "--format", "markdown")
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0].startswith("**connsync verify failed**: ")
    leaked = [line for line in lines if line.startswith("| failed | `Leaked` ")]
    assert leaked == [f"| failed | `Leaked` | `aws` | `connections/leaked.yaml` | "
                      f"`` {exposed('leaked', quarantined['Leaked']['id'])} `` |"]
    assert "| ok |" not in result.out and "`Fine`" not in result.out  # only what did not pass
    # A name is data: no HTML, no mention, no extra cell; only a code span.
    (hostile,) = [line for line in lines if "hostile" in line]
    assert "| `Leak <img src=x onerror=alert(1)> \\| @admins` |" in hostile
    assert hostile.replace("\\|", "").count("|") == 6
    assert f"run `connsync rotate --exposed {hostile_key['id']}`" in hostile
    assert CANARY not in result.out + result.err
    assert all(k["secret"] not in result.out + result.err for k in [*quarantined.values(), hostile_key])

    with FakeGitHub() as github:
        github.state.add_issue(title="Edit", pull_request=True, number=PR_NUMBER)
        run_script(github, tmp_path, PR_SCRIPT, exit_code="0", plan="No changes.", verify=result.out,
                   verify_outcome="failure")
        (comment,) = github.state.comments_on(PR_NUMBER)
    assert leaked[0] in comment["body"].splitlines()
    assert comment["body"].endswith("\n\nNo changes.")
