"""``connsync rotate --exposed KEY_ID``: the incident runbook, on moto with credential checks on.

The exposed key's secret is the suite's canary (set in moto's own state), so
every output, the audit log and any log file can be searched for it. moto
accepts inactive keys even with auth on (see test_rotate.py), so the state of
the exposed key is read from moto's IAM backend, never by trying the key.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from connsync.store.sqlite import SqliteStore
from tests.conftest import CANARY, MotoServer, Result, Run, new_aws
from tests.test_exposure import QUARANTINE, managed_policies  # noqa: F401 - a fixture
from tests.test_outputs import checked
from tests.test_rotate import KEY_RE, _base32_key_ids, decrypted, iam_keys, moto_key  # noqa: F401

USER = "platform"
FILES = (Path("connections/aws-prod.yaml"), Path("connections/billing.yaml"))
SELF_SERVICE = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["iam:*AccessKey*", "iam:ListAttachedUserPolicies"],
                   "Resource": "*"}],
}


def store_of(repo: Path, workspace: str = "default") -> SqliteStore:
    return SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", workspace)


@pytest.fixture
def leaked(repo: Path, managed_policies: MotoServer, run: Run,  # noqa: F811 - the fixture
           monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The platform's key (secret: the canary) in two files and in two workspaces' records; then
    AWS finds it in public and quarantines the user. An admin key is in the environment."""
    from moto.iam.models import iam_backends

    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName=USER)
    iam.put_user_policy(UserName=USER, PolicyName="self", PolicyDocument=json.dumps(SELF_SERVICE))
    key_id = iam.create_access_key(UserName=USER)["AccessKey"]["AccessKeyId"]
    moto_key(key_id).secret_access_key = CANARY  # the exposed secret is the canary
    iam.create_user(UserName="admin")
    iam.attach_user_policy(UserName="admin", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    admin = iam.create_access_key(UserName="admin")["AccessKey"]
    for name in ("AWS Prod", "Billing"):
        assert new_aws(run, monkeypatch, name=name, secret=CANARY, access_key_id=key_id).code == 0
    managed_policies.require_auth()
    for workspace in ("default", "staging"):
        applied = run("--workspace", workspace, "apply", "--auto-approve")
        assert applied.code == 0, applied.err
    iam_backends["123456789012"]["global"].attach_user_policy(QUARANTINE, USER)  # AWS found it
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", admin["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", admin["SecretAccessKey"])
    return {"id": key_id, "admin": admin["AccessKeyId"]}


def attached(user: str = USER) -> list[str]:
    from moto.iam.models import iam_backends

    policies = iam_backends["123456789012"]["global"].users[user].managed_policies
    return sorted(p.name for p in policies.values())


def no_canary(repo: Path, *results: Result, secrets: tuple[str, ...] = ()) -> None:
    for result in results:
        for secret in (CANARY, *secrets):
            assert secret not in result.out + result.err
    for workspace in ("default", "staging"):
        for entry in store_of(repo, workspace).audit():
            assert CANARY not in json.dumps(entry.__dict__)
    for log in repo.rglob("*.log"):
        assert CANARY not in log.read_text(errors="replace")


def test_rotate_exposed_contains_the_key_everywhere(repo: Path, leaked: dict[str, str], run: Run) -> None:
    before = run("verify", "--format", "json")
    assert before.code == 1 and "exposed: AWS has quarantined IAM user platform" in before.out
    refused = run("rotate", "AWS Prod")  # why the runbook needs an admin: the quarantine denies it
    assert refused.code == 1 and "CreateAccessKey" in refused.err and "AccessDenied" in refused.err

    typed = f"  {leaked['id'].lower()} \n"  # pasted from AWS's e-mail
    result = run("rotate", "--exposed", typed, "--apply", "--auto-approve")
    assert result.code == 0, result.out + result.err
    new_id, new_secret = decrypted(repo / FILES[0])
    assert KEY_RE.match(new_id) and new_id != leaked["id"]
    assert iam_keys() == {leaked["id"]: "Inactive", new_id: "Active"}
    assert decrypted(repo / FILES[1]) == (new_id, new_secret)
    for workspace in ("default", "staging"):
        store = store_of(repo, workspace)
        for name in ("AWS Prod", "Billing"):
            record = store.get(name)
            assert record is not None and record.spec["access_key_id"] == new_id, (workspace, name)
            fingerprint = store.fingerprint("secret_access_key", new_secret)
            assert record.fingerprints["secret_access_key"] == fingerprint
        exposed = [e for e in store.audit() if e.action == f"exposed {leaked['id']}"]
        assert sorted(e.name for e in exposed) == ["AWS Prod", "Billing"], workspace
        assert all(e.actor for e in exposed)
    steps = [e.action.split(" ")[0] for e in store_of(repo).audit()]
    assert steps.index("exposed-deactivate-key") < steps.index("exposed-create-key")  # contained first

    out = result.out
    assert f"deactivated {leaked['id']} (platform)" in out
    assert "aws cloudtrail lookup-events" in out and f"AttributeValue={leaked['id']}" in out
    assert "GetAccessKeyLastUsed" in out
    assert "aws iam detach-user-policy --user-name platform --policy-arn " + QUARANTINE in out
    assert attached() == ["AWSCompromisedKeyQuarantineV3"]  # not without --detach-quarantine
    still = run("verify", "--format", "json")  # the policy is the user's: verify keeps failing
    assert still.code == 1 and "exposed: AWS has quarantined IAM user platform" in still.out
    assert run("plan", "--detailed-exitcode").code == 0  # the store matches the files
    no_canary(repo, before, refused, result, still, secrets=(new_secret.reveal(),))


def test_gitops_and_detach(repo: Path, leaked: dict[str, str], run: Run) -> None:
    before = [store_of(repo, w).get("AWS Prod") for w in ("default", "staging")]
    result = run("rotate", "--exposed", leaked["id"], "--detach-quarantine", "--auto-approve",
                 "--format", "json")
    report = checked("rotate", result, ok=True)
    [incident] = report["exposed"]
    new_id, new_secret = decrypted(repo / FILES[0])
    assert incident["new_key"] == new_id and incident["user"] == USER
    assert incident["exposed_key_status"] == "inactive" and incident["quarantine_policies"] == []
    assert sorted(incident["written"]) == sorted(str(f) for f in FILES) and incident["stored"] == []
    assert any("merge the pull request" in line for line in incident["next"])
    assert attached() == []
    assert [store_of(repo, w).get("AWS Prod") for w in ("default", "staging")] == before  # GitOps
    verified = run("verify", "--format", "json")
    assert verified.code == 0, verified.out
    no_canary(repo, result, verified, secrets=(new_secret.reveal(),))


def test_dry_run_changes_nothing(repo: Path, leaked: dict[str, str], run: Run) -> None:
    files = [(repo / f).read_bytes() for f in FILES]
    audit = len(store_of(repo).audit())
    result = run("rotate", "--exposed", leaked["id"], "--dry-run", "--apply", "--detach-quarantine")
    assert result.code == 0, result.err
    assert f"- deactivate {leaked['id']}" in result.out and "- create a new key" in result.out
    assert "- store it, verified, in workspace default, staging" in result.out
    assert iam_keys() == {leaked["id"]: "Active"} and attached() == ["AWSCompromisedKeyQuarantineV3"]
    assert [(repo / f).read_bytes() for f in FILES] == files and len(store_of(repo).audit()) == audit
    no_canary(repo, result)


def test_a_key_nothing_holds_changes_nothing(repo: Path, leaked: dict[str, str], run: Run) -> None:
    files = [(repo / f).read_bytes() for f in FILES]
    unknown = "AKIAIOSFODNN7EXAMPLE"
    for keys in ((unknown,), (leaked["id"], unknown)):  # every key is found before any is touched
        result = run("rotate", "--exposed", *keys, "--auto-approve")
        assert result.code == 1
        assert f"no connection holds {unknown}" in result.err and "nothing was changed" in result.err
    assert iam_keys() == {leaked["id"]: "Active"}
    assert [(repo / f).read_bytes() for f in FILES] == files
    assert not [e for e in store_of(repo).audit() if e.action.startswith("exposed")]
    assert run("rotate", "--exposed", "not-a-key", "--auto-approve").code == 1


def test_the_exposed_key_never_signs(repo: Path, leaked: dict[str, str], run: Run,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", leaked["id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY)
    result = run("rotate", "--exposed", leaked["id"], "--auto-approve")
    assert result.code == 1 and "are the exposed key" in result.err
    assert iam_keys() == {leaked["id"]: "Active"}
    no_canary(repo, result)


def test_a_second_active_key_stops_after_containment(repo: Path, leaked: dict[str, str], run: Run) -> None:
    from moto.iam.models import iam_backends

    other = iam_backends["123456789012"]["global"].create_access_key(USER)
    result = run("rotate", "--exposed", leaked["id"], "--auto-approve", "--format", "json")
    [incident] = checked("rotate", result, ok=False)["exposed"]
    assert iam_keys() == {leaked["id"]: "Inactive", other.access_key_id: "Active"}
    assert f"the exposed key {leaked['id']} is inactive" in incident["error"]
    assert other.access_key_id in incident["error"] and incident["new_key"] is None
