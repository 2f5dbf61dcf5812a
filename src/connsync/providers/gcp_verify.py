"""Online GCP verification: the service-account key signs in, and reaches its project.

google-auth signs a JWT with the key (``kid`` = private_key_id, ``iss`` =
client_email) and exchanges it at the token endpoint: success proves the key
is live and that client_email and private_key_id belong to it. When Google
refuses (``invalid_grant`` says little), the service account's published
public certificates tell a deleted or disabled key from a wrong private key.
Then Cloud Resource Manager ``projects.get`` proves project_id is reachable,
and IAM ``serviceAccounts.keys.get`` (best effort) gives the key's age. The
private key leaves ``Secret`` only to build the signer, right before the
token request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import requests
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from google.auth import crypt
from google.auth.exceptions import GoogleAuthError, RefreshError, TransportError
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from connsync.model import Desired, Secret
from connsync.providers.base import Status, Verdict, VerifySettings
from connsync.providers.web import error_text, get_json, session_for, trust

TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL, not a password)
RESOURCE_MANAGER = "https://cloudresourcemanager.googleapis.com"
IAM = "https://iam.googleapis.com"
CERTIFICATES = "https://www.googleapis.com/service_accounts/v1/metadata/x509"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class _TimedRequest(Request):
    """google-auth's requests transport with the run's timeout (its default is 120 s)."""

    def __init__(self, session: requests.Session, settings: VerifySettings) -> None:
        super().__init__(session)
        self._timeout = settings.timeout_seconds
        self._verify = trust(settings)

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: Any = None, **kwargs: Any) -> Any:
        return super().__call__(url, method=method, body=body, headers=headers, timeout=self._timeout,
                                verify=self._verify, **kwargs)


@contextmanager
def run_for(settings: VerifySettings) -> Iterator[Callable[[Desired], Verdict]]:
    session = session_for(settings)
    try:
        yield lambda desired: verify(desired, settings, session)
    finally:
        session.close()


def verify(desired: Desired, settings: VerifySettings, session: requests.Session | None = None) -> Verdict:
    if session is None:
        with run_for(settings) as verifier:
            return verifier(desired)
    spec = desired.spec
    email, key_id, project = str(spec["client_email"]), str(spec["private_key_id"]), str(spec["project_id"])
    token_uri = settings.gcp_token_uri or TOKEN_URI

    def result(status: Status, *messages: str, identity: dict[str, str] | None = None) -> Verdict:
        return Verdict(desired.name, desired.declaration.file, "gcp", status, identity or {},
                       tuple(messages))

    try:
        credentials = service_account.Credentials(
            crypt.RSASigner(_load_key(desired.secrets["private_key"]), key_id=key_id),
            service_account_email=email, token_uri=token_uri, scopes=[SCOPE], project_id=project)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # never echo the key: only that it did not load
        return result("failed", "private_key is not a PEM RSA private key google-auth can sign with")
    try:
        credentials.refresh(_TimedRequest(session, settings))
    except RefreshError as exc:
        return result("failed", _explain_refusal(exc, desired, session, settings))
    except TransportError as exc:
        if isinstance(exc.__cause__, requests.Timeout):
            return result("failed", f"the token endpoint {token_uri} did not answer within "
                          f"{settings.timeout_seconds:g}s")
        return result("failed", f"could not reach the token endpoint {token_uri} "
                      f"({type(exc.__cause__ or exc).__name__})")
    except GoogleAuthError as exc:
        return result("failed", f"google-auth could not get a token ({type(exc).__name__})")
    token = str(credentials.token)

    who = {"principal": email, "project": project}
    crm = (settings.gcp_resource_manager_endpoint or RESOURCE_MANAGER).rstrip("/")
    try:
        status, body = get_json(session, f"{crm}/v3/projects/{project}", token, settings)
    except requests.Timeout:
        return result("failed", f"Resource Manager at {crm} did not answer within "
                      f"{settings.timeout_seconds:g}s", identity=who)
    except requests.RequestException as exc:
        return result("failed", f"could not reach Resource Manager at {crm} ({type(exc).__name__})",
                      identity=who)
    if status in (403, 404):  # Google answers 403 for a project that does not exist, too
        return result("failed", f"project_id: project {project} not found, or {email} may not read it "
                      "(grant resourcemanager.projects.get, e.g. roles/browser)", identity=who)
    if status != 200 or not isinstance(body, dict):
        return result("failed", f"Resource Manager answered HTTP {status} for project {project} "
                      f"({error_text(body) or 'no code'})", identity=who)
    warnings = []
    if body.get("state") not in (None, "ACTIVE"):
        warnings.append(f"project {project} is {body['state']}")
    key_warnings, created = _key_age_warnings(session, token, email, key_id, settings)
    warnings += key_warnings
    return replace(result("warning" if warnings else "ok", *warnings, identity=who), key_created=created)


def _load_key(secret: Secret) -> Any:
    """The private key, without cryptography's RSA consistency check.

    That check (primality of p and q) costs about 30 ms of CPU per key: most of a
    verification, and google-auth's from_service_account_info always runs it. A key
    that would fail it cannot sign a JWT Google accepts, and OpenSSL checks its own
    CRT results when signing, so nothing is lost by skipping it here.
    """
    return serialization.load_pem_private_key(secret.reveal().encode(), password=None,
                                               unsafe_skip_rsa_key_validation=True)


def _explain_refusal(exc: RefreshError, desired: Desired, session: requests.Session,
                     settings: VerifySettings) -> str:
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    code = str(data.get("error") or "")
    description = str(data.get("error_description") or "")
    if code != "invalid_grant":
        return f"token refused ({code or 'no error code'}{': ' + description if description else ''})"
    if "account not found" in description:
        return f"client_email: no service account {desired.spec['client_email']} (deleted, or mistyped)"
    published = _published_keys(session, str(desired.spec["client_email"]), settings)
    key_id = str(desired.spec["private_key_id"])
    if published is None:  # the certificates could not be read: say what Google said
        return f"token refused: the key was not accepted (invalid_grant: {description or 'no description'})"
    if key_id not in published:
        return (f"private_key_id: key {key_id} is deleted or disabled (not among the service account's "
                "active keys): create a new key and rotate it")
    ours = _load_key(desired.secrets["private_key"]).public_key()
    if ours.public_numbers() != published[key_id].public_numbers():
        return f"private_key is not the private half of key {key_id} (a private_key from another key JSON?)"
    return f"token refused: the key was not accepted (invalid_grant: {description or 'no description'})"


def _published_keys(session: requests.Session, email: str,
                    settings: VerifySettings) -> dict[str, Any] | None:
    """The service account's active public keys by key id, or None when they cannot be read."""
    base = (settings.gcp_certificates_endpoint or CERTIFICATES).rstrip("/")
    try:
        response = session.get(f"{base}/{email}", timeout=settings.timeout_seconds, verify=trust(settings))
        if response.status_code == 404:
            return {}
        if response.status_code != 200:
            return None
        return {kid: x509.load_pem_x509_certificate(pem.encode()).public_key()
                for kid, pem in response.json().items()}
    except (requests.RequestException, ValueError, AttributeError):
        return None


