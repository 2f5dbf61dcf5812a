"""The PostgreSQL store through the CLI, against the suite's own real server.

What every backend does is in the contract suite (test_store_contract.py); here:
plan/apply/list/import/unlock end to end, the README's team set-up followed as
written, store copy both ways, one-line errors, and a password that never shows.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from connsync.errors import LockError, StoreError
from connsync.model import Secret
from connsync.store import Write, opened
from tests.conftest import CANARY, REPO, Run, new_aws, run_process
from tests.pgserver import PgServer

DB_PASSWORD = "Pg-Canary-Password-7f3e9a"  # must never be shown


@pytest.fixture
def store_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("CONNSYNC_STORE_KEY", key)
    return key


@pytest.fixture
def pg_url(pg_server: PgServer, store_key: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh schema on the test server, as CONNSYNC_STORE."""
    url = pg_server.url(schema=f"t_{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv("CONNSYNC_STORE", url)
    return url


def admin(pg_server: PgServer, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(pg_server.url(database=database), autocommit=True)


def test_plan_apply_list_import_unlock_end_to_end(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                                                  pg_url: str) -> None:
    assert new_aws(run, monkeypatch).code == 0
    assert new_aws(run, monkeypatch, name="AWS Dev", access_key_id="AKIAIOSFODNN7EXAMPLF").code == 0
    first = run("plan", "--format", "json")
    assert first.code == 0, first.err
    plan = json.loads(first.out)
    assert [c["action"] for c in plan["changes"]] == ["create", "create"]
    assert any("does not exist yet" in w for w in plan["warnings"])  # a read-only plan creates nothing
    with opened(pg_url, "default", create=False) as store:
        assert store.records() == []

    applied = run("apply", "--auto-approve", "--skip-verify")
    assert applied.code == 0, applied.err
    assert "2 created" in applied.out
    assert run("plan", "--detailed-exitcode").code == 0

    listed = run("list", "--format", "json")
    assert listed.code == 0, listed.err
    assert CANARY not in listed.out
    assert "AWS Prod" in listed.out and "AWS Dev" in listed.out

    with opened(pg_url, "default") as store:  # a connection made in the platform's UI
        store.put(Write(name="UI Made", provider="aws", spec={"account_id": "123456789012",
                        "default_region": "eu-west-1", "access_key_id": "AKIAIOSFODNN7EXAMPLG"},
                        secrets={"secret_access_key": Secret(CANARY)}, managed=False, actor="ui",
                        action="ui-create"), expected_version=None)
    imported = run("import", "UI Made")
    assert imported.code == 0, imported.err
    assert (repo / "connections" / "ui-made.yaml").exists()
    assert run("plan", "--detailed-exitcode").code == 0

    with opened(pg_url, "default") as stuck:
        lock = stuck.acquire_lock(timeout=0)
        waited = run("apply", "--auto-approve", "--skip-verify", "--lock-timeout", "0.5")
        assert waited.code == 1 and lock.id in waited.err and "still locked" in waited.err
        broken = run("unlock", lock.id)
        assert broken.code == 0, broken.err
        with pytest.raises(StoreError):  # its session was ended: it can write nothing more
            stuck.put(Write(name="Late", provider="aws", spec={}, secrets={}, managed=True, actor="x",
                            action="create"), expected_version=None)
    assert run("apply", "--auto-approve", "--skip-verify").code == 0


def test_readme_team_setup_followed_as_written(pg_server: PgServer, tmp_path: Path, repo: Path, run: Run,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's 'Teams and CI' steps, with only the host (and sslmode) swapped for the test server."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Teams and CI"):]
    section = section[:section.index("\n## ")]  # this section only: others export other stores
    sql = re.search(r"<<'SQL'\n(.*?)\nSQL\n", section, re.S)
    assert sql is not None
    with admin(pg_server) as conn:
        conn.execute("CREATE DATABASE platform")
    with admin(pg_server, "platform") as conn:
        conn.execute(sql.group(1))
    exports = dict(re.findall(r"^\$ export (\w+)='([^']*)'", section, re.M))
    here = f"{pg_server.host}:{pg_server.port}"
    store_url = (exports["CONNSYNC_STORE"].replace("db.example.com:5432", here)
                 .replace("sslmode=verify-full", "sslmode=disable"))
    key = base64.b64encode(os.urandom(32)).decode()
    env = {"CONNSYNC_STORE": store_url, "PGPASSWORD": exports["PGPASSWORD"], "CONNSYNC_STORE_KEY": key}

    # A laptop's embedded store first, then moved with the README's own command.
    assert new_aws(run, monkeypatch).code == 0
    assert run("apply", "--auto-approve", "--skip-verify").code == 0
    copy_line = re.search(r"^\$ (connsync store copy .*)$", section, re.M)
    assert copy_line is not None
    argv = copy_line.group(1).replace('"$CONNSYNC_STORE"', store_url).split()[1:]
    copied = run_process(*argv, cwd=repo, env=env)
    assert copied.code == 0, copied.err
    assert DB_PASSWORD not in copied.out and exports["PGPASSWORD"] not in copied.out + copied.err
    planned = run_process("plan", "--detailed-exitcode", cwd=repo, env=env)
    assert planned.code == 0, planned.out + planned.err  # the copied store matches the files
    with admin(pg_server, "platform") as conn:  # the role's own schema holds connsync's tables
        owner = conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'connsync'")
        assert owner.fetchone() == ("connsync",)
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'connsync' AND tableowner = 'connsync'")}
        assert tables == {"meta", "connections", "audit", "locks", "verifications"}


def test_store_copy_both_ways_and_refusing_a_full_target(repo: Path, run: Run, pg_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONNSYNC_STORE")
    assert new_aws(run, monkeypatch).code == 0
    assert run("apply", "--auto-approve", "--skip-verify").code == 0  # the embedded store, its key file
    sqlite_url = f"sqlite:{repo / '.connsync/store.db'}"
    assert run("store", "copy", sqlite_url, pg_url).code == 0
    again = run("store", "copy", sqlite_url, pg_url)
    assert again.code == 1 and "already holds 1 record" in again.err and "--replace" in again.err
    assert run("store", "copy", "--replace", sqlite_url, pg_url).code == 0
    back = repo / "back.db"
    assert run("store", "copy", pg_url, f"sqlite:{back}").code == 0
    with opened(f"sqlite:{back}", "default") as store:
        [record] = store.records()
        assert (record.name, record.version, record.managed) == ("AWS Prod", 1, True)
        assert store.read_secrets("AWS Prod") == {"secret_access_key": Secret(CANARY)}
        assert [a.action for a in store.audit()] == ["create", "copy", "copy"]
    monkeypatch.setenv("CONNSYNC_STORE", pg_url)
    assert run("plan", "--detailed-exitcode").code == 0


@pytest.mark.parametrize("problem", ["refused-login", "no-database", "unreachable", "no-key", "wrong-key",
                                     "no-rights", "newer-schema"])
def test_every_failure_to_open_is_one_line(problem: str, pg_server: PgServer, repo: Path, run: Run,
                                           monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    assert new_aws(run, monkeypatch).code == 0
    schema = pg_url.rsplit("schema=", 1)[1]
    expected = {
        "refused-login": "PostgreSQL refused the login", "no-database": "the database does not exist",
        "unreachable": "cannot reach PostgreSQL", "no-key": "CONNSYNC_STORE_KEY is not set",
        "wrong-key": "the store key does not open", "no-rights": "the role may not",
        "newer-schema": "has schema version 99",
    }[problem]
    url = pg_url
    if problem == "refused-login":
        url = pg_server.url(password=DB_PASSWORD, schema=schema)
    elif problem == "no-database":
        url = pg_server.url(database="nowhere", schema=schema)
    elif problem == "unreachable":
        url = f"postgresql://connsync:{DB_PASSWORD}@127.0.0.1:1/platform?connect_timeout=2"
    elif problem == "no-key":
        monkeypatch.delenv("CONNSYNC_STORE_KEY")
    elif problem in ("wrong-key", "newer-schema", "no-rights"):
        assert run("apply", "--auto-approve", "--skip-verify").code == 0
        if problem == "wrong-key":
            monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
        elif problem == "newer-schema":
            with admin(pg_server) as conn:
                conn.execute(f"UPDATE {schema}.meta SET value = '99' "  # noqa: S608 - the test's own schema
                             "WHERE key = 'schema_version'")
        else:  # a role with no rights on the team's store
            with admin(pg_server) as conn:
                conn.execute(f"CREATE ROLE lowly LOGIN PASSWORD '{DB_PASSWORD}'")
            url = pg_server.url(user="lowly", password=DB_PASSWORD, schema=schema)
    monkeypatch.setenv("CONNSYNC_STORE", url)
    try:
        for args in (["apply", "--auto-approve", "--skip-verify"], ["list"]):
            result = run(*args)
            assert result.code == 1, (args, result)
            lines = result.err.strip().splitlines()
            assert len(lines) <= 2 and lines[0].startswith("connsync: error: "), lines
            assert expected in lines[0], lines
            assert DB_PASSWORD not in result.out + result.err and "Traceback" not in result.err
    finally:
        if problem == "no-rights":
            with admin(pg_server) as conn:
                conn.execute("DROP ROLE lowly")


def test_the_password_is_never_shown(pg_server: PgServer, repo: Path, run: Run, store_key: str,
                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with admin(pg_server) as conn:
        conn.execute(f"CREATE ROLE shown LOGIN SUPERUSER PASSWORD '{DB_PASSWORD}'")
    try:
        url = pg_server.url(user="shown", password=DB_PASSWORD, schema=f"t_{uuid.uuid4().hex[:8]}")
        monkeypatch.setenv("CONNSYNC_STORE", url)
        assert new_aws(run, monkeypatch).code == 0
        outputs = [run("plan"), run("plan", "--format", "json"), run("plan", "--format", "markdown"),
                   run("apply", "--auto-approve", "--skip-verify"), run("list"),
                   run("list", "--format", "json"), run("store", "copy", url, url),
                   run("--store", url.replace("/postgres?", "/nowhere?"), "list")]
        copied = run("store", "copy", url, f"sqlite:{tmp_path / 'x.db'}")
        assert copied.code == 0 and "postgresql://shown:****@" in copied.out
        for result in [*outputs, copied]:
            assert DB_PASSWORD not in result.out + result.err, result
        with opened(url, "default") as store:
            assert DB_PASSWORD not in repr(store.describe()) + repr(store.audit()) + repr(store.records())
            lock = store.acquire_lock(timeout=0)
            assert DB_PASSWORD not in repr(lock)
            store.release_lock(lock)
    finally:
        with admin(pg_server) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'shown'")
            conn.execute("DROP OWNED BY shown")
            conn.execute("DROP ROLE shown")


@pytest.mark.parametrize("url", [
    f"postgresql://u:{DB_PASSWORD}%zz@127.0.0.1:5/db",  # libpq rejects the percent-encoding
    f"postgresql://u@127.0.0.1:5/db?password={DB_PASSWORD}%41&sslmode=bogus",
    f"postgresql://u:{DB_PASSWORD}%41@127.0.0.1:1/db?connect_timeout=2",
])
def test_a_password_libpq_quotes_back_is_masked(url: str, repo: Path, run: Run, store_key: str) -> None:
    result = run("--store", url, "list")
    assert result.code == 1 and result.err.startswith("connsync: error: ")
    assert DB_PASSWORD not in result.out + result.err, result.err


def test_a_connection_that_loses_its_session_lock_writes_nothing(pg_url: str) -> None:
    """What a transaction-pooling PgBouncer does: the next statement runs in another session."""
    with opened(pg_url, "default") as store:
        lock = store.acquire_lock(timeout=0)
        store._conn.execute("SELECT pg_advisory_unlock_all()")  # type: ignore[attr-defined]
        with pytest.raises(LockError, match="no longer holds the workspace's advisory lock") as caught:
            store.put(Write(name="X", provider="aws", spec={}, secrets={}, managed=True, actor="t",
                            action="create"), expected_version=None)
        assert "transaction pooling" in str(caught.value.hint)
        assert store.records() == []
        store.release_lock(lock)


def test_schema_is_created_once_by_racing_first_runs(pg_server: PgServer, store_key: str) -> None:
    url = pg_server.url(schema=f"t_{uuid.uuid4().hex[:12]}")
    code = ("import sys; from connsync.store import open_store; from connsync.model import Secret; "
            "print(open_store(sys.argv[1], 'default').fingerprint('f', Secret('v')))")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    assert all(code == 0 for _, _, code in results), [err for _, err, _ in results]
    assert len({out for out, _, _ in results}) == 1


def test_in_ci_an_embedded_store_is_refused_and_a_plan_warns(repo: Path, run: Run,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert new_aws(run, monkeypatch).code == 0
    monkeypatch.setenv("CI", "true")
    refused = run("apply", "--auto-approve", "--skip-verify")
    assert refused.code == 1 and "lost when the job ends" in refused.err and "CONNSYNC_STORE" in refused.err
    assert not (repo / ".connsync" / "store.db").exists()
    for fmt in ("text", "json", "markdown"):
        planned = run("plan", "--format", fmt)
        assert planned.code == 0 and "file on this CI runner" in planned.out + planned.err, planned
    allowed = run("apply", "--auto-approve", "--skip-verify", "--allow-embedded-store")
    assert allowed.code == 0, allowed.err
    monkeypatch.setenv("CI", "false")
    calm = run("plan")
    assert "CI runner" not in calm.out + calm.err
