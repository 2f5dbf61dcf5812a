"""Run provider verifiers over many connections with bounded concurrency."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from connsync import providers
from connsync.model import Desired
from connsync.providers import Verdict, VerifySettings


def verify_one(desired: Desired, settings: VerifySettings) -> Verdict:
    provider = providers.get(desired.provider)
    problems = [
        f"{field} {problem}"
        for field, secret in desired.secrets.items()
        if (problem := provider.check_secret(field, secret.reveal()))
    ]
    if problems:  # no point asking the provider about a malformed secret
        return Verdict(desired.name, desired.declaration.file, desired.provider, "failed",
                       messages=tuple(problems))
    try:
        return provider.verify(desired, settings)
    except Exception as exc:  # a verifier bug must not take the others down
        return Verdict(desired.name, desired.declaration.file, desired.provider, "failed",
                       messages=(f"verifier error: {type(exc).__name__}",))


def verify_all(
    desired: Sequence[Desired],
    settings: VerifySettings,
    on_done: Callable[[Verdict], None] | None = None,
) -> dict[str, Verdict]:
    """Verdicts keyed by casefolded name, verified ``settings.concurrency`` at a time."""
    verdicts: dict[str, Verdict] = {}
    with ThreadPoolExecutor(max_workers=max(1, settings.concurrency)) as pool:
        for verdict in pool.map(lambda d: verify_one(d, settings), desired):
            verdicts[verdict.name.casefold()] = verdict
            if on_done:
                on_done(verdict)
    return verdicts


def verifier_for(settings: VerifySettings) -> Callable[[Sequence[Desired]], dict[str, Verdict]]:
    return lambda desired: verify_all(desired, settings)
