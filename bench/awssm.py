"""The AWS Secrets Manager store: API calls by operation, next to the SQLite and PostgreSQL figures.

    python bench/awssm.py [--count 1000] [--no-postgresql]

Makes N encrypted connection files (bench/scale.py's make_repo), starts a moto
server on 127.0.0.1 (and a throwaway PostgreSQL server, tests/pgserver.py,
when its binaries are there), and runs, in this process and in this order,
against an empty store of each kind:

  apply (creates)   connsync apply --skip-verify
  plan (noop)       connsync plan
  apply (noop)      connsync apply again (nothing to write)

For the Secrets Manager store every call is counted by operation through
botocore's ``before-call`` event. Goal: a noop plan costs at most
⌈N/100⌉ + 3 calls and no GetSecretValue (exit 1 otherwise). Seconds against
moto on loopback say nothing about AWS, where each call takes tens of
milliseconds: the calls are the figure that carries over.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import logging
import math
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scale import make_repo
from tests.pgserver import find_bindir, running_server

from connsync.cli import main as connsync
from connsync.store import awssm

PHASES = (("apply (creates)", ("apply", "--auto-approve", "--skip-verify")), ("plan (noop)", ("plan",)),
          ("apply (noop)", ("apply", "--auto-approve", "--skip-verify")))


def counting_calls(counter: Counter[str]) -> None:
    made = awssm.make_client

    def make(target: Any) -> Any:
        client = made(target)
        client.meta.events.register("before-call.secretsmanager",
                                    lambda model, **_: counter.update([model.name]))
        return client

    awssm.make_client = make


def run_phases(url: str, calls: Counter[str]) -> dict[str, tuple[float, Counter[str]]]:
    os.environ["CONNSYNC_STORE"] = url
    results = {}
    for name, argv in PHASES:
        calls.clear()
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            code = connsync(list(argv))
        if code != 0:
            sys.exit(f"{name} against {url.split('?')[0]} exited {code}: {err.getvalue()[-1500:]}")
        results[name] = (time.perf_counter() - started, Counter(calls))
    return results


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def shown(calls: Counter[str]) -> str:
    return f"{sum(calls.values()):>6}  " + ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--no-postgresql", action="store_true")
    options = parser.parse_args()
    calls: Counter[str] = Counter()
    counting_calls(calls)
    with tempfile.TemporaryDirectory(prefix="connsync-awssm-") as temp, moto_server() as endpoint, \
            contextlib.ExitStack() as stack:
        root = Path(temp)
        os.environ.update(make_repo(root, options.count))
        os.environ.update({"CONNSYNC_STORE_KEY": base64.b64encode(os.urandom(32)).decode(),
                           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                           "AWS_EC2_METADATA_DISABLED": "true"})
        os.chdir(root)
        urls = {"SQLite": f"sqlite:{root / 'bench.db'}"}
        if not options.no_postgresql and find_bindir() is not None:
            server = stack.enter_context(running_server())
            urls["PostgreSQL"] = server.url(schema=f"b_{uuid.uuid4().hex[:8]}")
        urls["Secrets Manager"] = f"awssm://us-east-1/bench{uuid.uuid4().hex[:6]}?endpoint_url={endpoint}"
        results = {kind: run_phases(url, calls) for kind, url in urls.items()}

    n = options.count
    print(f"\nstores, N={n:,} connections (seconds, one run each, in one process; Secrets Manager is moto "
          "on loopback)")
    print(f"{'':<18}" + "".join(f"{kind:>17}" for kind in results))
    for name, _ in PHASES:
        print(f"{name:<18}" + "".join(f"{results[kind][name][0]:>17.2f}" for kind in results))
    print("\nSecrets Manager API calls by operation:")
    for name, _ in PHASES:
        print(f"  {name:<16}{shown(results['Secrets Manager'][name][1])}")
    plan_calls = results["Secrets Manager"]["plan (noop)"][1]
    budget = math.ceil(n / 100) + 3
    ok = sum(plan_calls.values()) <= budget and plan_calls["GetSecretValue"] == 0
    print(f"goal: noop plan <= ceil(N/100) + 3 = {budget} calls and no GetSecretValue: "
          f"{'met' if ok else 'MISSED'} ({sum(plan_calls.values())} calls, "
          f"{plan_calls['GetSecretValue']} GetSecretValue)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
