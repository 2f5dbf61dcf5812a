"""The Vault / OpenBao store against a real OpenBao dev server on loopback.

What every backend does is in the contract suite (TestVaultStore); here: the
KV layout other tools read, a noop plan that reads no value, Airflow's shape for
every card, a token that is wrong, a policy that denies, a check-and-set
conflict forced between plan and apply, soft deletes, logins through AppRole,
and the URL rules (credentials, plain HTTP, VAULT_ADDR). A server stopped or
sealed mid-apply: tests/test_faults_vault.py.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connsync.errors import StoreError, VersionConflict
from connsync.model import Secret
from connsync.store import opened, vault_client
from connsync.store.base import LockInfo
from connsync.store.vault import VaultStore
from connsync.store.vault_layout import Target
from connsync.testing.store_contract import write
from tests.baoserver import BaoServer
from tests.conftest import CANARY, Run, new_aws


@pytest.fixture
def base() -> str:
    return f"secret/t{os.urandom(5).hex()}"


@pytest.fixture
def store_url(vault: BaoServer, base: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    url = vault.url(base, lock_lease_seconds="3")
    monkeypatch.setenv("CONNSYNC_STORE", url)
    return url


def kv(vault: BaoServer, *args: str, token: str | None = None) -> Any:
    return json.loads(vault.bao("kv", *args[:-1], "-format=json", args[-1], token=token) or "null")


def apply(run: Run, *extra: str) -> dict[str, Any]:
    result = run("apply", "--auto-approve", "--skip-verify", "--format", "json", *extra)
    assert CANARY not in result.out + result.err
    data: dict[str, Any] = json.loads(result.out) if result.out.strip() else {}
    data["exit"], data["err"] = result.code, result.err
    return data


def plan(run: Run, *extra: str) -> dict[str, str]:
    result = run("plan", "--format", "json", *extra)
    assert result.code == 0, result.err
    return {c["name"]: c["action"] + ("+drift" if c.get("drift") else "")
            for c in json.loads(result.out)["changes"]}


# --- layout ----------------------------------------------------------------------------------------


def test_the_layout_is_one_kv_secret_per_connection_and_a_noop_plan_reads_no_value(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, vault: BaoServer, store_url: str,
        base: str) -> None:
    for index in range(3):
        assert new_aws(run, monkeypatch, name=f"AWS {index}").code == 0
    assert apply(run)["exit"] == 0
    listed = kv(vault, "list", f"{base}/default")
    assert [k for k in listed if not k.startswith(".")] == ["aws-0", "aws-1", "aws-2"]
    assert set(listed) - {"aws-0", "aws-1", "aws-2"} <= {".lock"}  # released: its last version deleted
    value = kv(vault, "get", f"{base}/default/aws-1")["data"]
    assert value["data"]["secrets"] == {"secret_access_key": CANARY}  # where Vault's readers find it
    assert value["data"]["spec"]["default_region"] == "us-east-1"
    custom = kv(vault, "metadata", "get", f"{base}/default/aws-1")["data"]["custom_metadata"]
    # The plan's metadata in 512-character chunks; how many depends on the paths and host of the run.
    assert sorted(custom) == [f"connsync-{i}" for i in range(len(custom))]
    assert CANARY not in json.dumps(custom)

    vault_client.CALLS.made.clear()
    assert set(plan(run).values()) == {"noop"}
    reads = [path for method, path in vault_client.CALLS.made if "/data/" in path]
    assert reads == [f"secret/data/{base.split('/', 1)[1]}/.connsync"]  # the sealed salt, no connection
    listings = [c for c in vault_client.CALLS.made if c[0] == "LIST" or "/metadata/" in c[1]]
    assert len(listings) <= math.ceil(3 / 100) + 5


def test_a_noop_plan_of_many_is_a_page_of_metadata_per_hundred(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with opened(store_url, "default") as store:
        for index in range(230):
            store.put(write(f"Conn {index:04d}"), expected_version=None)
    vault_client.CALLS.made.clear()
    with opened(store_url, "default") as store:
        records = store.records()
        assert len(records) == 230 and all(r.fingerprints for r in records)
    made = vault_client.CALLS.made
    assert [m for m, p in made if "/data/" in p and not p.endswith("/.connsync")] == []
    assert sum(1 for m, p in made if "detailed-metadata" in p) == math.ceil(230 / 100)


# --- Airflow ---------------------------------------------------------------------------------------


def airflow_reads(vault: BaoServer, path: str) -> dict[str, Any]:
    """What Airflow's VaultBackend hands to Connection: KV v2 read_secret_version(...)['data']['data']."""
    import hvac

    client = hvac.Client(url=vault.address, token=vault.token, verify=vault.cacert)
    answer = client.secrets.kv.v2.read_secret_version(path=path, mount_point="secret",
                                                       raise_on_deleted_version=True)
    data: dict[str, Any] = answer["data"]["data"]
    return data


