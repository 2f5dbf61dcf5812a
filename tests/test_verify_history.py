"""Verification history: verify and apply leave each result in the store, through the CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from connsync.store import opened
from connsync.store.sqlite_file import SCHEMA_VERSION
from tests.conftest import CANARY, Run
from tests.pgserver import PgServer
from tests.test_verify import aws_repo  # noqa: F401 - the fixture: a moto server, four AWS connections


def _store(repo: Path) -> str:
    return f"sqlite:{repo / '.connsync' / 'store.db'}"


def test_apply_then_verify_keep_each_result(aws_repo: Path, run: Run) -> None:  # noqa: F811
    assert run("apply", "--auto-approve").code == 1  # two keys fail verification and are not written
    with opened(_store(aws_repo), "default") as store:
        after_apply = {v.name: v for v in store.verifications()}
    assert {n: v.status for n, v in after_apply.items()} == {
        "Good": "ok", "No IAM": "warning", "Unknown Key": "failed", "Wrong Secret": "failed"}
    assert after_apply["Good"].account == "123456789012"
    assert after_apply["Good"].key_created is not None  # IAM told the key's CreateDate
    assert after_apply["No IAM"].key_created is None  # IAM denied: age unknown
    assert after_apply["Wrong Secret"].messages == (
        "key rejected by STS: the secret access key does not match the access key id",)

    result = run("verify")
    assert result.code == 1 and "Warning" not in result.err
    with opened(_store(aws_repo), "default") as store:
        good = store.verifications("good")
        everything = store.verifications()
        audit = store.audit()
    assert [v.status for v in good] == ["ok", "ok"] and good[0].at >= good[1].at
    assert len(everything) == 8
    # Never a secret, and never a write of a record.
    assert CANARY not in repr(everything)
    assert [a.action for a in audit] == ["create", "create"]


def test_history_is_bounded_by_the_setting(aws_repo: Path, run: Run) -> None:  # noqa: F811
    config = aws_repo / "connsync.yaml"
    text = config.read_text()
    assert "\n  history: 20 " in text  # init writes the default, for the user to find
    config.write_text(text.replace("\n  history: 20 ", "\n  history: 2 ", 1))
    assert run("apply", "--auto-approve", "--skip-verify").code == 0  # the store exists now
    for _ in range(3):
        run("verify", "connections/good.yaml")
    with opened(_store(aws_repo), "default") as store:
        assert len(store.verifications("Good")) == 2


def test_verify_without_a_store_says_the_results_were_not_kept(aws_repo: Path, run: Run) -> None:  # noqa: F811
    result = run("verify", "connections/good.yaml")
    assert result.code == 0
    assert "verification results were not kept: the store does not exist yet" in result.err
    assert not (aws_repo / ".connsync" / "store.db").exists()  # verify never creates the store
    quiet = run("verify", "--no-history", "connections/good.yaml")
    assert quiet.code == 0 and "not kept" not in quiet.err


def test_an_embedded_store_of_schema_2_gains_the_history_table(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from connsync.store import Verification

    url = f"sqlite:{tmp_path / 'store.db'}"
    with opened(url, "default"):
        pass
    conn = sqlite3.connect(tmp_path / "store.db")
    conn.execute("DROP TABLE verifications")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with opened(url, "default") as store:
        store.record_verifications([Verification("AWS Prod", "2026-01-01T00:00:00Z", "ok")])
        assert [v.status for v in store.verifications()] == ["ok"]
    conn = sqlite3.connect(tmp_path / "store.db")
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == \
        str(SCHEMA_VERSION)
    conn.close()


def test_a_postgresql_store_of_schema_1_gains_the_history_table(pg_server: PgServer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import base64
    import os
    import uuid

    import psycopg
    from psycopg import sql

    from connsync.store import Verification
    from connsync.store.postgres import SCHEMA_VERSION as PG_SCHEMA_VERSION

    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = pg_server.url(schema=schema)
    with opened(url, "default"):
        pass
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:  # as a store of schema 1 was
        conn.execute(sql.SQL("DROP TABLE {}.verifications").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("UPDATE {}.meta SET value = '1'::bytea WHERE key = 'schema_version'")
                     .format(sql.Identifier(schema)))
    with opened(url, "default") as store:
        store.record_verifications([Verification("AWS Prod", "2026-01-01T00:00:00Z", "failed", None,
                                                 ("no",))])
        assert [(v.status, v.messages) for v in store.verifications("aws prod")] == [("failed", ("no",))]
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        row = conn.execute(sql.SQL("SELECT value FROM {}.meta WHERE key = 'schema_version'")
                           .format(sql.Identifier(schema))).fetchone()
        assert row is not None and bytes(row[0]) == str(PG_SCHEMA_VERSION).encode()


def test_the_plan_role_keeps_results_with_the_readme_grants(pg_server: PgServer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's read-only plan role, plus its two grants for the history: the drift job's verify."""
    import base64
    import os
    import re
    import uuid

    import psycopg
    from psycopg import sql

    from connsync.errors import StoreError
    from connsync.store import Verification
    from tests.conftest import REPO

    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    schema, role, password = f"t_{uuid.uuid4().hex[:10]}", f"plan_{uuid.uuid4().hex[:8]}", "Plan-Password-7a1"
    with opened(pg_server.url(schema=schema), "default"):
        pass  # the first apply creates the tables
    readme = (REPO / "README.md").read_text()
    block = readme.split("grant it the history table too:", 1)[1].split("```sql\n", 1)[1].split("```", 1)[0]
    grants = [line for line in block.splitlines() if line.startswith("GRANT")]
    assert len(grants) == 2
    result = Verification("AWS Prod", "2026-01-01T00:00:00Z", "ok", "123456789012")
    with psycopg.connect(pg_server.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role),
                                                                        sql.Literal(password)))
        for grant in (f"GRANT USAGE ON SCHEMA {schema} TO {role}",
                      f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"):
            admin.execute(grant.encode())
        reader = pg_server.url(user=role, password=password, schema=schema)
        with opened(reader, "default") as store, pytest.raises(StoreError, match="the role may not"):
            store.record_verifications([result])
        for grant in grants:
            ours = re.sub(r"\bconnsync_plan\b", role, grant.replace("connsync.", f"{schema}."))
            admin.execute(ours.encode())
    with opened(reader, "default") as store:
        store.record_verifications([result])
        assert store.verifications() == [result]
