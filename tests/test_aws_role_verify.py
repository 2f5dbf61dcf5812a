"""Role connections online, on a moto server with credential checks on.

moto assumes any role ARN for any caller its identity policies allow: it does not
look for the role, read its trust policy, compare the external id or bound the
session. connsync reads the role through IAM (``iam:GetRole``) and holds STS's
answer to what the trust policy and maximum session say, so these verdicts are
the ones real AWS gives (there as STS's ``AccessDenied``, explained the same way).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import CANARY, MotoServer, Run
from tests.test_verify import create_key

ACCOUNT = "123456789012"
EXTERNAL = "Ext-Canary/DoNotLeak=0123456789"


def trust(principal: str, external_id: str | None = None) -> str:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"AWS": principal},
                                 "Action": "sts:AssumeRole"}
    if external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def new_role(run: Run, monkeypatch: pytest.MonkeyPatch, name: str, role: str, *, external_id: str | None,
             base: tuple[str, str] | None, account: str = ACCOUNT, extra: tuple[str, ...] = ()) -> None:
    args = ["new", "aws", "--name", name, "--no-input", "--set", f"account_id={account}",
            "--set", "default_region=us-east-1", "--set", f"role_arn=arn:aws:iam::{ACCOUNT}:role/{role}",
            *extra]
    if external_id:
        monkeypatch.setenv("TEST_EXTERNAL_ID", external_id)
        args += ["--secret-env", "external_id=TEST_EXTERNAL_ID"]
    if base:
        monkeypatch.setenv("TEST_BASE_SECRET", base[1])
        args += ["--set", f"access_key_id={base[0]}", "--secret-env", "secret_access_key=TEST_BASE_SECRET"]
    result = run(*args)
    assert result.code == 0, result.err


@pytest.fixture
def role_repo(repo: Path, aws_endpoint: MotoServer, run: Run, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A base user that may assume roles and read them; roles whose trust policies differ."""
    iam = boto3.client("iam", region_name="us-east-1")
    for user in ("platform", "stranger"):
        iam.create_user(UserName=user)
    iam.put_user_policy(UserName="platform", PolicyName="assume", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["sts:AssumeRole", "iam:GetRole", "iam:ListAccessKeys",
                                           "iam:ListAttachedUserPolicies"], "Resource": "*"}]}))
    platform = f"arn:aws:iam::{ACCOUNT}:user/platform"
    iam.create_role(RoleName="connections", AssumeRolePolicyDocument=trust(platform, EXTERNAL),
                    MaxSessionDuration=3600)
    iam.create_role(RoleName="no-external-id", AssumeRolePolicyDocument=trust(platform))
    iam.create_role(RoleName="for-others",
                    AssumeRolePolicyDocument=trust(f"arn:aws:iam::{ACCOUNT}:user/stranger"))
    base = create_key(iam, "platform")
    new_role(run, monkeypatch, "Role", "connections", external_id=EXTERNAL, base=base)
    new_role(run, monkeypatch, "Wrong External Id", "connections", external_id=CANARY, base=base)
    new_role(run, monkeypatch, "No External Id", "connections", external_id=None, base=base)
    new_role(run, monkeypatch, "Missing Role", "no-such-role", external_id=EXTERNAL, base=base)
    new_role(run, monkeypatch, "Trust Denies", "for-others", external_id=None, base=base)
    new_role(run, monkeypatch, "Too Long", "connections", external_id=EXTERNAL, base=base,
             extra=("--set", "session_duration_seconds=7200"))
    new_role(run, monkeypatch, "Unchecked Id", "no-external-id", external_id=EXTERNAL, base=base)
    # The platform's own identity (here: the environment's key) assumes the role; no key in the file.
    new_role(run, monkeypatch, "Ambient", "no-external-id", external_id=None, base=None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", base[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", base[1])
    aws_endpoint.require_auth()
    return repo