def _key_age_warnings(session: requests.Session, token: str, email: str, key_id: str,
                      settings: VerifySettings) -> tuple[list[str], datetime | None]:
    iam = (settings.gcp_iam_endpoint or IAM).rstrip("/")
    try:
        status, body = get_json(session, f"{iam}/v1/projects/-/serviceAccounts/{email}/keys/{key_id}",
                                token, settings)
    except requests.RequestException as exc:
        return [f"key age unknown: IAM serviceAccounts.keys.get failed ({type(exc).__name__})"], None
    if status == 403:
        return ["key age unknown: IAM denied serviceAccounts.keys.get (grant iam.serviceAccountKeys.get on "
                "the service account itself, e.g. roles/iam.serviceAccountKeyAdmin, to check rotation)"], None
    if status != 200 or not isinstance(body, dict):
        return [f"key age unknown: IAM serviceAccounts.keys.get answered HTTP {status}"], None
    warnings = []
    if body.get("disabled"):
        warnings.append("the key is disabled")
    try:
        created = datetime.fromisoformat(str(body.get("validAfterTime")).replace("Z", "+00:00"))
    except ValueError:
        return [*warnings, "key age unknown: IAM gave no validAfterTime"], None
    age = (datetime.now(UTC) - created).days
    if age > settings.max_key_age_days:
        warnings.append(f"the key is {age} days old, past max_key_age_days ({settings.max_key_age_days}): "
                        "rotate it")
    return warnings, created
