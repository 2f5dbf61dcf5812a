"""Azure: the GUID fields are checked by the schema; the secret is opaque."""

from __future__ import annotations

from connsync.providers.base import Provider


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
