"""AWS verification: moto in process for the unit cases, a moto server with auth on for the CLI."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from connsync.model import Declaration, Desired, Secret
from connsync.providers import VerifySettings
from connsync.providers.aws_verify import verify
from tests.conftest import CANARY, MotoServer, Run, new_aws

KEY_RE = re.compile(r"^AKIA[A-Z2-7]{16}$")
FAST = VerifySettings(max_key_age_days=90, concurrency=4, timeout_seconds=2)


def create_key(iam: Any, user: str) -> tuple[str, str]:
    """An access key of the shape AWS issues (moto's may contain 0, 1, 8 or 9)."""
    for _ in range(50):
        key = iam.create_access_key(UserName=user)["AccessKey"]
        if KEY_RE.match(key["AccessKeyId"]):
            return key["AccessKeyId"], key["SecretAccessKey"]
        iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
    raise AssertionError("moto never issued a base32 key id")


def desired(key_id: str, secret: str, account: str = "123456789012", region: str = "us-east-1",
            name: str = "AWS Prod") -> Desired:
    decl = Declaration(f"connections/{name}.yaml", {"provider": "aws", "metadata": {"name": name}}, "d")
    return Desired(decl, {"account_id": account, "default_region": region, "access_key_id": key_id},
                   {"secret_access_key": Secret(secret)})


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto in process; it only intercepts when AWS_ENDPOINT_URL is unset."""
    from moto import mock_aws

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_user(UserName="platform")
        yield iam


def test_a_good_key_is_ok(moto: Any) -> None:
    key_id, secret = create_key(moto, "platform")
    verdict = verify(desired(key_id, secret), FAST)
    assert verdict.status == "ok", verdict.messages
    assert verdict.identity == {"account": "123456789012",
                                "arn": "arn:aws:iam::123456789012:user/platform"}


def test_the_account_must_match(moto: Any) -> None:
    key_id, secret = create_key(moto, "platform")
    verdict = verify(desired(key_id, secret, account="999999999999"), FAST)
    assert verdict.status == "failed"
    assert verdict.messages == ("the key belongs to account 123456789012, not account_id 999999999999",)


def test_an_old_or_inactive_key_warns(moto: Any) -> None:
    from moto.iam.models import iam_backends

    key_id, secret = create_key(moto, "platform")
    user = iam_backends["123456789012"]["global"].users["platform"]
    user.access_keys[0].create_date = datetime.now(UTC) - timedelta(days=200)
    verdict = verify(desired(key_id, secret), FAST)
    assert verdict.status == "warning"
    assert "200 days old, past max_key_age_days (90): rotate it" in verdict.messages[0]
    moto.update_access_key(UserName="platform", AccessKeyId=key_id, Status="Inactive")
    assert "the key is inactive" in verify(desired(key_id, secret), FAST).messages


def answer(status: int, body: str) -> AWSResponse:
    class Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield body.encode()

    return AWSResponse("https://sts.amazonaws.com/", status, {}, Raw())


ROOT_IDENTITY = """<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:root</Arn><UserId>123456789012</UserId>
<Account>123456789012</Account></GetCallerIdentityResult>
<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"""
THROTTLED = """<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>
<Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>"""


def test_a_root_key_fails(moto: Any) -> None:
    def hook(client: Any) -> None:
        client.meta.events.register("before-send.sts.GetCallerIdentity",
                                    lambda **_: answer(200, ROOT_IDENTITY))

    verdict = verify(desired("AKIAIOSFODNN7EXAMPLE", CANARY), FAST, client_hook=hook)
    assert verdict.status == "failed" and "root user's key" in verdict.messages[0]


@pytest.mark.parametrize("throttles", [3])
def test_throttling_is_retried_past_botocores_attempts(moto: Any, throttles: int) -> None:
    key_id, secret = create_key(moto, "platform")
    attempts = {"n": 0}

    def throttle(**_: Any) -> AWSResponse | None:
        attempts["n"] += 1
        return answer(400, THROTTLED) if attempts["n"] <= throttles else None

    def hook(client: Any) -> None:
        client.meta.events.register("before-send.sts.GetCallerIdentity", throttle)

    verdict = verify(desired(key_id, secret), FAST, client_hook=hook)
    assert verdict.status == "ok", (attempts, verdict)
    assert attempts["n"] == throttles + 1


def test_throttling_that_never_stops_fails_with_advice(moto: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from connsync.providers import aws_verify

    monkeypatch.setattr(aws_verify, "THROTTLE_ROUNDS", 1)  # keep the test's backoff short
    monkeypatch.setattr(aws_verify, "THROTTLE_BACKOFF_SECONDS", 0.01)
    key_id, secret = create_key(moto, "platform")
    attempts = {"n": 0}

    def throttle(**_: Any) -> AWSResponse:
        attempts["n"] += 1
        return answer(400, THROTTLED)

    def hook(client: Any) -> None:
        client.meta.events.register("before-send.sts.GetCallerIdentity", throttle)

    verdict = verify(desired(key_id, secret), FAST, client_hook=hook)
    assert verdict.status == "failed" and attempts["n"] == 6  # 2 rounds of botocore's 3 attempts
    assert verdict.messages == ("STS kept throttling the requests (Throttling) after 1 rounds of retries: "
                                "try again later or lower verify.concurrency",)


def test_the_cli_rides_out_throttling(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real HTTP endpoint that says Throttling four times: more than botocore's three attempts."""
    from tests.fake_aws import FakeAws, serve

    assert new_aws(run, monkeypatch, name="Busy", secret=CANARY).code == 0
    with serve(FakeAws(throttle=4, throttle_code="RequestLimitExceeded")) as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
        result = run("verify", "--format", "json")
    assert result.code == 0, result.out + result.err
    assert [r["status"] for r in json.loads(result.out)["results"]] == ["ok"]
    assert fake.throttled == 4
    assert fake.requests == {"GetCallerIdentity": 5, "ListAccessKeys": 1, "ListAttachedUserPolicies": 1}


def test_many_connections_share_clients_yet_sign_with_their_own_keys(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from connsync.providers.verification import verify_all
    from tests.fake_aws import FakeAws, serve

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENTKEY00")  # must never sign anything
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY)
    keys = [f"AKIAIAAAAAAAAAAAAAA{letter}" for letter in "BCDEFGHIJK"]
    accounts = {key: f"11111111111{index}" for index, key in enumerate(keys)}
    batch = [desired(key, "s" * 40, account=accounts[key], name=f"Team {index}")
             for index, key in enumerate(keys)]
    with serve(FakeAws(latency=0.05, accounts=accounts)) as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
        verdicts = verify_all(batch, VerifySettings(concurrency=10, per_account_concurrency=1))
    assert {v.status for v in verdicts.values()} == {"ok"}
    assert fake.keys == set(keys)
    assert fake.most_in_flight > 1  # different accounts run side by side


def test_one_account_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from connsync.providers.verification import verify_all
    from tests.fake_aws import FakeAws, serve

    batch = [desired("AKIAIOSFODNN7EXAMPLE", "s" * 40, name=f"Key {index}") for index in range(8)]
    with serve(FakeAws(latency=0.05)) as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
        verdicts = verify_all(batch, VerifySettings(concurrency=8, per_account_concurrency=2))
    assert len(verdicts) == 8 and {v.status for v in verdicts.values()} == {"ok"}
    assert fake.most_in_flight == 2


@pytest.fixture
def silent_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A socket on loopback that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_a_silent_endpoint_times_out(silent_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", silent_server)
    started = time.monotonic()
    verdict = verify(desired("AKIAIOSFODNN7EXAMPLE", CANARY),
                     VerifySettings(timeout_seconds=0.5, concurrency=1))
    assert time.monotonic() - started < 15
    assert verdict.status == "failed"
    assert "STS did not answer within 0.5s (ReadTimeoutError" in verdict.messages[0]


def test_a_closed_port_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    verdict = verify(desired("AKIAIOSFODNN7EXAMPLE", CANARY), VerifySettings(timeout_seconds=0.5))
    assert verdict.status == "failed" and "could not connect to STS" in verdict.messages[0]


def test_partitions_pick_their_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    seen: list[str] = []

    def hook(client: Any) -> None:
        def capture(request: Any, **_: Any) -> AWSResponse:
            seen.append(request.url)
            return answer(403, THROTTLED.replace("Throttling", "InvalidClientTokenId"))

        client.meta.events.register("before-send", capture)

    for region in ("cn-north-1", "us-gov-west-1", "eu-west-1"):
        verify(desired("AKIAIOSFODNN7EXAMPLE", CANARY, region=region), FAST, client_hook=hook)
    assert seen == ["https://sts.cn-north-1.amazonaws.com.cn/", "https://sts.us-gov-west-1.amazonaws.com/",
                    "https://sts.eu-west-1.amazonaws.com/"]


# --- the CLI against a moto server with credential checking on -------------------------------


@pytest.fixture
def aws_repo(repo: Path, aws_endpoint: MotoServer, run: Run, monkeypatch: pytest.MonkeyPatch) -> Path:
    iam = boto3.client("iam", region_name="us-east-1")
    for user in ("platform", "stranger"):
        iam.create_user(UserName=user)
    iam.put_user_policy(UserName="platform", PolicyName="self", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        # AWS would take the user's own ARN as Resource; moto matches this action against "*".
        "Statement": [{"Effect": "Allow", "Action": ["iam:ListAccessKeys", "iam:ListAttachedUserPolicies"],
                       "Resource": "*"}]}))
    good_id, good_secret = create_key(iam, "platform")
    other_id, other_secret = create_key(iam, "stranger")
    assert new_aws(run, monkeypatch, name="Good", secret=good_secret, access_key_id=good_id).code == 0
    assert new_aws(run, monkeypatch, name="No IAM", secret=other_secret, access_key_id=other_id).code == 0
    assert new_aws(run, monkeypatch, name="Wrong Secret", secret=CANARY, access_key_id=good_id).code == 0
    assert new_aws(run, monkeypatch, name="Unknown Key", secret=CANARY,
                   access_key_id="AKIAIOSFODNN7EXAMPLE").code == 0
    aws_endpoint.require_auth()
    return repo