CONNECTION_KEYS = {"conn_type", "description", "host", "login", "password", "schema", "port", "extra"}


def test_format_airflow_writes_what_the_vault_backend_reads_for_every_card(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, vault: BaoServer) -> None:
    from google.oauth2 import service_account

    from tests.fake_gcp import new_key

    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    path = f"airflow{os.urandom(4).hex()}"
    monkeypatch.setenv("CONNSYNC_STORE", vault.url("secret", format="airflow", connections_path=path))
    assert new_aws(run, monkeypatch, name="AWS Prod").code == 0
    with_id(repo / "connections" / "aws-prod.yaml", "aws_default")  # Airflow's hooks' default conn_id
    monkeypatch.setenv("AZ_SECRET", CANARY)
    assert run("new", "azure", "--name", "Azure Dev", "--no-input", "--secret-env", "client_secret=AZ_SECRET",
               "--set", "tenant_id=72f988bf-86f1-41af-91ab-2d7cd011db47",
               "--set", "subscription_id=00000000-0000-0000-0000-000000000000",
               "--set", "client_id=11111111-2222-3333-4444-555555555555").code == 0
    key = new_key("0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("GCP_KEY", key.pem)
    assert run("new", "gcp", "--name", "GCP Analytics", "--no-input", "--secret-env", "private_key=GCP_KEY",
               "--set", "project_id=analytics-prod-1",
               "--set", "client_email=platform@analytics-prod-1.iam.gserviceaccount.com",
               "--set", f"private_key_id={key.key_id}").code == 0
    assert apply(run)["exit"] == 0

    aws = airflow_reads(vault, f"{path}/aws_default")
    assert set(aws) <= CONNECTION_KEYS  # Connection(**value) takes nothing else
    assert (aws["conn_type"], aws["login"], aws["password"], aws["extra"]) == (
        "aws", "AKIAIOSFODNN7EXAMPLE", CANARY, {"region_name": "us-east-1"})
    azure = airflow_reads(vault, f"{path}/azure-dev")
    assert set(azure) <= CONNECTION_KEYS
    assert (azure["conn_type"], azure["login"], azure["password"], azure["extra"]["tenantId"],
            azure["extra"]["subscriptionId"]) == ("azure", "11111111-2222-3333-4444-555555555555", CANARY,
                                                  "72f988bf-86f1-41af-91ab-2d7cd011db47",
                                                  "00000000-0000-0000-0000-000000000000")
    gcp = airflow_reads(vault, f"{path}/gcp-analytics")
    assert set(gcp) <= CONNECTION_KEYS and gcp["conn_type"] == "google_cloud_platform"
    assert gcp["extra"]["project"] == "analytics-prod-1"
    # Airflow's GoogleBaseHook builds its credentials from keyfile_dict with google-auth, as here.
    credentials = service_account.Credentials.from_service_account_info(
        json.loads(gcp["extra"]["keyfile_dict"]))
    assert credentials.service_account_email == "platform@analytics-prod-1.iam.gserviceaccount.com"

    assert set(plan(run).values()) == {"noop"}
    result = run("import", "--all", "--dir", "imported")  # the secrets come back out of Airflow's shape
    assert result.code == 0, result.err
    with opened(os.environ["CONNSYNC_STORE"], "default") as store:
        assert store.read_secrets("GCP Analytics") == {"private_key": Secret(key.pem)}
    with pytest.raises(StoreError, match="one set per connections_path"):
        opened(os.environ["CONNSYNC_STORE"], "staging").__enter__()


# --- failures, each one line -----------------------------------------------------------------------


def test_a_wrong_token_is_one_line_and_never_shown(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, vault: BaoServer) -> None:
    assert new_aws(run, monkeypatch).code == 0
    assert apply(run)["exit"] == 0
    expired = vault.bao("token", "create", "-ttl=1s", "-policy=default", "-field=token").strip()
    for token in ("hvs.not-a-token-0123456789", expired):
        time.sleep(1.2 if token == expired else 0)
        monkeypatch.setenv("VAULT_TOKEN", token)
        for command in (("plan",), ("apply", "--auto-approve", "--skip-verify")):
            result = run(*command)
            assert result.code == 1
            lines = [line for line in result.err.splitlines() if line.startswith("connsync:")]
            assert len(lines) == 1 and "Vault rejected the token" in lines[0], result.err
            assert token not in result.out + result.err and "Traceback" not in result.err


def test_a_policy_that_denies_names_the_path_and_the_capability(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, vault: BaoServer,
        base: str) -> None:
    assert new_aws(run, monkeypatch).code == 0
    assert apply(run)["exit"] == 0
    prefix = base.split("/", 1)[1]
    vault.bao("policy", "write", "read-only", "-", stdin=f'''
        path "sys/internal/ui/mounts/secret" {{ capabilities = ["read"] }}
        path "secret/data/{prefix}/*" {{ capabilities = ["read"] }}
        path "secret/metadata/{prefix}/*" {{ capabilities = ["read", "list"] }}
        path "secret/detailed-metadata/{prefix}/*" {{ capabilities = ["list"] }}
    ''')
    reader = vault.bao("token", "create", "-policy=read-only", "-field=token").strip()
    monkeypatch.setenv("VAULT_TOKEN", reader)
    assert plan(run) == {"AWS Prod": "noop"}  # reading is allowed
    assert new_aws(run, monkeypatch, name="AWS Two").code == 0
    result = apply(run)
    assert result["exit"] == 1
    # The lock secret exists (the first apply released it), so taking it is an update.
    assert f"Vault's policy denies 'update' on secret/data/{prefix}/default/.lock" in result["err"]


def test_a_write_between_plan_and_apply_fails_as_changed_meanwhile_and_a_replan_converges(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, vault: BaoServer,
        base: str) -> None:
    assert new_aws(run, monkeypatch).code == 0
    assert apply(run)["exit"] == 0
    (repo / "connections" / "aws-prod.yaml").write_text(
        (repo / "connections" / "aws-prod.yaml").read_text().replace("us-east-1", "eu-west-1"))
    put = VaultStore.put

    def someone_writes_first(self: VaultStore, change: Any, *, expected_version: int | None) -> Any:
        # After apply planned (it read version 1), before its check-and-set write lands.
        vault.bao("kv", "patch", f"{base}/default/aws-prod", "nonce=someone-else")
        monkeypatch.setattr(VaultStore, "put", put)
        return put(self, change, expected_version=expected_version)

    monkeypatch.setattr(VaultStore, "put", someone_writes_first)
    result = apply(run)
    assert result["exit"] == 1
    [failed] = result["failed"]
    assert "changed in the store meanwhile" in failed["error"]
    assert plan(run) == {"AWS Prod": "update+drift"}  # the other write shows as drift
    assert apply(run)["exit"] == 0
    assert plan(run) == {"AWS Prod": "noop"}


def test_a_store_version_moved_under_a_check_and_set_write_is_a_conflict(store_url: str,
                                                                          vault: BaoServer) -> None:
    with opened(store_url, "default") as store:
        store.put(write(), expected_version=None)
        assert isinstance(store, VaultStore)
        path = store._target.secret_path("default", "AWS Prod")
        entry = store._kv.metadata(path)
        assert entry is not None
        with pytest.raises(VersionConflict, match="changed in the store meanwhile"):
            store._kv.write_value(path, {"x": "y"}, cas=int(entry["current_version"]) - 1, name="AWS Prod")


def test_a_lock_taken_between_a_takers_reads_is_not_taken_over(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A taker that saw the lock free while another process took it must not write over that lease
    (it once did: the holder then stopped after one write of a concurrent apply)."""
    from connsync.errors import LockError
    from connsync.store import vault_lock

    real = vault_lock.request
    with opened(store_url, "default") as holder, opened(store_url, "default") as taker:
        assert isinstance(holder, VaultStore) and isinstance(taker, VaultStore)
        for _ in range(2):  # a lock never taken yet, then one released (a deleted version is left)
            fired: list[LockInfo] = []

            def take_in_between(client: Any, method: str, path: str, fired: list[LockInfo] = fired,
                                **kwargs: Any) -> Any:
                try:
                    return real(client, method, path, **kwargs)
                finally:  # the taker's first read has answered "free": the holder gets in now
                    if client is taker._client and not fired:
                        fired.append(holder.acquire_lock(timeout=5))

            monkeypatch.setattr(vault_lock, "request", take_in_between)
            with pytest.raises(LockError, match="still locked"):
                taker.acquire_lock(timeout=1)
            monkeypatch.setattr(vault_lock, "request", real)
            holder._lock.check()  # still the holder's: its writes go on
            current = holder.get("AWS Prod")
            holder.put(write(), expected_version=current.version if current else None)
            holder.release_lock(fired[0])


def test_unlock_stops_a_holder_that_is_still_alive(store_url: str) -> None:
    """unlock must not be undone by the holder's next renewal (a check-and-set on its own version)."""
    from connsync.errors import LockError

    with opened(store_url, "default") as holder, opened(store_url, "default") as operator:
        lock = holder.acquire_lock(timeout=5)
        assert operator.break_lock(lock.id) == lock
        time.sleep(1.5)  # the 3 s lease's renewals (every 0.5 s) come and fail
        with pytest.raises(LockError):
            holder.put(write(), expected_version=None)
        taken = operator.acquire_lock(timeout=5)  # free for the next one at once
        operator.put(write(), expected_version=None)
        operator.release_lock(taken)
        assert operator.break_lock(taken.id) is None  # released: nothing left to unlock


def test_a_mount_that_expires_old_versions_is_read_as_live(
        vault: BaoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """delete_version_after gives every live version a deletion_time in the future: not deleted."""
    from connsync.errors import LockError

    mount = f"kvexp{os.urandom(3).hex()}"
    vault.bao("secrets", "enable", f"-path={mount}", "-version=2", "kv")
    vault.bao("write", f"{mount}/config", "delete_version_after=24h")
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    url = vault.url(f"{mount}/connsync", lock_lease_seconds="30")
    with opened(url, "default") as first, opened(url, "default") as second:
        lock = first.acquire_lock(timeout=5)
        with pytest.raises(LockError, match="still locked"):
            second.acquire_lock(timeout=1)
        first.put(write(), expected_version=None)
        assert [(r.name, r.version) for r in second.records()] == [("AWS Prod", 1)]
        first.release_lock(lock)


def test_deletes_are_soft_and_keep_the_versions(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, vault: BaoServer,
        base: str) -> None:
    assert new_aws(run, monkeypatch).code == 0
    assert apply(run)["exit"] == 0
    (repo / "connections" / "aws-prod.yaml").unlink()
    assert apply(run, "--prune")["exit"] == 0
    meta = kv(vault, "metadata", "get", f"{base}/default/aws-prod")["data"]
    assert meta["versions"]["1"]["deletion_time"] and not meta["versions"]["1"]["destroyed"]
    with opened(store_url, "default") as store:
        assert store.records() == [] and [a.action for a in store.audit()] == ["create", "delete"]
    assert new_aws(run, monkeypatch).code == 0  # the same name again: a new KV version, version 1
    assert apply(run)["exit"] == 0
    with opened(store_url, "default") as store:
        [record] = store.records()
        assert record.version == 1 and [a.action for a in store.audit()] == ["create", "delete", "create"]
    assert kv(vault, "metadata", "get", f"{base}/default/aws-prod")["data"]["current_version"] == 2


def with_id(file: Path, conn_id: str) -> None:
    """metadata.id is clear text (sops' MAC covers only the secrets): set by hand, as a reviewer may."""
    text = file.read_text()
    text = re.sub(r"^(    name: [^\n]+\n)(    id: [^\n]+\n)?", rf"\1    id: {conn_id}\n", text, count=1,
                  flags=re.MULTILINE)
    file.write_text(text)


def test_metadata_id_names_the_secret_copies_with_it_and_cannot_change_in_place(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, vault: BaoServer,
        base: str) -> None:
    assert new_aws(run, monkeypatch).code == 0
    file = repo / "connections" / "aws-prod.yaml"
    with_id(file, "aws_main")
    assert apply(run)["exit"] == 0
    assert [k for k in kv(vault, "list", f"{base}/default") if not k.startswith(".")] == ["aws_main"]
    assert plan(run) == {"AWS Prod": "noop"}
    with opened(store_url, "default") as store:
        [record] = store.records()
        assert record.conn_id == "aws_main" and store.read_secrets("aws prod") == {
            "secret_access_key": Secret(CANARY)}

    copy = vault.url(f"secret/c{os.urandom(4).hex()}")  # store copy keeps the id, so Airflow still finds it
    result = run("store", "copy", store_url, copy)
    assert result.code == 0, result.err
    assert [k for k in kv(vault, "list", copy.split("/", 3)[3] + "/default") if not k.startswith(".")] == [
        "aws_main"]

    assert new_aws(run, monkeypatch, secret=CANARY[::-1], extra=("--force",)).code == 0  # a new key...
    with_id(file, "aws_other")  # ...and another id
    changed = apply(run)
    assert changed["exit"] == 1, changed
    assert "stored under id 'aws_main' and its file now has metadata.id 'aws_other'" in changed["failed"][0][
        "error"]
    file.write_text(file.read_text().replace("    id: aws_other\n", ""))  # ...or none at all
    removed = apply(run)
    assert removed["exit"] == 1 and "its file now has no metadata.id" in removed["failed"][0]["error"]
    with opened(store_url, "default") as store:  # still whole, still connsync's, where it was
        assert [(r.name, r.version, r.conn_id) for r in store.records()] == [("AWS Prod", 1, "aws_main")]
    with_id(file, "aws_main")
    assert apply(run)["exit"] == 0  # the same id again: updated in place

    file.unlink()  # a record at its own id is found by name for a delete
    assert apply(run, "--prune")["exit"] == 0
    with opened(store_url, "default") as store:
        assert store.records() == [] and [a.action for a in store.audit()] == ["create", "update", "delete"]


def test_an_id_the_schema_would_refuse_never_names_a_path(store_url: str, vault: BaoServer,
                                                          base: str) -> None:
    """An id read back from another store (store copy) is held to the schema's pattern: "../x" would
    otherwise write outside the workspace (the HTTP client folds dot segments)."""
    from importlib.resources import files

    from connsync.model import ID_PATTERN

    schema = json.loads(files("connsync").joinpath("schemas/connection.schema.json").read_text())
    assert schema["properties"]["metadata"]["properties"]["id"]["pattern"] == f"^{ID_PATTERN.pattern}$"
    with opened(store_url, "default") as store:
        store.put(dataclasses.replace(write(), conn_id="../victim/planted"), expected_version=None)
        assert [r.name for r in store.records()] == ["AWS Prod"]
    assert [k for k in kv(vault, "list", f"{base}/default") if not k.startswith(".")] == ["aws-prod"]
    with pytest.raises(RuntimeError):
        kv(vault, "list", f"{base.split('/')[0]}/victim")


def test_metadata_past_vaults_limits_is_a_clear_error(store_url: str) -> None:
    with opened(store_url, "default") as store:
        big = dataclasses.replace(write(), spec={f"field_{i}": "x" * 400 for i in range(30)})
        with pytest.raises(StoreError, match=r"connsync keeps at most 8,192 in a secret's custom_metadata"):
            store.put(big, expected_version=None)
        assert store.records() == []  # nothing was written


def test_a_secret_made_outside_connsync_is_a_conflict_until_adopted(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, vault: BaoServer,
        base: str) -> None:
    assert new_aws(run, monkeypatch).code == 0
    apply(run)  # creates the store
    vault.bao("kv", "put", f"{base}/default/aws-two", "made=by-hand")
    assert new_aws(run, monkeypatch, name="AWS Two").code == 0
    assert plan(run)["AWS Two"] == "conflict"
    assert apply(run)["exit"] == 1
    assert apply(run, "--adopt")["exit"] == 0
    assert plan(run) == {"AWS Prod": "noop", "AWS Two": "noop"}


@pytest.fixture
def connections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[int], Path]:
    """``count`` encrypted AWS connections made with the real sops binary (one encryption, copied)."""
    import pyrage

    def make(count: int) -> Path:
        identity = pyrage.x25519.Identity.generate()
        (tmp_path / "age.txt").write_text(f"{identity}\n")
        monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "age.txt"))
        repo = tmp_path / "repo"
        repo.mkdir()
        env = {**os.environ, "CANARY": CANARY}
        subprocess.run([sys.executable, "-m", "connsync", "init", "--age-recipient",
                        str(identity.to_public())], cwd=repo, check=True, capture_output=True, env=env)
        subprocess.run([sys.executable, "-m", "connsync", "new", "aws", "--name", "Template", "--no-input",
                        "--set", "account_id=123456789012", "--set", "default_region=us-east-1",
                        "--set", "access_key_id=AKIAIOSFODNN7EXAMPLE", "--secret-env",
                        "secret_access_key=CANARY"], cwd=repo, check=True, capture_output=True, env=env)
        template = (repo / "connections" / "template.yaml").read_text()
        (repo / "connections" / "template.yaml").unlink()
        for index in range(count):
            (repo / "connections" / f"c{index:04d}.yaml").write_text(
                template.replace("name: Template", f"name: Conn {index:04d}"))
        return repo

    return make


