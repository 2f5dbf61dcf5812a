"""The provider interface: offline checks on a spec, and online verification.

A provider is a schema file plus, optionally, one of these. Providers without
code get :class:`Provider` itself: schema checks only, verification reported as
"skipped" (never as ok).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from connsync.model import Declaration, Desired

# skipped: the provider cannot verify this connection (no verifier); never counted as ok.
Status = Literal["ok", "warning", "failed", "skipped"]


@dataclass(frozen=True)
class Issue:
    """A semantic problem with one spec field, found without the network."""

    rule: str
    field: str
    message: str
    severity: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class OnlineRule:
    """An organisation policy rule that verify checks online for one connection (DESIGN section 10)."""

    rule: str  # "policy/<id>"
    severity: Literal["error", "warning"]
    max_key_age_days: int | None = None  # replaces verify.max_key_age_days for this connection
    least_privilege: bool = False  # the key's principal holds no administrator-equivalent right
    message: str | None = None


@dataclass(frozen=True)
class VerifySettings:
    max_key_age_days: int = 90
    # Connections verified at once. The work waits on the network, not the CPU:
    # bench/verify.py (1,000 keys, 50 ms per call) gave 5.1 s at 32, 3.8 s at 64 and
    # 2.8 s at 128, where the 2-core machine's CPU became the limit; 64 keeps most
    # of the gain with half the sockets.
    concurrency: int = 64
    # In flight for one scope (an AWS account, an Azure tenant, a GCP project), so one
    # team's many keys cannot trip its request limits.
    per_account_concurrency: int = 8
    timeout_seconds: float = 10.0
    # A connection whose provider cannot verify it fails instead of being skipped.
    require_verified: bool = False
    # Where the Azure and GCP verifiers send their requests: the public clouds unless
    # set (private endpoints, proxies, and the tests' fakes). A CA bundle (PEM) replaces
    # the default trust store for those requests.
    ca_bundle: str | None = None
    azure_authority_host: str | None = None
    azure_management_endpoint: str | None = None
    azure_graph_endpoint: str | None = None  # Microsoft Graph, for rotating client secrets
    azure_instance_discovery: bool = True
    gcp_token_uri: str | None = None
    gcp_resource_manager_endpoint: str | None = None
    gcp_iam_endpoint: str | None = None
    gcp_certificates_endpoint: str | None = None
    # IAM user ARNs whose AWS quarantine policy `rotate --exposed` has dealt with: their new key
    # verifies (with a warning) although the policy is still attached to the user.
    quarantine_accepted: frozenset[str] = frozenset()
    # The organisation policy's online rules that apply to a connection (none without a policy).
    policy: Callable[[Declaration], tuple[OnlineRule, ...]] | None = field(default=None, compare=False)

    def policy_rules(self, desired: Desired) -> tuple[OnlineRule, ...]:
        return self.policy(desired.declaration) if self.policy is not None else ()


@dataclass(frozen=True)
class Verdict:
    name: str
    file: str
    provider: str
    status: Status
    identity: Mapping[str, str] = field(default_factory=dict)
    messages: tuple[str, ...] = ()
    # When the key was created, where the provider told (IAM's CreateDate): the report's key age.
    key_created: datetime | None = None

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

    def rate_scope(self, spec: Mapping[str, Any]) -> str | None:
        """Where the provider's request limits apply (an account id), or None for no bound."""
        return None

    @contextmanager
    def verifying(self, settings: VerifySettings) -> Iterator[Callable[[Desired], Verdict]]:
        """A verifier for one run over many connections.

        Providers override this to share what does not depend on the key
        (clients, connection pools) across the run; the default verifies each
        connection on its own with :meth:`verify`.
        """
        yield lambda desired: self.verify(desired, settings)

    def verify(self, desired: Desired, settings: VerifySettings) -> Verdict:
        return Verdict(
            desired.name,
            desired.declaration.file,
            self.name,
            "skipped",
            messages=(f"connsync cannot verify {self.name} connections (no verifier for this provider)",),
        )
