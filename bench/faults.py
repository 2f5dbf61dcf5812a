"""Faults injected into real stores at random moments of an apply: did the report say what the store holds,
and did a re-run converge?

    python bench/faults.py [--moments 5] [--count 1500] [--faults pg-terminate,pg-freeze,awssm-stop,...]

For each fault, N times: a fresh store, ``connsync apply --format json`` of COUNT files in a process of
its own, the fault injected once the store holds a random number of the records (uniform over 1 to
COUNT-1), then the judgement of tests/faultkit.py (the report's created and not-written lists against
the store's records; a write the report calls in doubt may be either way) and a re-run that must exit
0 with every record written once (the audit holds one create per record).

  pg-terminate   pg_terminate_backend of connsync's sessions from a second connection (a crash, a failover)
  pg-freeze      SIGSTOP of connsync's server process, ?timeout=3 (a hung server); thawed after the run
  awssm-stop     the loopback proxy in front of moto stops answering (new and open connections cut)
  vault-stop     the loopback proxy in front of a real OpenBao (bao server -dev) stops answering
  vault-seal     that OpenBao is sealed (bao operator seal); unsealed after the run
  sqlite-full    the tmpfs holding the store is resized to a random few hundred KiB more than it uses (root)
  sqlite-sigint  SIGINT (^C) to the apply

Starts its own PostgreSQL (tests/pgserver.py), moto server and OpenBao; prints one row per fault.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.baoserver import BaoServer
from tests.baoserver import running_server as running_bao
from tests.faultkit import Held, Proxy, connsync, held, judge, many_connections, parse_json, start_apply
from tests.pgserver import PgServer, running_server

logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request

FAULTS = ("pg-terminate", "pg-freeze", "awssm-stop", "vault-stop", "vault-seal", "sqlite-full",
          "sqlite-sigint")


@dataclass
class Tally:
    tried: int = 0
    matched: int = 0
    converged: int = 0
    ended_early: int = 0
    notes: str = ""


@dataclass
class Trial:
    """One fresh store and how to inject the fault into it."""

    env: dict[str, str]
    url: str  # where the judge reads the store (past any proxy)
    count: Callable[[], int]  # records the store holds now
    inject: Callable[[Any], None]  # given the running apply
    after: Callable[[], None] = lambda: None  # undo the fault before the re-run


def _pg_count(admin: Any, schema: str) -> int:
    row = admin.execute("SELECT to_regclass(%s)", (f"{schema}.connections",)).fetchone()
    if not (row and row[0]):
        return 0
    return int(admin.execute(f"SELECT count(*) FROM {schema}.connections").fetchone()[0])  # noqa: S608


def pg_trial(base: dict[str, str], pg: PgServer, admin: Any, freeze: bool) -> Trial:
    schema = f"faults_{uuid.uuid4().hex[:8]}"
    url = pg.url(schema=schema, **({"timeout": "3"} if freeze else {}))
    env = {**base, "CONNSYNC_STORE": url, "CONNSYNC_STORE_KEY": base64.b64encode(os.urandom(32)).decode()}
    frozen: list[int] = []

    def inject(_: Any) -> None:
        if not freeze:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'connsync'")
            return
        frozen.extend(pid for (pid,) in admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'connsync'").fetchall())
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw() -> None:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        time.sleep(1)  # the thawed server process finds its client gone and ends

    return Trial(env, url, lambda: _pg_count(admin, schema), inject, thaw)


def awssm_trial(base: dict[str, str], moto: str, proxy: Proxy) -> Trial:
    import boto3

    prefix = f"f{uuid.uuid4().hex[:8]}/connections"
    proxy.resume()
    env = {**base, "CONNSYNC_STORE": f"awssm://us-east-1/{prefix}?endpoint_url={proxy.url}",
           "CONNSYNC_STORE_KEY": base64.b64encode(os.urandom(32)).decode(), "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "2"}
    client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto,
                          aws_access_key_id="testing", aws_secret_access_key="testing")

    seen = [0]

    def count() -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        pages = client.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": [f"{prefix}/default/"]}])
        # moto's server races itself under load (a 500): keep the last count, ask again
        with contextlib.suppress(BotoCoreError, ClientError):
            seen[0] = sum(1 for page in pages for e in page["SecretList"] if not e["Name"].endswith("/.lock"))
        return seen[0]

    return Trial(env, f"awssm://us-east-1/{prefix}?endpoint_url={moto}", count, lambda _: proxy.stop(),
                 proxy.resume)


def vault_trial(base: dict[str, str], bao: BaoServer, proxy: Proxy, seal: bool) -> Trial:
    prefix = f"secret/f{uuid.uuid4().hex[:8]}"
    proxy.resume()
    env = {**{k: v for k, v in base.items() if not k.startswith(("VAULT_", "BAO_"))},
           "CONNSYNC_STORE": f"vault+http://127.0.0.1:{proxy.port}/{prefix}",
           "CONNSYNC_STORE_KEY": base64.b64encode(os.urandom(32)).decode(), "VAULT_TOKEN": bao.token}

    def inject(_: Any) -> None:
        if seal:
            bao.bao("operator", "seal")
        else:
            proxy.stop()

    def after() -> None:
        if seal:
            bao.bao("operator", "unseal", bao.unseal_key())
        proxy.resume()

    return Trial(env, bao.url(prefix), lambda: bao.stored(prefix), inject, after)


def _sqlite_count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM connections").fetchone()[0])
    except sqlite3.Error:
        return 0


def sqlite_sigint_trial(base: dict[str, str], root: Path) -> Trial:
    db = root / f"store-{uuid.uuid4().hex[:8]}.db"
    return Trial({**base, "CONNSYNC_STORE": f"sqlite:{db}"}, f"sqlite:{db}", lambda: _sqlite_count(db),
                 lambda apply: apply.process.send_signal(signal.SIGINT))


@contextmanager
def tmpfs(root: Path) -> Iterator[Path]:
    mount = root / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=65536k,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def sqlite_full_trial(base: dict[str, str], mount: Path, room_kib: int) -> Trial:
    """The disk is made full before the apply starts: the moment is where the room runs out."""
    db = mount / "store.db"
    env = {**base, "CONNSYNC_STORE": f"sqlite:{db}"}
    for path in mount.iterdir():
        path.unlink()
    subprocess.run(["mount", "-o", "remount,size=65536k", str(mount)], check=True)
    # The store made first (one connection's worth of room would not even hold its schema).
    subprocess.run([sys.executable, "-c", "from connsync.store import open_store; "
                    f"open_store({'sqlite:' + str(db)!r}, 'default').close()"], env=env, check=True)
    used = sum(p.stat().st_blocks * 512 for p in mount.iterdir()) // 1024
    subprocess.run(["mount", "-o", f"remount,size={used + room_kib}k", str(mount)], check=True)

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=65536k", str(mount)], check=True)

    return Trial(env, f"sqlite:{db}", lambda: 0, lambda _: None, grow)


def run_trial(trial: Trial, root: Path, total: int, at: int, tally: Tally) -> None:
    apply = start_apply(root, trial.env)
    if at:
        deadline = time.monotonic() + 600
        while apply.process.poll() is None and trial.count() < at and time.monotonic() < deadline:
            time.sleep(0.01)
        if apply.process.poll() is None:
            trial.inject(apply)
    out, err = apply.communicate(timeout=900)
    trial.after()
    report = parse_json(out)
    tally.tried += 1
    if report.get("ended_early"):
        tally.ended_early += 1
    matches, detail = judge(report, Held(frozenset(), {}), held(trial.url, trial.env), total) \
        if report else (False, f"no JSON report (exit {apply.returncode}): {err.strip()[-300:]}")
    tally.matched += matches
    if not matches:
        print(f"    report did not match the store: {detail}", file=sys.stderr)
    rerun = connsync("apply", "--auto-approve", "--skip-verify", cwd=root, env=trial.env, timeout=900)
    final = held(trial.url, trial.env)
    converged = rerun.returncode == 0 and len(final.names) == total and not final.doubled
    tally.converged += converged
    if not converged:
        print(f"    re-run did not converge: exit {rerun.returncode}, {len(final.names)} records, "
              f"doubled {final.doubled[:3]}: {rerun.stderr.strip()[-300:]}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--moments", type=int, default=5, help="random moments per fault")
    parser.add_argument("--count", type=int, default=1500, help="connection files per apply")
    parser.add_argument("--faults", default=",".join(FAULTS), help="which faults, comma-separated")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    chosen = [f for f in args.faults.split(",") if f]
    unknown = set(chosen) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    rng = random.Random(args.seed)
    tallies: dict[str, Tally] = {}
    with tempfile.TemporaryDirectory(prefix="connsync-faults-") as temp, ExitStack() as stack:
        root = Path(temp)
        base = many_connections(root, args.count)
        pg = admin = moto = proxy = mount = bao = bao_proxy = None
        for fault in chosen:
            tally = tallies.setdefault(fault, Tally())
            if fault.startswith("pg") and pg is None:
                import psycopg

                pg = stack.enter_context(running_server())
                admin = stack.enter_context(psycopg.connect(pg.url(), autocommit=True))
            if fault.startswith("awssm") and moto is None:
                from moto.server import ThreadedMotoServer

                server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
                server.start()
                stack.callback(server.stop)
                host, port = server.get_host_and_port()
                moto = f"http://{host}:{port}"
                proxy = Proxy((host, port))
                stack.callback(proxy.close)
            if fault.startswith("vault") and bao is None:
                bao = stack.enter_context(running_bao(tls=False))
                bao_host, _, bao_port = bao.hostport.partition(":")
                bao_proxy = Proxy((bao_host, int(bao_port)))
                stack.callback(bao_proxy.close)
            if fault == "sqlite-full":
                if os.geteuid() != 0:
                    tally.notes = "skipped: mounting a tmpfs needs root"
                    continue
                mount = mount or stack.enter_context(tmpfs(root))
            for _ in range(args.moments):
                at = rng.randint(1, args.count - 1)
                if fault in ("pg-terminate", "pg-freeze"):
                    trial = pg_trial(base, pg, admin, freeze=fault == "pg-freeze")  # type: ignore[arg-type]
                elif fault == "awssm-stop":
                    trial = awssm_trial(base, moto, proxy)  # type: ignore[arg-type]
                elif fault.startswith("vault"):
                    trial = vault_trial(base, bao, bao_proxy, seal=fault == "vault-seal")  # type: ignore[arg-type]
                elif fault == "sqlite-sigint":
                    trial = sqlite_sigint_trial(base, root)
                else:
                    # ~1.1 KiB a record in the WAL: room for some of them, never all.
                    trial = sqlite_full_trial(base, mount, rng.randint(40, max(41, args.count)))  # type: ignore[arg-type]
                    at = 0
                run_trial(trial, root, args.count, at, tally)
            print(f"{fault:14} {tally.tried} moments, {tally.ended_early} ended early, "
                  f"{tally.matched} reports matched the store, {tally.converged} re-runs converged"
                  f"{'; ' + tally.notes if tally.notes else ''}", flush=True)
    print(f"\n{'fault':14} {'moments':>8} {'ended early':>12} {'reports = store':>16} "
          f"{'re-runs converged':>18}")
    for fault, tally in tallies.items():
        print(f"{fault:14} {tally.tried:>8} {tally.ended_early:>12} {tally.matched:>16} {tally.converged:>18}"
              f"{'  ' + tally.notes if tally.notes else ''}")
    ok = all(t.matched == t.tried and t.converged == t.tried for t in tallies.values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
