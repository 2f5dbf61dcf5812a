"""connsync report over a large fleet: 10,000 connections with a full verification history.

    python bench/report.py [--count 10000] [--history 20] [--runs 3]

Makes N connection files (bench/common.py's, as bench/scale.py does) and an embedded
store holding a record for each (most in sync, some drifted, some orphaned, some files
changed), its audit, and ``--history`` verification results per connection (a few
failed, a few exposed, keys of every age). Then, each in a fresh process:

  read files        validate's offline checks of the N files (what report shares with validate)
  read store        records, audit and history -> the rows (report/model.py)
  render            the rows as HTML, or as Markdown within the job summary's 1 MiB

Goals: render <= 2 s for each format (CPU seconds, the steadier figure on a shared
machine; wall seconds beside), the process's peak memory <= 200 MB, and the Markdown
within its limit (also at --max-size 65536, the PR comment's). Printed beside:
the whole command (`connsync report`, start-up included) and `connsync validate` on the
same files, the floor that any command reading N files pays.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import connection_text, connsync_argv, timed

RENDER_GOAL_S = 2.0
MEMORY_GOAL_MB = 200.0
EXPOSED = ("exposed: AWS has quarantined IAM user u (policy AWSCompromisedKeyQuarantineV3); "
           "run `connsync rotate --exposed AKIAIOSFODNN7EXAMPLE`")
REJECTED = "key rejected by STS: the secret access key does not match the access key id"


def make_fleet(root: Path, count: int, history: int) -> Path:
    """N files and a store whose records, audit and history match them as a real fleet's would."""
    import base64
    import hashlib
    import sqlite3

    from connsync.store import Verification, Write, opened

    repo = root / "repo"
    (repo / "connections").mkdir(parents=True)
    (repo / "connsync.yaml").write_text("store: sqlite:.connsync/store.db\nconnections: connections\n")
    os.environ["CONNSYNC_STORE_KEY"] = base64.b64encode(os.urandom(32)).decode()
    texts = {}
    for index in range(count):
        text = connection_text(index)
        (repo / "connections" / f"c{index:05d}.yaml").write_text(text)
        texts[index] = text
    url = f"sqlite:{repo / '.connsync' / 'store.db'}"
    statuses = ["ok"] * 16 + ["warning"] * 3 + ["failed"]
    with opened(url, "default") as store:
        results = []
        for index in range(count + count // 100):  # 1 % orphans: records whose file is gone
            name = f"AWS Account {index:05d}"
            digest = hashlib.sha256(texts[index].encode()).hexdigest() if index < count else "gone"
            if index % 50 == 7:
                digest = "changed"  # 2 %: the file changed since the last apply
            account = f"{100000000000 + index}"
            spec = {"account_id": account, "default_region": "us-east-1",
                    "access_key_id": "AKIAIOSFODNN7EXAMPLE"}
            store.put(Write(name, "aws", spec, {}, True, "bench", "create",
                            source=f"connections/c{index:05d}.yaml", source_digest=digest,
                            labels={"team": f"t{index % 7}"}), expected_version=None)
            for run in range(history):
                status = statuses[(index + run) % len(statuses)]
                messages: tuple[str, ...] = ()
                if status == "warning":
                    messages = ("the key is 120 days old, past max_key_age_days (90): rotate it",)
                elif status == "failed":
                    messages = (EXPOSED,) if index % 500 == 0 else (REJECTED,)
                day = 1 + run
                results.append(Verification(name, f"2026-11-{day:02d}T06:17:00Z", status, account, messages,
                                            f"2026-{1 + index % 12:02d}-01T00:00:00Z"))
        store.record_verifications(results, keep=history)
    db = sqlite3.connect(repo / ".connsync" / "store.db")  # 1 %: changed in the store outside connsync
    db.execute("UPDATE connections SET version = version + 1 WHERE rowid % 100 = 3")
    db.commit()
    db.close()
    return repo


def measure(repo: Path, fmt: str, max_size: int) -> dict[str, float]:
    """One phase after another in this (fresh) process, as `connsync report --out` runs them; the peak
    is the whole process's. Wall and CPU seconds both: on a shared machine CPU is the steadier."""
    from connsync.config import load_config
    from connsync.fsutil import write_atomic_chunks
    from connsync.report import html, markdown
    from connsync.report.model import gather
    from connsync.store import opened
    from connsync.validate import rules

    config = load_config(cwd=repo)
    os.chdir(repo)
    marks = [(time.perf_counter(), time.process_time())]
    validation = rules.validate_files((), config.connections_dir, config.root)
    marks.append((time.perf_counter(), time.process_time()))
    with opened(config.store_url, config.workspace, create=False) as store:
        fleet = gather(config.workspace, validation.declarations, validation.findings, store,
                       max_key_age_days=config.verify.max_key_age_days)
    del validation
    marks.append((time.perf_counter(), time.process_time()))
    pieces = html.chunks(fleet) if fmt == "html" else iter((markdown.page(fleet, max_size),))
    out = repo / f"report.{fmt}"
    write_atomic_chunks(out, (piece.encode() for piece in pieces), overwrite=True)
    marks.append((time.perf_counter(), time.process_time()))
    wall = [b[0] - a[0] for a, b in itertools.pairwise(marks)]
    cpu = [b[1] - a[1] for a, b in itertools.pairwise(marks)]
    return {"files": wall[0], "store": wall[1], "render": wall[2], "render_cpu": cpu[2], "store_cpu": cpu[1],
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "bytes": out.stat().st_size, "rows": len(fleet.rows), "problems": len(fleet.problems)}


def child(repo: Path, fmt: str, max_size: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--measure", fmt, "--repo", str(repo),
                          "--max-size", str(max_size)], capture_output=True, text=True, check=False,
                         env={**os.environ})
    if out.returncode:
        sys.exit(f"measuring {fmt} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--measure", choices=["html", "markdown"])
    parser.add_argument("--repo", type=Path)
    parser.add_argument("--max-size", type=int, default=1024 * 1024)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.repo, args.measure, args.max_size)))
        return 0

    with tempfile.TemporaryDirectory(prefix="connsync-bench-report-") as tmp:
        started = time.perf_counter()
        repo = make_fleet(Path(tmp), args.count, args.history)
        print(f"{args.count:,} connections, {args.history} results each, made in "
              f"{time.perf_counter() - started:.0f} s; {args.runs} runs each, medians (max)")
        failed = False
        cases = [("html", 1024 * 1024), ("markdown", 1024 * 1024), ("markdown", 65_536)]
        for fmt, limit in cases:
            runs = [child(repo, fmt, limit) for _ in range(args.runs)]
            render = [r["render"] for r in runs]
            render_cpu = [r["render_cpu"] for r in runs]
            peak = max(r["peak_mb"] for r in runs)
            size = runs[0]["bytes"]
            within = fmt == "html" or size <= limit
            ok = max(render_cpu) <= RENDER_GOAL_S and peak <= MEMORY_GOAL_MB and within
            failed |= not ok
            label = fmt if fmt == "html" else f"markdown ≤ {limit:,}"
            print(f"  {label:<20} render {statistics.median(render_cpu):.2f} s CPU, "
                  f"{statistics.median(render):.2f} s wall ({max(render):.2f}); read files "
                  f"{statistics.median(r['files'] for r in runs):.2f} s, read store "
                  f"{statistics.median(r['store'] for r in runs):.2f} s "
                  f"({statistics.median(r['store_cpu'] for r in runs):.2f} s CPU); peak {peak:.0f} MB; "
                  f"{size / 1024:,.0f} KiB; {'ok' if ok else 'OVER GOAL'}")
        env = {"CONNSYNC_STORE_KEY": os.environ["CONNSYNC_STORE_KEY"]}
        for fmt in ("html", "markdown"):
            argv = connsync_argv("report", "--format", fmt, "--out", f"report.{fmt}")
            wall, _ = timed(argv, cwd=repo, env=env)
            print(f"  connsync report --format {fmt:<9} (whole command) {wall:.2f} s")
        wall, _ = timed(connsync_argv("validate"), cwd=repo, env=env)
        print(f"  connsync validate (the same files, for comparison) {wall:.2f} s")
        print(f"goals: render <= {RENDER_GOAL_S:g} s, peak <= {MEMORY_GOAL_MB:g} MB, Markdown within its "
              f"limit: {'met' if not failed else 'NOT met'}")
        return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
