"""What the workflows claim of the shared store: the plan environment's read-only role is enough.

The README tells teams to give `NAME-plan` (pull-request plans, the drift check) a read-only database
role; here that role plans, signs a saved plan, and is refused a write, against the suite's real
PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import Run, new_aws
from tests.pgserver import PgServer

READER_PASSWORD = "Reader-Password-51c2"


def test_a_read_only_role_plans_and_cannot_write(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                                                 pg_server: PgServer) -> None:
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    schema = f"ro_{uuid.uuid4().hex[:10]}"
    writer = pg_server.url(schema=schema)
    reader_role = f"reader_{uuid.uuid4().hex[:8]}"
    reader = pg_server.url(user=reader_role, password=READER_PASSWORD, schema=schema)
    assert new_aws(run, monkeypatch, name="AWS Prod").code == 0
    assert run("--store", writer, "apply", "--auto-approve", "--skip-verify").code == 0
    with psycopg.connect(pg_server.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(reader_role), sql.Literal(READER_PASSWORD)))
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(schema), sql.Identifier(reader_role)))
        admin.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
            sql.Identifier(schema), sql.Identifier(reader_role)))

    assert new_aws(run, monkeypatch, name="AWS Dev").code == 0
    (repo / "connections/aws-prod.yaml").unlink()
    planned = run("plan", "--store", reader, "--format", "json", "--detailed-exitcode", "--out", "pr.plan")
    assert planned.code == 2, planned.err
    report = json.loads(planned.out)
    assert {c["name"]: c["action"] for c in report["changes"]} == {"AWS Dev": "create", "AWS Prod": "orphan"}
    assert json.loads((repo / "pr.plan").read_text())["mac"].startswith("hmac-sha256:")

    refused = run("apply", "--store", reader, "--auto-approve", "--skip-verify")
    assert refused.code == 1 and "the role may not" in refused.err and READER_PASSWORD not in refused.err
    # The plan the reader signed is the store's: the writer may apply it.
    assert run("apply", "pr.plan", "--store", writer, "--auto-approve", "--skip-verify").code == 0
    assert run("plan", "--store", reader, "--detailed-exitcode").code == 0
