"""Which store a run may open: connsync.yaml is part of every pull request, so it cannot aim the
store's credentials (or, on apply, the secrets) at a host of its choosing."""

from __future__ import annotations

import base64
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Run, new_aws
from tests.pgserver import ADMIN_PASSWORD, PgServer


class Listener:
    """A TCP port on 127.0.0.1 that counts who connects (and says nothing back)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def set_store(repo: Path, url: str) -> None:
    """Replace the store: that init wrote (or set here last)."""
    config = repo / "connsync.yaml"
    lines = [f"store: {url!r}" if line.startswith("store:") else line
             for line in config.read_text().splitlines()]
    config.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("option", ["endpoint_url", "endpoint%5Furl", "ENDPOINT_URL"])
def test_connsync_yaml_cannot_set_a_store_endpoint(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                                                   listener: Listener, option: str) -> None:
    assert new_aws(run, monkeypatch).code == 0
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    set_store(repo, f"awssm://us-east-1/platform?{option}=http://127.0.0.1:{listener.port}")
    for command in (("plan",), ("apply", "--auto-approve", "--skip-verify"), ("list",), ("audit",)):
        result = run(*command)
        assert result.code == 1, (command, result.err)
        assert "connsync.yaml:" in result.err and "may not set" in result.err, result.err
        assert "endpoint" in result.err.lower() and "CONNSYNC_STORE" in result.err
    assert listener.connections == 0
    # The file itself is wrong, whatever the command: like any bad setting, it is reported at once.
    assert run("validate").code == 1


def test_in_ci_a_shared_store_comes_only_from_the_environment(repo: Path, run: Run,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              listener: Listener) -> None:
    assert new_aws(run, monkeypatch).code == 0
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PGPASSWORD", "the-runner-password")
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    set_store(repo, f"postgresql://connsync@127.0.0.1:{listener.port}/platform")
    for command in (("plan",), ("apply", "--auto-approve", "--skip-verify"), ("list",), ("unlock", "x")):
        result = run(*command)
        assert result.code == 1, (command, result.err)
        assert "not used on a CI runner" in result.err and "CONNSYNC_STORE" in result.err, result.err
        assert "the-runner-password" not in result.err + result.out
    assert listener.connections == 0
    # Commands that need no store are not held up by it.
    assert run("validate").code == 0
    # The embedded store may still be named there (apply refuses it in CI for its own reason).
    set_store(repo, "sqlite:.connsync/other.db")
    assert run("plan").code == 0


def test_outside_ci_the_environment_password_is_not_sent_to_the_store_the_file_names(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, pg_server: PgServer) -> None:
    assert new_aws(run, monkeypatch).code == 0
    monkeypatch.setenv("PGPASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    # No password in the URL: libpq would take PGPASSWORD.
    url = pg_server.url().replace(f":{ADMIN_PASSWORD}@", "@")
    set_store(repo, url)
    refused = run("plan")
    assert refused.code == 1 and "asked for a password and none was given" in refused.err, refused.err
    assert "PGPASSWORD is not sent" in refused.err and ADMIN_PASSWORD not in refused.err
    assert "password=" not in refused.err.split("\n")[0]
    # The same store, chosen by whoever runs connsync, gets the password.
    assert run("--store", url, "plan").code == 0


@pytest.mark.parametrize("url", ["vault://127.0.0.1:{port}/secret/platform",
                                 "vault+http://127.0.0.1:{port}/secret/platform"])
def test_connsync_yaml_cannot_name_the_vault_server(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                                                    listener: Listener, url: str) -> None:
    """The runner's VAULT_TOKEN goes wherever the URL points: the file may name the mount only."""
    assert new_aws(run, monkeypatch).code == 0
    monkeypatch.setenv("VAULT_TOKEN", "the-runner-token")
    set_store(repo, url.format(port=listener.port))
    for command in (("plan",), ("apply", "--auto-approve", "--skip-verify"), ("list",)):
        result = run(*command)
        assert result.code == 1, (command, result.err)
        assert "connsync.yaml:" in result.err and "may not name its server" in result.err, result.err
        assert "VAULT_ADDR" in result.err and "the-runner-token" not in result.out + result.err
    assert listener.connections == 0
    set_store(repo, "vault:///secret/platform")  # the mount only: the server comes from VAULT_ADDR
    assert "may not name its server" not in run("validate").err
