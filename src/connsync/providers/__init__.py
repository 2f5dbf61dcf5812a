"""Provider registry: built-ins plus any registered under ``connsync.providers``."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from connsync.model import Desired, Finding, json_path
from connsync.providers.base import Issue, Provider, Verdict, VerifySettings

__all__ = ["Issue", "Provider", "Verdict", "VerifySettings", "get", "secret_shapes"]


class _Registry(dict[str, Provider]):
    """The built-in providers, then those registered under the ``connsync.providers`` entry points
    (a built-in name stays the built-in's). The entry points are read the first time a name is not
    built in: scanning every installed distribution costs more than validating a few files."""

    scanned = False

    def get(self, name: str, default: Provider | None = None) -> Provider | None:  # type: ignore[override]
        if name not in self and not self.scanned:
            from importlib.metadata import entry_points

            for ep in entry_points(group="connsync.providers"):
                self.setdefault(ep.name, ep.load()())
            self.scanned = True
        return super().get(name, default)


@functools.cache
def _registered() -> dict[str, Provider]:
    from connsync.providers.aws import AwsProvider
    from connsync.providers.azure import AzureProvider
    from connsync.providers.gcp import GcpProvider

    return _Registry(aws=AwsProvider(), azure=AzureProvider(), gcp=GcpProvider())


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
