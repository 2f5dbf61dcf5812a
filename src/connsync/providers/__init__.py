"""Provider registry: built-ins plus any registered under ``connsync.providers``."""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from connsync.providers.base import Issue, Provider, Verdict, VerifySettings

__all__ = ["Issue", "Provider", "Verdict", "VerifySettings", "get"]


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
