"""Faults injected into real stores mid-apply: the report says what the store holds, a re-run converges.

PostgreSQL: the sessions are ended from a second connection (as a crash or a failover would), or
the session's server process is frozen (SIGSTOP). Through the CLI, in a process of its own.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.faultkit import (
    Held,
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
from tests.pgserver import PgServer

COUNT = 200


def _pg_env(tmp_path: Path, pg_server: PgServer, **query: str) -> tuple[dict[str, str], str]:
    env = many_connections(tmp_path, COUNT)
    url = pg_server.url(schema=f"faults_{uuid.uuid4().hex[:8]}", **query)
    env.update(CONNSYNC_STORE=url, CONNSYNC_STORE_KEY=base64.b64encode(os.urandom(32)).decode())
    return env, url


def _when_store_holds(pg_server: PgServer, url: str, at_least: int, then: Any) -> None:
    """Wait (from a second connection) until the store holds ``at_least`` records, then call ``then``."""
    import psycopg

    schema = url.rpartition("schema=")[2].partition("&")[0]
    with psycopg.connect(pg_server.url(), autocommit=True) as admin:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            row = admin.execute("SELECT to_regclass(%s)", (f"{schema}.connections",)).fetchone()
            if row and row[0]:
                count = admin.execute(f"SELECT count(*) FROM {schema}.connections").fetchone()  # noqa: S608
                if count and count[0] >= at_least:
                    then(admin)
                    return
            time.sleep(0.01)
    raise AssertionError("the apply never got that far")


def _converges(tmp_path: Path, env: dict[str, str], url: str) -> Held:
    rerun = connsync("apply", "--auto-approve", "--skip-verify", cwd=tmp_path, env=env)
    assert rerun.returncode == 0, rerun.stderr
    after = held(url, env)
    assert len(after.names) == COUNT and not after.doubled  # nothing lost, nothing written twice
    assert connsync("plan", "--detailed-exitcode", cwd=tmp_path, env=env).returncode == 0
    return after


def test_postgres_sessions_terminated_mid_apply(pg_server: PgServer, tmp_path: Path) -> None:
    env, url = _pg_env(tmp_path, pg_server)
    apply = start_apply(tmp_path, env)
    _when_store_holds(pg_server, url, COUNT // 3, lambda admin: admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'connsync'"))
    out, err = apply.communicate(timeout=120)
    assert apply.returncode == 1, err
    report = parse_json(out)
    jsonschema.validate(report, apply_schema())
    ended = report["ended_early"]
    assert "went away" in ended["cause"] and "writes nothing more" in ended["cause"]
    assert ended["counted_from"] == "store" and ended["hint"]
    assert "release" not in err.split("note:")[0]  # the lock is at most a note after the report
    matches, detail = judge(report, Held(frozenset(), {}), held(url, env), COUNT)
    assert matches, detail
    assert 0 < len(report["applied"]) < COUNT
    assert f"Written: {len(report['applied'])} of {COUNT} writes (as the store holds them)" in err
    _converges(tmp_path, env, url)


def test_a_frozen_postgres_is_given_up_on_within_the_bound(pg_server: PgServer, tmp_path: Path) -> None:
    env, url = _pg_env(tmp_path, pg_server, timeout="3")
    apply = start_apply(tmp_path, env, fmt="text")
    frozen: list[int] = []

    def freeze(admin: Any) -> None:
        frozen.extend(pid for (pid,) in admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'connsync'").fetchall())
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)

    _when_store_holds(pg_server, url, COUNT // 3, freeze)
    started = time.monotonic()
    try:
        out, err = apply.communicate(timeout=60)
        waited = time.monotonic() - started
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    assert apply.returncode == 1, err
    assert waited < 3 + 15  # the bound, a second of watching, and a fresh session to read back
    assert "did not answer for 3s, and connsync gave up on it" in err
    assert "Apply ended early:" in out and "(as the store holds them)" in out
    time.sleep(1)  # the thawed server process finds its client gone and ends
    _converges(tmp_path, env, url)


# --- SQLite on a small disk -------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A tmpfs of the test's own, mounted as root; ``resize(kib)`` changes its size."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")

    def resize(kib: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={kib}k", str(mount)], check=True)

    try:
        yield mount, resize
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_sqlite_full_disk_while_creating_the_store(small_disk: Any, tmp_path: Path) -> None:
    mount, resize = small_disk
    env = many_connections(tmp_path, 3)
    env["CONNSYNC_STORE"] = f"sqlite:{mount / 'store.db'}"
    result = connsync("apply", "--auto-approve", "--skip-verify", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"connsync: error: the disk is full: the store {mount / 'store.db'} could not be created; nothing "
        "was written",
        f"hint: free space on the disk that holds {mount}, then run apply again"]
    assert sorted(p.name for p in mount.iterdir()) == []  # no .new, -wal, -shm, key or lock file
    resize(8192)
    assert connsync("apply", "--auto-approve", "--skip-verify", cwd=tmp_path, env=env).returncode == 0
    assert sorted(p.name for p in mount.iterdir()) == ["store.db", "store.db.key"]


def test_sqlite_full_disk_mid_apply(small_disk: Any, tmp_path: Path) -> None:
    mount, resize = small_disk
    env = many_connections(tmp_path, COUNT)
    url = f"sqlite:{mount / 'store.db'}"
    env["CONNSYNC_STORE"] = url
    resize(8192)
    (tmp_path / "connections-later").mkdir()
    for path in sorted((tmp_path / "connections").glob("aws-*.yaml"))[10:]:
        path.rename(tmp_path / "connections-later" / path.name)
    assert connsync("apply", "--auto-approve", "--skip-verify", cwd=tmp_path, env=env).returncode == 0
    before = held(url, env)
    for path in (tmp_path / "connections-later").iterdir():
        path.rename(tmp_path / "connections" / path.name)
    used = sum(p.stat().st_blocks * 512 for p in mount.iterdir()) // 1024
    resize(used + 160)  # room for some of the writes, not all
    result = connsync("apply", "--auto-approve", "--skip-verify", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    assert "Apply ended early:" in result.stdout and "(as the store holds them)" in result.stdout
    assert f"connsync: error: the disk holding {mount / 'store.db'} is full" in result.stderr
    assert ("hint: each record is whole (written or not at all); free space on the disk that holds "
            f"{mount}; then run apply again") in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    after = held(url, env)
    created = [line for line in result.stdout.splitlines() if line.endswith(": created (version 1)")]
    assert len(created) == len(after.names - before.names) > 0
    assert f"Written: {len(created)} of {COUNT - 10} writes (as the store holds them)" in result.stderr
    assert not list(mount.glob("store.db.lock-*"))  # the lock's liveness file went with the run
    resize(65536)
    rerun = connsync("apply", "--auto-approve", "--skip-verify", cwd=tmp_path, env=env)
    assert rerun.returncode == 0, rerun.stderr
    final = held(url, env)
    assert len(final.names) == COUNT and not final.doubled
    assert not list(mount.glob("store.db.lock-*")) and not list(mount.glob(".store.db.*"))


# --- Secrets Manager behind a proxy that stops answering ---------------------------------------


@pytest.fixture
def proxied(aws_endpoint: Any) -> Any:
    from urllib.parse import urlsplit

    from tests.faultkit import Proxy

    where = urlsplit(aws_endpoint.url)
    proxy = Proxy((where.hostname or "127.0.0.1", where.port or 80))
    yield proxy
    proxy.close()


def _sm_env(tmp_path: Path, aws_endpoint: Any, proxy: Any, count: int,
            lease: int) -> tuple[dict[str, str], str]:
    env = many_connections(tmp_path, count) if count else dict(os.environ)
    prefix = f"f{uuid.uuid4().hex[:8]}/connections"
    env.update(CONNSYNC_STORE=f"awssm://us-east-1/{prefix}?endpoint_url={proxy.url}&lock_lease_seconds={lease}",
               CONNSYNC_STORE_KEY=base64.b64encode(os.urandom(32)).decode(), AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1", AWS_MAX_ATTEMPTS="2")
    return env, f"awssm://us-east-1/{prefix}?endpoint_url={aws_endpoint.url}"


def _sm_count(direct: str) -> int:
    import boto3

    prefix = direct.split("/", 3)[3].partition("?")[0]
    client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=direct.partition(
        "endpoint_url=")[2])
    pages = client.get_paginator("list_secrets").paginate(Filters=[{"Key": "name", "Values": [prefix + "/"]}])
    return sum(1 for page in pages for entry in page["SecretList"]  # not the lock nor the store's own
               if not entry["Name"].rpartition("/")[2].startswith("."))


SM_COUNT = 60


def test_secrets_manager_endpoint_stops_answering_mid_apply(aws_endpoint: Any, proxied: Any,
                                                           tmp_path: Path) -> None:
    env, direct = _sm_env(tmp_path, aws_endpoint, proxied, SM_COUNT, lease=60)
    apply = start_apply(tmp_path, env)
    when(lambda: _sm_count(direct) >= SM_COUNT // 3, proxied.stop)
    out, err = apply.communicate(timeout=180)
    assert apply.returncode == 1, err
    report = parse_json(out)
    jsonschema.validate(report, apply_schema())
    assert "cannot reach Secrets Manager" in report["ended_early"]["cause"]
    assert err.count("connsync: error:") == 1 and "Traceback" not in err
    matches, detail = judge(report, Held(frozenset(), {}), held(direct, env), SM_COUNT)
    assert matches, detail
    proxied.resume()
    started = time.monotonic()
    rerun = connsync("apply", "--auto-approve", "--skip-verify", cwd=tmp_path, env=env)
    assert rerun.returncode == 0, rerun.stderr
    # Its predecessor's lock secret is still there, with 60 s of lease left: not waited out.
    assert time.monotonic() - started < 45
    assert re.search(r"took over the workspace lock of .*: its process \(pid \d+\) on this machine has ended",
                     rerun.stderr), rerun.stderr
    final = held(direct, env)
    assert len(final.names) == SM_COUNT and not final.doubled


def test_secrets_manager_lock_lost_mid_apply_is_reported_once(aws_endpoint: Any, proxied: Any,
                                                              tmp_path: Path) -> None:
    import boto3

    env, direct = _sm_env(tmp_path, aws_endpoint, proxied, SM_COUNT, lease=60)
    prefix = direct.split("/", 3)[3].partition("?")[0]
    sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=aws_endpoint.url)
    apply = start_apply(tmp_path, env, fmt="text")
    # As 'connsync unlock' does: the lock secret goes; the holder must stop writing at once.
    when(lambda: _sm_count(direct) >= SM_COUNT // 3,
          lambda: sm.delete_secret(SecretId=f"{prefix}/default/.lock", ForceDeleteWithoutRecovery=True))
    out, err = apply.communicate(timeout=180)
    assert apply.returncode == 1, err
    assert "Apply ended early:" in out
    assert err.count("was broken or taken over while this process held it") == 1, err
    stored = _sm_count(direct)
    assert f"Written: {stored} of {SM_COUNT} writes (as the store holds them)" in err
    assert f"the other {SM_COUNT - stored} were not written" in err


def test_a_lease_outlives_an_outage_shorter_than_the_lease(aws_endpoint: Any, proxied: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    env, _ = _sm_env(tmp_path, aws_endpoint, proxied, 0, lease=8)
    monkeypatch.setenv("CONNSYNC_STORE_KEY", env["CONNSYNC_STORE_KEY"])
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    lease_outlives_a_short_outage(env["CONNSYNC_STORE"], proxied)


def test_postgres_take_over_is_true_and_the_old_holder_writes_nothing(pg_server: PgServer,
                                                                      tmp_path: Path) -> None:
    import psycopg

    from tests.faultkit import Terminal

    env = many_connections(tmp_path, 5)
    url = pg_server.url(schema=f"faults_{uuid.uuid4().hex[:8]}")
    env.update(CONNSYNC_STORE=url, CONNSYNC_STORE_KEY=base64.b64encode(os.urandom(32)).decode())
    first = Terminal(("apply", "--skip-verify"), tmp_path, env)
    first.read_until(b"Apply these changes?")  # it holds the workspace lock while it asks
    with psycopg.connect(pg_server.url(), autocommit=True) as admin:  # a restart, as far as it knows
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = 'connsync'")
    second = connsync("apply", "--auto-approve", "--skip-verify", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert re.search(r"took over the workspace lock of .*: its database session ended \(a crash, a lost "
                     r"connection or a server restart\); if that process still runs, it writes nothing more",
                     second.stderr), second.stderr
    time.sleep(1.1)  # the first one's writes would carry a later second than the second one's
    first.write(b"y\n")
    assert first.finish() == 1
    said = first.transcript.decode().replace("\r\n", "\n")
    assert "ended with that session, so this process writes nothing more" in said
    assert ("Apply ended early: 0 created, 0 updated, 0 deleted (as the store holds them); 5 not "
            "written.") in said
    assert "Written: 0 of 5 writes (as the store holds them); the other 5 were not written." in said
    assert "release" not in said
    final = held(url, env)
    assert len(final.names) == 5 and not final.doubled