def test_verify_command(aws_repo: Path, run: Run) -> None:
    result = run("verify", "--format", "json")
    assert result.code == 1
    report = json.loads(result.out)
    by_name = {r["name"]: r for r in report["results"]}
    assert report["ok"] is False
    assert by_name["Good"]["status"] == "ok", by_name["Good"]["messages"]
    assert by_name["Good"]["identity"]["arn"] == "arn:aws:iam::123456789012:user/platform"
    assert by_name["No IAM"]["status"] == "warning"
    assert "key age unknown: IAM denied ListAccessKeys" in by_name["No IAM"]["messages"][0]
    assert by_name["Wrong Secret"]["status"] == "failed"
    assert by_name["Wrong Secret"]["messages"] == [
        "key rejected by STS: the secret access key does not match the access key id"]
    assert by_name["Unknown Key"]["status"] == "failed"
    assert "AWS does not know this access key id" in by_name["Unknown Key"]["messages"][0]
    text = run("verify")
    assert re.search(r"^4 connections verified: 1 ok, 1 warning, 2 failed in \d+\.\ds$", text.out, re.M)
    assert CANARY not in text.out + text.err + result.out
    assert run("verify", "connections/good.yaml").code == 0


def test_an_invalid_file_fails_alone_and_the_others_are_verified(aws_repo: Path, run: Run) -> None:
    (aws_repo / "connections/broken.yaml").write_text("apiVersion: connsync/v1\nprovider: aws\n")
    report = json.loads(run("verify", "--format", "json").out)
    by_name = {r["name"]: r for r in report["results"]}
    assert by_name["Good"]["status"] == "ok"  # still verified
    broken = by_name["connections/broken.yaml"]
    assert broken["status"] == "failed" and broken["file"] == "connections/broken.yaml"
    assert any(m.startswith("invalid: 1:1 [schema]") for m in broken["messages"]), broken


