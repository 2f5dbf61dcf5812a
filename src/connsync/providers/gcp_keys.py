"""GCP service-account keys through the IAM API, for ``connsync rotate`` on a GCP connection.

``projects.serviceAccounts.keys``: ``create`` (a Google credentials file, whose
``private_key`` and ``private_key_id`` go into the connection file), ``list``
(user-managed keys), ``disable`` and ``delete``. The calls are signed with a
token of the connection's own key, or with an administrator's Google
credentials from the environment (``google.auth.default``: the
GOOGLE_APPLICATION_CREDENTIALS file, workload identity, gcloud's). Errors name
the call and Google's status; never a key.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import google.auth
import requests
from google.auth.exceptions import GoogleAuthError
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from connsync.errors import ConnsyncError
from connsync.model import Declaration, Desired, Secret
from connsync.providers.base import VerifySettings
from connsync.providers.gcp_verify import IAM, SCOPE, TOKEN_URI, _load_key
from connsync.providers.web import error_text, session_for, trust


class GcpError(ConnsyncError):
    """An IAM API call failed; the message names the call and Google's status."""


@dataclass(frozen=True)
class SaKey:
    key_id: str
    disabled: bool
    created: str | None

    @property
    def status(self) -> str:
        return "Disabled" if self.disabled else "Enabled"

    def describe(self) -> str:
        return f"{self.key_id} ({self.status.lower()}, created {self.created or '?'})"

    def as_json(self) -> dict[str, Any]:
        return {"access_key_id": self.key_id, "status": self.status, "created": self.created,
                "last_used": None}


def own_credentials(desired: Desired, settings: VerifySettings) -> Any:
    spec = desired.spec
    from google.auth import crypt

    signer = crypt.RSASigner(_load_key(desired.secrets["private_key"]), key_id=str(spec["private_key_id"]))
    return service_account.Credentials(signer, service_account_email=str(spec["client_email"]),
                                       token_uri=settings.gcp_token_uri or TOKEN_URI, scopes=[SCOPE],
                                       project_id=str(spec["project_id"]))


def admin_credentials() -> Any:
    try:
        credentials, _ = google.auth.default(scopes=[SCOPE])
    except GoogleAuthError as exc:
        raise GcpError(f"no Google credentials in the environment ({type(exc).__name__})",
                       hint="set GOOGLE_APPLICATION_CREDENTIALS to an administrator's key file") from None
    return credentials


class KeysApi:
    """``projects.serviceAccounts.keys`` for one service account, signed by ``credentials``."""

    def __init__(self, credentials: Any, email: str, settings: VerifySettings, who: str) -> None:
        self._session = session_for(settings)
        self._settings = settings
        self._credentials = credentials
        self._who = who
        base = (settings.gcp_iam_endpoint or IAM).rstrip("/")
        self._keys = f"{base}/v1/projects/-/serviceAccounts/{quote(email, safe='@.')}/keys"

    def close(self) -> None:
        self._session.close()

    def _token(self) -> str:
        if not self._credentials.valid:
            try:
                self._credentials.refresh(_request(self._session, self._settings))
            except GoogleAuthError as exc:
                raise GcpError(f"{self._who} could not get a token ({type(exc).__name__})") from None
        return str(self._credentials.token)

    def _call(self, what: str, method: str, url: str, body: Any = None) -> Any:
        try:
            response = self._session.request(method, url, json=body, timeout=self._settings.timeout_seconds,
                                             headers={"Authorization": f"Bearer {self._token()}"},
                                             verify=trust(self._settings))
        except requests.RequestException as exc:
            raise GcpError(f"IAM {what} failed: {type(exc).__name__}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code >= 400:
            error = answer.get("error") if isinstance(answer, dict) else None
            status = (str(error.get("status")) if isinstance(error, dict) and error.get("status")
                      else error_text(answer) or str(response.status_code))
            hint = ("the service account may not manage its own keys: pass --admin-env with an "
                    "administrator's Google credentials (GOOGLE_APPLICATION_CREDENTIALS)"
                    if response.status_code == 403 else None)
            raise GcpError(f"IAM {what} as {self._who} failed: {status}", hint=hint)
        return answer or {}

    def keys(self) -> list[SaKey]:
        listed = self._call("serviceAccounts.keys.list", "GET", f"{self._keys}?keyTypes=USER_MANAGED")
        keys = [SaKey(str(k["name"]).rsplit("/", 1)[-1], bool(k.get("disabled")), k.get("validAfterTime"))
                for k in listed.get("keys", [])]
        return sorted(keys, key=lambda k: k.created or "")

    def create(self) -> tuple[SaKey, str, Secret]:
        """The new key, its client_email, and its private key (PEM)."""
        body = {"privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE", "keyAlgorithm": "KEY_ALG_RSA_2048"}
        made = self._call("serviceAccounts.keys.create", "POST", self._keys, body)
        try:
            document = json.loads(base64.b64decode(str(made["privateKeyData"])))
            pem, key_id = Secret(str(document["private_key"])), str(document["private_key_id"])
            email = str(document["client_email"])
        except (KeyError, ValueError):
            raise GcpError("IAM serviceAccounts.keys.create answered without a usable key file") from None
        return SaKey(key_id, False, made.get("validAfterTime")), email, pem

    def disable(self, key_id: str) -> None:
        self._call("serviceAccounts.keys.disable", "POST", f"{self._keys}/{quote(key_id)}:disable", {})

    def delete(self, key_id: str) -> None:
        self._call("serviceAccounts.keys.delete", "DELETE", f"{self._keys}/{quote(key_id)}")


def _request(session: requests.Session, settings: VerifySettings) -> Request:
    request = Request(session)

    def timed(url: str, method: str = "GET", body: Any = None, headers: Any = None, timeout: Any = None,
              **kwargs: Any) -> Any:
        return Request.__call__(request, url, method=method, body=body, headers=headers,
                                timeout=settings.timeout_seconds, verify=trust(settings), **kwargs)

    return timed  # type: ignore[return-value]


def accepted(spec: Mapping[str, Any], decl: Declaration, email: str, made_for: str, key_id: str, pem: Secret,
             settings: VerifySettings, deadline_seconds: float) -> int:
    """The new key is ``email``'s and Google accepts it; the tries it took."""
    if made_for != email:
        raise ConnsyncError(f"IAM made the key for {made_for}, not {email}")
    fresh = Desired(decl, {**spec, "private_key_id": key_id}, {"private_key": pem})
    return wait_until_signs_in(fresh, settings, deadline_seconds=deadline_seconds)


def wait_until_signs_in(desired: Desired, settings: VerifySettings, *, deadline_seconds: float,
                        sleep: Callable[[float], None] = time.sleep) -> int:
    """Exchange a token with the new key until Google accepts it (new keys take a moment); the tries."""
    credentials = own_credentials(desired, settings)
    session = session_for(settings)
    started, delay, tries = time.monotonic(), 0.5, 0
    try:
        while True:
            tries += 1
            try:
                credentials.refresh(_request(session, settings))
                return tries
            except GoogleAuthError as exc:
                why = type(exc).__name__
            if time.monotonic() - started >= deadline_seconds:
                raise GcpError(f"Google still refuses the new key {desired.spec['private_key_id']} after "
                               f"{tries} tries ({why})")
            sleep(delay)
            delay = min(delay * 2, 8.0)
    finally:
        session.close()
