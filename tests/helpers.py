"""Builders for connection documents used across the tests."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import yaml

FAKE_ENC = (
    "ENC[AES256_GCM,data:BCw5MA==,iv:Tvmqj/SsQkqVW3mnxTZQG7RHg04HYiI9P9FqNl0fNWM=,"
    "tag:hLKHFVSaJbM5QQ5io6fwTw==,type:str]"
)
FAKE_SOPS = {"mac": FAKE_ENC, "lastmodified": "2026-01-01T00:00:00Z", "version": "3.11.0"}


def key_id_for(account: str) -> str:
    """A new-format access key id that encodes ``account`` (DESIGN §8)."""
    number = (1 << 47) | (int(account) << 7) | secrets.randbelow(128)
    raw = number.to_bytes(6, "big") + secrets.token_bytes(4)
    return "AKIA" + base64.b32encode(raw).decode()


def aws_doc(name: str = "AWS Prod", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "connsync/v1",
        "provider": "aws",
        "metadata": {"name": name},
        "spec": {
            "account_id": "123456789012",
            "default_region": "us-east-1",
            "access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "secret_access_key": FAKE_ENC,
            **spec,
        },
        "sops": FAKE_SOPS,
    }


def write_doc(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
