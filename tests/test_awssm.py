"""The AWS Secrets Manager store against a moto server on loopback.

What every backend does is in the contract suite (TestSecretsManagerStore); here:
the layout other tools read, a plan that reads no secret value, a compare-and-set
token conflict forced mid-apply, a secret made outside connsync (conflict, then
--adopt), a value changed in the console (drift), delete with a recovery window
and restore, IAM denials naming the action (moto with credential checking on),
throttling, an unreachable endpoint and the one-line errors.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from connsync.errors import LockError, StoreError, VersionConflict
from connsync.model import Secret
from connsync.store import awssm, opened
from connsync.store.awssm import SecretsManagerStore
from connsync.store.awssm_layout import Target, aws_errors, slug, unslug
from connsync.testing.store_contract import CANARY as CONTRACT_CANARY
from connsync.testing.store_contract import write
from tests.conftest import CANARY, REPO, MotoServer, Run, new_aws

KEY_IDS = ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLF", "AKIAIOSFODNN7EXAMPLG")


@pytest.fixture
def prefix() -> str:
    return f"p{os.urandom(4).hex()}/connections"


@pytest.fixture
def store_url(aws_endpoint: MotoServer, prefix: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    url = f"awssm://us-east-1/{prefix}?endpoint_url={aws_endpoint.url}&lock_lease_seconds=3"
    monkeypatch.setenv("CONNSYNC_STORE", url)
    return url


@pytest.fixture
def sm(aws_endpoint: MotoServer) -> Any:
    return boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=aws_endpoint.url)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every Secrets Manager call connsync makes, by operation (botocore's before-call event)."""
    counted: Counter[str] = Counter()
    made = awssm.make_client

    def counting(target: Target) -> Any:
        client = made(target)
        client.meta.events.register("before-call.secretsmanager",
                                    lambda model, **_: counted.update([model.name]))
        return client

    monkeypatch.setattr(awssm, "make_client", counting)
    return counted


def apply(run: Run, *extra: str) -> dict[str, Any]:
    result = run("apply", "--auto-approve", "--skip-verify", "--format", "json", *extra)
    assert CANARY not in result.out + result.err
    data: dict[str, Any] = json.loads(result.out)
    data["exit"] = result.code
    return data


def plan(run: Run, *extra: str) -> dict[str, str]:
    result = run("plan", "--format", "json", *extra)
    assert result.code == 0, result.err
    changes = json.loads(result.out)["changes"]
    return {c["name"]: c["action"] + ("+drift" if c.get("drift") else "") for c in changes}


