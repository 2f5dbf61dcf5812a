"""Azure: the GUID fields are checked by the schema; the secret is opaque."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from connsync.model import Desired
from connsync.providers.base import Provider, Verdict, VerifySettings


class AzureProvider(Provider):
    def __init__(self) -> None:
        super().__init__("azure")

    def schema_hint(self, field: str, validator: str, instance: object) -> str | None:
        if validator == "pattern" and field.endswith("_id"):
            return "must be a GUID like 00000000-0000-0000-0000-000000000000"
        return None

    def check_secret(self, field: str, value: str) -> str | None:
        if field == "client_secret" and (len(value) < 8 or value != value.strip()):
            return "does not look like an Azure client secret (too short, or surrounding spaces)"
        return None

    def rate_scope(self, spec: Mapping[str, Any]) -> str | None:
        return str(spec.get("tenant_id"))  # Entra ID throttles token requests per tenant

    @contextmanager
    def verifying(self, settings: VerifySettings) -> Iterator[Callable[[Desired], Verdict]]:
        from connsync.providers.azure_verify import run_for

        with run_for(settings) as verifier:
            yield verifier
