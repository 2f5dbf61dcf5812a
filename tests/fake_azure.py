"""A fake Entra ID authority and ARM endpoint on 127.0.0.1, over TLS, speaking the real protocols.

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``: MSAL's tenant discovery
  (400 ``invalid_tenant`` / AADSTS90002 for an unknown tenant, as Entra ID answers);
- ``POST /{tenant}/oauth2/v2.0/token``: the client-credentials grant, refusing with the
  AADSTS codes Entra ID uses (700016 unknown client, 7000215 wrong secret, 7000222 expired);
- ``GET /subscriptions/{id}?api-version=...``: ARM, bearer token required;
- Microsoft Graph for client secrets (token scope ``{url}/.default``): ``GET
  /v1.0/applications(appId='…')`` and ``/v1.0/applications/{id}`` (the object id, a GUID
  that is not the appId: the one mixed up with the other finds nothing; ``$select``
  honoured; ``passwordCredentials`` in Graph's shape: keyId, displayName,
  startDateTime, endDateTime, hint, customKeyIdentifier and ``secretText: null``,
  never the secret),
  ``POST …/addPassword`` (the secret's text, once) and ``…/removePassword``;
  refusing as Graph does: 403 ``Authorization_RequestDenied`` to an app that may
  not manage the application, 400 past ``max_secrets``.

The certificate is made here by a CA made here; ``ca_bundle`` is that CA's PEM.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from ssl import PROTOCOL_TLS_SERVER, SSLContext
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.loopback import serving

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "11111111-2222-3333-4444-555555555555"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "connsync test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # A private key, if only a test's: readable by its owner alone, as every key connsync writes.
    with os.fdopen(os.open(paths[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        out.write(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


@dataclass
class App:
    secret: str
    expired: bool = False
    subscriptions: tuple[str, ...] = (SUBSCRIPTION,)  # where it holds a role
    manages_itself: bool = True  # may add and remove its own secrets (Application.ReadWrite.OwnedBy)
    others: dict[str, str] = field(default_factory=dict)  # more secrets: key id -> secret
    first_key_id: str = "00000000-0000-0000-0000-0000000000a1"
    # Graph's passwordCredential fields but the secret, by key id (what addPassword was asked for).
    details: dict[str, dict[str, Any]] = field(default_factory=dict)

    def credential(self, key_id: str, secret: str) -> dict[str, Any]:
        """One ``passwordCredential`` as Graph lists it: never the secret's text, only its first three
        characters (``hint``)."""
        shown = {"customKeyIdentifier": None, "displayName": "secret", "endDateTime": "2027-06-01T00:00:00Z",
                 "hint": secret[:3], "keyId": key_id, "secretText": None,
                 "startDateTime": "2026-01-01T00:00:00Z"}
        return {**shown, **self.details.get(key_id, {})}

    def secrets(self) -> dict[str, str]:
        """Every secret that signs in now, by key id (``secret`` under ``first_key_id``, unless removed)."""
        return {**({self.first_key_id: self.secret} if self.secret else {}), **self.others}


@dataclass
class FakeAzure:
    apps: dict[str, App] = field(default_factory=dict)  # client id -> app, in any of the tenants
    tenants: set[str] = field(default_factory=lambda: {TENANT})
    disabled: set[str] = field(default_factory=set)  # subscriptions in state Disabled
    subscriptions: dict[str, str] = field(default_factory=lambda: {SUBSCRIPTION: "Platform Prod"})
    graph_admins: set[str] = field(default_factory=set)  # client ids that may manage any application
    max_secrets: int = 5
    token_failures: list[int] = field(default_factory=list)  # statuses answered first (429, 503...)
    arm_failures: list[int] = field(default_factory=list)
    hang: float = 0.0  # seconds every answer waits (a silent endpoint)
    url: str = ""
    ca_bundle: str = ""
    token_requests: int = 0
    arm_requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_failure(self, failures: list[int]) -> int | None:
        with self._lock:
            return failures.pop(0) if failures else None


def object_id(client: str) -> str:
    """An application's object id: a GUID of its own, never its appId (the client id)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"application/{client}"))


