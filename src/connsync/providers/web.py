"""The HTTP session the Azure and GCP verifiers share within one run.

One ``requests.Session`` per provider per run: connections to the token and
management endpoints are kept alive across the run's connections and the pool
is as large as the run's concurrency. For GCP, GETs that meet 429 or a 5xx are
retried here with backoff (``Retry-After`` honoured) and google-auth retries
its token requests itself; for Azure, azure-core's retry policy does both.

The clouds' client libraries log failures as warnings (with their own
wording); connsync reports each failure once, in its verdict, so their loggers
get a handler that drops them unless an application configured logging.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from connsync.providers.base import VerifySettings

RETRY_STATUSES = (429, 500, 502, 503, 504)
# google-auth keeps its own loggers from propagating unless "google" is configured, and hashes
# what it logs: it is left alone (tests/test_verify_gcp.py checks a DEBUG root sees no token).
for _name in ("azure", "msal", "urllib3"):
    logging.getLogger(_name).addHandler(logging.NullHandler())


def session_for(settings: VerifySettings, *, retry_gets: bool = True) -> requests.Session:
    """``retry_gets=False`` when a caller's own policy retries (azure-core's), not to retry twice."""
    session = requests.Session()
    retry = Retry(total=2, connect=2, read=1, backoff_factor=0.5, status_forcelist=RETRY_STATUSES,
                  allowed_methods=frozenset({"GET"}), respect_retry_after_header=True,
                  raise_on_status=False) if retry_gets else Retry(0, read=False)
    adapter = HTTPAdapter(max_retries=retry, pool_connections=16,
                          pool_maxsize=max(10, settings.concurrency))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "connsync"
    return session


def trust(settings: VerifySettings) -> str | bool:
    """For ``verify=`` of each request: a session-wide setting would lose to REQUESTS_CA_BUNDLE."""
    return settings.ca_bundle or True


def get_json(session: requests.Session, url: str, token: str, settings: VerifySettings,
             params: Mapping[str, str] | None = None) -> tuple[int, Any]:
    """GET ``url`` with a bearer token: the status and the decoded body (None if not JSON)."""
    response = session.get(url, headers={"Authorization": f"Bearer {token}"}, params=params,
                           timeout=settings.timeout_seconds, verify=trust(settings))
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body


def error_text(body: Any) -> str:
    """The ``error.code``/``error.message`` (or status) of a management API's JSON error body."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return str(error.get("code") or error.get("status") or "")
    return ""
