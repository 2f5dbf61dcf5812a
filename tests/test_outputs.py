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
COMMANDS = ("validate", "verify", "plan", "show", "apply", "list", "schema", "rotate", "audit", "report")


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
    assert "format" not in plan and "format" not in shown  # format_version versions the output
    verified = checked("verify", run("verify", "--format", "json"), ok=None)
    assert sum(verified["summary"].values()) == len(verified["results"]) == 1
    applied = checked("apply", run("apply", "--auto-approve", "--skip-verify", "--format", "json"), ok=True)
    assert applied["applied"] == [{"action": "create", "name": "AWS Prod", "version": 1}]
    listed = checked("list", run("list", "--format", "json"), ok=True)
    assert listed["connections"][0]["secrets"] == ["secret_access_key"]
    assert listed["connections"][0]["labels"] == {}
    record = listed["connections"][0]
    assert record["file"] == record["source"] == "connections/aws-prod.yaml"
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


def test_the_json_commands_are_those_with_an_output_schema() -> None:
    assert set(COMMANDS) == render.JSON_COMMANDS


@pytest.mark.parametrize("args", [("list", "--format", "json", "--bogus"), ("verify", "--format=json", "-x"),
                                  ("audit", "--format", "json", "--since", "x"),
                                  ("plan", "--format", "json", "--detailed-exitcode", "--max-deletes", "2")])
def test_usage_errors_under_format_json_are_the_envelope(repo: Path, run: Run, args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.code == 64
    error = checked(args[0], result, ok=False)["error"]
    assert error["exit_code"] == 64 and "no such option" in error["message"].lower()
    assert error["hint"] == f"try 'connsync {args[0]} --help'"
    assert "Error:" in result.err  # people still read click's own lines on stderr


def test_a_bad_format_value_stays_click_text(repo: Path, run: Run) -> None:
    result = run("list", "--format", "yaml")
    assert result.code == 64 and result.out == "" and "'yaml' is not one of" in result.err


def test_audit_says_which_names_it_does_not_know(repo: Path, run: Run,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert new_aws(run, monkeypatch).code == 0
    assert run("apply", "--auto-approve", "--skip-verify").code == 0
    result = run("audit", "AWS Prod", "Nope", "--format", "json")
    document = checked("audit", result, ok=False)
    assert result.code == 1 and document["unknown"] == ["Nope"] and len(document["entries"]) == 1
    text = run("audit", "Nope")
    assert text.code == 1 and "no audit entry for 'Nope' in workspace default" in text.err
    assert checked("audit", run("audit", "aws prod", "--format", "json"), ok=True)["unknown"] == []


@pytest.mark.parametrize("command", ["list", "audit"])
def test_outside_any_repository_list_and_audit_say_so(tmp_path: Path, run: Run, command: str) -> None:
    result = run(command, cwd=tmp_path)
    assert result.code == 1 and result.out == ""
    assert "no connsync.yaml in" in result.err and "not a connections repository" in result.err
    assert "--store" in result.err
    named = run("--store", f"sqlite:{tmp_path}/elsewhere.db", command, cwd=tmp_path)
    assert named.code == 0, named.err  # a store named explicitly needs no repository


def test_init_again_says_it_is_already_initialised(repo: Path, run: Run) -> None:
    before = (repo / ".sops.yaml").read_bytes()
    result = run("init")
    assert result.code == 0 and "already initialised" in result.out and "nothing was changed" in result.out
    assert (repo / ".sops.yaml").read_bytes() == before
