"""Online Azure verification: a token with the service principal's own secret, then its subscription.

azure-identity's ``ClientSecretCredential`` asks the tenant's authority for an
ARM token (client-credentials grant); Entra ID's AADSTS error codes are turned
into plain words. With the token, ARM ``GET /subscriptions/{id}`` proves the
principal can reach the declared subscription. The secret leaves ``Secret``
only to build the credential, right before the token request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import RetryPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.identity import ClientSecretCredential

from connsync.model import Desired
from connsync.providers import key_age
from connsync.providers.base import Status, Verdict, VerifySettings
from connsync.providers.web import error_text, session_for, trust


class Cloud(NamedTuple):
    authority: str
    management: str


# The `cloud` field's values are `az cloud list`'s names.
CLOUDS = {
    "AzureCloud": Cloud("https://login.microsoftonline.com", "https://management.azure.com"),
    "AzureUSGovernment": Cloud("https://login.microsoftonline.us", "https://management.usgovcloudapi.net"),
    "AzureChinaCloud": Cloud("https://login.chinacloudapi.cn", "https://management.chinacloudapi.cn"),
}
ARM_API_VERSION = "2022-12-01"

# Entra ID's answers, in plain words (https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
AADSTS = {
    "90002": "tenant_id: Entra ID knows no such tenant (mistyped, deleted, or in another cloud)",
    "900023": "tenant_id: not a valid tenant identifier",
    "90072": "the client_id's application does not exist in tenant_id (wrong tenant?)",
    "700016": "client_id: no application with this id in tenant_id (mistyped, deleted, or another "
    "tenant's app)",
    "7000215": "client_secret is wrong (use the secret's Value, not its Secret ID)",
    "7000222": "client_secret has expired: add a new secret to the app registration and rotate it",
    "7000112": "the application is disabled in tenant_id",
    "7000229": "the application has no service principal in tenant_id (not consented there)",
    "53003": "Conditional Access blocked the sign-in",
}
_AADSTS_RE = re.compile(r"AADSTS(\d+)")


RETRIES = {"retry_total": 2, "retry_backoff_factor": 0.5}  # 3 attempts, as for AWS


class AzureRun:
    """What one verification run shares: one HTTP session, one azure-core transport on it,
    and the ARM pipeline (azure-core's retry policy: 429 and 5xx, Retry-After honoured)."""

    def __init__(self, settings: VerifySettings) -> None:
        self.settings = settings
        self.session = session_for(settings, retry_gets=False)
        self.transport = RequestsTransport(
            session=self.session, session_owner=False, connection_timeout=settings.timeout_seconds,
            read_timeout=settings.timeout_seconds, connection_verify=trust(settings))
        self.arm = Pipeline(transport=self.transport, policies=[RetryPolicy(**RETRIES)])

    def get(self, url: str, token: str) -> tuple[int, Any]:
        request = HttpRequest("GET", url, params={"api-version": ARM_API_VERSION},
                              headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        response = self.arm.run(request).http_response
        try:
            return response.status_code, json.loads(response.text())
        except ValueError:
            return response.status_code, None

    def close(self) -> None:
        self.session.close()


@contextmanager
def run_for(settings: VerifySettings) -> Iterator[Callable[[Desired], Verdict]]:
    run = AzureRun(settings)
    try:
        yield lambda desired: verify(desired, settings, run)
    finally:
        run.close()


def verify(desired: Desired, settings: VerifySettings, run: AzureRun | None = None) -> Verdict:
    if run is None:
        with run_for(settings) as verifier:
            return verifier(desired)
    spec = desired.spec
    cloud = CLOUDS[str(spec.get("cloud") or "AzureCloud")]
    authority = settings.azure_authority_host or cloud.authority
    management = (settings.azure_management_endpoint or cloud.management).rstrip("/")
    tenant, client = str(spec["tenant_id"]), str(spec["client_id"])
    subscription = str(spec["subscription_id"])

    def result(status: Status, *messages: str, identity: dict[str, str] | None = None) -> Verdict:
        return Verdict(desired.name, desired.declaration.file, "azure", status, identity or {},
                       tuple(messages))

    try:
        credential = ClientSecretCredential(
            tenant, client, desired.secrets["client_secret"].reveal(), authority=authority,
            disable_instance_discovery=not settings.azure_instance_discovery, transport=run.transport,
            **RETRIES)
        token = credential.get_token(f"{cloud.management}/.default").token
    except (ClientAuthenticationError, AzureError) as exc:
        return result("failed", _explain_refusal(exc, authority, settings))
    except ValueError as exc:  # azure-identity refusing its arguments (never the secret's value)
        return result("failed", f"azure-identity refused the settings: {type(exc).__name__}")

    who = {"tenant": tenant, "principal": f"app {client}"}
    try:
        status, body = run.get(f"{management}/subscriptions/{subscription}", token)
    except (ServiceRequestTimeoutError, ServiceResponseTimeoutError):
        return result("failed", f"ARM at {management} did not answer within {settings.timeout_seconds:g}s",
                      identity=who)
    except AzureError as exc:
        return result("failed", f"could not reach ARM at {management} ({type(exc).__name__})", identity=who)
    if status == 200 and isinstance(body, dict):
        who["subscription"] = str(body.get("displayName") or subscription)
        state = str(body.get("state") or "Enabled")
        warnings = [f"subscription {subscription} is {state}"] if state != "Enabled" else []
        ending = key_age.expiry_message(spec)
        if ending:  # Entra ID still signs it in: the end is near, or client_secret_expires is wrong
            warnings.append(f"{ending}: rotate it ('connsync rotate')")
        return result("warning" if warnings else "ok", *warnings, identity=who)
    code = error_text(body)
    if status == 404 or code == "SubscriptionNotFound":
        return result("failed", f"subscription_id: subscription {subscription} not found (mistyped, "
                      "cancelled, or in another tenant)", identity=who)
    if status == 403 or code == "AuthorizationFailed":
        return result("failed", f"the service principal has no access to subscription {subscription}: "
                      "assign it a role there (Reader at least)", identity=who)
    if status == 401:
        return result("failed", f"ARM refused the token for subscription {subscription} "
                      f"({code or 'HTTP 401'}): is the subscription in tenant_id?", identity=who)
    return result("failed", f"ARM answered HTTP {status} for subscription {subscription} "
                  f"({code or 'no code'})", identity=who)


def _explain_refusal(exc: AzureError, authority: str, settings: VerifySettings) -> str:
    cause = _network_cause(exc)
    if isinstance(cause, (ServiceRequestTimeoutError, ServiceResponseTimeoutError)):
        return f"the Azure authority at {authority} did not answer within {settings.timeout_seconds:g}s"
    if isinstance(cause, ServiceRequestError):
        return f"could not connect to the Azure authority at {authority}"
    if isinstance(cause, ServiceResponseError):
        return f"the Azure authority at {authority} broke off the answer"
    text = str(getattr(exc, "message", "") or "")
    code = _AADSTS_RE.search(text)
    if code:
        plain = AADSTS.get(code.group(1))
        return f"token refused: {plain} (AADSTS{code.group(1)})" if plain else \
            f"token refused by Entra ID (AADSTS{code.group(1)})"
    if "Unable to get authority configuration" in text:  # MSAL's tenant discovery got a 4xx
        return f"token refused: {AADSTS['90002']} (no OpenID configuration at {authority})"
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    answer = f"HTTP {status}" if status else "no code"
    return f"token refused by the Azure authority at {authority} ({answer})"


def _network_cause(exc: BaseException) -> Any:
    """The azure-core network error somewhere under ``exc``, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ServiceRequestError, ServiceResponseError)):
            return current
        current = current.__cause__ or current.__context__
    return None
