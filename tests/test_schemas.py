"""The schemas themselves: complete, dispatching, shipped in the wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from connsync.validate import schema
from tests.conftest import REPO, Run

PROVIDERS = ["aws", "azure", "gcp"]


@pytest.mark.parametrize("name", PROVIDERS)
def test_every_field_is_documented(name: str) -> None:
    provider_schema = json.loads((REPO / "schemas" / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(provider_schema)
    assert provider_schema["additionalProperties"] is False
    for field, prop in provider_schema["properties"].items():
        assert prop.get("title") and prop.get("description") and prop.get("examples"), field
    assert schema.secret_fields(name), f"{name} has no writeOnly secret field"


def test_aws_has_the_form_fields_and_the_role_fields() -> None:
    aws = schema.get_schema("aws")
    assert list(aws["properties"]) == ["account_id", "default_region", "access_key_id", "secret_access_key",
                                       "role_arn", "external_id", "session_duration_seconds"]
    assert schema.secret_fields("aws") == {"secret_access_key", "external_id"}
    # A key pair or a role: the form's four fields remain one valid choice.
    assert [branch["required"] for branch in aws["anyOf"]] == [["access_key_id", "secret_access_key"],
                                                               ["role_arn"]]


def test_envelope_dispatches_to_every_provider_schema() -> None:
    envelope = schema.get_schema("connection")
    dispatched = {
        branch["if"]["properties"]["provider"]["const"]: branch["then"]["properties"]["spec"]["$ref"]
        for branch in envelope["allOf"]
    }
    assert dispatched == {name: f"{name}.schema.json" for name in schema.provider_names()}
    assert sorted(envelope["properties"]["provider"]["enum"]) == sorted(schema.provider_names())


def test_schema_command(run: Run) -> None:
    result = run("schema", "aws")
    assert result.code == 0
    assert json.loads(result.out)["title"] == "AWS connection"
    listed = run("schema", "--list", "--format", "json")
    providers = json.loads(listed.out)["providers"]
    assert [p["name"] for p in providers] == PROVIDERS
    assert providers[0]["secret_fields"] == ["external_id", "secret_access_key"]
    unknown = run("schema", "oracle")
    assert unknown.code == 64 and "known providers: aws, azure, gcp" in unknown.err


def test_every_command_has_help(run: Run) -> None:
    from connsync.cli import cli

    for name, command in cli.commands.items():
        assert command.help and len(command.help) > 20, name
        assert run(name, "--help").code == 0


def test_version(run: Run) -> None:
    result = run("--version")
    assert result.code == 0 and "connsync, version" in result.out


def test_wheel_ships_the_schemas(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("connsync-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for source in (REPO / "schemas").glob("*.schema.json"):
            shipped = archive.read(f"connsync/schemas/{source.name}")
            assert shipped == source.read_bytes()
        archive.extractall(tmp_path / "installed")
    # Run from the unpacked wheel, far from the repository: the schemas come with it.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-c", "import connsync.cli as c; print(c.__file__); "
                             "raise SystemExit(c.main(['schema', 'aws']))"], cwd=elsewhere,
                            env={**os.environ, "PYTHONPATH": str(tmp_path / "installed")},
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(str(tmp_path / "installed"))
    assert json.loads(result.stdout.split("\n", 1)[1])["title"] == "AWS connection"


def test_cli_reference_is_generated_from_help() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts/cli_reference.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
