"""An Azure application's client secrets through Microsoft Graph, for ``connsync rotate``.

``GET /applications(appId='…')`` (the app and its ``passwordCredentials``: key
id, display name, expiry and ``hint``, the secret's first three characters),
``POST /applications/{id}/addPassword`` (the new secret's text is returned
once, here) and ``removePassword``. The token (scope ``{graph}/.default``)
comes from the connection's own client secret, or with ``--admin-env`` from
the environment's AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET, as
azure-identity's EnvironmentCredential reads them. Errors name the call and
Graph's error code, never a secret.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests
from azure.core.exceptions import AzureError
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ClientSecretCredential

from connsync.errors import ConnsyncError
from connsync.model import Secret
from connsync.providers.azure_verify import CLOUDS
from connsync.providers.base import VerifySettings
from connsync.providers.web import session_for, trust

GRAPH = {"AzureCloud": "https://graph.microsoft.com", "AzureUSGovernment": "https://graph.microsoft.us",
         "AzureChinaCloud": "https://microsoftgraph.chinacloudapi.cn"}

_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class GraphError(ConnsyncError):
    """A Graph call failed; the message names the call and Graph's error code."""


@dataclass(frozen=True)
class Password:
    key_id: str
    hint: str
    display_name: str
    expires: str | None
    starts: str | None = None  # Graph's startDateTime: the secret's age

    def as_json(self) -> dict[str, Any]:  # the shape of a key in rotate's JSON
        return {"access_key_id": self.key_id, "status": "Active", "created": None, "last_used": None,
                "expires": self.expires}


@dataclass(frozen=True)
class Signer:
    """Who asks Graph: a tenant, an app and its secret (the connection's, or the environment's)."""

    tenant: str
    client: str
    secret: Secret
    who: str


def environment_signer() -> Signer:
    names = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")
    values = [os.environ.get(n, "").strip() for n in names]
    if not all(values):
        raise GraphError("the administrator app (--admin-env, and rotate --exposed for an Azure secret) "
                         "needs AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET in the environment "
                         "(an app allowed Application.ReadWrite.All); nothing was changed")
    return Signer(values[0], values[1], Secret(values[2]), f"the environment's app {values[1]}")


def token(signer: Signer, cloud: str, settings: VerifySettings, scope: str | None = None) -> str:
    authority = settings.azure_authority_host or CLOUDS[cloud].authority
    session = session_for(settings, retry_gets=False)
    transport = RequestsTransport(session=session, session_owner=False, connection_verify=trust(settings),
                                  connection_timeout=settings.timeout_seconds,
                                  read_timeout=settings.timeout_seconds)
    try:
        credential = ClientSecretCredential(
            signer.tenant, signer.client, signer.secret.reveal(), authority=authority, transport=transport,
            disable_instance_discovery=not settings.azure_instance_discovery, retry_total=2)
        return str(credential.get_token(scope or f"{graph_of(cloud, settings)}/.default").token)
    except (AzureError, ValueError) as exc:
        raise GraphError(f"{signer.who} could not get a token from {authority} ({type(exc).__name__})",
                         ) from None
    finally:
        session.close()


def graph_of(cloud: str, settings: VerifySettings) -> str:
    return (settings.azure_graph_endpoint or GRAPH[cloud]).rstrip("/")


class Applications:
    """One application's passwords, through Graph, signed with ``signer``'s token."""

    def __init__(self, signer: Signer, client_id: str, cloud: str, settings: VerifySettings,
                 *, token_text: str | None = None) -> None:
        """``token_text``: a Graph token ``signer`` already has (one per search of many applications)."""
        if not _GUID_RE.match(client_id):  # a record's text goes into Graph's path only as an app id
            raise GraphError(f"{client_id!r} is not an application (client) id, a GUID: Graph was not asked")
        self._settings = settings
        self._who = signer.who
        self._graph = graph_of(cloud, settings)
        self._token = token_text or token(signer, cloud, settings)
        self._session = session_for(settings)
        try:
            found = self._call("GET applications", "GET",
                               f"/v1.0/applications(appId='{quote(client_id, safe='')}')?$select=id,appId")
        except BaseException:
            self._session.close()
            raise
        self.object_id = str(found["id"])

    @property
    def _app(self) -> str:
        """The application's path: its object id as Graph gave it, one path segment whatever it holds."""
        return f"/v1.0/applications/{quote(self.object_id, safe='')}"

    def close(self) -> None:
        self._session.close()

    def _call(self, what: str, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._session.request(method, self._graph + path, json=body,
                                             headers={"Authorization": f"Bearer {self._token}"},
                                             verify=trust(self._settings),
                                             timeout=self._settings.timeout_seconds)
        except requests.RequestException as exc:
            raise GraphError(f"Graph {what} failed: {type(exc).__name__}") from None
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            answer = None
        if response.status_code >= 400:
            error = answer.get("error") if isinstance(answer, dict) else None
            code = str(error.get("code")) if isinstance(error, dict) else str(response.status_code)
            if isinstance(error, dict) and error.get("message") not in (None, "", "-"):
                code += f" ({str(error['message'])[:200]})"  # Graph's own words: data, escaped where shown
            hint = ("the application may not change its own secrets: pass --admin-env with an app allowed "
                    "Application.ReadWrite.All" if response.status_code == 403 else None)
            raise GraphError(f"Graph {what} as {self._who} failed: {code}", hint=hint)
        return answer if isinstance(answer, dict) else {}

    def passwords(self) -> list[Password]:
        found = self._call("GET applications", "GET",
                           f"{self._app}?$select=id,passwordCredentials")
        return [Password(str(p["keyId"]), str(p.get("hint") or ""), str(p.get("displayName") or ""),
                         p.get("endDateTime"), p.get("startDateTime"))
                for p in found.get("passwordCredentials", [])]

    def add(self, days: int) -> tuple[Password, Secret]:
        ends = (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        made = self._call("addPassword", "POST", f"{self._app}/addPassword",
                          {"passwordCredential": {"displayName": f"connsync {datetime.now(UTC):%Y-%m-%d}",
                                                  "endDateTime": ends}})
        try:
            secret = Secret(str(made["secretText"]))
            return Password(str(made["keyId"]), str(made.get("hint") or ""), str(made.get("displayName")),
                            made.get("endDateTime") or ends, made.get("startDateTime")), secret
        except KeyError:
            raise GraphError("Graph addPassword answered without a secret") from None

    def remove(self, key_id: str) -> None:
        self._call("removePassword", "POST", f"{self._app}/removePassword",
                   {"keyId": key_id})