# --- logins and URLs -------------------------------------------------------------------------------


def test_approle_login_from_the_environment(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, vault: BaoServer) -> None:
    try:
        vault.bao("auth", "enable", "approle")
    except RuntimeError as exc:
        assert "already in use" in str(exc)
    vault.bao("policy", "write", "connsync-root-like", "-", stdin='path "*" { capabilities = '
              '["create", "read", "update", "delete", "list"] }')
    vault.bao("write", "auth/approle/role/connsync", "token_policies=connsync-root-like")
    role_id = vault.bao("read", "-field=role_id", "auth/approle/role/connsync/role-id").strip()
    secret_id = vault.bao("write", "-f", "-field=secret_id", "auth/approle/role/connsync/secret-id").strip()
    monkeypatch.delenv("VAULT_TOKEN")
    monkeypatch.setenv("CONNSYNC_VAULT_AUTH", "approle")
    monkeypatch.setenv("VAULT_ROLE_ID", role_id)
    monkeypatch.setenv("VAULT_SECRET_ID", "wrong-" + secret_id)
    assert new_aws(run, monkeypatch).code == 0
    result = run("plan")
    assert result.code == 1 and "Vault refused the login" in result.err
    assert secret_id not in result.err
    monkeypatch.setenv("VAULT_SECRET_ID", secret_id)
    assert apply(run)["exit"] == 0
    assert plan(run) == {"AWS Prod": "noop"}


