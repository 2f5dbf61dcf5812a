"""Talking to Vault / OpenBao: the address, TLS, the token (or a login), and one-line errors.

Credentials come from the environment only, never from the store URL or
connsync.yaml (a file a pull request can change):

- ``VAULT_TOKEN``, else the token helper's file ``~/.vault-token`` (what ``vault
  login`` / ``bao login`` leave behind);
- or a login through ``hvac`` chosen by ``CONNSYNC_VAULT_AUTH``: ``approle``
  (``VAULT_ROLE_ID``, ``VAULT_SECRET_ID``), ``kubernetes`` (``CONNSYNC_VAULT_ROLE``,
  the service account token file) or ``jwt`` (``CONNSYNC_VAULT_ROLE``, and
  ``CONNSYNC_VAULT_JWT`` or ``CONNSYNC_VAULT_JWT_FILE``, e.g. a CI OIDC token);
  ``CONNSYNC_VAULT_AUTH_MOUNT`` names a non-default auth mount.

TLS: ``VAULT_CACERT`` (a bundle) or ``VAULT_CAPATH`` (a directory) verify the
server; ``VAULT_CLIENT_CERT``/``VAULT_CLIENT_KEY`` present a client certificate;
``VAULT_NAMESPACE`` (Vault Enterprise, OpenBao) is sent with every request.
``VAULT_SKIP_VERIFY`` is refused: a store of secrets is never reached unverified.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connsync.errors import StoreError, StoreUnavailable

AUTH_VARIABLE = "CONNSYNC_VAULT_AUTH"
_K8S_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path, not a token
POLICY_HINT = "grant it the ACL policy in the README (section 'Vault and OpenBao')"


class Calls:
    """Every HTTP request the Vault stores of this process made, as (method, API path) pairs.

    bench/store.py and the tests read it: what a plan reads is a promise (no secret's value).
    """

    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []

    def count(self, method: str, url: str) -> None:
        path = url.split("/v1/", 1)[-1].split("?", 1)[0]
        self.made.append((method.upper(), path))


CALLS = Calls()


def make_client(address: str, shown: str) -> Any:
    """An hvac client for ``address`` (scheme://host:port), authenticated from the environment."""
    import hvac
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry

    env = os.environ
    if env.get("VAULT_SKIP_VERIFY", "").strip().lower() not in ("", "0", "false"):
        raise StoreError("VAULT_SKIP_VERIFY is set: connsync does not talk to a secrets store whose TLS "
                         "certificate it cannot verify", hint="set VAULT_CACERT to the server's CA bundle")
    session = requests.Session()
    # Connection failures only are retried: a write retried after a lost answer would meet its own
    # check-and-set and read as a conflict, which is honest but not what the user asked for.
    adapter = HTTPAdapter(max_retries=Retry(connect=2, read=0, status=0, other=0, backoff_factor=0.2))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.hooks["response"].append(
        lambda answer, *args, **kwargs: CALLS.count(answer.request.method or "", answer.request.url or ""))
    session.trust_env = False  # proxies and CA bundles come from VAULT_* here, not from requests' guesses
    verify: bool | str = env.get("VAULT_CACERT") or env.get("VAULT_CAPATH") or True
    cert = None
    if env.get("VAULT_CLIENT_CERT"):
        cert = (env["VAULT_CLIENT_CERT"], env.get("VAULT_CLIENT_KEY") or env["VAULT_CLIENT_CERT"])
    session.verify, session.cert = verify, cert  # hvac takes the session's over its own arguments
    client = hvac.Client(url=address, verify=verify, cert=cert, timeout=30, session=session,
                         namespace=env.get("VAULT_NAMESPACE") or None)
    method = (env.get(AUTH_VARIABLE) or "token").strip().lower()
    if method == "token":
        client.token = _token(shown)
        return client
    client.connsync_logged_in = True  # the token is this process's own: revoked when the store closes
    mount = env.get("CONNSYNC_VAULT_AUTH_MOUNT") or method
    with http_errors(shown, f"log in to Vault ({method})", f"auth/{mount}/login", "update", login=True):
        if method == "approle":
            role_id = _required("VAULT_ROLE_ID", method)
            client.auth.approle.login(role_id=role_id, secret_id=env.get("VAULT_SECRET_ID") or None,
                                      mount_point=mount)
        elif method == "kubernetes":
            jwt = _read_file(env.get("CONNSYNC_VAULT_JWT_FILE") or _K8S_TOKEN, "the Kubernetes service "
                             "account token")
            client.auth.kubernetes.login(role=_required("CONNSYNC_VAULT_ROLE", method), jwt=jwt,
                                         mount_point=mount)
        elif method == "jwt":
            jwt = env.get("CONNSYNC_VAULT_JWT") or ""
            if not jwt:
                jwt = _read_file(_required("CONNSYNC_VAULT_JWT_FILE", method, also="CONNSYNC_VAULT_JWT"),
                                 "the JWT")
            client.auth.jwt.jwt_login(role=_required("CONNSYNC_VAULT_ROLE", method), jwt=jwt.strip(),
                                      path=mount)
        else:
            raise StoreError(f"{AUTH_VARIABLE}={method[:30]!r} is not a login connsync knows",
                             hint="token (VAULT_TOKEN or ~/.vault-token), approle, kubernetes or jwt")
    return client


def _token(shown: str) -> str:
    token = os.environ.get("VAULT_TOKEN", "").strip()
    if token:
        return token
    helper = Path.home() / ".vault-token"
    with contextlib.suppress(OSError):
        token = helper.read_text().strip()
    if not token:
        raise StoreError(f"no Vault token for {shown}: VAULT_TOKEN is not set and there is no "
                         "~/.vault-token", hint=f"set VAULT_TOKEN, run 'vault login', or log in with "
                         f"{AUTH_VARIABLE}=approle|kubernetes|jwt (README: 'Vault and OpenBao')")
    return token


def _required(variable: str, method: str, *, also: str | None = None) -> str:
    value = os.environ.get(variable, "").strip()
    if not value:
        either = f" (or {also})" if also else ""
        raise StoreError(f"{AUTH_VARIABLE}={method} needs {variable}{either} in the environment")
    return value


def _read_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise StoreError(f"cannot read {what} at {path}: {exc.strerror}") from None


def request(client: Any, method: str, path: str, **kwargs: Any) -> dict[str, Any] | None:
    """One API call; the JSON answer, or None for an answer without a body (204)."""
    answer = client.adapter.request(method, f"/v1/{path}", **kwargs)
    return answer if isinstance(answer, dict) else None


def token_works(client: Any) -> bool:
    """Whether the token itself is accepted (Vault answers 403 for a bad token and for a denial alike)."""
    import hvac

    try:
        request(client, "get", "auth/token/lookup-self")
    except hvac.exceptions.Forbidden:
        return False
    except Exception:  # the lookup itself may be denied by policy: the token then still works
        return True
    return True


@contextlib.contextmanager
def http_errors(shown: str, doing: str, path: str, capability: str, *, client: Any = None,
                login: bool = False) -> Iterator[None]:
    """A Vault failure is one line naming the path and capability; never the token, never a body."""
    import hvac
    import requests

    try:
        yield
    except hvac.exceptions.Forbidden:
        if login:
            raise _login_refused(shown, path) from None
        if client is not None and not token_works(client):
            raise StoreError(f"Vault rejected the token for {shown}: it is invalid, expired or revoked; "
                             "nothing more was written",
                             hint="set VAULT_TOKEN to a valid token, or log in again ('vault login')",
                             ) from None
        raise StoreError(f"Vault's policy denies '{capability}' on {path} ({shown}); nothing more was "
                         "written", hint=POLICY_HINT) from None
    except hvac.exceptions.Unauthorized:
        raise StoreError(f"Vault asks for authentication to {doing} at {shown}",
                         hint="set VAULT_TOKEN, or log in with CONNSYNC_VAULT_AUTH") from None
    except hvac.exceptions.VaultDown:
        # Sealed (or a standby that cannot serve): it refused this request, and will refuse the next.
        raise StoreUnavailable(f"Vault at {shown} is sealed or not ready (HTTP 503), so connsync cannot "
                               f"{doing}", hint="unseal it, or point at an active node") from None
    except hvac.exceptions.RateLimitExceeded:
        raise StoreError(f"Vault at {shown} kept rate-limiting connsync while trying to {doing}",
                         hint="run again later, or raise the rate limit quota for this path") from None
    except requests.exceptions.SSLError:
        raise StoreError(f"the TLS certificate of {shown} could not be verified, so connsync cannot {doing}",
                         hint="set VAULT_CACERT to the CA bundle that signed the server's certificate") \
            from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        # After the adapter's retries of the connect: the server is gone for this run, and the apply
        # ends here. A write that may have reached it (the answer timed out, the connection broke
        # after the request went out) may still land: it is in doubt.
        in_doubt = capability not in ("read", "list") and _may_have_arrived(exc)
        raise StoreUnavailable(f"cannot reach Vault at {shown} to {doing} ({type(exc).__name__}); "
                               f"{_WHAT_WAS_WRITTEN[in_doubt]}", in_doubt=in_doubt,
                               hint="check that the server is up and that the address (VAULT_ADDR or the "
                               "store URL) is right") from None
    except (hvac.exceptions.InternalServerError, hvac.exceptions.BadGateway) as exc:
        # The server, or a gateway in front of it, failed while it held the request: a write may have
        # landed, and the next one would fare no better. The apply ends here.
        in_doubt = capability not in ("read", "list")
        raise StoreUnavailable(f"Vault at {shown} failed to {doing} ({type(exc).__name__}); "
                               f"{_WHAT_WAS_WRITTEN[in_doubt]}", hint="see the Vault server's log",
                               in_doubt=in_doubt) from None
    except hvac.exceptions.InvalidRequest as exc:
        if login:
            raise _login_refused(shown, path) from None
        said = "; ".join(str(e) for e in (exc.errors or []))[:200].replace("\n", " ")
        raise StoreError(f"Vault refused to {doing} at {path} ({shown}): {said or 'bad request'}") from None
    except hvac.exceptions.VaultError as exc:
        raise StoreError(f"Vault failed to {doing} at {path} ({shown}, {type(exc).__name__})") from None


_WHAT_WAS_WRITTEN = {False: "nothing more was written",
                     True: "it may have received this write; nothing after it was written"}


def _may_have_arrived(exc: Exception) -> bool:
    """Whether the request may have reached the server: not when no connection was ever made."""
    import requests
    import urllib3

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, urllib3.exceptions.NewConnectionError)


def _login_refused(shown: str, path: str) -> StoreError:
    return StoreError(f"Vault refused the login to {shown} ({path}): the role or its credentials were not "
                      "accepted", hint=f"check {AUTH_VARIABLE} and its variables")


def revoke_login(client: Any) -> None:
    """Give back a token this process logged in for (best effort: it expires with its TTL anyway)."""
    if getattr(client, "connsync_logged_in", False):
        with contextlib.suppress(Exception):
            request(client, "post", "auth/token/revoke-self")
