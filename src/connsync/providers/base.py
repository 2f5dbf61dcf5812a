"""The provider interface: offline checks on a spec, and online verification.

A provider is a schema file plus, optionally, one of these. Providers without
code get :class:`Provider` itself: schema checks only, verification reported as
not supported yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from connsync.model import Desired

Status = Literal["ok", "warning", "failed"]


@dataclass(frozen=True)
class Issue:
    """A semantic problem with one spec field, found without the network."""

    rule: str
    field: str
    message: str
    severity: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class VerifySettings:
    max_key_age_days: int = 90
    concurrency: int = 8
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class Verdict:
    name: str
    file: str
    provider: str
    status: Status
    identity: Mapping[str, str] = field(default_factory=dict)
    messages: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "provider": self.provider,
            "status": self.status,
            "identity": dict(self.identity),
            "messages": list(self.messages),
        }


class Provider:
    """Defaults for a provider that has a schema and nothing more."""

    def __init__(self, name: str) -> None:
        self.name = name

    def check(self, spec: Mapping[str, Any]) -> list[Issue]:
        """Offline checks on the clear fields of a schema-valid spec."""
        return []

    def check_secret(self, field: str, value: str) -> str | None:
        """Shape check on a decrypted secret; the message must not contain ``value``."""
        return None

    def schema_hint(self, field: str, validator: str, instance: Any) -> str | None:
        """A better message than jsonschema's for a common mistake, or None."""
        return None

    def verify(self, desired: Desired, settings: VerifySettings) -> Verdict:
        return Verdict(
            desired.name,
            desired.declaration.file,
            self.name,
            "warning",
            messages=(f"verification of {self.name} connections is not supported yet",),
        )
