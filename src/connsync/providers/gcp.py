"""GCP: a service account key, as pasted from the key JSON."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from connsync.model import Desired
from connsync.providers.base import Issue, Provider, Verdict, VerifySettings

# A service account key JSON carries a PKCS#8 key in PEM armour.
_PEM_LABEL = "PRIVATE KEY"
PEM_BEGIN = f"-----BEGIN {_PEM_LABEL}-----"
PEM_END = f"-----END {_PEM_LABEL}-----"


class GcpProvider(Provider):
    def __init__(self) -> None:
        super().__init__("gcp")

    def schema_hint(self, field: str, validator: str, instance: object) -> str | None:
        if field == "client_email" and validator == "pattern":
            return "must be a service account email like NAME@PROJECT.iam.gserviceaccount.com"
        if field == "private_key_id" and validator == "pattern":
            return "must be the 40 hexadecimal characters of the key JSON's private_key_id"
        return None

    def check(self, spec: Mapping[str, Any]) -> list[Issue]:
        email, project = spec.get("client_email"), spec.get("project_id")
        if isinstance(email, str) and isinstance(project, str) and "@" in email:
            domain_project = email.split("@", 1)[1].split(".", 1)[0]
            if domain_project != project:
                return [
                    Issue(
                        "gcp-project",
                        "client_email",
                        f"service account belongs to project {domain_project!r}, "
                        f"not project_id {project!r}; fine if it was granted access there",
                        severity="warning",
                    )
                ]
        return []

    def check_secret(self, field: str, value: str) -> str | None:
        if field == "private_key":
            body = value.strip()
            if not (body.startswith(PEM_BEGIN) and body.endswith(PEM_END)):
                return (
                    f"must be a PEM private key from {PEM_BEGIN} to {PEM_END} "
                    "(paste the key JSON's private_key with its newlines)"
                )
        return None

    def rate_scope(self, spec: Mapping[str, Any]) -> str | None:
        return str(spec.get("project_id"))  # Google's API quotas are per project

    @contextmanager
    def verifying(self, settings: VerifySettings) -> Iterator[Callable[[Desired], Verdict]]:
        from connsync.providers.gcp_verify import run_for

        with run_for(settings) as verifier:
            yield verifier
