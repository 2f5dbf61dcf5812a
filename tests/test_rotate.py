"""``connsync rotate`` against a moto server with credential checking on, real sops, real SQLite.

moto accepts inactive keys even with auth on, so deactivation is checked in
IAM's own state (moto's backend, in this process), never by trying the key.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from connsync import sops
from connsync.model import Declaration, Secret
from connsync.providers.aws_keys import Identity
from connsync.store.sqlite import SqliteStore
from connsync.validate import loader
from tests.conftest import CANARY, MotoServer, Run, new_aws
from tests.test_outputs import checked

KEY_RE = re.compile(r"^AKIA[A-Z2-7]{16}$")
USER = "platform"
SELF_SERVICE = {
    "Version": "2012-10-17",
    # AWS would take arn:aws:iam::*:user/${aws:username} as Resource; moto matches actions against "*".
    "Statement": [{"Effect": "Allow", "Action": ["iam:*AccessKey*", "iam:GetAccessKeyLastUsed"],
                   "Resource": "*"}],
}


@pytest.fixture(autouse=True)
def _base32_key_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS key ids are base32 after AKIA; moto's sometimes carry 0, 1, 8 or 9. Make moto's real-shaped."""
    import moto.iam.models as iam_models

    original = iam_models.generate_access_key_id_from_account_id

    def shaped(*args: Any, **kwargs: Any) -> str:
        for _ in range(200):
            key_id: str = original(*args, **kwargs)
            if not key_id.startswith("AKIA") or KEY_RE.match(key_id):
                return key_id
        raise AssertionError("no base32 key id")

    monkeypatch.setattr(iam_models, "generate_access_key_id_from_account_id", shaped)


def iam_keys(user: str = USER) -> dict[str, str]:
    """key id -> status, from moto's IAM state."""
    from moto.iam.models import iam_backends

    return {k.access_key_id: k.status for k in iam_backends["123456789012"]["global"].users[user].access_keys}


def moto_key(key_id: str) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends["123456789012"]["global"].access_keys[key_id]


def load(path: Path) -> Declaration:
    loaded = loader.load_file(path)
    assert isinstance(loaded, Declaration), loaded
    return loaded


def decrypted(path: Path) -> tuple[str, Secret]:
    desired = sops.decrypt(load(path), path)
    return str(desired.spec["access_key_id"]), desired.secrets["secret_access_key"]


def store_of(repo: Path) -> SqliteStore:
    return SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default")


FILE = Path("connections/aws-prod.yaml")


