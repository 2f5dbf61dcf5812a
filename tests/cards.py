"""One connection of every card (AWS keys, AWS role, Azure, GCP), made with ``connsync new``."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import CANARY, Run

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/data/platform"
EXTERNAL_ID = "ExternalIdCanary=4711"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
CLIENT = "11111111-2222-3333-4444-555555555555"
PROJECT = "analytics-prod"
EMAIL = "connsync@analytics-prod.iam.gserviceaccount.com"
KEY_ID = "0123456789abcdef0123456789abcdef01234567"


class Cards(NamedTuple):
    gcp_private_key: str


def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def make_cards(run: Run, monkeypatch: pytest.MonkeyPatch) -> Cards:
    """``EU-Prod`` (AWS keys), ``AWS Role`` (role, external id, base-less, metadata.id ``aws_role``),
    ``Azure Prod`` and ``GCP Analytics``; every secret but the GCP key is a canary."""
    pem = private_key_pem()
    monkeypatch.setenv("CARD_AWS", CANARY)
    monkeypatch.setenv("CARD_EXTERNAL", EXTERNAL_ID)
    monkeypatch.setenv("CARD_AZURE", CANARY[::-1])
    monkeypatch.setenv("CARD_GCP", pem)
    made = [
        run("new", "aws", "--name", "EU-Prod", "--no-input", "--set", f"account_id={ACCOUNT}",
            "--set", "default_region=eu-west-1", "--set", "access_key_id=AKIAIOSFODNN7EXAMPLE",
            "--secret-env", "secret_access_key=CARD_AWS"),
        run("new", "aws", "--name", "AWS Role", "--no-input", "--set", f"account_id={ACCOUNT}",
            "--set", "default_region=us-east-1", "--set", f"role_arn={ROLE_ARN}",
            "--set", "session_duration_seconds=1800", "--secret-env", "external_id=CARD_EXTERNAL"),
        run("new", "azure", "--name", "Azure Prod", "--no-input", "--set", f"tenant_id={TENANT}",
            "--set", f"subscription_id={SUBSCRIPTION}", "--set", f"client_id={CLIENT}",
            "--secret-env", "client_secret=CARD_AZURE"),
        run("new", "gcp", "--name", "GCP Analytics", "--no-input", "--set", f"project_id={PROJECT}",
            "--set", f"client_email={EMAIL}", "--set", f"private_key_id={KEY_ID}",
            "--secret-env", "private_key=CARD_GCP"),
    ]
    for result in made:
        assert result.code == 0, result.err
    # metadata.id is clear text (sops' MAC covers only the secrets): a reviewer may set it by hand.
    role = Path("connections/aws-role.yaml")
    text = role.read_text().replace("    name: AWS Role\n", "    name: AWS Role\n    id: aws_role\n", 1)
    role.write_text(text)
    return Cards(pem)
