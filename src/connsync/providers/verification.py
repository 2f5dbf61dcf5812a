"""Run provider verifiers over many connections with bounded concurrency.

``verify.concurrency`` requests are in flight at once (the work waits on the
network, so threads pay); at most ``verify.per_account_concurrency`` of them
for one provider scope (an AWS account, say), so one team's hundred keys
cannot trip that account's request limits. Each provider gets one verifier
for the whole run (:meth:`Provider.verifying`), which is where shared clients
and connection pools live.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import replace

from connsync import providers
from connsync.model import Desired
from connsync.providers import Verdict, VerifySettings

Verify = Callable[[Desired], Verdict]


def _secret_problems(desired: Desired) -> list[str]:
    provider = providers.get(desired.provider)
    return [
        f"{field} {problem}"
        for field, secret in desired.secrets.items()
        if (problem := provider.check_secret(field, secret.reveal()))
    ]


def _guarded(desired: Desired, verify: Verify) -> Verdict:
    problems = _secret_problems(desired)
    if problems:  # no point asking the provider about a malformed secret
        return Verdict(desired.name, desired.declaration.file, desired.provider, "failed",
                       messages=tuple(problems))
    try:
        return verify(desired)
    except Exception as exc:  # a verifier bug must not take the others down
        return Verdict(desired.name, desired.declaration.file, desired.provider, "failed",
                       messages=(f"verifier error: {type(exc).__name__}",))


def _required(verdict: Verdict, settings: VerifySettings) -> Verdict:
    if verdict.status != "skipped" or not settings.require_verified:
        return verdict
    return replace(verdict, status="failed",
                   messages=(*verdict.messages, "not verified, and verification is required "
                             "(--require-verified or verify.require_verified)"))


def verify_one(desired: Desired, settings: VerifySettings) -> Verdict:
    return verify_all([desired], settings)[desired.name.casefold()]


class _ScopeLimits:
    """One semaphore per (provider, scope), made on first use."""

    def __init__(self, per_scope: int) -> None:
        self._per_scope = max(1, per_scope)
        self._semaphores: dict[tuple[str, str], threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    def __call__(self, desired: Desired) -> threading.BoundedSemaphore | None:
        scope = providers.get(desired.provider).rate_scope(desired.spec)
        if scope is None:
            return None
        with self._lock:
            return self._semaphores.setdefault((desired.provider, scope),
                                               threading.BoundedSemaphore(self._per_scope))


def _interleaved(desired: Sequence[Desired]) -> list[Desired]:
    """Round-robin over scopes, so workers do not queue behind one account's semaphore."""
    by_scope: dict[tuple[str, str | None], list[Desired]] = {}
    for item in desired:
        scope = providers.get(item.provider).rate_scope(item.spec)
        by_scope.setdefault((item.provider, scope), []).append(item)
    queues = list(by_scope.values())
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def _open_verifier(stack: ExitStack, name: str, settings: VerifySettings) -> Verify:
    """The provider's verifier for this run; if it cannot even start, each of its connections fails."""
    try:
        return stack.enter_context(providers.get(name).verifying(settings))
    except Exception as exc:  # a broken provider must not take the others down either
        error = f"verifier error: {type(exc).__name__}"
        return lambda d: Verdict(d.name, d.declaration.file, d.provider, "failed", messages=(error,))


def verify_all(
    desired: Sequence[Desired],
    settings: VerifySettings,
    on_done: Callable[[Verdict], None] | None = None,
) -> dict[str, Verdict]:
    """Verdicts keyed by casefolded name; ``on_done`` is called as each one arrives."""
    verdicts: dict[str, Verdict] = {}
    limit = _ScopeLimits(settings.per_account_concurrency)
    with ExitStack() as stack:
        names = sorted({d.provider for d in desired})
        verifiers = {name: _open_verifier(stack, name, settings) for name in names}

        def one(item: Desired) -> Verdict:
            semaphore = limit(item)
            if semaphore is None:
                return _required(_guarded(item, verifiers[item.provider]), settings)
            with semaphore:
                return _required(_guarded(item, verifiers[item.provider]), settings)

        workers = max(1, min(settings.concurrency, len(desired)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify")
        try:
            futures = [pool.submit(one, d) for d in _interleaved(desired)]
            # Completion order, not input order: the progress bar moves as answers come.
            for future in as_completed(futures):
                verdict = future.result()
                verdicts[verdict.name.casefold()] = verdict
                if on_done:
                    on_done(verdict)
        except BaseException:
            # ^C: the caller says so now; calls already under way end at their own timeout.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    return verdicts


def verifier_for(settings: VerifySettings) -> Callable[[Sequence[Desired]], dict[str, Verdict]]:
    return lambda desired: verify_all(desired, settings)
