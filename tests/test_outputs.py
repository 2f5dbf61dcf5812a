"""Every --format json output is one versioned envelope, errors included, valid against its schema."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from connsync import render
from tests.conftest import REPO, Result, Run, new_aws

OUTPUTS = REPO / "src/connsync/outputs"
COMMANDS = ("validate", "verify", "plan", "show", "apply", "list", "schema", "rotate", "audit")


@cache
def validator(command: str) -> Draft202012Validator:
    schema = json.loads((OUTPUTS / f"{command}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def checked(command: str, result: Result, *, ok: bool | None) -> dict[str, Any]:
    """The one JSON document on stdout, valid against the command's schema."""
    document: dict[str, Any] = json.loads(result.out)
    errors = sorted(validator(command).iter_errors(document), key=str)
    assert not errors, f"{command}: {errors[0].message} at {list(errors[0].absolute_path)}"
    assert document["format_version"] == 1 and document["command"] == command
    if ok is not None:
        assert document["ok"] is ok
    return document


def test_docs_carry_the_shipped_schemas() -> None:
    shipped = {p.name: p.read_text() for p in OUTPUTS.glob("*.schema.json")}
    docs = {p.name: p.read_text() for p in (REPO / "docs/schemas").glob("*.schema.json")}
    assert shipped == docs
    assert {f"{c}.schema.json" for c in COMMANDS} | {"plan-file.schema.json"} == set(shipped)


def test_the_schemas_reject_what_they_should() -> None:
    good = render.envelope("list", True, {"workspace": "w", "connections": []})
    assert validator("list").is_valid(good)
    assert not validator("list").is_valid([])  # the bare array of old
    assert not validator("list").is_valid({**good, "format_version": 2})
    assert not validator("plan").is_valid({**good, "command": "plan"})


def test_every_command_json_output_validates(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                                             aws_endpoint: object) -> None:
    assert new_aws(run, monkeypatch).code == 0
    checked("validate", run("validate", "--format", "json"), ok=True)
    checked("schema", run("schema", "--list", "--format", "json"), ok=True)
    checked("schema", run("schema", "aws", "--format", "json"), ok=True)
    checked("list", run("list", "--format", "json"), ok=True)
    plan = checked("plan", run("plan", "--format", "json", "--out", "changes.plan"), ok=True)
    assert plan["pending"] is True and plan["summary"]["create"] == 1
    shown = checked("show", run("show", "changes.plan", "--format", "json"), ok=True)
    assert shown["changes"] == plan["changes"] and shown["signed"] is False
    checked("verify", run("verify", "--format", "json"), ok=None)
    applied = checked("apply", run("apply", "--auto-approve", "--skip-verify", "--format", "json"), ok=True)
    assert applied["applied"] == [{"action": "create", "name": "AWS Prod", "version": 1}]
    listed = checked("list", run("list", "--format", "json"), ok=True)
    assert listed["connections"][0]["secrets"] == ["secret_access_key"]
    assert listed["connections"][0]["labels"] == {}
    audited = checked("audit", run("audit", "--format", "json"), ok=True)
    assert [(e["name"], e["action"], e["version_after"]) for e in audited["entries"]] == [
        ("AWS Prod", "create", 1)]


def test_errors_are_json_on_stdout_too(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    assert new_aws(run, monkeypatch).code == 0
    (repo / "connections/broken.yaml").write_text("spec: [")
    result = run("plan", "--format", "json")
    assert result.code == 1
    error = checked("plan", result, ok=False)
    assert error["error"]["exit_code"] == 1 and "nothing was planned" in error["error"]["message"]
    assert error["findings"][0]["file"] == "connections/broken.yaml"
    assert "nothing was planned" in result.err  # the line for people stays on stderr
    text = run("plan")  # the next run in the same process is text again, errors included
    assert text.code == 1 and text.out == "" and "nothing was planned" in text.err
    checked("validate", run("validate", "--format", "json"), ok=False)
    checked("apply", run("apply", "--auto-approve", "--format", "json"), ok=False)
    checked("verify", run("verify", "--format", "json"), ok=False)
    unknown = run("schema", "oracle", "--format", "json")
    assert unknown.code == 64 and checked("schema", unknown, ok=False)["error"]["exit_code"] == 64
    rotate = run("rotate", "No Such Connection", "--format", "json")
    assert rotate.code == 1 and checked("rotate", rotate, ok=False)
    (repo / "bad.plan").write_text('{"format": 1, "paths": [123]}')
    assert checked("show", run("show", "bad.plan", "--format", "json"), ok=False)


def test_an_internal_error_is_json_too(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from connsync.commands import listing

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(listing, "list_connections", broken)
    result = run("list", "--format", "json")
    assert result.code == 3
    error = checked("list", result, ok=False)["error"]
    assert error["exit_code"] == 3 and error["message"].startswith("internal error (RuntimeError)")
