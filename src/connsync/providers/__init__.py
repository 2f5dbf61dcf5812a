"""Provider registry: built-ins plus any registered under ``connsync.providers``."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from importlib.metadata import entry_points

from connsync.model import Desired, Finding, json_path
from connsync.providers.base import Issue, Provider, Verdict, VerifySettings

__all__ = ["Issue", "Provider", "Verdict", "VerifySettings", "get", "secret_shapes"]


@functools.cache
def _registered() -> dict[str, Provider]:
    from connsync.providers.aws import AwsProvider
    from connsync.providers.azure import AzureProvider
    from connsync.providers.gcp import GcpProvider

    providers: dict[str, Provider] = {
        "aws": AwsProvider(),
        "azure": AzureProvider(),
        "gcp": GcpProvider(),
    }
    for ep in entry_points(group="connsync.providers"):
        providers.setdefault(ep.name, ep.load()())
    return providers


def get(name: str) -> Provider:
    return _registered().get(name) or Provider(name)


def secret_shapes(desired: Iterable[Desired]) -> list[Finding]:
    """Decrypted secrets of the wrong shape (a 43-character AWS secret): seen only once decrypted,
    so by plan and apply rather than validate, and never with the value in the message."""
    findings = []
    for item in desired:
        provider = get(item.provider)
        for field, secret in item.secrets.items():
            problem = provider.check_secret(field, secret.reveal())
            if problem:
                parts: list[str | int] = ["spec", field]
                line, column = item.declaration.position(parts)
                findings.append(Finding("error", "secret-format", item.declaration.file, line, column,
                                        json_path(parts), f"{field} {problem} (once decrypted)"))
    return findings
