"""A fake Google token endpoint, Resource Manager, IAM and certificate endpoint on 127.0.0.1.

The token endpoint does what Google's does with a service-account JWT grant
(``urn:ietf:params:oauth:grant-type:jwt-bearer``): it decodes the assertion,
finds the account by ``iss`` and the key by ``kid``, and checks the RS256
signature against that key's public half, ``aud`` (google-auth always sends
``https://oauth2.googleapis.com/token``) and the expiry; every refusal is
``invalid_grant`` as Google answers. Keys are real RSA keys made in the test.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
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
        if header.get("alg") != "RS256" or key is None:
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
                return self.reply(200, {kid: key.certificate(parts[1]) for kid, key in keys.items()})
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

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve(fake: FakeGcp) -> Iterator[FakeGcp]:
    with serving(_handler(fake)) as url:
        fake.url = url
        yield fake
