"""A local AWS for the Quick start: moto as a server on 127.0.0.1, with an IAM user and its key.

``make local-aws`` (or ``python scripts/local_aws.py [--port N]``) starts the server, creates the
IAM user ``quickstart`` with an access key (allowed to read only what verify reads: its own keys
and attached policies), switches on moto's signature and IAM checks (as AWS does), then prints the
lines to paste into another shell and the ``connsync new aws`` command that uses the key. It runs
until ^C; moto keeps everything in memory, so a restart starts from nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import shlex
import signal
import threading
import urllib.request
from typing import Any

KEY_ID = re.compile(r"^AKIA[A-Z2-7]{16}$")
USER = "quickstart"


def user_with_key(iam: Any) -> tuple[str, str]:
    """The Quick start's user and a key of the shape AWS issues (moto's may hold 0, 1, 8 or 9)."""
    iam.create_user(UserName=USER)
    iam.put_user_policy(UserName=USER, PolicyName="read-own-keys", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["iam:ListAccessKeys", "iam:ListAttachedUserPolicies"],
                       "Resource": "*"}]}))
    for _ in range(50):
        key = iam.create_access_key(UserName=USER)["AccessKey"]
        if KEY_ID.match(key["AccessKeyId"]):
            return key["AccessKeyId"], key["SecretAccessKey"]
        iam.delete_access_key(UserName=USER, AccessKeyId=key["AccessKeyId"])
    raise SystemExit("local-aws: moto issued no well-formed access key")


def exports(endpoint: str, key_id: str, secret: str) -> str:
    """What to paste into the shell that runs connsync (the secret goes in a variable, as always)."""
    return "\n".join([
        f"export AWS_ENDPOINT_URL={shlex.quote(endpoint)}",
        "export AWS_EC2_METADATA_DISABLED=true",
        f"export QUICKSTART_SECRET={shlex.quote(secret)}   # moto's key: only this local server knows it",
        "",
        "connsync new aws --name 'AWS Local' --set account_id=123456789012 \\",
        f"    --set default_region=us-east-1 --set access_key_id={key_id} \\",
        "    --secret-env secret_access_key=QUICKSTART_SECRET",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # Before auth is switched on moto takes any signature: the admin is a placeholder.
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="local-admin", aws_secret_access_key="local-admin")  # noqa: S106
        key_id, secret = user_with_key(iam)
        # From here on moto checks every signature and IAM policy, as AWS does.
        urllib.request.urlopen(urllib.request.Request(  # noqa: S310 - loopback only
            f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
            headers={"Content-Type": "text/plain"}))
        print(f"A local AWS (moto) is running at {endpoint}, with IAM user {USER} and its key "
              f"{key_id}.\nIn the shell where you run connsync:\n")
        print(exports(endpoint, key_id, secret))
        print("\nThen: connsync validate && connsync verify && connsync plan && connsync apply\n"
              "Stop it with ^C (moto keeps everything in memory: a restart starts from nothing).",
              flush=True)
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
    finally:
        server.stop()
    print("local-aws stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
