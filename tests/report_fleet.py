"""A small fleet in every state the report knows, made the way users make one (init, new, apply).

What only a provider or time could produce (a failed check, a quarantined key, a key 200 days
old, a record changed outside connsync) is put into the real store directly.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connsync.store import Verification, opened
from tests.conftest import CANARY, Run, new_aws

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_LABEL = "<b>ops</b>"
EXPOSED_MESSAGE = ("exposed: AWS has quarantined IAM user billing (policy AWSCompromisedKeyQuarantineV3); "
                   "run `connsync rotate --exposed AKIAIOSFODNN7EXAMPLE`")
FAILED_MESSAGE = "key rejected by STS: the secret access key does not match the access key id"


def _days_ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds").replace("+00:00", "Z")


def _gcp_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def build(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> str:
    """Nine connections in ``repo`` (made by ``connsync init``); returns the store URL.

    Needs attention: Billing (exposed), Broken (verification failed), Drifted (changed in the
    store), Old Key (200 days), Retired (orphan), Bad Region (a finding), the hostile name
    (verification failed). Healthy: Azure Dev, GCP Analytics (in sync) and New One (not applied).
    """
    for name, labels in (("Billing", ("env=prod",)), ("Broken", ()), ("Drifted", ()), ("Old Key", ()),
                         ("Retired", ()), ("Bad Region", ()), (HOSTILE, (f"team={HOSTILE_LABEL}",))):
        extra = tuple(x for label in labels for x in ("--label", label))
        assert new_aws(run, monkeypatch, name=name, extra=extra).code == 0
    monkeypatch.setenv("AZ_SECRET", CANARY)
    assert run("new", "azure", "--name", "Azure Dev", "--no-input", "--label", "env=dev",
               "--set", "tenant_id=72f988bf-86f1-41af-91ab-2d7cd011db47",
               "--set", "subscription_id=00000000-0000-0000-0000-000000000001",
               "--set", "client_id=11111111-1111-1111-1111-111111111111",
               "--secret-env", "client_secret=AZ_SECRET").code == 0
    monkeypatch.setenv("GCP_KEY", _gcp_key())
    assert run("new", "gcp", "--name", "GCP Analytics", "--no-input", "--set", "project_id=analytics-1",
               "--set", "client_email=reporter@analytics-1.iam.gserviceaccount.com",
               "--set", "private_key_id=0123456789abcdef0123456789abcdef01234567",
               "--secret-env", "private_key=GCP_KEY").code == 0
    applied = run("apply", "--auto-approve", "--skip-verify")
    assert applied.code == 0, applied.err

    url = f"sqlite:{repo / '.connsync' / 'store.db'}"
    with opened(url, "default") as store:
        store.record_verifications([
            Verification("Billing", _days_ago(3), "ok", "123456789012"),
            Verification("Billing", _days_ago(0), "failed", "123456789012", (EXPOSED_MESSAGE,)),
            Verification("Broken", _days_ago(0), "failed", None, (FAILED_MESSAGE,)),
            Verification("Old Key", _days_ago(1), "warning", "123456789012",
                         ("the key is 200 days old, past max_key_age_days (90): rotate it",), _days_ago(200)),
            Verification(HOSTILE, _days_ago(0), "failed", None, (f"verifier error for {HOSTILE}",)),
            Verification("Azure Dev", _days_ago(0), "ok", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            Verification("GCP Analytics", _days_ago(2), "ok", "analytics-1", (), _days_ago(30)),
        ])
        store.record_event("GCP Analytics", "rotate-create-key 0123456789abcdef", actor="tester",
                           git_revision=None, source=None)
    # What the console would do: a new version of the record that connsync did not write.
    db = sqlite3.connect(repo / ".connsync" / "store.db")
    db.execute("UPDATE connections SET version = version + 1 WHERE name = 'Drifted'")
    db.commit()
    db.close()
    (repo / "connections" / "retired.yaml").unlink()  # the store keeps it: an orphan
    bad = repo / "connections" / "bad-region.yaml"
    bad.write_text(bad.read_text().replace("default_region: us-east-1", "default_region: mars-east-9"))
    assert new_aws(run, monkeypatch, name="New One").code == 0
    return url