@pytest.fixture
def aws(repo: Path, aws_endpoint: MotoServer, run: Run, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An IAM user with the self-service policy and one key, declared in a commented, labelled file."""
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName=USER)
    iam.put_user_policy(UserName=USER, PolicyName="rotate-self", PolicyDocument=json.dumps(SELF_SERVICE))
    key = iam.create_access_key(UserName=USER)["AccessKey"]
    result = new_aws(run, monkeypatch, secret=key["SecretAccessKey"], access_key_id=key["AccessKeyId"],
                     extra=("--description", "Billing pipeline", "--label", "env=prod"))
    assert result.code == 0, result.err
    text = (repo / FILE).read_text()
    (repo / FILE).write_text(text.replace("spec:\n", "spec:\n    # owned by team billing\n", 1))
    aws_endpoint.require_auth()
    return {"old_id": key["AccessKeyId"], "old_secret": key["SecretAccessKey"]}


def audit_actions(repo: Path) -> list[str]:
    return [a.action.split(" ")[0] for a in store_of(repo).audit()]


def test_gitops_cycle(repo: Path, aws: dict[str, str], run: Run) -> None:
    outputs = [run("apply", "--auto-approve")]
    assert outputs[0].code == 0, outputs[0].err

    outputs.append(rotated := run("rotate", "AWS Prod"))
    assert rotated.code == 0, rotated.err
    new_id, new_secret = decrypted(repo / FILE)
    assert new_id != aws["old_id"] and KEY_RE.match(new_id)
    assert iam_keys() == {aws["old_id"]: "Active", new_id: "Active"}  # both work until the store has it
    assert f"created {new_id} for platform" in rotated.out
    assert "STS accepts" in rotated.out and "rotate --finish" in rotated.out
    text = (repo / FILE).read_text()
    assert "# owned by team billing" in text and "description: Billing pipeline" in text
    assert load(repo / FILE).data["metadata"]["labels"] == {"env": "prod"}
    assert run("validate").code == 0

    outputs.append(early := run("rotate", "--finish", "AWS Prod"))
    assert early.code == 1
    assert f"the store still holds the old key {aws['old_id']}" in early.err
    assert iam_keys()[aws["old_id"]] == "Active"

    outputs.append(run("apply", "--auto-approve"))  # what the pull request's apply job does
    assert outputs[-1].code == 0, outputs[-1].err
    listed = checked("list", run("list", "--format", "json"), ok=True)
    assert listed["connections"][0]["key_age_days"] == 0  # connsync made this key: its age is known
    outputs.append(finished := run("rotate", "--finish", "AWS Prod"))
    assert finished.code == 0, finished.err
    assert iam_keys() == {aws["old_id"]: "Inactive", new_id: "Active"}

    outputs.append(deleted := run("rotate", "--finish", "--delete", "AWS Prod", "--format", "json"))
    assert deleted.code == 0, deleted.err
    report = checked("rotate", deleted, ok=True)
    assert [s["action"] for s in report["rotations"][0]["steps"]] == ["rotate-delete-key"]
    assert iam_keys() == {new_id: "Active"}
    assert audit_actions(repo) == [
        "create", "rotate-create-key", "rotate-key-accepted", "rotate-write-file", "update",
        "rotate-deactivate-key", "rotate-delete-key"]
    for result in outputs:
        for secret in (aws["old_secret"], new_secret.reveal()):
            assert secret not in result.out + result.err


def test_local_mode_stores_and_retires_in_one_command(repo: Path, aws: dict[str, str], run: Run) -> None:
    assert run("apply", "--auto-approve").code == 0
    result = run("rotate", "AWS Prod", "--apply", "--auto-approve")
    assert result.code == 0, result.err
    new_id, new_secret = decrypted(repo / FILE)
    assert iam_keys() == {aws["old_id"]: "Inactive", new_id: "Active"}
    record = store_of(repo).get("AWS Prod")
    assert record is not None and record.spec["access_key_id"] == new_id
    assert record.fingerprints["secret_access_key"] == store_of(repo).fingerprint("secret_access_key",
                                                                                   new_secret)
    assert audit_actions(repo)[-2:] == ["update", "rotate-deactivate-key"]
    assert run("plan", "--detailed-exitcode").code == 0  # the store matches the file
    assert new_secret.reveal() not in result.out + result.err


def test_local_mode_asks_like_apply(repo: Path, aws: dict[str, str], run: Run) -> None:
    result = run("rotate", "AWS Prod", "--apply")  # no terminal, no --auto-approve
    assert result.code == 1 and "without confirmation" in result.err
    assert iam_keys() == {aws["old_id"]: "Active"}


def test_an_active_second_key_is_never_touched(repo: Path, aws: dict[str, str], run: Run,
                                              aws_endpoint: MotoServer) -> None:
    from moto.iam.models import iam_backends

    other = iam_backends["123456789012"]["global"].create_access_key(USER)
    before = (repo / FILE).read_bytes()
    for flags in ((), ("--delete-inactive",)):
        result = run("rotate", "AWS Prod", *flags)
        assert result.code == 1
        assert "already has two active keys" in result.err
        assert aws["old_id"] in result.err and other.access_key_id in result.err
        assert "last used" in result.err or "never used" in result.err
    assert iam_keys() == {aws["old_id"]: "Active", other.access_key_id: "Active"}
    assert (repo / FILE).read_bytes() == before


def test_an_inactive_second_key_goes_only_with_delete_inactive(repo: Path, aws: dict[str, str],
                                                              run: Run) -> None:
    from moto.iam.models import iam_backends

    other = iam_backends["123456789012"]["global"].create_access_key(USER, status="Inactive")
    refused = run("rotate", "AWS Prod")
    assert refused.code == 1 and "--delete-inactive" in refused.err
    assert len(iam_keys()) == 2
    result = run("rotate", "AWS Prod", "--delete-inactive")
    assert result.code == 0, result.err
    new_id, _ = decrypted(repo / FILE)
    assert iam_keys() == {aws["old_id"]: "Active", new_id: "Active"}
    assert f"deleted the inactive {other.access_key_id}" in result.out


class FlakyStsProxy:
    """STS on 127.0.0.1 that answers InvalidClientTokenId for a new key's first ``rejections`` calls,
    as AWS does while a new key propagates; everything else is forwarded to moto unchanged."""

    REJECTED = (b'<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>The '
                b'security token included in the request is invalid.</Message></Error>'
                b'<RequestId>1</RequestId></ErrorResponse>')

    def __init__(self, upstream: str, known: set[str], rejections: int) -> None:
        self.rejected: dict[str, int] = {}
        self.rejections = rejections
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                found = re.search(r"Credential=(\w+)/", self.headers.get("Authorization", ""))
                key_id = found.group(1) if found else ""
                if key_id not in known and proxy.rejected.get(key_id, 0) < proxy.rejections:
                    proxy.rejected[key_id] = proxy.rejected.get(key_id, 0) + 1
                    self.send_response(403)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(proxy.REJECTED)))
                    self.end_headers()
                    self.wfile.write(proxy.REJECTED)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
                request = urllib.request.Request(upstream + self.path, data=body, headers=headers,
                                                 method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        status, payload, kind = answer.status, answer.read(), answer.headers["Content-Type"]
                except urllib.error.HTTPError as error:
                    status, payload, kind = error.code, error.read(), error.headers["Content-Type"]
                self.send_response(status)
                self.send_header("Content-Type", kind or "text/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyStsProxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky_sts(aws: dict[str, str], aws_endpoint: MotoServer,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[FlakyStsProxy]:
    with FlakyStsProxy(aws_endpoint.url, {aws["old_id"]}, rejections=2) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", proxy.url)  # botocore's per-service endpoint
        yield proxy


def test_a_new_key_sts_rejects_for_a_while_is_waited_for(repo: Path, aws: dict[str, str], run: Run,
                                                        flaky_sts: FlakyStsProxy) -> None:
    result = run("rotate", "AWS Prod")
    assert result.code == 0, result.err
    new_id, _ = decrypted(repo / FILE)
    assert flaky_sts.rejected == {new_id: 2}
    assert "(after 3 tries)" in result.out


def test_a_key_sts_never_accepts_is_deleted_again(repo: Path, aws: dict[str, str], run: Run,
                                                 flaky_sts: FlakyStsProxy) -> None:
    flaky_sts.rejections = 1000  # never propagates
    before = (repo / FILE).read_bytes()
    result = run("rotate", "AWS Prod", "--wait", "0.6", "--format", "json")
    assert result.code == 1
    [rotation] = checked("rotate", result, ok=False)["rotations"]
    assert "STS still rejects the new key" in rotation["error"]
    assert rotation["steps"][-1]["action"] == "rotate-delete-new-key"
    assert iam_keys() == {aws["old_id"]: "Active"}  # as before: one working key
    assert (repo / FILE).read_bytes() == before
    assert audit_actions(repo) == ["rotate-create-key", "rotate-delete-new-key"]


def test_a_failed_write_deletes_the_new_key_and_says_so(
        repo: Path, aws: dict[str, str], run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sops.binary()
    wrapper = tmp_path / "sops"
    wrapper.write_text(f'#!/bin/sh\nif [ "$1" = set ]; then echo "disk on fire" >&2; exit 1; fi\n'
                       f'exec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CONNSYNC_SOPS", str(wrapper))
    before = (repo / FILE).read_bytes()
    result = run("rotate", "AWS Prod")
    assert result.code == 1
    assert "disk on fire" in result.err and "was deleted again, so nothing changed" in result.err
    assert f"{aws['old_id']} is still platform's key" in result.err
    assert iam_keys() == {aws["old_id"]: "Active"}
    assert (repo / FILE).read_bytes() == before
    assert not [p for p in (repo / "connections").iterdir() if p.name.startswith(".")]  # no temp left


def test_dry_run_and_older_than(repo: Path, aws: dict[str, str], run: Run,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    result = run("rotate", "--older-than", "90", "--dry-run", "--format", "json")
    assert result.code == 0, result.err
    report = checked("rotate", result, ok=True)
    assert report["rotations"] == [] and report["skipped"] == [f"AWS Prod: {aws['old_id']} is 0 days old"]
    moto_key(aws["old_id"]).create_date = datetime.now(UTC) - timedelta(days=91)
    result = run("rotate", "--older-than", "90", "--dry-run")
    assert result.code == 0, result.err
    assert "- create a second key for platform" in result.out and "dry run" in result.out
    assert iam_keys() == {aws["old_id"]: "Active"}
    assert decrypted(repo / FILE)[0] == aws["old_id"]


def test_root_and_temporary_credentials_are_refused() -> None:
    assert Identity("123456789012", "arn:aws:iam::123456789012:root").refusal() is not None
    assumed = Identity("123456789012", "arn:aws:sts::123456789012:assumed-role/Deploy/session")
    assert "assumed role" in str(assumed.refusal())
    user = Identity("123456789012", "arn:aws:iam::123456789012:user/ci/platform")
    assert user.refusal() is None and user.user_name == "platform"


def test_flags_that_do_not_go_together(repo: Path, run: Run) -> None:
    assert run("rotate").code == 64
    assert run("rotate", "X", "--older-than", "3").code == 64
    assert run("rotate", "X", "--delete").code == 64
    assert run("rotate", "X", "--finish", "--apply").code == 64
    assert CANARY not in run("rotate", "Nope").err


def test_key_age_from_the_audit_log_in_list_and_plan(repo: Path, run: Run,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    key_id = "AKIAIOSFODNN7EXAMPLE"
    assert new_aws(run, monkeypatch, access_key_id=key_id).code == 0
    assert new_aws(run, monkeypatch, name="AWS Dev", access_key_id=key_id).code == 0
    assert run("apply", "--auto-approve", "--skip-verify").code == 0
    listed = checked("list", run("list", "--format", "json"), ok=True)
    assert [c["key_age_days"] for c in listed["connections"]] == [None, None]  # not known yet
    store_of(repo).record_event("AWS Prod", f"rotate-create-key {key_id}", actor="t", git_revision=None,
                                source=None)
    old = (datetime.now(UTC) - timedelta(days=120)).isoformat(timespec="seconds").replace("+00:00", "Z")
    with sqlite3.connect(repo / ".connsync/store.db") as db:
        db.execute("UPDATE audit SET at = ? WHERE action LIKE 'rotate-create-key%'", (old,))
    listed = checked("list", run("list", "--format", "json"), ok=True)
    assert [c["key_age_days"] for c in listed["connections"]] == [120, 120]
    assert "120d" in run("list").out
    planned = run("plan")
    assert planned.code == 0
    assert (f"Note: 'AWS Prod': access key {key_id} is 120 days old, past max_key_age_days (90): "
            "connsync rotate 'AWS Prod'") in planned.err


def test_local_mode_that_cannot_store_says_which_keys_exist(repo: Path, aws: dict[str, str],
                                                           run: Run) -> None:
    from connsync.store import Write

    store_of(repo).put(Write(name="AWS Prod", provider="aws", spec={"account_id": "123456789012"},
                             secrets={}, managed=False, actor="ui", action="ui-create"),
                       expected_version=None)
    result = run("rotate", "AWS Prod", "--apply", "--auto-approve")
    assert result.code == 1
    new_id, _ = decrypted(repo / FILE)
    assert iam_keys() == {aws["old_id"]: "Active", new_id: "Active"}  # written, so kept: both work
    assert f"the new key {new_id} is in connections/aws-prod.yaml but not in the store" in result.err
    assert f"{aws['old_id']} is still active" in result.err
    assert "To finish: 'connsync apply'" in result.err and f"--access-key-id {new_id}" in result.err


def test_without_the_self_service_policy_admin_credentials_rotate(
        repo: Path, aws: dict[str, str], run: Run, aws_endpoint: MotoServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    aws_endpoint.require_auth(False)
    iam = boto3.client("iam", region_name="us-east-1")
    iam.delete_user_policy(UserName=USER, PolicyName="rotate-self")
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="iam", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}]}))
    admin = iam.create_access_key(UserName="admin")["AccessKey"]
    aws_endpoint.require_auth()
    denied = run("rotate", "AWS Prod")
    assert denied.code == 1
    assert f"IAM ListAccessKeys with key {aws['old_id']} failed: AccessDenied" in denied.err
    assert "self-service policy in the README" in denied.err and "--admin-profile" in denied.err
    assert iam_keys() == {aws["old_id"]: "Active"}
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", admin["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", admin["SecretAccessKey"])
    result = run("rotate", "AWS Prod", "--admin-env")
    assert result.code == 0, result.err
    new_id, _ = decrypted(repo / FILE)
    assert iam_keys() == {aws["old_id"]: "Active", new_id: "Active"}
    assert admin["SecretAccessKey"] not in result.out + result.err


def test_next_steps_quote_names_for_the_shell_they_are_pasted_into(tmp_path: Path) -> None:
    """A name is written by whoever opened the pull request; pasted, it must stay one argument."""
    import shlex
    import subprocess

    from connsync.providers.aws_rotation import Rotation, gitops_next_steps

    hostile = "Prod $(touch pwned)`touch pwned2`'\""
    steps = gitops_next_steps(Rotation(name=hostile, file="connections/a b.yaml", user="u",
                                       old_key="AKIAOLD", new_key="AKIANEW"))
    finish = next(s for s in steps if s.startswith("then: "))
    command = finish.removeprefix("then: ").split("   (")[0]
    argv = subprocess.run(["sh", "-c", f"printf '%s\\n' {command}"], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout.splitlines()
    assert argv[-1] == hostile and not list(tmp_path.iterdir())
    assert shlex.split(command)[-1] == hostile


def test_an_audit_log_that_refuses_the_first_step_leaves_no_new_key(
        repo: Path, aws: dict[str, str], run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from connsync.errors import StoreError

    def refuse(self: SqliteStore, name: str, action: str, **_: Any) -> None:
        if action.startswith("rotate-create-key"):
            raise StoreError("the store refused the write: disk I/O error")

    monkeypatch.setattr(SqliteStore, "record_event", refuse)
    before = (repo / FILE).read_bytes()
    result = run("rotate", "AWS Prod")
    assert result.code == 1
    assert "disk I/O error" in result.err and "was deleted again, so nothing changed" in result.err
    assert iam_keys() == {aws["old_id"]: "Active"}
    assert (repo / FILE).read_bytes() == before