def three(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    for index, key_id in enumerate(KEY_IDS):
        assert new_aws(run, monkeypatch, name=f"AWS {index}", access_key_id=key_id).code == 0


# --- layout ----------------------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=60))
def test_slugs_are_readable_and_round_trip(name: str) -> None:
    key = name.casefold()
    encoded = slug(key)
    assert unslug(encoded) == key  # so two names never share a secret
    assert re.fullmatch(r"[a-z0-9._-]+", encoded) and not encoded.startswith(".")


def test_slug_examples() -> None:
    assert slug("aws prod") == "aws-prod"
    assert slug("aws-prod") == "aws_2dprod"
    assert slug(".lock") == "_2elock"
    assert slug("zürich 1") == "z_c3_bcrich-1"


def test_the_layout_is_what_other_tools_read_and_a_noop_plan_reads_no_value(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, prefix: str, sm: Any,
        calls: Counter[str]) -> None:
    three(run, monkeypatch)
    assert apply(run)["exit"] == 0
    listed = sm.list_secrets(Filters=[{"Key": "name", "Values": [prefix]}], IncludePlannedDeletion=True)
    names = sorted(s["Name"] for s in listed["SecretList"])
    assert names == [f"{prefix}/.connsync", *(f"{prefix}/default/aws-{i}" for i in range(3))]  # lock gone
    assert CANARY not in json.dumps(listed, default=str)  # not in Description, tags or names
    entry = next(s for s in listed["SecretList"] if s["Name"].endswith("aws-0"))
    assert {t["Key"]: t["Value"] for t in entry["Tags"]} == {"managed-by": "connsync",
                                                            "connsync:workspace": "default"}
    value = json.loads(sm.get_secret_value(SecretId=entry["Name"])["SecretString"])
    assert value["secrets"] == {"secret_access_key": CANARY}
    assert value["spec"]["account_id"] == "123456789012" and value["written"]["action"] == "create"

    calls.clear()
    assert plan(run) == {f"AWS {i}": "noop" for i in range(3)}
    assert calls["GetSecretValue"] == 0
    assert sum(calls.values()) <= 1 + 3, calls  # one page of ListSecrets, the salt, nothing per record


def test_a_token_conflict_forced_mid_apply_fails_that_record_only(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, calls: Counter[str]) -> None:
    three(run, monkeypatch)
    assert apply(run)["exit"] == 0
    for path in sorted((repo / "connections").glob("*.yaml")):
        path.write_text(path.read_text().replace("default_region: us-east-1", "default_region: eu-west-1"))

    made = awssm.make_client
    raced: list[str] = []

    def racing(target: Target) -> Any:
        client = made(target)

        def meanwhile(params: dict[str, Any], **_: Any) -> None:
            # Another writer (one that broke the lock, say) writes version 2 of AWS 1 first,
            # after this apply checked the version and before its UpdateSecret arrives.
            if params.get("SecretId", "").endswith("/aws-1") and "SecretString" in params and not raced:
                raced.append("yes")
                with opened(store_url, "default") as other:
                    other.put(write("AWS 1", secret="S" * 40), expected_version=1)

        client.meta.events.register("provide-client-params.secretsmanager.UpdateSecret", meanwhile)
        return client

    monkeypatch.setattr(awssm, "make_client", racing)
    report = apply(run)
    assert raced and report["exit"] == 1
    assert [f["name"] for f in report["failed"]] == ["AWS 1"]
    assert "changed in the store meanwhile" in report["failed"][0]["error"]
    assert sorted(a["name"] for a in report["applied"]) == ["AWS 0", "AWS 2"]
    with opened(store_url, "default") as store:
        assert store.read_secrets("AWS 1") == {"secret_access_key": Secret("S" * 40)}  # the winner's value
    monkeypatch.setattr(awssm, "make_client", made)
    assert plan(run)["AWS 1"] == "update"
    assert apply(run)["exit"] == 0 and set(plan(run).values()) == {"noop"}


def test_the_same_token_takes_one_value_only(sm: Any, prefix: str) -> None:
    """What compare-and-set rests on, as moto 5.2.5 implements it (and AWS documents it)."""
    name = f"{prefix}/x"
    sm.create_secret(Name=name, SecretString="v1", ClientRequestToken="a" * 32)
    sm.update_secret(SecretId=name, SecretString="v2", ClientRequestToken="b" * 32)
    sm.update_secret(SecretId=name, SecretString="v2", ClientRequestToken="b" * 32)  # a retry: accepted
    with pytest.raises(sm.exceptions.ResourceExistsException):
        sm.update_secret(SecretId=name, SecretString="v3", ClientRequestToken="b" * 32)
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "v2"


# --- never touching what it does not manage ---------------------------------------------------------


def test_a_secret_made_outside_connsync_is_a_conflict_until_adopted(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, prefix: str, sm: Any) -> None:
    assert new_aws(run, monkeypatch).code == 0
    name = f"{prefix}/default/aws-prod"
    run("plan")  # creates nothing
    with opened(store_url, "default"):
        pass  # the store exists
    sm.create_secret(Name=name, SecretString='{"made": "by hand"}', Description="made in the console")
    assert plan(run) == {"AWS Prod": "conflict"}
    report = apply(run)
    assert report["exit"] == 1 and report["failed"][0]["action"] == "conflict"
    assert sm.get_secret_value(SecretId=name)["SecretString"] == '{"made": "by hand"}'
    assert "Tags" not in sm.describe_secret(SecretId=name)

    assert apply(run, "--adopt")["exit"] == 0
    entry = sm.describe_secret(SecretId=name)
    assert {"Key": "managed-by", "Value": "connsync"} in entry["Tags"]
    assert json.loads(sm.get_secret_value(SecretId=name)["SecretString"])["secrets"] == {
        "secret_access_key": CANARY}
    assert plan(run) == {"AWS Prod": "noop"}
    with opened(store_url, "default") as store:
        assert [a.action for a in store.audit()] == ["adopt"]


def test_a_value_changed_in_the_console_is_drift(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, prefix: str, sm: Any) -> None:
    assert new_aws(run, monkeypatch).code == 0
    assert apply(run)["exit"] == 0
    sm.put_secret_value(SecretId=f"{prefix}/default/aws-prod", SecretString='{"rotated": "by hand"}')
    assert plan(run) == {"AWS Prod": "update+drift"}
    assert apply(run)["exit"] == 0 and plan(run) == {"AWS Prod": "noop"}


def test_delete_has_a_recovery_window_restore_brings_it_back_and_create_revives(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, prefix: str, sm: Any) -> None:
    three(run, monkeypatch)
    assert apply(run)["exit"] == 0
    gone = repo / "connections" / "aws-1.yaml"
    kept = gone.read_text()
    gone.unlink()
    assert plan(run)["AWS 1"] == "orphan"
    assert apply(run, "--prune")["exit"] == 0
    name = f"{prefix}/default/aws-1"
    entry = sm.describe_secret(SecretId=name)
    assert entry.get("DeletedDate")  # scheduled, not gone
    assert "AWS 1" not in plan(run)

    sm.restore_secret(SecretId=name)  # what the README tells: aws secretsmanager restore-secret
    assert plan(run)["AWS 1"] == "orphan"
    assert apply(run, "--prune")["exit"] == 0

    gone.write_text(kept)  # the file comes back: the scheduled secret is restored and written
    assert plan(run)["AWS 1"] == "create"
    assert apply(run)["exit"] == 0
    assert not sm.describe_secret(SecretId=name).get("DeletedDate")
    assert plan(run)["AWS 1"] == "noop"
    with opened(store_url, "default") as store:
        assert [a.action for a in store.audit() if a.name == "AWS 1"] == ["create", "delete", "delete",
                                                                          "create"]
    shown = run("audit", "aws 1")  # the audit view: oldest first, one line per write
    header, *rows = shown.out.splitlines()
    assert shown.code == 0 and header.split() == ["AT", "NAME", "ACTION", "VERSION", "ACTOR", "GIT", "SOURCE"]
    assert [row.split()[3] for row in rows] == ["create", "delete", "delete", "create"]


def test_never_deletes_a_secret_that_lost_its_managed_tag(store_url: str, prefix: str, sm: Any) -> None:
    with opened(store_url, "default") as store:
        store.put(write(), expected_version=None)
        sm.untag_resource(SecretId=f"{prefix}/default/aws-prod", TagKeys=["managed-by"])
        record = store.get("AWS Prod")
        assert record is not None and not record.managed
        with pytest.raises(StoreError):
            store.delete("AWS Prod", expected_version=record.version, actor="t", git_revision=None)
        with pytest.raises(StoreError, match="not tagged managed-by=connsync"):
            store.put(write(action="update"), expected_version=record.version)
    assert not sm.describe_secret(SecretId=f"{prefix}/default/aws-prod").get("DeletedDate")


# --- errors -----------------------------------------------------------------------------------------


def readme_policy() -> dict[str, Any]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("least-privilege IAM policy"):]
    block = section[section.index("```json") + 7:section.index("```", section.index("```json") + 7)]
    policy: dict[str, Any] = json.loads(block)
    return policy


