"""Online AWS verification (STS GetCallerIdentity, IAM ListAccessKeys)."""

from __future__ import annotations

from connsync.model import Desired
from connsync.providers.base import Verdict, VerifySettings


def verify(desired: Desired, settings: VerifySettings) -> Verdict:
    raise NotImplementedError("AWS verification arrives with issue #5")
