"""A fake Google token endpoint, Resource Manager, IAM and certificate endpoint on 127.0.0.1.

The token endpoint does what Google's does with a service-account JWT grant
(``urn:ietf:params:oauth:grant-type:jwt-bearer``): it decodes the assertion,
finds the account by ``iss`` and the key by ``kid``, and checks the RS256
signature against that key's public half, ``aud`` (google-auth always sends
``https://oauth2.googleapis.com/token``) and the expiry; every refusal is
``invalid_grant`` as Google answers. Keys are real RSA keys made in the test.

IAM's ``projects.serviceAccounts.keys`` speaks as Google's does for rotation:
``list`` (user-managed keys, ``disabled`` when so), ``create`` (a Google
credentials file, base64 in ``privateKeyData``, with a fresh RSA key), ``:disable``
and ``delete``, for callers in ``key_admins``; the refusals are Google's:
PERMISSION_DENIED for anyone else, FAILED_PRECONDITION past ``max_keys`` keys.
A disabled key no longer signs in and is no longer published. With ``tls``
(see ``serve``), everything is served over HTTPS by a CA made in the test.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from ssl import PROTOCOL_TLS_SERVER, SSLContext
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.loopback import serving

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class Key:
    key_id: str
    private: rsa.RSAPrivateKey
    created: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    @property
    def pem(self) -> str:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def certificate(self, email: str) -> str:
        """The key's public half as Google publishes it: a self-signed X.509 certificate."""
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, email)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(self.private, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()


def new_key(key_id: str, **kwargs: Any) -> Key:
    return Key(key_id, rsa.generate_private_key(public_exponent=65537, key_size=2048), **kwargs)


@dataclass
class FakeGcp:
    accounts: dict[str, dict[str, Key]] = field(default_factory=dict)  # email -> active keys by id
    projects: dict[str, set[str]] = field(default_factory=dict)  # project id -> emails that may read it
    key_readers: set[str] = field(default_factory=set)  # emails allowed serviceAccounts.keys.get
    key_admins: set[str] = field(default_factory=set)  # emails allowed keys.list/create/disable/delete
    disabled: set[str] = field(default_factory=set)  # key ids disabled through the API
    max_keys: int = 10  # Google's limit of keys per service account
    ca_bundle: str = ""
    deleting: set[str] = field(default_factory=set)  # projects in state DELETE_REQUESTED
    token_failures: list[int] = field(default_factory=list)
    project_failures: list[int] = field(default_factory=list)  # statuses projects.get answers first
    project_requests: int = 0
    hang: float = 0.0
    url: str = ""
    token_requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check_assertion(self, assertion: str) -> tuple[str | None, str]:
        """The email the assertion proves, or None and Google's error_description."""
        try:
            header_b64, payload_b64, signature_b64 = assertion.split(".")
            header, payload = (json.loads(_unb64(part)) for part in (header_b64, payload_b64))
        except ValueError:
            return None, "Invalid JWT."
        keys = self.accounts.get(str(payload.get("iss")))
        if keys is None:
            return None, "Invalid grant: account not found"
        key = keys.get(str(header.get("kid")))
        if header.get("alg") != "RS256" or key is None or key.key_id in self.disabled:
            return None, "Invalid JWT Signature."
        try:
            key.private.public_key().verify(
                _unb64(signature_b64),
                f"{header_b64}.{payload_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return None, "Invalid JWT Signature."
        if payload.get("aud") != GOOGLE_TOKEN_AUDIENCE or not payload.get("scope"):
            return None, "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
        if not int(payload["iat"]) - 300 <= time.time() <= int(payload["exp"]):
            return None, "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
        return str(payload["iss"]), ""


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _handler(fake: FakeGcp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status: int, body: Any) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def caller(self) -> str | None:
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            return token.removeprefix("ya29.fake.") if token.startswith("ya29.fake.") else None

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if self.path.startswith("/v1/"):
                return self.keys_api("POST")
            if fake.hang:
                time.sleep(fake.hang)
            with fake._lock:
                fake.token_requests += 1
                failure = fake.token_failures.pop(0) if fake.token_failures else None
            if failure:
                return self.reply(failure, {"error": "internal_failure", "error_description": "busy"})
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
            if self.path != "/token" or form.get("grant_type") != JWT_GRANT:
                return self.reply(400, {"error": "unsupported_grant_type", "error_description": "-"})
            email, problem = fake.check_assertion(form.get("assertion", ""))
            if email is None:
                return self.reply(400, {"error": "invalid_grant", "error_description": problem})
            return self.reply(
                200, {"access_token": f"ya29.fake.{email}", "expires_in": 3599, "token_type": "Bearer"}
            )

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
            if parts[:2] == ["x509", parts[-1]] and len(parts) == 2:  # the published certificates
                keys = fake.accounts.get(parts[1])
                if keys is None:
                    return self.reply(404, {"error": {"code": 404, "status": "NOT_FOUND"}})
                return self.reply(200, {kid: key.certificate(parts[1]) for kid, key in keys.items()
                                        if kid not in fake.disabled})
            caller = self.caller()
            if caller is None:
                return self.reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}})
            if parts[:2] == ["v3", "projects"] and len(parts) == 3:
                with fake._lock:
                    fake.project_requests += 1
                    failure = fake.project_failures.pop(0) if fake.project_failures else None
                if failure:
                    return self.reply(failure, {"error": {"code": failure, "status": "UNAVAILABLE"}})
                if caller not in fake.projects.get(parts[2], set()):
                    return self.reply(403, {"error": {"code": 403, "status": "PERMISSION_DENIED"}})
                return self.reply(
                    200,
                    {
                        "name": "projects/123456789",
                        "projectId": parts[2],
                        "state": "DELETE_REQUESTED" if parts[2] in fake.deleting else "ACTIVE",
                    },
                )
            if parts[:3] == ["v1", "projects", "-"] and len(parts) == 6 and parts[5] == "keys":
                return self.keys_api("GET")
            if parts[:3] == ["v1", "projects", "-"] and len(parts) == 7 and parts[5] == "keys":
                email, key_id = parts[4], parts[6]
                key = fake.accounts.get(email, {}).get(key_id)
                if caller not in fake.key_readers:
                    return self.reply(403, {"error": {"code": 403, "status": "PERMISSION_DENIED"}})
                if key is None:
                    return self.reply(404, {"error": {"code": 404, "status": "NOT_FOUND"}})
                return self.reply(
                    200,
                    {
                        "name": f"projects/-/serviceAccounts/{email}/keys/{key_id}",
                        "validAfterTime": key.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "keyType": "USER_MANAGED",
                    },
                )
            return self.reply(404, {"error": {"code": 404, "status": "NOT_FOUND"}})

        def do_DELETE(self) -> None:
            self.keys_api("DELETE")

        def keys_api(self, method: str) -> None:
            """projects.serviceAccounts.keys: list, create, disable, delete."""
            parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
            if parts[:3] != ["v1", "projects", "-"] or len(parts) not in (6, 7) or parts[5] != "keys":
                return self.reply(404, {"error": {"code": 404, "status": "NOT_FOUND"}})
            caller, email = self.caller(), urllib.parse.unquote(parts[4])
            if caller is None:
                return self.reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}})
            if caller not in fake.key_admins:
                return self.reply(403, {"error": {"code": 403, "status": "PERMISSION_DENIED", "message":
                                                  "Permission 'iam.serviceAccountKeys.create' denied"}})
            with fake._lock:
                keys = fake.accounts.get(email)
                if keys is None:
                    return self.reply(404, {"error": {"code": 404, "status": "NOT_FOUND"}})
                if len(parts) == 6 and method == "GET":
                    return self.reply(200, {"keys": [{
                        "name": f"projects/-/serviceAccounts/{email}/keys/{kid}",
                        "validAfterTime": key.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "keyType": "USER_MANAGED", **({"disabled": True} if kid in fake.disabled else {})}
                        for kid, key in keys.items()]})
                if len(parts) == 6 and method == "POST":
                    if len(keys) >= fake.max_keys:
                        return self.reply(400, {"error": {"code": 400, "status": "FAILED_PRECONDITION",
                                                          "message": "Precondition check failed."}})
                    key = new_key(os.urandom(20).hex())
                    keys[key.key_id] = key
                    document = {"type": "service_account", "project_id": email.split("@")[1].split(".")[0],
                                "private_key_id": key.key_id, "private_key": key.pem, "client_email": email,
                                "token_uri": f"{fake.url}/token"}
                    return self.reply(200, {
                        "name": f"projects/-/serviceAccounts/{email}/keys/{key.key_id}",
                        "privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE",
                        "privateKeyData": base64.b64encode(json.dumps(document).encode()).decode(),
                        "validAfterTime": key.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "keyType": "USER_MANAGED"})
                kid, _, verb = parts[6].partition(":")
                if kid not in keys:
                    return self.reply(404, {"error": {"code": 404, "status": "NOT_FOUND"}})
                if method == "POST" and verb == "disable":
                    fake.disabled.add(kid)
                    return self.reply(200, {})
                if method == "DELETE" and not verb:
                    del keys[kid]
                    fake.disabled.discard(kid)
                    return self.reply(200, {})
            return self.reply(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT"}})

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve(fake: FakeGcp, tls_directory: Path | None = None) -> Iterator[FakeGcp]:
    """Over HTTPS when ``tls_directory`` is given (its CA in ``fake.ca_bundle``), else plain HTTP."""
    context = None
    if tls_directory is not None:
        from tests.fake_azure import make_tls

        ca, cert, key = make_tls(tls_directory)
        context = SSLContext(PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        fake.ca_bundle = str(ca)
    with serving(_handler(fake), tls=context) as url:
        fake.url = url
        yield fake
