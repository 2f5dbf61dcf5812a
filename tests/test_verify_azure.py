"""Azure verification against a fake Entra ID authority and ARM over TLS (tests/fake_azure.py)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from connsync.model import Declaration, Desired, Secret
from connsync.providers import VerifySettings
from connsync.providers.azure_verify import verify
from tests.conftest import CANARY, Run
from tests.fake_azure import CLIENT, SUBSCRIPTION, TENANT, App, FakeAzure, serve

OTHER_SUBSCRIPTION = "99999999-0000-0000-0000-000000000000"


@pytest.fixture
def azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAzure]:
    fake = FakeAzure(
        apps={CLIENT: App(CANARY)},
        subscriptions={SUBSCRIPTION: "Platform Prod", OTHER_SUBSCRIPTION: "Someone Else's"},
    )
    with serve(fake, tmp_path_factory.mktemp("tls")) as served:
        yield served


def settings_for(fake: FakeAzure, **overrides: object) -> VerifySettings:
    base = VerifySettings(
        timeout_seconds=2,
        ca_bundle=fake.ca_bundle,
        azure_authority_host=fake.url,
        azure_management_endpoint=fake.url,
        azure_instance_discovery=False,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def desired(
    secret: str = CANARY, *, tenant: str = TENANT, client: str = CLIENT, subscription: str = SUBSCRIPTION
) -> Desired:
    decl = Declaration("connections/az.yaml", {"provider": "azure", "metadata": {"name": "Azure Prod"}}, "d")
    return Desired(
        decl,
        {"tenant_id": tenant, "client_id": client, "subscription_id": subscription},
        {"client_secret": Secret(secret)},
    )


def test_a_working_service_principal_is_ok(azure: FakeAzure) -> None:
    verdict = verify(desired(), settings_for(azure))
    assert verdict.status == "ok", verdict.messages
    assert verdict.identity == {
        "tenant": TENANT,
        "principal": f"app {CLIENT}",
        "subscription": "Platform Prod",
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"tenant": "00000000-1111-2222-3333-444444444444"},
            "token refused: tenant_id: Entra ID knows no such tenant",
        ),
        (
            {"client": "99999999-2222-3333-4444-555555555555"},
            "token refused: client_id: no application with this id in tenant_id",
        ),
        (
            {"secret": "not-the-secret-value"},
            "token refused: client_secret is wrong (use the secret's Value, not its Secret ID) "
            "(AADSTS7000215)",
        ),
        (
            {"subscription": "12345678-0000-0000-0000-000000000000"},
            "subscription_id: subscription 12345678-0000-0000-0000-000000000000 not found",
        ),
        (
            {"subscription": OTHER_SUBSCRIPTION},
            f"the service principal has no access to subscription {OTHER_SUBSCRIPTION}",
        ),
    ],
)
def test_each_failure_in_plain_words(azure: FakeAzure, spec: dict[str, str], message: str) -> None:
    verdict = verify(desired(**spec), settings_for(azure))
    assert verdict.status == "failed"
    assert verdict.messages[0].startswith(message), verdict.messages
    assert CANARY not in repr(verdict)


def test_no_secret_or_token_reaches_a_log(azure: FakeAzure, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert verify(desired(), settings_for(azure)).status == "ok"
    assert verify(desired(CANARY[:-1] + "x"), settings_for(azure)).status == "failed"
    assert caplog.records  # the libraries did log, at DEBUG
    assert (
        CANARY not in caplog.text and CANARY[:-1] not in caplog.text and "fake-arm-token" not in caplog.text
    )


def test_a_disabled_subscription_warns(azure: FakeAzure) -> None:
    azure.disabled.add(SUBSCRIPTION)
    verdict = verify(desired(), settings_for(azure))
    assert (verdict.status, verdict.messages) == ("warning", (f"subscription {SUBSCRIPTION} is Disabled",))


def test_an_expired_secret(azure: FakeAzure) -> None:
    azure.apps[CLIENT].expired = True
    verdict = verify(desired(), settings_for(azure))
    assert verdict.messages == (
        "token refused: client_secret has expired: add a new secret to the app "
        "registration and rotate it (AADSTS7000222)",
    )


def test_busy_endpoints_are_retried(azure: FakeAzure) -> None:
    azure.token_failures[:] = [429, 503]
    azure.arm_failures[:] = [503]
    verdict = verify(desired(), settings_for(azure))
    assert verdict.status == "ok", verdict.messages
    assert (azure.token_requests, azure.arm_requests) == (3, 2)


def test_a_silent_authority_times_out(azure: FakeAzure) -> None:
    azure.hang = 3
    started = time.monotonic()
    verdict = verify(desired(), settings_for(azure, timeout_seconds=0.3))
    assert time.monotonic() - started < 10
    assert verdict.messages == (f"the Azure authority at {azure.url} did not answer within 0.3s",)


def test_an_untrusted_certificate_is_refused(azure: FakeAzure) -> None:
    verdict = verify(desired(), settings_for(azure, ca_bundle=None))
    assert verdict.status == "failed"
    assert verdict.messages == (f"could not connect to the Azure authority at {azure.url}",)


def test_sovereign_clouds_pick_their_authority_and_arm(monkeypatch: pytest.MonkeyPatch) -> None:
    from connsync.providers import azure_verify

    seen: list[tuple[str, str]] = []

    class Recorder:
        def __init__(self, tenant: str, client: str, secret: str, *, authority: str, **_: object) -> None:
            self.authority = authority

        def get_token(self, scope: str) -> object:
            seen.append((self.authority, scope))
            raise azure_verify.ClientAuthenticationError(message="AADSTS7000215: stop here")

    monkeypatch.setattr(azure_verify, "ClientSecretCredential", Recorder)
    for cloud in ("AzureUSGovernment", "AzureChinaCloud", None):
        item = desired()
        spec = {**item.spec, **({"cloud": cloud} if cloud else {})}
        verify(Desired(item.declaration, spec, item.secrets), VerifySettings())
    assert seen == [
        ("https://login.microsoftonline.us", "https://management.usgovcloudapi.net/.default"),
        ("https://login.chinacloudapi.cn", "https://management.chinacloudapi.cn/.default"),
        ("https://login.microsoftonline.com", "https://management.azure.com/.default"),
    ]


# --- through the CLI, settings from connsync.yaml ----------------------------------------------


def test_verify_and_apply_an_azure_connection(
    repo: Path, run: Run, azure: FakeAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNSYNC_CA_BUNDLE", azure.ca_bundle)
    monkeypatch.setenv("CONNSYNC_AZURE_AUTHORITY_HOST", azure.url)
    monkeypatch.setenv("CONNSYNC_AZURE_MANAGEMENT_ENDPOINT", azure.url)
    monkeypatch.setenv("CONNSYNC_AZURE_INSTANCE_DISCOVERY", "false")
    for name, secret in (("Azure Good", CANARY), ("Azure Typo", CANARY[:-1] + "X")):
        monkeypatch.setenv("TEST_AZ_SECRET", secret)
        args = [
            "new",
            "azure",
            "--name",
            name,
            "--no-input",
            "--secret-env",
            "client_secret=TEST_AZ_SECRET",
            "--set",
            f"tenant_id={TENANT}",
            "--set",
            f"client_id={CLIENT}",
            "--set",
            f"subscription_id={SUBSCRIPTION}",
        ]
        assert run(*args).code == 0
    result = run("verify", "--format", "json")
    statuses = {r["name"]: (r["status"], r["messages"]) for r in json.loads(result.out)["results"]}
    assert statuses["Azure Good"] == ("ok", [])
    assert statuses["Azure Typo"][0] == "failed" and "client_secret is wrong" in statuses["Azure Typo"][1][0]
    text = run("verify")
    assert "ok       Azure Good (azure, connections/azure-good.yaml)  app " + CLIENT in text.out
    assert "2 connections verified: 1 ok, 0 warnings, 1 failed" in text.out
    report = json.loads(run("apply", "--auto-approve", "--format", "json").out)
    assert [a["name"] for a in report["applied"]] == ["Azure Good"]
    assert [f["name"] for f in report["failed"]] == ["Azure Typo"]
    for output in (result.out, text.out, text.err, json.dumps(report)):
        assert CANARY not in output


def test_a_missing_ca_bundle_is_a_config_error(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNSYNC_CA_BUNDLE", str(repo / "certs/missing.pem"))
    result = run("verify")
    assert result.code == 1
    assert "CONNSYNC_CA_BUNDLE: no file at" in result.err and "missing.pem" in result.err


def test_connsync_yaml_cannot_send_secrets_elsewhere(repo: Path, run: Run, azure: FakeAzure,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A pull request edits connsync.yaml: endpoints there would receive every client secret."""
    monkeypatch.setenv("TEST_AZ_SECRET", CANARY)
    assert run("new", "azure", "--name", "Azure Good", "--no-input", "--secret-env",
               "client_secret=TEST_AZ_SECRET", "--set", f"tenant_id={TENANT}", "--set",
               f"client_id={CLIENT}", "--set", f"subscription_id={SUBSCRIPTION}").code == 0
    before = azure.token_requests
    for settings in (f"verify:\n  azure: {{authority_host: '{azure.url}'}}\n",
                     f"verify:\n  ca_bundle: {azure.ca_bundle}\n"):
        (repo / "connsync.yaml").write_text(settings)
        result = run("verify")
        assert result.code == 1 and "connsync.yaml:2:" in result.err, result.err
    assert azure.token_requests == before  # nothing was sent anywhere