@pytest.fixture
def iam_user(aws_endpoint: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], None]:
    """Credentials of a fresh IAM user allowed ``actions`` only; moto checks them from then on."""
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=aws_endpoint.url)

    def make(actions: list[str]) -> None:
        user = f"u{os.urandom(3).hex()}"
        iam.create_user(UserName=user)
        # moto matches Secrets Manager actions against the resource "*" only, so the README's
        # resource scoping cannot be checked here: the action list is.
        iam.put_user_policy(UserName=user, PolicyName="connsync", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        aws_endpoint.require_auth()

    return make


def readme_actions() -> list[str]:
    return sorted({a for s in readme_policy()["Statement"] for a in s["Action"]})


def test_the_readme_policy_is_enough_for_every_command(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str,
        iam_user: Callable[[list[str]], None]) -> None:
    three(run, monkeypatch)
    iam_user(readme_actions())
    assert apply(run)["exit"] == 0
    (repo / "connections" / "aws-2.yaml").unlink()
    assert apply(run, "--prune")["exit"] == 0
    for command in (("plan",), ("list",), ("audit",), ("import", "AWS 0", "--dir", "connections/imported")):
        result = run(*command)
        assert result.code == 0, (command, result.err)


def test_access_denied_names_the_action_and_resource(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, prefix: str,
        iam_user: Callable[[list[str]], None]) -> None:
    assert new_aws(run, monkeypatch).code == 0
    with opened(store_url, "default"):
        pass  # the store exists before the user loses CreateSecret
    iam_user([a for a in readme_actions() if a != "secretsmanager:CreateSecret"])
    result = run("apply", "--auto-approve", "--skip-verify")
    assert result.code == 1 and CANARY not in result.out + result.err
    assert "AWS denied secretsmanager:CreateSecret on arn:aws:secretsmanager:us-east-1:*:secret:" \
        f"{prefix}/default/" in result.err
    assert "Traceback" not in result.err


def test_throttling_is_retried_with_backoff(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    throttled = Counter[str]()
    limit = [1]
    made = awssm.make_client

    def throttling(target: Target) -> Any:
        client = made(target)

        def answer(request: Any, **_: Any) -> AWSResponse | None:
            if throttled["ListSecrets"] >= limit[0] or b"ListSecrets" not in request.headers.get(
                    "X-Amz-Target", b""):
                return None
            throttled.update(["ListSecrets"])
            body = b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'
            return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"},
                               _Raw(body))

        client.meta.events.register("before-send.secretsmanager", answer)
        return client

    monkeypatch.setattr(awssm, "make_client", throttling)
    with opened(store_url, "default") as store:
        assert store.records() == [] and throttled["ListSecrets"] == 1  # answered on the second try
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    limit[0] = 1000  # throttled for good: botocore gives up after its attempts, and so does connsync
    with opened(store_url, "default") as store, pytest.raises(StoreError, match="kept throttling"):
        store.records()
    assert throttled["ListSecrets"] == 1 + 2


class _Raw:
    """The raw body botocore reads from an answer given in before-send."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body

    def read(self, *_: Any) -> bytes:
        return self._body


def test_an_unreachable_endpoint_is_one_line(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                                             aws_endpoint: MotoServer) -> None:
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("CONNSYNC_STORE", "awssm://us-east-1/p/c?endpoint_url=http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = run("plan")
    assert result.code == 1
    assert "cannot reach Secrets Manager in us-east-1" in result.err and "127.0.0.1:9" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(("code", "expected"), [
    ("KMSInvalidStateException", "the KMS key alias/connsync cannot be used to write"),
    ("EncryptionFailure", "the KMS key alias/connsync cannot be used to write"),
    ("AccessDeniedException", "AWS denied secretsmanager:CreateSecret on arn:aws:secretsmanager:"),
    ("UnrecognizedClientException", "AWS rejected the credentials"),
])
def test_aws_errors_are_one_line_without_the_aws_message(code: str, expected: str) -> None:
    target = Target.parse("awssm://eu-west-1/p?kms_key_id=alias/connsync")
    error = ClientError({"Error": {"Code": code, "Message": f"detail {CANARY}"}}, "CreateSecret")
    with pytest.raises(StoreError) as caught, aws_errors(target, "write", "p/default/x"):
        raise error
    assert expected in caught.value.message and CANARY not in str(caught.value) + str(caught.value.hint)
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("url", [
    "awssm://us-east-1", "awssm://nowhere/p", "awssm://us-east-1/p?x=1", "awssm://us-east-1/a b",
    "awssm://us-east-1/p?recovery_window_days=3", "awssm://us-east-1/p?lock_lease_seconds=0",
])
def test_a_bad_url_is_a_clear_error(url: str) -> None:
    with pytest.raises(StoreError):
        Target.parse(url)


def test_metadata_beyond_the_description_limit_is_refused_whole(store_url: str) -> None:
    with opened(store_url, "default") as store:
        big = write()
        big = type(big)(**{**big.__dict__, "labels": {f"l{i}": "v" * 60 for i in range(40)}})
        with pytest.raises(StoreError, match="holds 2048"):
            store.put(big, expected_version=None)
        assert store.get("AWS Prod") is None


def test_a_version_conflict_on_create_of_a_taken_name(store_url: str) -> None:
    with opened(store_url, "default") as one, opened(store_url, "default") as two:
        one.put(write(), expected_version=None)
        with pytest.raises(VersionConflict):
            two.put(write(secret="x" * 40), expected_version=None)
        assert isinstance(one, SecretsManagerStore)
        assert one.read_secrets("AWS Prod") == {"secret_access_key": Secret(CONTRACT_CANARY)}


def test_a_debug_log_holds_no_secret_value(store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """botocore logs bodies at DEBUG: an application that logs everything still sees no secret."""
    import logging

    caplog.set_level(logging.DEBUG)
    with opened(store_url, "default") as store:
        store.put(write(), expected_version=None)
        assert store.read_secrets("AWS Prod") == {"secret_access_key": Secret(CONTRACT_CANARY)}
    assert any(r.name.startswith("botocore") for r in caplog.records)
    assert not [r.name for r in caplog.records if CONTRACT_CANARY in r.getMessage()]


def test_a_live_holder_keeps_its_lock_past_the_lease(aws_endpoint: MotoServer, prefix: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    url = f"awssm://us-east-1/{prefix}?endpoint_url={aws_endpoint.url}&lock_lease_seconds=1"
    with opened(url, "default") as holder, opened(url, "default") as other:
        lock = holder.acquire_lock(timeout=0)
        time.sleep(2.5)  # two and a half leases: renewed by the holder's heartbeat
        with pytest.raises(LockError):
            other.acquire_lock(timeout=0)
        holder.put(write(), expected_version=None)  # still its own
        holder.release_lock(lock)
        other.release_lock(other.acquire_lock(timeout=0))


def test_a_lock_secret_connsync_cannot_read_is_held_until_unlocked(store_url: str, prefix: str, sm: Any,
                                                                   run: Run, repo: Path) -> None:
    """Never taken over (its lease cannot be read), never stuck for good: unlock names it."""
    sm.create_secret(Name=f"{prefix}/default/.lock", SecretString="{}", Description="edited by hand")
    with opened(store_url, "default") as store:
        with pytest.raises(LockError) as caught:
            store.acquire_lock(timeout=0.5)
        assert "connsync unlock unreadable" in str(caught.value.hint)
    assert run("unlock", "unreadable").code == 0
    with opened(store_url, "default") as store:
        store.release_lock(store.acquire_lock(timeout=5))


def test_a_region_botocore_does_not_know_is_named() -> None:
    from botocore.exceptions import EndpointConnectionError

    target = Target.parse("awssm://xx-nowhere-9/p")
    with pytest.raises(StoreError) as caught, aws_errors(target, "list"):
        raise EndpointConnectionError(endpoint_url="https://secretsmanager.xx-nowhere-9.amazonaws.com")
    assert "cannot reach Secrets Manager in xx-nowhere-9" in caught.value.message
    assert "knows no Secrets Manager endpoint in 'xx-nowhere-9'" in str(caught.value.hint)


def test_the_airflow_format_is_a_connection_airflow_reads(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, prefix: str, sm: Any) -> None:
    monkeypatch.setenv("CONNSYNC_STORE", store_url + "&format=airflow")
    assert new_aws(run, monkeypatch).code == 0
    assert apply(run)["exit"] == 0
    value = json.loads(sm.get_secret_value(SecretId=f"{prefix}/default/aws-prod")["SecretString"])
    # Airflow (connections_prefix PREFIX/default, conn_id aws-prod) takes these keys and ignores the rest;
    # no other key of the value is one of the aliases it looks for (user, pass, key, host, engine, ...).
    assert {k: value[k] for k in ("conn_type", "login", "password", "extra")} == {
        "conn_type": "aws", "login": "AKIAIOSFODNN7EXAMPLE", "password": CANARY,
        "extra": {"region_name": "us-east-1"}}
    aliases = {"login", "user", "username", "user_name", "password", "pass", "key", "host", "remote_host",
               "server", "port", "database", "schema", "conn_type", "conn_id", "connection_type", "engine",
               "extra"}
    assert set(value) & aliases == {"conn_type", "login", "password", "extra"}
    assert plan(run) == {"AWS Prod": "noop"}
    with opened(store_url, "default") as store:
        assert store.read_secrets("AWS Prod") == {"secret_access_key": Secret(CANARY)}


def test_secrets_connsync_did_not_write_are_never_taken_or_replaced(store_url: str, prefix: str,
                                                                   sm: Any) -> None:
    sm.create_secret(Name=f"{prefix}/default/AWS Prod", SecretString="by hand")  # not a slug
    sm.create_secret(Name=f"{prefix}/default/aws-dev", SecretString="by hand")
    with opened(store_url, "default") as store:
        names = sorted((r.name, r.version, r.managed) for r in store.records())
        assert names == [("AWS Prod (not a connsync secret name)", 0, False), ("aws dev", 0, False)]
        with pytest.raises(StoreError, match="not connsync's"):
            store.restore(store.snapshot(), actor="mover", overwrite=True)
    assert not sm.describe_secret(SecretId=f"{prefix}/default/aws-dev").get("DeletedDate")


@pytest.mark.parametrize(("damage", "problem"), [
    (lambda m: m["h"][0].__setitem__(4, 1e300), "an audit time is the number 1e+300"),
    (lambda m: m["h"][0].__setitem__(3, {"x": 1}), "an audit entry's action, actor, revision or source"),
    (lambda m: m.__setitem__("h", "lots"), "its audit history is a str"),
    (lambda m: m.__setitem__("v", "2"), "'v' is a str"),
    (lambda m: m.__setitem__("s", ["x"]), "'s' is a list"),
    (lambda m: m.__setitem__("at", 12), "'at' is the number 12"),
])
def test_a_damaged_description_is_a_clear_error_naming_the_secret(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, prefix: str, sm: Any,
        damage: Any, problem: str) -> None:
    """Anyone who may edit the secret may edit its Description: what connsync reads there is checked."""
    assert new_aws(run, monkeypatch, name="AWS Prod").code == 0
    assert apply(run)["exit"] == 0
    secret = f"{prefix}/default/aws-prod"
    meta = json.loads(sm.describe_secret(SecretId=secret)["Description"])
    damage(meta)
    sm.update_secret(SecretId=secret, Description=json.dumps(meta, separators=(",", ":")))
    for command in (("audit",), ("audit", "--format", "json"), ("list",), ("plan",)):
        result = run(*command)
        assert result.code == 1, (command, result.out, result.err)
        assert f"the secret {secret} holds a connsync Description that is damaged ({problem}" in result.err, \
            result.err
        assert "Traceback" not in result.err


def test_every_card_in_the_airflow_shape_under_a_readable_id(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, prefix: str, sm: Any) -> None:
    """The JSON Airflow parses; tests/test_airflow.py has Airflow itself read it."""
    from tests import cards

    monkeypatch.setenv("CONNSYNC_STORE", store_url + "&format=airflow")
    made = cards.make_cards(run, monkeypatch)
    applied = apply(run)
    assert applied["exit"] == 0, applied

    def value(conn_id: str) -> dict[str, Any]:
        data = json.loads(sm.get_secret_value(SecretId=f"{prefix}/default/{conn_id}")["SecretString"])
        return {k: data.get(k) for k in ("conn_type", "login", "password", "extra")}

    assert value("eu-prod") == {"conn_type": "aws", "login": "AKIAIOSFODNN7EXAMPLE", "password": CANARY,
                                "extra": {"region_name": "eu-west-1"}}
    assert value("aws_role") == {  # metadata.id
        "conn_type": "aws", "login": None, "password": None,
        "extra": {"region_name": "us-east-1", "role_arn": cards.ROLE_ARN, "assume_role_method": "assume_role",
                  "assume_role_kwargs": {"ExternalId": cards.EXTERNAL_ID, "DurationSeconds": 1800}}}
    assert value("azure-prod") == {"conn_type": "azure", "login": cards.CLIENT, "password": CANARY[::-1],
                                   "extra": {"tenantId": cards.TENANT, "subscriptionId": cards.SUBSCRIPTION}}
    gcp = value("gcp-analytics")
    assert (gcp["conn_type"], gcp["login"], gcp["password"]) == ("google_cloud_platform", None, None)
    assert gcp["extra"] == {"project": cards.PROJECT, "keyfile_dict": {
        "type": "service_account", "project_id": cards.PROJECT, "private_key_id": cards.KEY_ID,
        "private_key": made.gcp_private_key, "client_email": cards.EMAIL,
        "token_uri": "https://oauth2.googleapis.com/token"}}
    assert plan(run) == dict.fromkeys(["AWS Role", "Azure Prod", "EU-Prod", "GCP Analytics"], "noop")
    listed = run("list", "--format", "json")
    assert cards.EXTERNAL_ID not in listed.out and CANARY not in listed.out
    with opened(store_url, "default") as store:
        assert store.read_secrets("aws role") == {"external_id": Secret(cards.EXTERNAL_ID)}
    # store copy keeps metadata.id: Airflow finds the copy under the same conn_id.
    copied = f"p{os.urandom(4).hex()}/connections"
    result = run("store", "copy", store_url + "&format=airflow",
                 store_url.replace(prefix, copied) + "&format=airflow")
    assert result.code == 0, result.err
    assert json.loads(sm.get_secret_value(SecretId=f"{copied}/default/aws_role")["SecretString"])[
        "conn_type"] == "aws"


def test_two_connections_one_id_is_a_located_finding(repo: Path, run: Run,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert new_aws(run, monkeypatch, name="EU Prod").code == 0
    assert new_aws(run, monkeypatch, name="EU-Prod", extra=("--file", "connections/eu-prod-2.yaml")).code == 1
    path = repo / "connections/eu-prod-2.yaml"
    path.write_text((repo / "connections/eu-prod.yaml").read_text().replace("name: EU Prod", "name: EU-Prod"))
    result = run("validate", "--format", "json")
    findings = json.loads(result.out)["findings"]
    assert [(f["rule"], f["file"], f["path"], f["line"]) for f in findings] == [
        ("duplicate-id", "connections/eu-prod.yaml", "$.metadata.name", 5)]
    assert "'eu-prod' is also 'EU-Prod'" in findings[0]["message"]


def test_records_of_the_older_layout_are_still_found(store_url: str, prefix: str, sm: Any) -> None:
    """Before ids, a name's secret was its injective slug (``aws-prod`` -> ``aws_2dprod``)."""
    from connsync.store import Write
    from connsync.store.awssm_layout import Target

    target = Target.parse(store_url)
    secret = f"{target.workspace_prefix('default')}aws_2dprod"
    with opened(store_url, "default") as store:
        store.put(Write("aws-prod", "aws", {"account_id": "123456789012"},
                        {"secret_access_key": Secret(CANARY)}, True, "t", "create"), expected_version=None)
    # Move it where the older layout kept it, as that version of connsync wrote it.
    value = sm.get_secret_value(SecretId=f"{target.workspace_prefix('default')}aws-prod")
    entry = sm.describe_secret(SecretId=f"{target.workspace_prefix('default')}aws-prod")
    sm.create_secret(Name=secret, SecretString=value["SecretString"], Description=entry["Description"],
                     Tags=entry["Tags"], ClientRequestToken=value["VersionId"])
    sm.delete_secret(SecretId=f"{target.workspace_prefix('default')}aws-prod",
                     ForceDeleteWithoutRecovery=True)
    assert sm.describe_secret(SecretId=secret)
    with opened(store_url, "default") as store:
        record = store.get("AWS-Prod")
        assert record is not None and record.version == 1 and record.managed
        assert store.read_secrets("aws-prod") == {"secret_access_key": Secret(CANARY)}
        store.put(Write("aws-prod", "aws", {"account_id": "123456789013"},
                        {"secret_access_key": Secret(CANARY)}, True, "t", "update"), expected_version=1)
        assert [r.name for r in store.records()] == ["aws-prod"]


def test_a_changed_or_removed_metadata_id_is_refused_and_the_record_kept(store_url: str) -> None:
    """A secret cannot be renamed; written where it is under another id, the record would be disowned."""
    import dataclasses

    with opened(store_url, "default") as store:
        store.put(dataclasses.replace(write(), conn_id="aws_main"), expected_version=None)
        with pytest.raises(StoreError, match=r"under id 'aws_main' and its file now has no metadata\.id"):
            store.put(write(), expected_version=1)
        with pytest.raises(StoreError, match=r"its file now has metadata\.id 'aws_other'"):
            store.put(dataclasses.replace(write(), conn_id="aws_other"), expected_version=1)
        assert [(r.name, r.version, r.conn_id) for r in store.records()] == [("AWS Prod", 1, "aws_main")]
        store.put(dataclasses.replace(write(), conn_id="aws_main"), expected_version=1)
        assert [r.version for r in store.records()] == [2]
