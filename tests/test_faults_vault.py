"""Faults injected into a real OpenBao mid-apply: the server stops answering, or is sealed.

The apply ends early with the report the other stores give (what the store holds, what was not
written, the write in doubt), its lock is taken over at once by the next run on this machine, and
that run converges. A plain-HTTP dev server of this module's own (sealing it would stop the
suite's shared one), behind the loopback proxy of tests/faultkit.py.
"""

from __future__ import annotations

import base64
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from tests.baoserver import BaoServer, running_server
from tests.faultkit import (
    Held,
    Proxy,
    apply_schema,
    connsync,
    held,
    judge,
    lease_outlives_a_short_outage,
    many_connections,
    parse_json,
    start_apply,
    when,
)

COUNT = 60


@pytest.fixture(scope="module")
def bao() -> Iterator[BaoServer]:
    with running_server(tls=False) as server:
        yield server


@pytest.fixture
def proxy(bao: BaoServer) -> Iterator[Proxy]:
    host, _, port = bao.hostport.partition(":")
    proxy = Proxy((host, int(port)))
    yield proxy
    proxy.close()


def _env(tmp_path: Path, bao: BaoServer, proxy: Proxy, count: int = COUNT) -> tuple[dict[str, str], str]:
    """The apply's environment (its store is reached through the proxy) and the store's MOUNT/PREFIX."""
    made = many_connections(tmp_path, count) if count else dict(os.environ)
    env = {k: v for k, v in made.items() if not k.startswith(("VAULT_", "BAO_", "CONNSYNC_"))}
    prefix = f"f{uuid.uuid4().hex[:8]}"
    env.update(CONNSYNC_STORE_KEY=base64.b64encode(os.urandom(32)).decode(), VAULT_TOKEN=bao.token)
    env["CONNSYNC_STORE"] = f"vault+http://127.0.0.1:{proxy.port}/secret/{prefix}?lock_lease_seconds=60"
    return env, f"secret/{prefix}"


def _reruns_at_once(tmp_path: Path, env: dict[str, str], base: str, bao: BaoServer) -> None:
    """The next apply takes the dead holder's lock over without waiting out its 60 s lease, and
    finishes: every connection once, nothing written twice."""
    started = time.monotonic()
    rerun = connsync("apply", "--auto-approve", "--skip-verify", cwd=tmp_path, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert time.monotonic() - started < 45
    assert re.search(r"took over the workspace lock of .*: its process \(pid \d+\) on this machine has ended",
                     rerun.stderr), rerun.stderr
    final = held(bao.url(base), {**env, **bao.env()})
    assert len(final.names) == COUNT and not final.doubled
    assert connsync("plan", "--detailed-exitcode", cwd=tmp_path, env=env).returncode == 0


def test_vault_stops_answering_mid_apply(bao: BaoServer, proxy: Proxy, tmp_path: Path) -> None:
    env, base = _env(tmp_path, bao, proxy)
    apply = start_apply(tmp_path, env)
    when(lambda: bao.stored(base) >= COUNT // 3, proxy.stop, every=0.05)
    out, err = apply.communicate(timeout=180)
    assert apply.returncode == 1, err
    report = parse_json(out)
    jsonschema.validate(report, apply_schema())
    assert "cannot reach Vault" in report["ended_early"]["cause"], report["ended_early"]
    assert report["ended_early"]["hint"].startswith("check that the server is up")
    assert err.count("connsync: error:") == 1 and "Traceback" not in err, err
    matches, detail = judge(report, Held(frozenset(), {}), held(bao.url(base), {**env, **bao.env()}), COUNT)
    assert matches, detail
    proxy.resume()
    _reruns_at_once(tmp_path, env, base, bao)


def test_vault_sealed_mid_apply(bao: BaoServer, proxy: Proxy, tmp_path: Path) -> None:
    env, base = _env(tmp_path, bao, proxy)
    apply = start_apply(tmp_path, env)
    try:
        when(lambda: bao.stored(base) >= COUNT // 3, lambda: bao.bao("operator", "seal"), every=0.05)
        out, err = apply.communicate(timeout=180)
    finally:
        bao.bao("operator", "unseal", bao.unseal_key())
    assert apply.returncode == 1, err
    report = parse_json(out)
    jsonschema.validate(report, apply_schema())
    assert "is sealed or not ready" in report["ended_early"]["cause"], report["ended_early"]
    assert err.count("connsync: error:") == 1 and "Traceback" not in err, err
    assert ("hint: each record is whole (written or not at all); unseal it, or point at an active node; "
            "then run apply again") in err
    matches, detail = judge(report, Held(frozenset(), {}), held(bao.url(base), {**env, **bao.env()}), COUNT)
    assert matches, detail
    _reruns_at_once(tmp_path, env, base, bao)


def test_a_lease_outlives_an_outage_shorter_than_the_lease(bao: BaoServer, proxy: Proxy, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    env, _ = _env(tmp_path, bao, proxy, count=0)
    for name in ("CONNSYNC_STORE_KEY", "VAULT_TOKEN"):
        monkeypatch.setenv(name, env[name])
    eight_seconds = env["CONNSYNC_STORE"].replace("lock_lease_seconds=60", "lock_lease_seconds=8")
    lease_outlives_a_short_outage(eight_seconds, proxy)


def test_a_write_is_in_doubt_only_when_it_may_have_reached_the_server() -> None:
    """A refused connection sent nothing; a connection dropped after the request went out may have
    delivered it (a read is never in doubt: it changes nothing)."""
    import socket
    import threading

    import requests

    from connsync.errors import StoreUnavailable
    from connsync.store.vault_client import http_errors

    def post(port: int, capability: str) -> StoreUnavailable:
        with pytest.raises(StoreUnavailable) as caught, \
                http_errors("vault+http://127.0.0.1/secret", "write 'AWS Prod'", "secret/data/x", capability):
            requests.post(f"http://127.0.0.1:{port}/v1/secret/data/x", json={"data": {}}, timeout=10)
        return caught.value

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = int(probe.getsockname()[1])
    refused = post(closed, "update")
    assert not refused.in_doubt and refused.message.endswith("nothing more was written")

    listener = socket.create_server(("127.0.0.1", 0))

    def hang_up() -> None:  # takes the request, then drops the connection without an answer
        for _ in range(2):
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    port = int(listener.getsockname()[1])
    dropped = post(port, "update")
    assert dropped.in_doubt and "it may have received this write" in dropped.message
    assert not post(port, "read").in_doubt
    listener.close()
