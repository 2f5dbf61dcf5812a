"""A throwaway PostgreSQL server for tests and benchmarks: 127.0.0.1, a free port, a temp dir.

``initdb`` and ``pg_ctl`` refuse to run as root, and CI runs as root: then they
run as the ``postgres`` OS user through ``runuser``. Password authentication is
on for TCP (scram-sha-256), as on a real server, so tests can see a refused login.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ADMIN_PASSWORD = "admin-pw-for-tests"
MISSING = ("PostgreSQL server binaries not found (looked for initdb in /usr/lib/postgresql/*/bin and "
           "PATH); install the Debian package postgresql-15 to run the PostgreSQL store tests")


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    admin_user: str

    def url(self, user: str | None = None, password: str | None = None, database: str = "postgres",
            **query: str) -> str:
        user = user or self.admin_user
        password = ADMIN_PASSWORD if password is None and user == self.admin_user else password
        auth = f"{user}:{password}@" if password is not None else f"{user}@"
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://{auth}{self.host}:{self.port}/{database}" + (f"?{params}" if params else "")


def find_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    found = shutil.which("initdb")
    for path in [*candidates, *([found] if found else [])]:
        if os.access(path, os.X_OK):
            return Path(path).parent
    return None


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_server() -> Iterator[PgServer]:
    """Start a server for the duration of the block; raise RuntimeError(MISSING) without binaries."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(MISSING)
    top = Path(tempfile.mkdtemp(prefix="connsync-pg-"))
    admin = "postgres"
    try:
        if os.geteuid() == 0:
            shutil.chown(top, "postgres", "postgres")
        else:
            admin = os.environ.get("USER") or "postgres"
        (top / "pw").write_text(ADMIN_PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(top / "pw", "postgres", "postgres")
        data = top / "data"
        subprocess.run(_as_server_user([
            str(bindir / "initdb"), "-D", str(data), "-U", admin, "--pwfile", str(top / "pw"),
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
        ]), check=True, capture_output=True, timeout=120)
        port = _free_port()
        settings = (f"-c listen_addresses=127.0.0.1 -p {port} -k {top} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        subprocess.run(_as_server_user([
            str(bindir / "pg_ctl"), "-D", str(data), "-l", str(top / "log"), "-o", settings, "-w",
            "-t", "60", "start",
        ]), check=True, capture_output=True, timeout=120)
        try:
            yield PgServer("127.0.0.1", port, admin)
        finally:
            subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                            "-w", "stop"]), capture_output=True, timeout=60, check=False)
    finally:
        shutil.rmtree(top, ignore_errors=True)
