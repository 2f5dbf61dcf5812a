"""Verification states that do not lie: a provider that cannot verify gives "skipped", never "ok"."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connsync import providers
from connsync.model import Declaration, Desired, Secret
from connsync.providers import Provider, Verdict, VerifySettings
from connsync.providers.verification import verify_one
from tests.conftest import CANARY, Run, new_aws


def test_a_provider_without_a_verifier_is_skipped_unless_required() -> None:
    decl = Declaration("connections/x.yaml", {"provider": "custom", "metadata": {"name": "X"}}, "d")
    item = Desired(decl, {}, {"token": Secret(CANARY)})
    verdict = verify_one(item, VerifySettings())
    assert verdict.status == "skipped"
    assert verdict.messages == ("connsync cannot verify custom connections (no verifier for this provider)",)
    required = verify_one(item, VerifySettings(require_verified=True))
    assert required.status == "failed"
    assert required.messages[-1].startswith("not verified, and verification is required")


@pytest.fixture
def unverifiable_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Azure as a plugin provider without a verifier would be."""
    registered = dict(providers._registered())
    registered["azure"] = Provider("azure")
    monkeypatch.setattr(providers, "_registered", lambda: registered)


def new_azure(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_AZ_SECRET", CANARY)
    assert (
        run(
            "new",
            "azure",
            "--name",
            "Azure Dev",
            "--no-input",
            "--secret-env",
            "client_secret=TEST_AZ_SECRET",
            "--set",
            "tenant_id=72f988bf-86f1-41af-91ab-2d7cd011db47",
            "--set",
            "subscription_id=00000000-0000-0000-0000-000000000000",
            "--set",
            "client_id=11111111-2222-3333-4444-555555555555",
        ).code
        == 0
    )


def test_verify_counts_skipped_apart(
    repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, unverifiable_azure: None
) -> None:
    new_azure(run, monkeypatch)
    text = run("verify")
    assert text.code == 0
    assert "skipped  Azure Dev (azure, connections/azure-dev.yaml)" in text.out
    assert "0 connections verified: 0 ok, 0 warnings, 0 failed; 1 skipped (not verifiable) in" in text.out
    result = run("verify", "--format", "json")
    assert json.loads(result.out)["results"][0]["status"] == "skipped"
    required = run("verify", "--require-verified", "--format", "json")
    assert required.code == 1
    report = json.loads(required.out)
    assert report["ok"] is False and report["results"][0]["status"] == "failed"
    for output in (text.out, result.out, required.out):
        assert CANARY not in output


def test_apply_reports_what_it_wrote_unverified(
    repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, unverifiable_azure: None
) -> None:
    new_azure(run, monkeypatch)
    refused = run("apply", "--auto-approve", "--require-verified", "--format", "json")
    assert refused.code == 1
    assert "not verified, and verification is required" in json.loads(refused.out)["failed"][0]["error"]
    assert run("apply", "--auto-approve", "--skip-verify", "--require-verified").code == 64
    text = run("apply", "--auto-approve")
    assert text.code == 0
    assert "warning: Azure Dev: connsync cannot verify azure connections" in text.out
    assert "Verified" not in text.out  # nothing was verified: the report does not say so


def test_apply_json_lists_unverified(
    repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, unverifiable_azure: None
) -> None:
    new_azure(run, monkeypatch)
    new_aws(run, monkeypatch)  # verified (and failing: no endpoint), so not written
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    report = json.loads(run("apply", "--auto-approve", "--format", "json").out)
    assert report["unverified"] == ["Azure Dev"]
    assert [a["name"] for a in report["applied"]] == ["Azure Dev"]


def test_a_provider_whose_verifier_cannot_start_fails_only_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import contextmanager

    from connsync.providers.verification import verify_all

    class Broken(Provider):
        @contextmanager
        def verifying(self, settings: VerifySettings) -> Iterator[Callable[[Desired], Verdict]]:
            raise RuntimeError(CANARY)  # whatever it says, only its type is shown
            yield

    registered = {"broken": Broken("broken"), "custom": Provider("custom")}
    monkeypatch.setattr(providers, "_registered", lambda: registered)
    items = [
        Desired(Declaration(f"connections/{p}.yaml", {"provider": p, "metadata": {"name": p}}, "d"), {}, {})
        for p in ("broken", "custom")
    ]
    verdicts = verify_all(items, VerifySettings())
    assert verdicts["broken"].messages == ("verifier error: RuntimeError",)
    assert verdicts["custom"].status == "skipped"