def _aad_error(error: str, code: int, text: str) -> dict[str, Any]:
    return {
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: 0\r\nCorrelation ID: 0",
        "error_codes": [code],
        "timestamp": "2026-01-01 00:00:00Z",
        "trace_id": "0",
        "correlation_id": "0",
    }


def _handler(fake: FakeAzure) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            if fake.hang:
                time.sleep(fake.hang)
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                tenant = parts[0]
                if tenant not in fake.tenants:
                    return self.reply(
                        400, _aad_error("invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
                    )
                base = f"{fake.url}/{tenant}"
                return self.reply(
                    200,
                    {
                        "token_endpoint": f"{base}/oauth2/v2.0/token",
                        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                        "issuer": f"{base}/v2.0",
                        "tenant_region_scope": "EU",
                    },
                )
            if parts[0] == "v1.0":
                return self.graph("GET", parts, {}, urllib.parse.parse_qs(url.query))
            if parts[0] == "subscriptions" and len(parts) == 2:
                return self.subscription(parts[1], urllib.parse.parse_qs(url.query))
            return self.reply(404, {"error": {"code": "NotFound", "message": "no such path"}})

        def subscription(self, subscription: str, query: dict[str, list[str]]) -> None:
            with fake._lock:
                fake.arm_requests += 1
            failure = fake.next_failure(fake.arm_failures)
            if failure:
                return self.reply(
                    failure, {"error": {"code": "ServerBusy", "message": "busy"}}, {"Retry-After": "0"}
                )
            if not query.get("api-version"):
                return self.reply(400, {"error": {"code": "MissingApiVersionParameter", "message": "-"}})
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            app = fake.apps.get(token.removeprefix("fake-arm-token-"))
            if not token.startswith("fake-arm-token-") or app is None:
                return self.reply(401, {"error": {"code": "InvalidAuthenticationToken", "message": "-"}})
            if subscription not in fake.subscriptions:
                return self.reply(
                    404,
                    {
                        "error": {
                            "code": "SubscriptionNotFound",
                            "message": f"The subscription '{subscription}' could not be found.",
                        }
                    },
                )
            if subscription not in app.subscriptions:
                return self.reply(403, {"error": {"code": "AuthorizationFailed", "message": "-"}})
            return self.reply(
                200,
                {
                    "id": f"/subscriptions/{subscription}",
                    "subscriptionId": subscription,
                    "tenantId": TENANT,
                    "displayName": fake.subscriptions[subscription],
                    "state": "Disabled" if subscription in fake.disabled else "Enabled",
                },
            )

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if self.path.startswith("/v1.0/"):
                return self.graph("POST", self.path.strip("/").split("/"), json.loads(raw or "{}"))
            form = urllib.parse.parse_qs(raw)
            if fake.hang:
                time.sleep(fake.hang)
            with fake._lock:
                fake.token_requests += 1
            failure = fake.next_failure(fake.token_failures)
            if failure:
                return self.reply(
                    failure,
                    {"error": "temporarily_unavailable", "error_description": "busy"},
                    {"Retry-After": "0"},
                )
            field_ = {k: v[0] for k, v in form.items()}
            if (
                not self.path.endswith("/oauth2/v2.0/token")
                or field_.get("grant_type") != "client_credentials"
            ):
                return self.reply(400, _aad_error("invalid_request", 900144, "bad grant"))
            graph = field_.get("scope") == f"{fake.url}/.default"
            if field_.get("scope") != "https://management.azure.com/.default" and not graph:
                return self.reply(400, _aad_error("invalid_scope", 70011, "bad scope"))
            app = fake.apps.get(field_.get("client_id", ""))
            if app is None:
                return self.reply(
                    400,
                    _aad_error(
                        "unauthorized_client",
                        700016,
                        "Application with identifier "
                        f"'{field_.get('client_id')}' was not found in the directory.",
                    ),
                )
            if field_.get("client_secret") not in app.secrets().values():
                return self.reply(
                    401, _aad_error("invalid_client", 7000215, "Invalid client secret provided.")
                )
            if app.expired:
                return self.reply(
                    401, _aad_error("invalid_client", 7000222, "The provided client secret keys are expired.")
                )
            return self.reply(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": 3599,
                    "ext_expires_in": 3599,
                    "access_token": f"fake-{'graph' if graph else 'arm'}-token-{field_['client_id']}",
                },
            )

        def graph(self, method: str, parts: list[str], body: dict[str, Any],
                  query: dict[str, list[str]] | None = None) -> None:
            query = query or {}
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            prefix = "fake-graph-token-"
            caller = token.removeprefix(prefix) if token.startswith(prefix) else None
            if caller is None:
                return self.reply(401, {"error": {"code": "InvalidAuthenticationToken", "message": "-"}})
            target = parts[1]
            if target.startswith("applications(appId='"):
                client = urllib.parse.unquote(target.removeprefix("applications(appId='").removesuffix("')"))
            else:  # by object id only, as Graph: an appId here is another object's id, or none
                by_object = {object_id(c): c for c in fake.apps}
                client = by_object.get(urllib.parse.unquote(parts[2]) if len(parts) > 2 else "", "")
            app = fake.apps.get(client)
            if app is None:
                return self.reply(404, {"error": {"code": "Request_ResourceNotFound", "message": "-"}})
            if not (caller in fake.graph_admins or (caller == client and app.manages_itself)):
                denied = "Insufficient privileges to complete the operation."
                return self.reply(403, {"error": {"code": "Authorization_RequestDenied", "message": denied}})
            with fake._lock:
                action = parts[3] if len(parts) > 3 else None
                if method == "GET" and action is None:
                    whole = {"@odata.context": f"{fake.url}/v1.0/$metadata#applications/$entity",
                             "id": object_id(client), "appId": client, "displayName": f"app {client}",
                             "passwordCredentials": [app.credential(kid, secret)
                                                     for kid, secret in app.secrets().items()]}
                    chosen = query.get("$select", [""])[0].split(",") if query.get("$select") else None
                    return self.reply(200, {k: v for k, v in whole.items()
                                            if chosen is None or k in chosen or k.startswith("@")})
                if method == "POST" and action == "addPassword":
                    if len(app.secrets()) >= fake.max_secrets:
                        full = "The application has the maximum number of secrets."
                        return self.reply(400, {"error": {"code": "Request_BadRequest", "message": full}})
                    kid, secret = str(uuid.uuid4()), base64.urlsafe_b64encode(os.urandom(30)).decode()
                    app.others[kid] = secret
                    asked = body.get("passwordCredential") or {}
                    start = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    app.details[kid] = {"displayName": asked.get("displayName"), "startDateTime": start,
                                        "endDateTime": asked.get("endDateTime") or "2028-01-01T00:00:00Z"}
                    return self.reply(200, {**app.credential(kid, secret), "secretText": secret})
                if method == "POST" and action == "removePassword":
                    kid = str(body.get("keyId"))
                    if kid == app.first_key_id and app.secret:
                        app.secret = ""
                    elif app.others.pop(kid, None) is None:
                        missing = {"code": "Request_ResourceNotFound", "message": "-"}
                        return self.reply(404, {"error": missing})
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
            return self.reply(400, {"error": {"code": "Request_BadRequest", "message": "-"}})

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve(fake: FakeAzure, directory: Path) -> Iterator[FakeAzure]:
    ca, cert, key = make_tls(directory)
    context = SSLContext(PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with serving(_handler(fake), tls=context) as url:
        fake.url, fake.ca_bundle = url, str(ca)
        yield fake
