"""Fault injection, shared by the store fault tests and ``bench/faults.py``.

Many encrypted connection files made quickly, a loopback TCP proxy that can stop
answering, and the comparison the tests and the bench make after every injected
fault: what the apply's report says was written against what the store holds.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def many_connections(root: Path, count: int) -> dict[str, str]:
    """``count`` sops-encrypted AWS connections under ``root``; returns the environment to run in.

    One file is encrypted with the real sops binary and an age key made here; the others are
    copies with another name (a clear field: the files use mac_only_encrypted, as init writes).
    """
    import pyrage

    from connsync import sops

    identity = pyrage.x25519.Identity.generate()
    key_file = root / "age.txt"
    key_file.write_text(f"{identity}\n")
    (root / ".sops.yaml").write_text(
        "creation_rules:\n  - path_regex: ^connections/\n"
        "    encrypted_regex: ^(secret_access_key|client_secret|private_key)$\n"
        f"    mac_only_encrypted: true\n    age: {identity.to_public()}\n")
    (root / "connsync.yaml").write_text("connections: connections\n")
    folder = root / "connections"
    folder.mkdir(exist_ok=True)
    template = {"apiVersion": "connsync/v1", "provider": "aws", "metadata": {"name": "TEMPLATE"},
                "spec": {"account_id": "123456789012", "default_region": "us-east-1",
                         "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": SECRET}}
    os.environ["SOPS_AGE_KEY_FILE"] = str(key_file)
    encrypted = sops.encrypt(yaml.safe_dump(template).encode(), folder / "template.yaml").decode()
    for index in range(count):
        (folder / f"aws-{index:05d}.yaml").write_text(
            encrypted.replace("name: TEMPLATE", f"name: AWS Account {index:05d}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNSYNC_", "AWS_", "PG"))}
    return {**env, "SOPS_AGE_KEY_FILE": str(key_file), "NO_COLOR": "1"}


def connsync(*args: str, cwd: Path, env: dict[str, str],
             timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connsync", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


class Running:
    """An apply running in a process of its own; its output goes to files (a pipe left unread
    would stop it once full)."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self._out = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by communicate()
        self._err = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self._out, stderr=self._err, text=True)

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def communicate(self, timeout: float) -> tuple[str, str]:
        self.process.wait(timeout)
        texts = []
        for handle in (self._out, self._err):
            handle.seek(0)
            texts.append(handle.read())
            handle.close()
        return texts[0], texts[1]


def start_apply(cwd: Path, env: dict[str, str], *extra: str, fmt: str = "json") -> Running:
    return Running([sys.executable, "-m", "connsync", "apply", "--auto-approve", "--skip-verify",
                    "--format", fmt, *extra], cwd, env)


@dataclass(frozen=True)
class Held:
    """What the store holds after a run: its records, and how many times the audit saw each created."""

    names: frozenset[str]
    creates: dict[str, int]

    @property
    def doubled(self) -> list[str]:
        return sorted(n for n, c in self.creates.items() if c > 1)


def held(url: str, env: dict[str, str]) -> Held:
    from connsync.store import opened

    variables = ["CONNSYNC_STORE_KEY", *(k for k in env if k.startswith(("AWS_", "VAULT_")))]
    saved = {k: os.environ.pop(k, None) for k in variables}
    os.environ.update({k: env[k] for k in variables if k in env})  # an embedded store has its key file
    try:
        with opened(url, "default", create=False) as store:
            names = frozenset(r.name for r in store.records())
            creates: dict[str, int] = {}
            for entry in store.audit():
                if entry.action == "create":
                    creates[entry.name] = creates.get(entry.name, 0) + 1
    finally:
        for k, value in saved.items():
            os.environ.pop(k, None)
            if value is not None:
                os.environ[k] = value
    return Held(names, creates)


@dataclass(frozen=True)
class Verdict:
    """One injected fault, judged: did the report say what the store holds, did a re-run converge."""

    report_matches: bool
    converged: bool
    detail: str