def test_a_file_no_key_opens_says_where_sops_looked(aws_repo: Path, run: Run,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    result = run("verify", "connections/good.yaml")
    assert result.code == 1
    assert "SOPS_AGE_KEY_FILE" in result.out and "keys.txt" in result.out, result.out


def test_apply_verifies_before_writing(aws_repo: Path, run: Run) -> None:
    result = run("apply", "--auto-approve", "--format", "json")
    assert result.code == 1
    report = json.loads(result.out)
    assert sorted(a["name"] for a in report["applied"]) == ["Good", "No IAM"]
    assert [f["name"] for f in report["failed"]] == ["Unknown Key", "Wrong Secret"]
    assert "verification failed" in report["failed"][0]["error"]
    listed = [r["name"] for r in json.loads(run("list", "--format", "json").out)["connections"]]
    assert listed == ["Good", "No IAM"]


def test_apply_text_says_how_the_checks_ended(aws_repo: Path, run: Run) -> None:
    result = run("apply", "--auto-approve")
    assert result.code == 1
    assert ("Checked 4 connections with their providers before writing: 2 passed, 2 failed (not written)."
            in result.out), result.out
    assert "Verified" not in result.out
    assert run("apply", "--auto-approve", "--skip-verify").code == 0  # the seam can be skipped
