from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from connsync.cli import main
from tests.baoserver import BaoServer
from tests.baoserver import running_server as running_bao
from tests.pgserver import MISSING, PgServer, find_bindir, running_server

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# A value that must never appear in any output or any file but the encrypted one.
CANARY = "CanaryS3cretValue/DoNotLeak+0123456789ab"
assert len(CANARY) == 40


class Result(NamedTuple):
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the developer's keys, config or AWS profile."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    for name in list(os.environ):
        # CI and GITHUB_*: the suite runs in CI too, where apply would refuse an embedded store.
        if name.startswith(("SOPS_", "AWS_", "CONNSYNC_", "GITHUB_", "PG", "VAULT_", "BAO_")) \
                or name in ("NO_COLOR", "CI"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run the CLI in process, as a user would type it, from ``cwd``."""

    def _run(*args: str, cwd: Path | None = None) -> Result:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return _run


def run_process(*args: str, cwd: Path, env: dict[str, str] | None = None,
                input: str | None = None, timeout: float = 120) -> Result:
    """Run the CLI as a separate process (the real console entry point)."""
    proc = subprocess.run(
        [sys.executable, "-m", "connsync", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, input=input, timeout=timeout, check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "connections").mkdir()
    monkeypatch.chdir(tmp_path)
    yield tmp_path


class AgeKey(NamedTuple):
    public: str
    file: Path


def make_age_key(directory: Path, name: str = "keys.txt") -> AgeKey:
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"{identity}\n")
    path.chmod(0o600)
    return AgeKey(str(identity.to_public()), path)


@pytest.fixture
def age_key(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> AgeKey:
    """A fresh age identity, made for this test and found by sops through SOPS_AGE_KEY_FILE."""
    key = make_age_key(tmp_path_factory.mktemp("age"))
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key.file))
    return key


@pytest.fixture
def repo(workdir: Path, age_key: AgeKey, run: Run) -> Path:
    """A connections repository made by ``connsync init`` for the test's age key."""
    result = run("init", "--age-recipient", age_key.public)
    assert result.code == 0, result.err
    return workdir


def new_aws(run: Run, monkeypatch: pytest.MonkeyPatch, name: str = "AWS Prod",
            secret: str = CANARY, extra: tuple[str, ...] = (), **fields: str) -> Result:
    values = {"account_id": "123456789012", "default_region": "us-east-1",
              "access_key_id": "AKIAIOSFODNN7EXAMPLE", **fields}
    monkeypatch.setenv("TEST_AWS_SECRET", secret)
    args = ["new", "aws", "--name", name, "--no-input", "--secret-env", "secret_access_key=TEST_AWS_SECRET"]
    for key, value in values.items():
        args += ["--set", f"{key}={value}"]
    return run(*args, *extra)


class MotoServer(NamedTuple):
    url: str

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"))

    def require_auth(self, on: bool = True) -> None:
        """Moto checks signatures and IAM policies only once this is switched on."""
        import urllib.request

        body = b"0" if on else b"inf"  # how many more requests go through unauthenticated
        request = urllib.request.Request(f"{self.url}/moto-api/reset-auth", data=body, method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """A real HTTP moto server on loopback, shared by the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield MotoServer(f"http://{host}:{port}")
    server.stop()


@pytest.fixture
def aws_endpoint(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """Point boto3 and sops at the moto server, with dummy admin credentials."""
    moto_server.require_auth(False)
    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield moto_server
    # The server runs in this process, and moto's auth switch is process-wide: a test that turned it
    # on would otherwise leave in-process mocks (mock_aws) checking signatures they cannot pass.
    moto_server.require_auth(False)


def run_in_terminal(*args: str, answers: tuple[tuple[bytes, bytes], ...] = (),
                    env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, bytes]:
    """Run the CLI on a pseudo-terminal: reply to each prompt, return exit code and transcript."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: a user at a terminal
        os.execvpe(sys.executable, [sys.executable, "-m", "connsync", *args], {**os.environ, **(env or {})})
    transcript = b""

    def read_more() -> bool:
        nonlocal transcript
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, transcript
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            return False
        transcript += chunk
        return bool(chunk)

    answered = 0  # a prompt asked again counts only once it appears after the last reply
    for prompt, reply in answers:
        while prompt not in transcript[answered:]:
            assert read_more(), transcript
        answered = transcript.index(prompt, answered) + len(prompt)
        os.write(fd, reply)
    # CPython notices a signal between bytecodes or when a blocking call returns EINTR: a ^C that
    # lands after the prompt is written but just before input()'s read(2) begins is lost, and the
    # process waits for the next key. A user presses ^C again; so does this, at most twice.
    for _ in range(2 if answers and answers[-1][1] == b"\x03" else 0):
        before = len(transcript)
        while select.select([fd], [], [], 5)[0] and read_more():
            if transcript[before:].replace(b"^C", b"").strip():  # more than the terminal's echo
                break
        if transcript[before:].replace(b"^C", b"").strip():
            break
        os.write(fd, b"\x03")
    while read_more():
        pass
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), transcript


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server of the suite's own on 127.0.0.1 (see tests/pgserver.py)."""
    if find_bindir() is None:
        pytest.skip(MISSING)
    with running_server() as server:
        yield server


@pytest.fixture(scope="session")
def bao_server() -> Iterator[BaoServer]:
    """A real OpenBao dev server of the suite's own, HTTPS on 127.0.0.1 (see tests/baoserver.py)."""
    with running_bao() as server:
        yield server


@pytest.fixture
def vault(bao_server: BaoServer, monkeypatch: pytest.MonkeyPatch) -> BaoServer:
    """The OpenBao server, with this test's environment pointed at it (token, CA bundle)."""
    for name, value in bao_server.env().items():
        monkeypatch.setenv(name, value)
    return bao_server
