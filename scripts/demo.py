"""The main job end to end, on this machine, with no cloud account.

Starts a moto server on 127.0.0.1 as the AWS endpoint, creates IAM users and
keys there, and serves a fake Entra ID + ARM (over TLS) and a fake Google
token endpoint + Resource Manager (tests/fake_azure.py, tests/fake_gcp.py: the
real protocols, on 127.0.0.1). Makes a fresh connections repository with
``connsync init`` and a generated age key, adds two AWS connections, an Azure
and a GCP one with ``connsync new``, then runs validate, verify, plan, apply
into the embedded SQLite store, a second plan that shows no changes, and the
Connections report (``connsync report``). Run it with ``make demo``; everything it
made is removed when it ends (^C included), unless ``--keep`` (``make demo KEEP=1``)
keeps the repository to go on working in; the report is written to build/demo-report/
of this checkout (or $CONNSYNC_DEMO_REPORT_DIR), where it outlives that clean-up.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fake_azure import CLIENT, SUBSCRIPTION, TENANT, App, FakeAzure
from tests.fake_azure import serve as serve_azure
from tests.fake_gcp import FakeGcp, new_key
from tests.fake_gcp import serve as serve_gcp

GCP_EMAIL = "platform@analytics-demo-1.iam.gserviceaccount.com"
GCP_KEY_ID = "0123456789abcdef0123456789abcdef01234567"
AZURE_SECRET = secrets.token_urlsafe(30)  # made here, like the IAM keys

KEY_ID = re.compile(r"^AKIA[A-Z2-7]{16}$")
ROOT = Path(__file__).resolve().parent.parent


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def connsync(*args: str, env: dict[str, str], cwd: Path, expect: tuple[int, ...] = (0,)) -> None:
    shown = " ".join(shlex.quote(a) for a in args)
    print(f"$ connsync {shown}", flush=True)
    result = subprocess.run([sys.executable, "-m", "connsync", "--no-color", *args], cwd=cwd, env=env,
                            check=False)
    if result.returncode not in expect:
        raise SystemExit(f"demo failed: 'connsync {shown}' exited {result.returncode}")


def iam_user_with_key(iam: Any, name: str) -> tuple[str, str]:
    """An IAM user allowed only to read its own keys, and an access key of the shape AWS issues."""
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="read-own-keys", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["iam:ListAccessKeys", "iam:ListAttachedUserPolicies"],
                       "Resource": "*"}]}))
    for _ in range(50):  # moto's key ids may hold 0, 1, 8 or 9, which real ones never do
        key = iam.create_access_key(UserName=name)["AccessKey"]
        if KEY_ID.match(key["AccessKeyId"]):
            return key["AccessKeyId"], key["SecretAccessKey"]
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    raise SystemExit("demo failed: moto issued no well-formed access key")


def main(argv: list[str]) -> int:
    keep = "--keep" in argv
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="connsync-demo-"))
    repo = work / "connections-repo"
    try:
        page = run_demo(work, repo)
    except KeyboardInterrupt:
        print("\nInterrupted (^C): the demo stopped" + ("." if keep else "; removing what it made."))
        return 130
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    banner(f"Done in {time.monotonic() - started:.1f}s")
    if keep:
        print(f"""The demo repository is kept in {repo}. To go on working in it:
    cd {shlex.quote(str(repo))}
    export SOPS_AGE_KEY_FILE={shlex.quote(str(work / "age" / "keys.txt"))}   # the key to its files
    connsync validate && connsync plan && connsync list
The local clouds stopped with the demo, so 'connsync verify' there can no longer reach them;
'make local-aws' starts a fresh local AWS for the README's Quick start.
Remove it with: make demo-clean""")
    else:
        print("""The demo removed everything it made (make demo KEEP=1 keeps its repository).
