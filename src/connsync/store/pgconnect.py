"""Reaching the PostgreSQL store: a libpq URI in, one clear line out when it fails.

The password (from the URI, ``PGPASSWORD`` or ``.pgpass``, as libpq finds it)
is never shown: every message uses the URI with its password masked, and any
text from libpq or the server has the password scrubbed out before it is shown.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg

from connsync.errors import StoreError

DEFAULT_SCHEMA = "connsync"
DEFAULT_TIMEOUT = 60.0  # seconds a server may leave one statement unanswered (?timeout= in the URL)
OLDEST_SERVER = 120000  # PostgreSQL 12
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MASK = "****"
# A runner that vanishes without closing its socket must not keep the workspace lock for
# the kernel's default two hours: the server probes an idle client after 10 s, gives up
# after 3 times 5 s more, and its session (with the advisory lock) ends.
_SERVER_KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5",
                      "tcp_keepalives_count": "3"}


@dataclass(frozen=True)
class ConnectionTarget:
    conninfo: str  # the URI as libpq takes it (connsync's own ``schema`` parameter removed)
    schema: str
    shown: str  # the URI with any password masked: the only form that is ever printed
    timeout: float = DEFAULT_TIMEOUT
    _secrets: tuple[str, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:  # never the conninfo, which may carry a password
        return f"ConnectionTarget({self.shown!r})"

    @classmethod
    def parse(cls, url: str) -> ConnectionTarget:
        try:
            parts = urlsplit(url)
            query = parse_qsl(parts.query, keep_blank_values=True)
            password = parts.password
        except ValueError:
            raise StoreError(f"the store URL {_mask_text(url)} is not a valid postgresql:// URI") from None
        schema = DEFAULT_SCHEMA
        timeout = DEFAULT_TIMEOUT
        kept: list[tuple[str, str]] = []
        # Both spellings: libpq quotes the raw, still percent-encoded text when it rejects it.
        secrets = [password, unquote(password)] if password else []
        secrets += [raw for raw in re.findall(r"(?:^|&)password=([^&]*)", parts.query) if raw]
        for key, value in query:
            if key == "schema":
                schema = value
            elif key == "timeout":
                timeout = _seconds(value)
            else:
                kept.append((key, value))
                if key == "password" and value:
                    secrets.append(value)
        if not _SCHEMA_NAME.match(schema):
            raise StoreError(f"schema {schema[:64]!r} in the store URL is not a plain lower-case SQL name",
                             hint="use letters, digits and underscores, e.g. ?schema=connsync")
        conninfo = urlunsplit(parts._replace(query=urlencode(kept, quote_via=quote)))
        # An empty password= (what connsync.yaml's URL gets: PGPASSWORD is not for a store the
        # repository chose) is no password to mask, and not shown.
        shown_query = urlencode([(k, _MASK if k == "password" else v) for k, v in query
                                 if not (k == "password" and not v)], quote_via=quote)
        netloc = parts.netloc
        if password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}:{_MASK}@{hostport}"
        shown = urlunsplit(parts._replace(netloc=netloc, query=shown_query))
        env_password = os.environ.get("PGPASSWORD")
        if env_password:
            secrets.append(env_password)
        return cls(conninfo, schema, shown, timeout, tuple(secrets))

    def scrub(self, text: str) -> str:
        """libpq or server text with every password this target knows of masked out."""
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        return text


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 1 <= seconds <= 86400:
        raise StoreError(f"timeout={value[:20]!r} in the store URL is not a number of seconds from 1 to "
                         "86400",
                         hint=f"e.g. ?timeout=60 (the default: {DEFAULT_TIMEOUT:g})")
    return seconds


def _mask_text(url: str) -> str:
    """For a URL too broken to parse: hide whatever sits between ``user:`` and ``@``."""
    return re.sub(r"(//[^/:@]*:)[^@]*@", rf"\1{_MASK}@", url)


def connect(target: ConnectionTarget) -> psycopg.Connection[Any]:
    options: dict[str, Any] = {"autocommit": True, "application_name": "connsync"}
    if "connect_timeout" not in target.conninfo:
        options["connect_timeout"] = min(10, int(target.timeout))
    if "tcp_user_timeout" not in target.conninfo:
        # Data the server does not acknowledge (a cable pulled, a host gone) fails the
        # connection after the bound rather than the kernel's ~15 minutes of retransmits.
        options["tcp_user_timeout"] = int(target.timeout * 1000)
    if "keepalives" not in target.conninfo:  # an idle connection (at the [y/N] prompt) notices too
        options.update(keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)
    try:
        conn = psycopg.connect(target.conninfo, **options)
    except psycopg.Error as exc:
        hint = _connect_hint(exc)
        if _reason(exc) == _NOT_GIVEN and re.search(r"[?&]password=(&|$)", target.conninfo):
            hint = ("PGPASSWORD is not sent to a store that connsync.yaml names (a pull request can change "
                    "that file): set CONNSYNC_STORE or --store to the URL, or put the password in ~/.pgpass")
        raise StoreError(_connect_failure(exc, target), hint=hint) from None
    try:
        if conn.info.server_version < OLDEST_SERVER:
            raise StoreError(
                f"the store {target.shown} runs PostgreSQL {conn.info.server_version // 10000}; "
                "connsync needs 12 or newer")
        for name, value in _SERVER_KEEPALIVES.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    except psycopg.Error as exc:
        conn.close()
        raise StoreError(f"the store {target.shown} failed: {target.scrub(str(exc).strip())}") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_failure(exc: psycopg.Error, target: ConnectionTarget) -> str:
    if isinstance(exc, psycopg.ProgrammingError):
        # libpq's words about a URI it cannot parse quote the URI's own text: say nothing of them.
        return f"{_reason(exc)}: {target.shown}"
    return f"{_reason(exc)}: {target.shown}: {_detail(exc, target)}"


def _detail(exc: psycopg.Error, target: ConnectionTarget) -> str:
    """libpq's own words, without its 'connection to server at … failed:' preamble."""
    text = " ".join(str(exc).split())
    for marker in ("FATAL: ", "failed: "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
            break
    return target.scrub(text)


def _reason(exc: psycopg.Error) -> str:
    # libpq gives connection failures no SQLSTATE: the server's words are all there is.
    text = str(exc)
    if "no password supplied" in text:
        return _NOT_GIVEN
    if exc.sqlstate in ("28P01", "28000") or "authentication failed" in text or "pg_hba.conf" in text:
        return "PostgreSQL refused the login"
    if exc.sqlstate == "3D000" or ("database" in text and "does not exist" in text):
        return "the database does not exist"
    if exc.sqlstate == "42501" or "permission denied" in text:
        return "the role may not connect to the database"
    if isinstance(exc, psycopg.ProgrammingError):
        return "the store URL is not one libpq accepts"
    return "cannot reach PostgreSQL"


_NOT_GIVEN = "PostgreSQL asked for a password and none was given"
_HINTS = {
    _NOT_GIVEN: "set PGPASSWORD, or put the password in ~/.pgpass",
    "PostgreSQL refused the login": "check the user and password (PGPASSWORD, ~/.pgpass or the URL) and "
                                    "the server's pg_hba.conf",
    "the database does not exist": "create it first: the README's 'Teams and CI' section has the SQL",
    "the role may not connect to the database": "GRANT CONNECT ON DATABASE … TO the role",
    "cannot reach PostgreSQL": "check the host and port, and that the server runs and accepts TCP "
                               "connections from here",
}


def _connect_hint(exc: psycopg.Error) -> str | None:
    return _HINTS.get(_reason(exc))


class Watchdog:
    """Gives up on a server that stops answering: a statement that waits longer than the bound
    has its socket shut down, so the blocked call fails instead of waiting for ever.

    TCP alone cannot tell: a frozen server (SIGSTOP, a hung host whose kernel still answers)
    acknowledges every packet and never replies.
    """

    def __init__(self, conn: psycopg.Connection[Any], seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._conn = conn
        self._since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="connsync-pg-watchdog")
        self._thread.start()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        self._since = time.monotonic()
        try:
            yield
        finally:
            self._since = None

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.seconds / 4)):
            since = self._since
            if since is None or time.monotonic() - since <= self.seconds or self._conn.closed:
                continue
            self.fired = True
            # shutdown() acts on the connection itself, whichever descriptor it is called on.
            with contextlib.suppress(OSError, psycopg.Error), \
                    socket.socket(fileno=os.dup(self._conn.fileno())) as sock:
                sock.shutdown(socket.SHUT_RDWR)
            return

    def stop(self) -> None:
        self._stop.set()
