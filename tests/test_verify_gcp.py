"""GCP verification against a fake token endpoint that checks the RS256 JWT (tests/fake_gcp.py)."""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from connsync.model import Declaration, Desired, Secret
from connsync.providers import VerifySettings
from connsync.providers.gcp_verify import verify
from tests.conftest import Run
from tests.fake_gcp import FakeGcp, Key, new_key, serve

EMAIL = "platform@analytics-prod-1.iam.gserviceaccount.com"
PROJECT = "analytics-prod-1"
KEY_ID = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def key() -> Key:
    return new_key(KEY_ID)


@pytest.fixture
def gcp(key: Key) -> Iterator[FakeGcp]:
    fake = FakeGcp(accounts={EMAIL: {KEY_ID: key}}, projects={PROJECT: {EMAIL}}, key_readers={EMAIL})
    with serve(fake) as served:
        yield served


def settings_for(fake: FakeGcp, **overrides: object) -> VerifySettings:
    base = VerifySettings(
        timeout_seconds=2,
        gcp_token_uri=f"{fake.url}/token",
        gcp_resource_manager_endpoint=fake.url,
        gcp_iam_endpoint=fake.url,
        gcp_certificates_endpoint=f"{fake.url}/x509",
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def desired(pem: str, *, email: str = EMAIL, key_id: str = KEY_ID, project: str = PROJECT) -> Desired:
    decl = Declaration("connections/gcp.yaml", {"provider": "gcp", "metadata": {"name": "GCP"}}, "d")
    spec = {"project_id": project, "client_email": email, "private_key_id": key_id}
    return Desired(decl, spec, {"private_key": Secret(pem)})


def test_a_live_key_is_ok(gcp: FakeGcp, key: Key) -> None:
    verdict = verify(desired(key.pem), settings_for(gcp))
    assert verdict.status == "ok", verdict.messages
    assert verdict.identity == {"principal": EMAIL, "project": PROJECT}


def test_a_deleted_or_disabled_key(gcp: FakeGcp, key: Key) -> None:
    del gcp.accounts[EMAIL][KEY_ID]
    verdict = verify(desired(key.pem), settings_for(gcp))
    assert verdict.status == "failed"
    assert verdict.messages[0].startswith(f"private_key_id: key {KEY_ID} is deleted or disabled")


def test_the_wrong_private_key(gcp: FakeGcp) -> None:
    other = new_key(KEY_ID)
    verdict = verify(desired(other.pem), settings_for(gcp))
    assert verdict.messages == (
        f"private_key is not the private half of key {KEY_ID} (a private_key from another key JSON?)",
    )
    assert other.pem not in repr(verdict)


def test_an_unknown_service_account(gcp: FakeGcp, key: Key) -> None:
    email = "someone@analytics-prod-1.iam.gserviceaccount.com"
    verdict = verify(desired(key.pem, email=email), settings_for(gcp))
    assert verdict.messages == (f"client_email: no service account {email} (deleted, or mistyped)",)


def test_a_project_out_of_reach(gcp: FakeGcp, key: Key) -> None:
    verdict = verify(desired(key.pem, project="billing-prod-9"), settings_for(gcp))
    assert verdict.status == "failed"
    assert verdict.messages[0].startswith(f"project_id: project billing-prod-9 not found, or {EMAIL} may not")


def test_a_project_being_deleted_warns(gcp: FakeGcp, key: Key) -> None:
    gcp.deleting.add(PROJECT)
    verdict = verify(desired(key.pem), settings_for(gcp))
    assert (verdict.status, verdict.messages) == ("warning", (f"project {PROJECT} is DELETE_REQUESTED",))


def test_key_age_warns_and_is_best_effort(gcp: FakeGcp, key: Key) -> None:
    key.created = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=120)
    try:
        verdict = verify(desired(key.pem), settings_for(gcp))
        assert verdict.status == "warning"
        assert verdict.messages == ("the key is 120 days old, past max_key_age_days (90): rotate it",)
        gcp.key_readers.clear()
        verdict = verify(desired(key.pem), settings_for(gcp))
        assert verdict.status == "warning" and "key age unknown: IAM denied" in verdict.messages[0]
    finally:
        key.created = datetime.datetime.now(datetime.UTC)


def test_busy_token_endpoint_is_retried(gcp: FakeGcp, key: Key) -> None:
    gcp.token_failures[:] = [503]
    verdict = verify(desired(key.pem), settings_for(gcp))
    assert verdict.status == "ok", verdict.messages
    assert gcp.token_requests == 2


def test_busy_resource_manager_is_retried(gcp: FakeGcp, key: Key) -> None:
    gcp.project_failures[:] = [429, 503]
    verdict = verify(desired(key.pem), settings_for(gcp))
    assert verdict.status == "ok", verdict.messages
    assert gcp.project_requests == 3


def test_no_token_or_assertion_reaches_a_log(
    gcp: FakeGcp, key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert verify(desired(key.pem), settings_for(gcp)).status == "ok"
    assert "ya29.fake" not in caplog.text and "assertion" not in caplog.text
    assert key.pem.splitlines()[1] not in caplog.text


def test_a_silent_token_endpoint_times_out(gcp: FakeGcp, key: Key) -> None:
    gcp.hang = 2
    started = time.monotonic()
    verdict = verify(desired(key.pem), settings_for(gcp, timeout_seconds=0.3))
    assert time.monotonic() - started < 10
    assert verdict.messages == (f"the token endpoint {gcp.url}/token did not answer within 0.3s",)


def test_a_key_that_is_not_pem_fails_without_echo(gcp: FakeGcp) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    assert verify(desired(ec_pem), settings_for(gcp)).messages == (
        "private_key is not a PEM RSA private key google-auth can sign with",)
    verdict = verify(
        desired("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"), settings_for(gcp)
    )
    assert verdict.messages == ("private_key is not a PEM RSA private key google-auth can sign with",)


# --- through the CLI, settings from connsync.yaml ----------------------------------------------


def test_verify_a_gcp_connection(
    repo: Path, run: Run, gcp: FakeGcp, key: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNSYNC_GCP_TOKEN_URI", f"{gcp.url}/token")
    monkeypatch.setenv("CONNSYNC_GCP_RESOURCE_MANAGER_ENDPOINT", gcp.url)
    monkeypatch.setenv("CONNSYNC_GCP_IAM_ENDPOINT", gcp.url)
    monkeypatch.setenv("CONNSYNC_GCP_CERTIFICATES_ENDPOINT", f"{gcp.url}/x509")
    monkeypatch.setenv("TEST_GCP_KEY", key.pem)
    assert (
        run(
            "new",
            "gcp",
            "--name",
            "GCP Analytics",
            "--no-input",
            "--secret-env",
            "private_key=TEST_GCP_KEY",
            "--set",
            f"project_id={PROJECT}",
            "--set",
            f"client_email={EMAIL}",
            "--set",
            f"private_key_id={KEY_ID}",
        ).code
        == 0
    )
    result = run("verify", "--format", "json")
    assert result.code == 0, result.out + result.err
    [verdict] = json.loads(result.out)["results"]
    assert (verdict["status"], verdict["identity"]["principal"]) == ("ok", EMAIL)
    body = key.pem.splitlines()[1]
    assert body not in result.out + result.err