def test_the_token_helper_file_is_read_when_vault_token_is_unset(
        store_url: str, vault: BaoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULT_TOKEN")
    with pytest.raises(StoreError, match=r"VAULT_TOKEN is not set and there is no ~/\.vault-token"):
        opened(store_url, "default").__enter__()
    (Path.home() / ".vault-token").write_text(vault.token + "\n")
    with opened(store_url, "default") as store:
        assert store.records() == []


@pytest.mark.parametrize("url", [
    "vault://s.secrettoken@vault.example.com/secret",
    "vault://user:pa55word@vault.example.com/secret",
    "vault://vault.example.com/secret?token=s.secrettoken",
])
def test_a_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        Target.parse(url, None)
    shown = caught.value.message + str(caught.value.hint)
    assert "carries credentials" in shown
    assert "secrettoken" not in shown and "pa55word" not in shown


def test_plain_http_is_for_loopback_only_and_the_address_may_come_from_vault_addr() -> None:
    assert Target.parse("vault+http://127.0.0.1:8200/secret/apps", None).address == "http://127.0.0.1:8200"
    with pytest.raises(StoreError, match="plain HTTP is for a dev server on this machine only"):
        Target.parse("vault+http://vault.example.com/secret", None)
    target = Target.parse("vault:///secret/apps", "https://vault.example.com:8443")
    assert (target.address, target.mount, target.prefix) == (
        "https://vault.example.com:8443", "secret", "apps")
    with pytest.raises(StoreError, match="plain HTTP"):
        Target.parse("vault:///secret", "http://vault.example.com:8200")
    assert Target.parse("vault://v.example.com/kv?format=airflow", None).prefix == "connections"


def test_a_mount_that_is_not_kv_version_2_is_named(vault: BaoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(StoreError, match=r"nothere at .* is not a KV version 2 secrets engine"):
        opened(vault.url("nothere/apps"), "default").__enter__()


# --- SOPS with Vault transit -----------------------------------------------------------------------


def test_sops_with_vault_transit_round_trips_against_the_same_server(
        workdir: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, vault: BaoServer,
        base: str) -> None:
    key = f"connsync{os.urandom(3).hex()}"
    try:
        vault.bao("secrets", "enable", "transit")
    except RuntimeError as exc:
        assert "already in use" in str(exc)
    vault.bao("write", "-f", f"transit/keys/{key}")
    uri = f"{vault.address}/v1/transit/keys/{key}"
    result = run("init", "--vault-transit", uri)
    assert result.code == 0, result.err
    rules = (workdir / ".sops.yaml").read_text()
    assert f"hc_vault_transit_uri: {uri}" in rules and "age:" not in rules
    assert new_aws(run, monkeypatch).code == 0  # sops encrypts with the transit key
    text = (workdir / "connections" / "aws-prod.yaml").read_text()
    assert CANARY not in text and "hc_vault:" in text and "engine_path: transit" in text
    assert run("validate").code == 0
    assert apply(run)["exit"] == 0  # decrypted by sops through Vault, then written to Vault
    with opened(store_url, "default") as store:
        assert store.read_secrets("AWS Prod") == {"secret_access_key": Secret(CANARY)}
    assert plan(run) == {"AWS Prod": "noop"}

    (workdir / "connections" / "aws-prod.yaml").write_text(text.replace("us-east-1", "eu-west-1"))
    monkeypatch.setenv("VAULT_TOKEN", "hvs.not-a-token-0123456789")  # sops cannot use the key now
    monkeypatch.setenv("CONNSYNC_STORE", f"sqlite:{workdir / 'local.db'}")  # only sops meets Vault
    result = run("plan")
    assert result.code == 1 and "aws-prod.yaml" in result.err
    assert f"recipients: Vault transit {uri}" in result.err and "VAULT_TOKEN set" in result.err
    assert "Traceback" not in result.err
    assert "hvs.not-a-token" not in result.out + result.err


@pytest.mark.parametrize("uri", ["vault.example.com/v1/transit/keys/k", "https://v.example.com/transit/k",
                                 "http://vault.example.com:8200/v1/transit/keys/k",
                                 "https://v.example.com/v1/transit/keys/k\nage: age1xyz"])
def test_init_refuses_a_transit_uri_sops_would_not_take_or_plain_http_elsewhere(
        workdir: Path, run: Run, uri: str) -> None:
    result = run("init", "--vault-transit", uri)
    assert result.code == 64 and not (workdir / ".sops.yaml").exists()


def test_the_readme_policy_is_enough_for_plan_apply_prune_import_and_unlock(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, vault: BaoServer) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("**The ACL policy**"):]
    policy = section[section.index("```hcl") + 6:section.index("```", section.index("```hcl") + 6)]
    prefix = f"p{os.urandom(4).hex()}"
    vault.bao("policy", "write", prefix, "-", stdin=policy.replace("secret/connsync", f"secret/{prefix}")
              .replace("/connsync/", f"/{prefix}/"))
    token = vault.bao("token", "create", f"-policy={prefix}", "-field=token").strip()
    monkeypatch.setenv("VAULT_TOKEN", token)
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("CONNSYNC_STORE", vault.url(f"secret/{prefix}"))
    assert new_aws(run, monkeypatch).code == 0
    assert new_aws(run, monkeypatch, name="AWS Two").code == 0
    assert apply(run)["exit"] == 0
    assert plan(run) == {"AWS Prod": "noop", "AWS Two": "noop"}
    (repo / "connections" / "aws-two.yaml").unlink()
    assert apply(run, "--prune")["exit"] == 0
    assert run("import", "--all", "--dir", "imported").code == 0
    assert run("unlock", "nobody").code == 1  # a lock id that is not held: said so, no denial


def test_jwt_login_with_a_ci_token(tmp_path: Path, store_url: str, vault: BaoServer,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A CI OIDC token (here signed by a key made in the test) logs in through auth/jwt."""
    import jwt  # PyJWT, which msal brings
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    mount = f"jwt{os.urandom(3).hex()}"
    vault.bao("auth", "enable", f"-path={mount}", "jwt")
    vault.bao("write", f"auth/{mount}/config", f"jwt_validation_pubkeys={public}")
    vault.bao("policy", "write", f"{mount}-all", "-", stdin='path "secret/*" { capabilities = '
              '["create", "read", "update", "list"] }')
    vault.bao("write", f"auth/{mount}/role/deploy", "role_type=jwt", "user_claim=sub",
              "bound_audiences=connsync", f"token_policies={mount}-all")
    now = int(time.time())
    token = jwt.encode({"sub": "repo:acme/connections:ref:refs/heads/main", "aud": "connsync",
                        "iat": now, "nbf": now, "exp": now + 300}, key, algorithm="RS256")
    (tmp_path / "oidc.jwt").write_text(token)
    monkeypatch.delenv("VAULT_TOKEN")
    monkeypatch.setenv("CONNSYNC_VAULT_AUTH", "jwt")
    monkeypatch.setenv("CONNSYNC_VAULT_AUTH_MOUNT", mount)
    monkeypatch.setenv("CONNSYNC_VAULT_ROLE", "deploy")
    monkeypatch.setenv("CONNSYNC_VAULT_JWT_FILE", str(tmp_path / "oidc.jwt"))
    with opened(store_url, "default") as store:
        store.put(write(), expected_version=None)
        assert [r.name for r in store.records()] == ["AWS Prod"]
        assert isinstance(store, VaultStore)
        logged_in = store._client.token
    with pytest.raises(RuntimeError, match="permission denied"):  # revoked when the store closed
        vault.bao("token", "lookup", token=logged_in)
    monkeypatch.setenv("CONNSYNC_VAULT_ROLE", "nobody")
    with pytest.raises(StoreError, match="Vault refused the login") as caught:
        opened(store_url, "default").__enter__()
    assert token not in str(caught.value)


def test_a_namespace_from_vault_namespace(vault: BaoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenBao and Vault Enterprise namespaces: every request carries X-Vault-Namespace."""
    namespace = f"team{os.urandom(3).hex()}"
    vault.bao("namespace", "create", namespace)
    vault.bao("secrets", "enable", f"-namespace={namespace}", "-path=kv", "kv-v2")
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    url = vault.url("kv/connsync")
    with pytest.raises(StoreError, match=r"kv at .* is not a KV version 2 secrets engine"):
        opened(url, "default").__enter__()  # no such mount outside the namespace
    monkeypatch.setenv("VAULT_NAMESPACE", namespace)
    with opened(url, "default") as store:
        store.put(write(), expected_version=None)
    listed = json.loads(vault.bao("kv", "list", f"-namespace={namespace}", "-format=json",
                                  "kv/connsync/default"))
    assert "aws-prod" in listed


def test_without_openbaos_detailed_listing_each_secrets_metadata_is_read(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """HashiCorp Vault has no detailed-metadata listing: a LIST, then one metadata read per secret."""
    with opened(store_url, "default") as store:
        for index in range(3):
            store.put(write(f"Conn {index}"), expected_version=None)
        store.record_event("Gone", "rotate-delete-key AKIAIOSFODNN7EXAMPLE", actor="t", git_revision=None,
                           source=None)
        detailed = (store.records(), store.audit())
    with opened(store_url, "default") as store:
        assert isinstance(store, VaultStore)
        # The KV engine's real answer to an endpoint it does not have, as HashiCorp Vault's gives.
        api = Target.api
        monkeypatch.setattr(Target, "api", lambda self, kind, path: api(
            self, "no-such-listing" if kind == "detailed-metadata" else kind, path))
        vault_client.CALLS.made.clear()
        assert (store.records(), store.audit()) == detailed
        lists = [path for method, path in vault_client.CALLS.made if method == "LIST"]
        assert len(lists) == 2 and "no-such-listing" in lists[0]  # tried once, then LIST + reads
        assert not store._kv.detailed


def test_verification_history_lives_in_metadata_and_fits_vaults_limits(store_url: str) -> None:
    from connsync.store.base import Verification

    wide = Verification("Zürich Prod", "2026-01-01T00:00:00Z", "failed", None,
                        tuple("é" * 500 for _ in range(10)))
    with opened(store_url, "default") as store:
        for second in range(3):
            store.record_verifications([Verification("AWS Prod", f"2026-01-01T00:00:0{second}Z", "ok",
                                                     "123456789012", ("fine",))])
        store.record_verifications([wide])  # 5,000 characters that JSON writes as 30,000
        vault_client.CALLS.made.clear()
        everything = store.verifications()
        assert [v.at for v in everything if v.name == "AWS Prod"] == [
            "2026-01-01T00:00:02Z", "2026-01-01T00:00:01Z", "2026-01-01T00:00:00Z"]
        [kept] = store.verifications("zürich prod")
        assert kept.status == "failed" and kept.messages and kept.messages[0].startswith("éé")
        assert not any(m == "GET" and "/data/" in p for m, p in vault_client.CALLS.made)


def test_destroy_removes_every_version_and_keeps_the_audit(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, store_url: str, vault: BaoServer,
        base: str) -> None:
    assert new_aws(run, monkeypatch).code == 0
    assert new_aws(run, monkeypatch, name="AWS Two").code == 0
    assert apply(run)["exit"] == 0
    (repo / "connections" / "aws-prod.yaml").unlink()
    (repo / "connections" / "aws-two.yaml").unlink()
    assert apply(run, "--prune", "--destroy", "--max-deletes", "2")["exit"] == 0
    with pytest.raises(RuntimeError, match="No value found"):
        vault.bao("kv", "metadata", "get", f"{base}/default/aws-prod")
    with opened(store_url, "default") as store:
        assert store.records() == []
        assert sorted((a.name, a.action) for a in store.audit()) == [
            ("AWS Prod", "create"), ("AWS Prod", "destroy"), ("AWS Two", "create"), ("AWS Two", "destroy")]
    monkeypatch.setenv("CONNSYNC_STORE", f"sqlite:{repo / 'local.db'}")
    result = run("apply", "--auto-approve", "--skip-verify", "--prune", "--destroy")
    assert result.code == 64 and "--destroy is for a store that keeps the versions" in result.err