def judge(report: dict[str, Any], before: Held, after: Held, total: int) -> tuple[bool, str]:
    """Whether an early-ended apply's JSON report names exactly what the store now holds.

    ``before``: the store before the apply; ``after``: after it. A write the report calls in doubt
    (the store could not be read back) may be either way: that is what the report says.
    """
    created = {i["name"] for i in report.get("applied", []) if i["action"] == "create"}
    ended = report.get("ended_early") or {}
    not_written = {i["name"] for i in ended.get("not_written", [])}
    doubt = ended.get("in_doubt")
    new = set(after.names - before.names)
    if doubt:
        new.discard(doubt["name"])
    exact = new == created and not (created & not_written)
    accounted = len(created) + len(not_written) + (1 if doubt else 0) == total - len(before.names)
    detail = (f"report: {len(created)} created, {len(not_written)} not written"
              f"{', 1 in doubt' if doubt else ''}; store: {len(after.names - before.names)} new")
    return exact and accounted and not after.doubled, detail


def parse_json(stdout: str) -> dict[str, Any]:
    try:
        value: dict[str, Any] = json.loads(stdout)
    except ValueError:
        return {}
    return value


def when(condition: Any, then: Any, *, every: float = 0.2) -> None:
    """Call ``then`` as soon as ``condition()`` holds (the apply got that far), within two minutes."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if condition():
            then()
            return
        time.sleep(every)
    raise AssertionError("the apply never got that far")


def apply_schema() -> dict[str, Any]:
    """The published JSON Schema of apply's report."""
    from importlib.resources import files

    return dict(json.loads(files("connsync").joinpath("outputs/apply.schema.json").read_text()))


def lease_outlives_a_short_outage(store_url: str, proxy: Proxy) -> None:
    """A holder whose store (with an 8 s lease) is cut off for 5 s is still the holder afterwards;
    cut off for longer than the lease, it writes nothing more."""
    import pytest

    from connsync.errors import LockError
    from connsync.store import opened
    from connsync.testing.store_contract import write

    with opened(store_url, "default") as store:
        lock = store.acquire_lock(timeout=5)
        proxy.stop()
        time.sleep(5)  # 5 s of an 8 s lease without a word from the store
        proxy.resume()
        time.sleep(5)  # past the end of the lease as it was before the outage
        store.put(write("AWS A"), expected_version=None)  # still the holder: renewed after the outage
        proxy.stop()
        time.sleep(10)  # longer than the lease
        proxy.resume()
        with pytest.raises(LockError, match="ran out"):
            store.put(write("AWS B"), expected_version=None)
        assert [r.name for r in store.records()] == ["AWS A"]
        store.release_lock(lock)


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of a server, which the test can make stop answering.

    ``stop()``: connections made from then on are accepted and then closed, and the connections
    open now are cut, between two requests only: a request already forwarded gets its answer,
    so whatever the client was told happened did happen. ``resume()`` forwards again.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._forwarding.clear()

    def resume(self) -> None:
        self._forwarding.set()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._forwarding.is_set():
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        """Forward request, answer, request, ...; cut the connection between two exchanges once stopped."""
        try:
            server = socket.create_connection(self._upstream)
        except OSError:
            client.close()
            return
        with client, server:
            answer = b""  # the answer being forwarded; None-like empty when no request is out
            awaiting_answer = False
            while not self._closed.is_set():
                if not awaiting_answer and not self._forwarding.is_set():
                    return  # between two exchanges: cut
                ready, _, _ = select.select([client, server], [], [], 0.2)
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    if sock is client:
                        if not awaiting_answer and not self._forwarding.is_set():
                            return  # a new request after the stop: never forwarded
                        server.sendall(data)
                        awaiting_answer, answer = True, b""
                    else:
                        client.sendall(data)
                        answer += data
                        awaiting_answer = not _answer_complete(answer)


def _answer_complete(answer: bytes) -> bool:
    """Whether ``answer`` is a whole HTTP response (moto sends Content-Length)."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or b"0")
    return True  # no body announced


class Terminal:
    """connsync on a pseudo-terminal, driven step by step: read up to a prompt, act, answer."""

    def __init__(self, args: tuple[str, ...], cwd: Path, env: dict[str, str]) -> None:
        import pty

        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a user at a terminal
            os.chdir(cwd)
            os.execvpe(sys.executable, [sys.executable, "-m", "connsync", *args], env)
        self.transcript = b""

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.transcript += chunk
        return bool(chunk)

    def read_until(self, text: bytes, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.transcript:
            assert time.monotonic() < deadline and self._read(0.1), self.transcript[-2000:]

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def finish(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self._read(0.1):
            assert time.monotonic() < deadline, self.transcript[-2000:]
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)
