"""connsync verify at scale, against fake cloud endpoints that answer after a fixed latency.

    python bench/verify.py [--sizes 300,1000] [--latency 0.05] [--concurrency 8,32,64]
                           [--provider aws|azure|gcp]

Makes N SOPS-encrypted AWS connections (one encrypted with the real sops
binary and an age key made here, copied with other names, account ids and key
ids), serves tests/fake_aws.py on 127.0.0.1 (GetCallerIdentity, ListAccessKeys
and ListAttachedUserPolicies for any key, after --latency seconds, next to no
CPU), then runs
`connsync verify --format json` as a child process and prints, per N:

  wall         the child's wall time
  serial floor N x calls x latency: calling the APIs one after another
  speedup      floor / wall (goal: >= 10x)
  CPU/conn     user + system CPU of the child (resource.getrusage) / N (goal: <= 10 ms)

Every connection must come back "ok": a verdict that changes is a failure of
the benchmark, not a figure. --concurrency sweeps verify.concurrency
(connsync.yaml); without it the default is measured. --provider azure|gcp runs
the same against tests/fake_azure.py (TLS; 3 calls: tenant discovery, token,
ARM) or tests/fake_gcp.py (3 calls: token, Resource Manager, IAM), one tenant
or project per connection.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import connsync_argv
from tests import fake_azure, fake_gcp
from tests.fake_aws import FakeAws, serve

CALLS = {"aws": 3, "azure": 3, "gcp": 3}  # aws: STS, ListAccessKeys, ListAttachedUserPolicies
GCP_KEY_ID = "0123456789abcdef0123456789abcdef01234567"

_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def key_id(index: int) -> str:
    """A long-term key id of the old format (its account is not encoded in it)."""
    digits = ""
    for _ in range(15):
        index, digit = divmod(index, 32)
        digits = _BASE32[digit] + digits
    return "AKIAI" + digits


def account(index: int) -> str:
    return f"{200000000000 + index}"


def tenant(index: int) -> str:
    return f"{index:08x}-0000-4000-8000-000000000000"


def project(index: int) -> str:
    return f"bench-{index:05d}-x"


def email(index: int) -> str:
    return f"platform@{project(index)}.iam.gserviceaccount.com"


def template_for(provider: str, secret: str) -> tuple[dict[str, object], list[tuple[str, str]]]:
    """A connection document, and the (placeholder, per-index name) pairs to vary in its copies."""
    if provider == "azure":
        return ({"apiVersion": "connsync/v1", "provider": "azure", "metadata": {"name": "TEMPLATE"},
                 "spec": {"tenant_id": tenant(999999), "subscription_id": fake_azure.SUBSCRIPTION,
                          "client_id": fake_azure.CLIENT, "client_secret": secret}},
                [(tenant(999999), "tenant")])
    if provider == "gcp":
        return ({"apiVersion": "connsync/v1", "provider": "gcp", "metadata": {"name": "TEMPLATE"},
                 "spec": {"project_id": project(99999), "client_email": email(99999),
                          "private_key_id": GCP_KEY_ID, "private_key": secret}},
                [(email(99999), "email"), (project(99999), "project")])
    return ({"apiVersion": "connsync/v1", "provider": "aws", "metadata": {"name": "TEMPLATE"},
             "spec": {"account_id": "123456789012", "default_region": "us-east-1",
                      "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": secret}},
            [("123456789012", "account"), ("AKIAIOSFODNN7EXAMPLE", "key_id")])


VARY = {"account": account, "key_id": key_id, "tenant": tenant, "project": project, "email": email}


def make_repo(root: Path, count: int, provider: str = "aws", secret: str = "") -> dict[str, str]:
    import pyrage

    from connsync import sops

    identity = pyrage.x25519.Identity.generate()
    key_file = root / "age.txt"
    key_file.write_text(f"{identity}\n")
    (root / ".sops.yaml").write_text(
        "creation_rules:\n  - path_regex: ^connections/\n"
        "    encrypted_regex: ^(secret_access_key|client_secret|private_key)$\n"
        f"    mac_only_encrypted: true\n    age: {identity.to_public()}\n")
    folder = root / "connections"
    folder.mkdir()
    template, vary = template_for(provider, secret or "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    os.environ["SOPS_AGE_KEY_FILE"] = str(key_file)
    encrypted = sops.encrypt(yaml.safe_dump(template).encode(), folder / "template.yaml").decode()
    for index in range(count):
        text = encrypted.replace("name: TEMPLATE", f"name: {provider.upper()} {index:05d}")
        for placeholder, kind in vary:
            text = text.replace(placeholder, VARY[kind](index))
        (folder / f"{provider}-{index:05d}.yaml").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNSYNC_", "AWS_"))}
    return {**env, "SOPS_AGE_KEY_FILE": str(key_file), "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def measure(count: int, latency: float, concurrency: int | None, provider: str = "aws") -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="connsync-verify-") as temp, ExitStack() as stack:
        root = Path(temp)
        settings = f"concurrency: {concurrency}" if concurrency is not None else ""
        in_flight: Callable[[], float] = lambda: float("nan")  # noqa: E731 (only the AWS fake counts)
        if provider == "azure":
            secret = "bench-azure-client-secret"
            azure = stack.enter_context(fake_azure.serve(fake_azure.FakeAzure(
                apps={fake_azure.CLIENT: fake_azure.App(secret)}, tenants={tenant(i) for i in range(count)},
                hang=latency), root))
            env = {**make_repo(root, count, provider, secret), "CONNSYNC_CA_BUNDLE": azure.ca_bundle,
                   "CONNSYNC_AZURE_AUTHORITY_HOST": azure.url,
                   "CONNSYNC_AZURE_MANAGEMENT_ENDPOINT": azure.url,
                   "CONNSYNC_AZURE_INSTANCE_DISCOVERY": "false"}
        elif provider == "gcp":
            key = fake_gcp.new_key(GCP_KEY_ID)
            gcp = stack.enter_context(fake_gcp.serve(fake_gcp.FakeGcp(
                accounts={email(i): {GCP_KEY_ID: key} for i in range(count)},
                projects={project(i): {email(i)} for i in range(count)},
                key_readers={email(i) for i in range(count)}, hang=latency)))
            env = {**make_repo(root, count, provider, key.pem), "CONNSYNC_GCP_TOKEN_URI": f"{gcp.url}/token",
                   "CONNSYNC_GCP_RESOURCE_MANAGER_ENDPOINT": gcp.url, "CONNSYNC_GCP_IAM_ENDPOINT": gcp.url,
                   "CONNSYNC_GCP_CERTIFICATES_ENDPOINT": f"{gcp.url}/x509"}
        else:
            aws = stack.enter_context(serve(FakeAws(latency=latency,
                                                    accounts={key_id(i): account(i) for i in range(count)})))
            env = {**make_repo(root, count), "AWS_ENDPOINT_URL": aws.url}
            in_flight = lambda: aws.most_in_flight  # noqa: E731
        if settings:
            (root / "connsync.yaml").write_text(f"verify: {{{settings}}}\n")
        wall, cpu = _timed(root, env, count)
        floor = count * CALLS[provider] * latency
        return {"wall": wall, "floor": floor, "speedup": floor / wall, "cpu_ms": cpu * 1000 / count,
                "in_flight": in_flight()}


def _timed(root: Path, env: dict[str, str], count: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one `connsync verify`."""
    started = time.perf_counter()
    proc = subprocess.Popen(connsync_argv("verify", "--format", "json"), cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 (not communicate) to get the child's own rusage; the pipes are drained by threads.

    chunks: dict[str, bytes] = {}

    def drain(name: str, stream: object) -> None:
        chunks[name] = stream.read()  # type: ignore[attr-defined]

    readers = [threading.Thread(target=drain, args=(n, s)) for n, s in (("out", proc.stdout),
                                                                      ("err", proc.stderr))]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    elapsed = time.perf_counter() - started
    results = json.loads(chunks["out"])["results"] if chunks.get("out") else []
    bad = [r for r in results if r["status"] != "ok"]
    if proc.returncode != 0 or len(results) != count or bad:
        sys.exit(f"verify did not say ok for all {count} (exit {proc.returncode}): {bad[:3]}\n"
                 f"{chunks.get('err', b'').decode()[-1500:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="300,1000")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per fake API call")
    parser.add_argument("--concurrency", default="", help="values of verify.concurrency to sweep")
    parser.add_argument("--provider", choices=sorted(CALLS), default="aws")
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    levels: list[int | None] = [int(c) for c in options.concurrency.split(",") if c] or [None]
    print(f"connsync verify of {options.provider} connections against fakes answering after "
          f"{options.latency * 1000:g} ms ({CALLS[options.provider]} calls per connection)")
    print(f"{'N':>6} {'concurrency':>12} {'wall s':>8} {'serial floor s':>15} {'speedup':>8} "
          f"{'CPU ms/conn':>12} {'max in flight':>14}")
    for count in sizes:
        for level in levels:
            r = measure(count, options.latency, level, options.provider)
            print(f"{count:>6,} {level if level is not None else 'default':>12} {r['wall']:>8.2f} "
                  f"{r['floor']:>15.1f} {r['speedup']:>7.1f}x {r['cpu_ms']:>12.1f} {r['in_flight']:>14.0f}",
                  flush=True)
    print("goals: speedup >= 10x the serial floor, <= 10 ms CPU per connection, every verdict ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