Next: the README's Quick start ('connsync init' in your own repository); 'make local-aws' starts
a local AWS to try it against.""")
    print(f"The Connections report: {page}\n  open it in a browser: file://{page}")
    return 0


def run_demo(work: Path, repo: Path) -> Path:
    """The demo; returns where it wrote the Connections report."""
    import urllib.request

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    repo.mkdir()

    banner("Starting a local AWS (moto) on 127.0.0.1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    print(f"AWS endpoint: {endpoint}")
    clouds = ExitStack()
    try:
        gcp_key = new_key(GCP_KEY_ID)
        azure = clouds.enter_context(serve_azure(FakeAzure(apps={CLIENT: App(AZURE_SECRET)}), work))
        gcp = clouds.enter_context(serve_gcp(FakeGcp(
            accounts={GCP_EMAIL: {GCP_KEY_ID: gcp_key}}, projects={"analytics-demo-1": {GCP_EMAIL}},
            key_readers={GCP_EMAIL})))
        print(f"Azure (Entra ID and ARM, TLS): {azure.url}\nGCP (token endpoint, Resource Manager, IAM): "
              f"{gcp.url}")
        admin = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "demo-admin",
                 "AWS_SECRET_ACCESS_KEY": "demo-admin", "AWS_DEFAULT_REGION": "us-east-1"}
        os.environ.update(admin)
        iam = boto3.client("iam")
        prod_id, prod_secret = iam_user_with_key(iam, "platform-prod")
        dev_id, dev_secret = iam_user_with_key(iam, "platform-dev")
        print(f"Created IAM users platform-prod ({prod_id}) and platform-dev ({dev_id})")
        # From here on moto checks every signature, as AWS does.
        urllib.request.urlopen(urllib.request.Request(  # noqa: S310 - loopback only
            f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
            headers={"Content-Type": "text/plain"}))

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SOPS_", "CONNSYNC_"))}
        env.update({
            "AWS_ENDPOINT_URL": endpoint,
            "SOPS_AGE_KEY_FILE": str(work / "age" / "keys.txt"),  # keep the demo key out of ~/.config
            "PROD_SECRET": prod_secret,
            "DEV_SECRET": dev_secret,
            "AZURE_SECRET": AZURE_SECRET,
            "GCP_PRIVATE_KEY": gcp_key.pem,
            "AWS_EC2_METADATA_DISABLED": "true",
            # Where verify finds the local Azure and GCP endpoints: the environment of whoever
            # runs connsync (never connsync.yaml, which a pull request can change).
            "CONNSYNC_CA_BUNDLE": azure.ca_bundle,
            "CONNSYNC_AZURE_AUTHORITY_HOST": azure.url,
            "CONNSYNC_AZURE_MANAGEMENT_ENDPOINT": azure.url,
            "CONNSYNC_AZURE_INSTANCE_DISCOVERY": "false",
            "CONNSYNC_GCP_TOKEN_URI": f"{gcp.url}/token",
            "CONNSYNC_GCP_RESOURCE_MANAGER_ENDPOINT": gcp.url,
            "CONNSYNC_GCP_IAM_ENDPOINT": gcp.url,
            "CONNSYNC_GCP_CERTIFICATES_ENDPOINT": f"{gcp.url}/x509",
        })
        subprocess.run(["git", "init", "-q"], cwd=repo, check=False)

        banner("A fresh repository with a new age key")
        connsync("init", "--generate-age-key", env=env, cwd=repo)

        banner("Four connections, secrets read from the environment and encrypted by SOPS")
        connsync("new", "aws", "--name", "AWS Prod", "--label", "env=prod", "--no-input",
                 "--set", "account_id=123456789012", "--set", "default_region=us-east-1",
                 "--set", f"access_key_id={prod_id}", "--secret-env", "secret_access_key=PROD_SECRET",
                 env=env, cwd=repo)
        connsync("new", "aws", "--name", "AWS Dev", "--label", "env=dev", "--no-input",
                 "--set", "account_id=123456789012", "--set", "default_region=eu-west-1",
                 "--set", f"access_key_id={dev_id}", "--secret-env", "secret_access_key=DEV_SECRET",
                 env=env, cwd=repo)
        connsync("new", "azure", "--name", "Azure Prod", "--no-input", "--set", f"tenant_id={TENANT}",
                 "--set", f"client_id={CLIENT}", "--set", f"subscription_id={SUBSCRIPTION}",
                 "--secret-env", "client_secret=AZURE_SECRET", env=env, cwd=repo)
        connsync("new", "gcp", "--name", "GCP Analytics", "--no-input",
                 "--set", "project_id=analytics-demo-1",
                 "--set", f"client_email={GCP_EMAIL}", "--set", f"private_key_id={GCP_KEY_ID}",
                 "--secret-env", "private_key=GCP_PRIVATE_KEY", env=env, cwd=repo)
        print("\nconnections/aws-prod.yaml as committed (the secret is the only encrypted field):")
        print("\n".join("    " + line for line in
                        (repo / "connections/aws-prod.yaml").read_text().splitlines()[:10]))

        banner("Validate (offline), then verify each credential with its cloud")
        connsync("validate", env=env, cwd=repo)
        connsync("verify", env=env, cwd=repo)

        banner("Plan and apply into the embedded store (.connsync/store.db)")
        connsync("plan", env=env, cwd=repo)
        connsync("apply", "--auto-approve", env=env, cwd=repo)

        banner("Plan again: nothing to do")
        connsync("plan", "--detailed-exitcode", env=env, cwd=repo)
        connsync("list", env=env, cwd=repo)

        banner("The Connections page of the fleet: connsync report")
        report_dir = Path(os.environ.get("CONNSYNC_DEMO_REPORT_DIR") or ROOT / "build" / "demo-report")
        page = (report_dir / "connections.html").resolve()
        connsync("report", "--format", "markdown", "--max-size", "65536", env=env, cwd=repo)
        connsync("report", "--out", str(page), env=env, cwd=repo)
        connsync("report", "--format", "markdown", "--out", str(page.with_suffix(".md")), env=env,
                 cwd=repo)
    finally:
        clouds.close()
        server.stop()
    return page


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
