"""Airflow itself reads every card connsync writes into a Secrets Manager store (``?format=airflow``).

Airflow and its amazon provider live in their own virtualenv (``make .venv-airflow/bin/.installed``,
pinned in tests/airflow/requirements.txt); the fixture makes it when it is missing, so a plain
pytest run checks this too. Airflow reads the moto server of the suite through its own
``SecretsManagerBackend`` and ``Connection``, and its ``AwsBaseHook`` builds a session from each AWS
connection: the role's is assumed with connsync's external id and session duration, which the test
reads back from moto's record of that AssumeRole call.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests import cards
from tests.conftest import CANARY, REPO, MotoServer, Run

AIRFLOW_VENV = REPO / ".venv-airflow"
READER = REPO / "tests/airflow/read_connections.py"
BACKEND = "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"


@pytest.fixture(scope="session")
def airflow_python() -> Path:
    """The Airflow virtualenv's Python, made by the Makefile's target when it is missing (once)."""
    python = AIRFLOW_VENV / "bin/python"
    subprocess.run(["make", "--no-print-directory", f"{AIRFLOW_VENV.name}/bin/.installed"], cwd=REPO,
                   check=True, capture_output=True, timeout=900)
    assert python.is_file()
    return python


def read_as_airflow(python: Path, moto: MotoServer, prefix: str, *conn_ids: str,
                    home: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON"))}
    env.update({
        "AIRFLOW_HOME": str(home), "AWS_ENDPOINT_URL": moto.url, "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        # Hooks find connections through the same backend, as in a deployment configured for it.
        "AIRFLOW__SECRETS__BACKEND": BACKEND,
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(
            {"connections_prefix": prefix, "variables_prefix": None, "config_prefix": None}),
    })
    # A session of its own: sharing the suite's, a later test's ^C on a pseudo-terminal went unanswered.
    done = subprocess.run([str(python), str(READER), prefix, *conn_ids], env=env, capture_output=True,
                          text=True, timeout=300, check=False, start_new_session=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_airflow_reads_every_card(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                                  aws_endpoint: MotoServer, airflow_python: Path,
                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    from moto.sts.models import sts_backends

    prefix = f"p{os.urandom(4).hex()}/connections"
    monkeypatch.setenv("CONNSYNC_STORE_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("CONNSYNC_STORE", f"awssm://us-east-1/{prefix}?endpoint_url={aws_endpoint.url}"
                       "&format=airflow")
    made = cards.make_cards(run, monkeypatch)
    applied = run("apply", "--auto-approve", "--skip-verify")
    assert applied.code == 0, applied.err

    seen = read_as_airflow(airflow_python, aws_endpoint, f"{prefix}/default", "eu-prod", "aws_role",
                           "azure-prod", "gcp-analytics", "eu_2dprod",
                           home=tmp_path_factory.mktemp("airflow"))

    keys = seen["eu-prod"]
    assert (keys["conn_type"], keys["login"], keys["password"]) == ("aws", "AKIAIOSFODNN7EXAMPLE", CANARY)
    assert keys["wrapper"] == {"region_name": "eu-west-1", "role_arn": None, "assume_role_method": None,
                               "assume_role_kwargs": {}}
    assert keys["sts_identity"].split(":")[4] == cards.ACCOUNT  # the hook's session called STS

    role = seen["aws_role"]  # its metadata.id
    assert (role["conn_type"], role["login"], role["password"]) == ("aws", None, None)
    assert role["wrapper"] == {
        "region_name": "us-east-1", "role_arn": cards.ROLE_ARN, "assume_role_method": "assume_role",
        "assume_role_kwargs": {"ExternalId": cards.EXTERNAL_ID, "DurationSeconds": 1800}}
    assert role["sts_identity"].startswith(f"arn:aws:sts::{cards.ACCOUNT}:assumed-role/platform/")
    # What Airflow asked STS for, as moto recorded it: connsync's external id and session duration.
    assumed = sts_backends[cards.ACCOUNT]["aws"].assumed_roles[-1]
    assert (assumed.role_arn, assumed.external_id) == (cards.ROLE_ARN, cards.EXTERNAL_ID)
    lasts = (assumed.expiration - datetime.now(UTC).replace(tzinfo=None)).total_seconds()
    assert 1700 < lasts <= 1800

    azure = seen["azure-prod"]
    # AzureBaseHook: client id and secret as login and password, tenantId and subscriptionId in extra.
    assert (azure["conn_type"], azure["login"], azure["password"]) == ("azure", cards.CLIENT, CANARY[::-1])
    assert azure["extra"] == {"tenantId": cards.TENANT, "subscriptionId": cards.SUBSCRIPTION}

    gcp = seen["gcp-analytics"]
    # GoogleBaseHook: keyfile_dict (a dict is taken as it is) and project.
    assert gcp["conn_type"] == "google_cloud_platform"
    assert gcp["extra"]["project"] == cards.PROJECT
    keyfile = gcp["extra"]["keyfile_dict"]
    assert (keyfile["client_email"], keyfile["private_key_id"], keyfile["private_key"]) == (
        cards.EMAIL, cards.KEY_ID, made.gcp_private_key)
    assert keyfile["type"] == "service_account" and keyfile["token_uri"].startswith("https://")

    assert seen["eu_2dprod"] is None  # the unreadable id of old is gone