def test_verify_gives_each_role_its_verdict(role_repo: Path, run: Run) -> None:
    result = run("verify", "--format", "json")
    assert result.code == 1
    by_name = {r["name"]: r for r in json.loads(result.out)["results"]}
    role = by_name["Role"]
    assert role["status"] == "ok", role["messages"]
    assert role["identity"] == {"account": ACCOUNT,
                                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/connections/connsync-verify"}
    assert by_name["Ambient"]["status"] == "ok", by_name["Ambient"]["messages"]
    assert by_name["Ambient"]["messages"] == [
        "no long-term key: the platform assumes the role (nothing to rotate)"]
    expected = {
        "Wrong External Id": "external_id is not the one the trust policy of connections requires "
                             "(sts:ExternalId): neither value is shown",
        "No External Id": "the trust policy of connections requires an external id (sts:ExternalId) and "
                          "the connection has none: set external_id",
        "Missing Role": f"the role no-such-role does not exist in account {ACCOUNT}",
        "Trust Denies": f"the trust policy of for-others does not let arn:aws:iam::{ACCOUNT}:user/platform "
                        "assume it: add it as a Principal with sts:AssumeRole",
        "Too Long": "session_duration_seconds 7200 exceeds the role's maximum session duration (3600 s): "
                    "lower it, or raise the role's MaxSessionDuration",
    }
    for name, message in expected.items():
        assert (by_name[name]["status"], by_name[name]["messages"]) == ("failed", [message]), name
    unchecked = by_name["Unchecked Id"]
    assert unchecked["status"] == "warning"
    assert unchecked["messages"] == ["the trust policy of no-external-id does not check sts:ExternalId, so "
                                     "external_id protects nothing: add the condition to the trust policy"]
    assert EXTERNAL not in result.out + result.err and CANARY not in result.out + result.err


def test_a_role_connection_goes_to_the_store(role_repo: Path, run: Run) -> None:
    failing = sorted(p.name for p in (role_repo / "connections").glob("*.yaml")
                     if p.name not in ("role.yaml", "ambient.yaml", "unchecked-id.yaml"))
    for name in failing:
        (role_repo / "connections" / name).rename(role_repo / name)
    result = run("apply", "--auto-approve", "--format", "json")
    assert result.code == 0, result.out + result.err
    assert sorted(a["name"] for a in json.loads(result.out)["applied"]) == ["Ambient", "Role", "Unchecked Id"]
    listed = {r["name"]: r for r in json.loads(run("list", "--format", "json").out)["connections"]}
    assert listed["Role"]["spec"]["role_arn"] == f"arn:aws:iam::{ACCOUNT}:role/connections"
    assert "external_id" not in listed["Role"]["spec"]
    assert run("plan", "--detailed-exitcode").code == 0
    table = run("list").out
    assert [line.split("  ")[0] for line in table.splitlines() if "no long-term key" in line] == ["Ambient"]
    (role_repo / "missing-role.yaml").rename(role_repo / "connections/missing-role.yaml")
    refused = run("apply", "--auto-approve", "--format", "json")
    assert refused.code == 1
    assert [f["name"] for f in json.loads(refused.out)["failed"]] == ["Missing Role"]
    for output in (result, refused):
        assert EXTERNAL not in output.out + output.err


def test_a_role_of_another_account_is_refused_before_any_call(role_repo: Path, run: Run) -> None:
    path = role_repo / "connections/role.yaml"
    text = path.read_text()
    assert text.count(ACCOUNT) == 2  # account_id and role_arn; sops' MAC covers neither (clear fields)
    path.write_text(text.replace(f"account_id: \"{ACCOUNT}\"", "account_id: \"210987654321\""))
    result = run("verify", "--format", "json", "connections/role.yaml")
    assert result.code == 1
    assert "aws-role-account" in result.out + result.err


def test_the_session_must_be_the_declared_role_and_account(aws_endpoint: MotoServer) -> None:
    """What STS hands back is checked too: here an endpoint that assumes another account's role."""
    from connsync.model import Declaration, Desired, Secret
    from connsync.providers import VerifySettings
    from connsync.providers.aws_verify import verify

    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="platform")
    key_id, secret = create_key(iam, "platform")
    decl = Declaration("connections/x.yaml", {"provider": "aws", "metadata": {"name": "X"}}, "d")
    desired = Desired(decl, {"account_id": "210987654321", "default_region": "us-east-1",
                             "role_arn": f"arn:aws:iam::{ACCOUNT}:role/connections", "access_key_id": key_id},
                      {"secret_access_key": Secret(secret)})
    verdict = verify(desired, VerifySettings(timeout_seconds=5))
    assert verdict.status == "failed"
    assert verdict.messages == (f"the role's session is in account {ACCOUNT}, not account_id 210987654321",)


def test_temporary_credentials_never_leave_the_call(role_repo: Path, run: Run,
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    """The session's keys are in no output and no file; the base key is a Secret until signing."""
    result = run("-v", "verify", "--format", "json", "connections/role.yaml")
    assert result.code == 0, result.err
    sts = boto3.session.Session().client("sts", region_name="us-east-1")
    assert sts.get_caller_identity()["Arn"].endswith(":user/platform")  # the environment is untouched
    text = result.out + result.err
    assert "ASIA" not in text and "SessionToken" not in text and EXTERNAL not in text
    for root in (role_repo, Path(os.environ["HOME"])):
        for path in root.rglob("*"):
            if path.is_file() and path.suffix != ".yaml":
                assert EXTERNAL.encode() not in path.read_bytes(), path


def test_rotate_leaves_a_role_alone_and_rotates_its_base_key(role_repo: Path, run: Run) -> None:
    refused = run("rotate", "Ambient", "--dry-run")
    assert refused.code == 1 and "has no long-term key" in refused.err
    due = run("rotate", "--older-than", "0", "--dry-run")
    assert "Ambient: no long-term key (a role)" in due.out + due.err
