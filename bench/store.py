"""The shared store next to the embedded one: PostgreSQL and SQLite, same files, same commands.

    python bench/store.py [--count 1000] [--runs 3] [--writers 8] [--writer-files 200]

Starts a throwaway PostgreSQL server on 127.0.0.1 (tests/pgserver.py), makes N
encrypted connection files (bench/scale.py's make_repo), and times, each in a
fresh process:

  apply (creates)   connsync apply --skip-verify into an empty store
  plan (noop)       connsync plan after that apply (goal on PostgreSQL: <= 1 s at N=1,000)
  apply (noop)      connsync apply again (nothing to write)

then runs W concurrent applies of the same F files against one empty store of
each kind and checks the outcome: every apply exits 0, every record has
version 1, and the audit holds exactly one create per record (one writer at a
time; the others wait for the lock, plan afresh and find nothing to do).
Goals on PostgreSQL: apply of 1,000 creates <= 3 s.
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
from tests.pgserver import PgServer, running_server


def store_urls(root: Path, server: PgServer) -> dict[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    return {"sqlite": f"sqlite:{root / ('store-' + uuid.uuid4().hex[:8] + '.db')}",
            "postgresql": server.url(schema=schema)}


def measure(root: Path, env: dict[str, str], server: PgServer, runs: int) -> dict[str, dict[str, float]]:
    times: dict[str, dict[str, list[float]]] = {"sqlite": {}, "postgresql": {}}
    for _ in range(runs):
        for kind, url in store_urls(root, server).items():
            store_env = {**env, "CONNSYNC_STORE": url}
            for name, argv in (("apply (creates)", connsync_argv("apply", "--auto-approve", "--skip-verify")),
                               ("plan (noop)", connsync_argv("plan")),
                               ("apply (noop)", connsync_argv("apply", "--auto-approve", "--skip-verify"))):
                seconds, _, _ = run(argv, cwd=root, env=store_env)
                times[kind].setdefault(name, []).append(seconds)
    return {kind: {name: statistics.median(v) for name, v in rows.items()} for kind, rows in times.items()}


def concurrent(root: Path, env: dict[str, str], server: PgServer, writers: int) -> dict[str, str]:
    from connsync.store import opened

    outcome = {}
    for kind, url in store_urls(root, server).items():
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
    with running_server() as server, tempfile.TemporaryDirectory(prefix="connsync-store-") as temp:
        root = Path(temp) / "big"
        root.mkdir()
        env = {**make_repo(root, options.count), "CONNSYNC_STORE_KEY": key}
        results = measure(root, env, server, options.runs)
        small = Path(temp) / "small"
        small.mkdir()
        small_env = {**make_repo(small, options.writer_files), "CONNSYNC_STORE_KEY": key}
        together = concurrent(small, small_env, server, options.writers)

    print(f"\nstores, N={options.count:,} connections (seconds, median of {options.runs} runs)")
    print(f"{'':<20}{'SQLite':>12}{'PostgreSQL':>14}")
    for row in ("apply (creates)", "plan (noop)", "apply (noop)"):
        print(f"{row:<20}{results['sqlite'][row]:>12.2f}{results['postgresql'][row]:>14.2f}")
    print(f"\n{options.writers} concurrent applies of the same {options.writer_files} files:")
    for kind, line in together.items():
        print(f"  {kind:<11} {line}")
    print("goals (PostgreSQL, N=1,000): plan of unchanged <= 1 s; apply of creates <= 3 s; "
          "concurrent applies: one writer at a time, every record version 1")
    return 0 if all(line.startswith("ok") for line in together.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
