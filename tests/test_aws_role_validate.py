"""Role-based AWS connections offline: which combinations the schema takes, and the role's rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connsync import sops
from connsync.model import Declaration, Secret
from connsync.validate import loader
from tests.conftest import CANARY, Run, run_in_terminal
from tests.helpers import FAKE_ENC, FAKE_SOPS, key_id_for, write_doc

ROLE = "arn:aws:iam::123456789012:role/platform-connections"


def role_doc(name: str = "AWS Role", **spec: Any) -> dict[str, Any]:
    fields = {"account_id": "123456789012", "default_region": "us-east-1", "role_arn": ROLE, **spec}
    return {"apiVersion": "connsync/v1", "provider": "aws", "metadata": {"name": name},
            "spec": {k: v for k, v in fields.items() if v is not None}, "sops": FAKE_SOPS}


def declared(path: Path) -> Declaration:
    loaded = loader.load_file(path)
    assert isinstance(loaded, Declaration), loaded
    return loaded


def findings_of(run: Run) -> tuple[int, list[dict[str, Any]]]:
    result = run("validate", "--format", "json")
    assert "Traceback" not in result.out + result.err
    return result.code, json.loads(result.out)["findings"]


@pytest.mark.parametrize("spec", [
    {},                                                              # the platform's own identity
    {"external_id": FAKE_ENC, "session_duration_seconds": 3600},
    {"access_key_id": key_id_for("999999999999"), "secret_access_key": FAKE_ENC},  # base key elsewhere
    {"role_arn": "arn:aws:iam::123456789012:role/data/etl/reader"},  # a path
    {"role_arn": "arn:aws-us-gov:iam::123456789012:role/x", "default_region": "us-gov-west-1"},
    {"role_arn": "arn:aws-cn:iam::123456789012:role/x", "default_region": "cn-north-1"},
])
def test_valid_role_connections(run: Run, workdir: Path, spec: dict[str, Any]) -> None:
    write_doc(workdir / "connections/role.yaml", role_doc(**spec))
    code, findings = findings_of(run)
    assert (code, findings) == (0, [])


@pytest.mark.parametrize(("spec", "path", "line", "fragment"), [
    # neither a key pair nor a role
    ({"role_arn": None}, "$.spec", 6,
     "spec needs access_key_id and secret_access_key (access key pair) or role_arn (iam role)"),
    # half a key pair, with or without a role: one finding at the half that is there
    ({"access_key_id": "AKIAIOSFODNN7EXAMPLE"}, "$.spec.access_key_id", 9,
     "access_key_id needs secret_access_key: a key pair is both"),
    ({"role_arn": None, "secret_access_key": FAKE_ENC}, "$.spec.secret_access_key", 8,
     "secret_access_key needs access_key_id"),
    # role-only fields without a role
    ({"role_arn": None, "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": FAKE_ENC,
      "external_id": FAKE_ENC}, "$.spec.external_id", 10,
     "external_id needs role_arn: it applies only when assuming a role"),
    ({"role_arn": None, "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": FAKE_ENC,
      "session_duration_seconds": 3600}, "$.spec.session_duration_seconds", 10,
     "session_duration_seconds needs role_arn"),
    ({"session_duration_seconds": 899}, "$.spec.session_duration_seconds", 9, "from 900 (15 minutes)"),
    ({"session_duration_seconds": 43201}, "$.spec.session_duration_seconds", 9, "to 43200 (12 hours)"),
    ({"role_arn": "arn:aws:iam::123456789012:user/x"}, "$.spec.role_arn", 8, "must be an IAM role ARN"),
    ({"role_arn": "arn:aws:iam::123456789012:role/"}, "$.spec.role_arn", 8, "must be an IAM role ARN"),
])
def test_invalid_combinations_are_one_located_finding(run: Run, workdir: Path, spec: dict[str, Any],
                                                      path: str, line: int, fragment: str) -> None:
    write_doc(workdir / "connections/role.yaml", role_doc(**spec))
    code, findings = findings_of(run)
    assert code == 1
    assert [(f["rule"], f["path"], f["line"]) for f in findings] == [("schema", path, line)], findings
    assert fragment in findings[0]["message"]


def test_the_role_is_in_the_declared_account(run: Run, workdir: Path) -> None:
    write_doc(workdir / "connections/role.yaml",
              role_doc(role_arn="arn:aws:iam::210987654321:role/platform-connections"))
    code, findings = findings_of(run)
    assert code == 1
    assert [(f["rule"], f["path"], f["line"], f["column"]) for f in findings] == [
        ("aws-role-account", "$.spec.role_arn", 8, 13)]
    assert findings[0]["message"] == "the role is in account 210987654321, not account_id 123456789012"


def test_partition_and_region_agree(run: Run, workdir: Path) -> None:
    write_doc(workdir / "connections/role.yaml", role_doc(default_region="cn-north-1"))
    code, findings = findings_of(run)
    assert code == 1
    assert [(f["rule"], f["path"]) for f in findings] == [("aws-role-partition", "$.spec.role_arn")]
    assert "partition 'aws'" in findings[0]["message"] and "'aws-cn'" in findings[0]["message"]


def test_external_id_is_a_secret(run: Run, workdir: Path) -> None:
    write_doc(workdir / "connections/role.yaml", role_doc(external_id="Canary-External-Id-4711"))
    result = run("validate", "--format", "json")
    findings = json.loads(result.out)["findings"]
    assert [(f["rule"], f["path"]) for f in findings] == [("plaintext-secret", "$.spec.external_id")]
    assert "Canary-External-Id-4711" not in result.out + result.err
    assert "external_id" in run("schema", "--list").out


def test_a_key_connection_still_checks_its_key_account(run: Run, workdir: Path) -> None:
    doc = role_doc(role_arn=None, access_key_id=key_id_for("999999999999"), secret_access_key=FAKE_ENC)
    write_doc(workdir / "connections/keys.yaml", doc)
    code, findings = findings_of(run)
    assert (code, [f["rule"] for f in findings]) == (1, ["aws-key-account"])


# --- `new aws` offers both ---------------------------------------------------------------------


def test_new_writes_a_role_connection_from_flags(repo: Path, run: Run,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTERNAL", CANARY)
    result = run("new", "aws", "--name", "AWS Role", "--no-input", "--set", "account_id=123456789012",
                 "--set", "default_region=eu-west-1", "--set", f"role_arn={ROLE}",
                 "--set", "session_duration_seconds=3600", "--secret-env", "external_id=EXTERNAL")
    assert result.code == 0, result.err
    assert "Wrote connections/aws-role.yaml (external_id encrypted with SOPS)" in result.out
    path = repo / "connections/aws-role.yaml"
    assert CANARY not in path.read_text() + result.out + result.err
    desired = sops.decrypt(declared(path), path)
    assert dict(desired.spec) == {"account_id": "123456789012", "default_region": "eu-west-1",
                                  "role_arn": ROLE, "session_duration_seconds": 3600}
    assert desired.secrets == {"external_id": Secret(CANARY)}
    assert run("validate").code == 0


def test_new_without_input_names_both_ways(repo: Path, run: Run) -> None:
    result = run("new", "aws", "--name", "X", "--no-input", "--set", "account_id=123456789012",
                 "--set", "default_region=us-east-1")
    assert result.code == 64
    assert result.err.splitlines()[:3] == [
        "connsync: error: --set access_key_id: missing (Access Key ID (access_key_id))",
        "connsync: error: --secret-env secret_access_key: missing (Secret Access Key (secret_access_key))",
        "connsync: error: (or instead iam role: --set role_arn)"]


def test_new_refuses_a_role_in_another_account(repo: Path, run: Run) -> None:
    result = run("new", "aws", "--name", "X", "--no-input", "--set", "account_id=123456789012",
                 "--set", "default_region=us-east-1", "--set", "role_arn=arn:aws:iam::999999999999:role/x")
    assert result.code == 1
    assert "--set role_arn: the role is in account 999999999999, not account_id 123456789012" in result.err


def test_new_asks_which_way_on_a_terminal(repo: Path) -> None:
    code, transcript = run_in_terminal(
        "new", "aws", "--name", "Typed Role", "--set", "account_id=123456789012",
        "--set", "default_region=us-east-1",
        answers=((b"Which one [1]:", b"2\n"),
                 (b"Role ARN (role_arn):", ROLE.encode() + b"\n"),
                 (b"External ID (external_id, optional", b"x\n"),  # too short for STS: asked again
                 (b"External ID (external_id, optional", CANARY.encode() + b"\n"),
                 (b"Session duration (session_duration_seconds, optional", b"\n")),
    )
    text = transcript.decode()
    assert code == 0, text
    assert "2. IAM role (role_arn)" in text
    assert "✗ external_id must be 2 to 1224 characters" in text
    assert CANARY not in text
    path = repo / "connections/typed-role.yaml"
    desired = sops.decrypt(declared(path), path)
    assert desired.spec["role_arn"] == ROLE and "session_duration_seconds" not in desired.spec
    assert desired.secrets == {"external_id": Secret(CANARY)}
