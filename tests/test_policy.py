"""Organisation policy (DESIGN section 10): policy files as code, offline rules, waivers; through the CLI."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, Run
from tests.helpers import aws_doc, key_id_for, write_doc

AGE_RECIPIENT = "age14x8nwhjxvm63kpm4y88qa6w9g53rsrungqjxnfmjp0z0njxxcs3suadzms"
TODAY = datetime.now(UTC).date()
SOON = (TODAY + timedelta(days=30)).isoformat()
PAST = (TODAY - timedelta(days=1)).isoformat()


def policy(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("apiVersion: connsync/v1\nkind: Policy\nmetadata: {name: baseline}\n"
                    + textwrap.dedent(body))
    return path


def where(path: Path, needle: str) -> tuple[int, int]:
    """Line and column (1-based) of the value after ``needle`` in the file."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number, line.index(needle) + len(needle) + 1
    raise AssertionError(f"{needle!r} not in {path}")


def validate_json(run: Run, *args: str) -> tuple[int, dict[str, Any]]:
    result = run("validate", "--format", "json", *args)
    assert "Traceback" not in result.out + result.err
    return result.code, json.loads(result.out)


@pytest.fixture
def prod(workdir: Path) -> Path:
    doc = aws_doc("AWS Prod", default_region="us-east-1")
    doc["metadata"]["labels"] = {"env": "prod", "owner": ""}
    return write_doc(workdir / "connections/prod.yaml", doc)


RULES = """\
rules:
  - id: prod-accounts
    match: {providers: [aws], labels: {env: prod}, names: '^AWS'}
    require: {accounts: ["111111111111"]}
  - id: eu-regions
    require: {regions: [eu-west-1, eu-central-1]}
    message: Connections stay in the EU
  - id: owner
    severity: warning
    require: {labels: [owner, cost-center]}
  - id: name-style
    require: {name: '^[a-z-]+$'}
  - id: key-shape
    match: {providers: [aws]}
    require: {expression: '!spec.access_key_id.endsWith("EXAMPLE")'}
  - id: not-matched
    match: {labels: {env: dev}}
    require: {accounts: ["222222222222"]}
"""


def test_each_offline_rule_is_a_located_finding(run: Run, workdir: Path, prod: Path) -> None:
    policy(workdir / "policies/baseline.yaml", RULES)
    code, report = validate_json(run)
    assert code == 1 and report["ok"] is False
    found = {f["rule"]: f for f in report["findings"]}
    assert set(found) == {"policy/prod-accounts", "policy/eu-regions", "policy/owner",
                          "policy/name-style", "policy/key-shape"}
    assert all(f["file"] == "connections/prod.yaml" for f in found.values())

    def at(rule: str) -> tuple[int, int]:
        return found[rule]["line"], found[rule]["column"]

    assert at("policy/prod-accounts") == where(prod, "account_id: ")
    assert found["policy/prod-accounts"]["path"] == "$.spec.account_id"
    assert "'123456789012' is not one of the allowed accounts (111111111111)" in \
        found["policy/prod-accounts"]["message"]
    assert at("policy/eu-regions") == where(prod, "default_region: ")
    assert found["policy/eu-regions"]["message"].startswith("Connections stay in the EU (rule 'eu-regions'")
    assert found["policy/owner"]["severity"] == "warning"
    assert found["policy/owner"]["path"] == "$.metadata.labels"
    assert at("policy/owner") == (where(prod, "labels:")[0] + 1, 5)  # the mapping under the key
    assert "owner, cost-center" in found["policy/owner"]["message"]  # an empty owner is missing too
    assert at("policy/name-style") == where(prod, "name: ")
    assert at("policy/key-shape") == where(prod, "access_key_id: ")  # the one field the expression reads
    assert "policies/baseline.yaml" in found["policy/key-shape"]["message"]

    text = run("validate")
    assert text.code == 1
    line, column = where(prod, "account_id: ")
    assert (f"connections/prod.yaml:{line}:{column}: error [policy/prod-accounts] $.spec.account_id:"
            in text.out)
    github = run("validate", "--format", "github")
    assert (f"::error file=connections/prod.yaml,line={line},col={column},"
            "title=connsync policy/prod-accounts::$.spec.account_id: account_id") in github.out


def test_a_connection_that_complies_passes(run: Run, workdir: Path) -> None:
    doc = aws_doc("aws-billing", account_id="111111111111", default_region="eu-west-1",
                  access_key_id=key_id_for("111111111111"))
    doc["metadata"]["labels"] = {"env": "prod", "owner": "data", "cost-center": "cc-1"}
    write_doc(workdir / "connections/billing.yaml", doc)
    policy(workdir / "policies/baseline.yaml", RULES.replace("'^AWS'", "'^aws'"))
    code, report = validate_json(run)
    assert (code, report["findings"], report["waived"]) == (0, [], [])


def test_waivers_waive_until_they_expire(run: Run, workdir: Path, prod: Path) -> None:
    policy(workdir / "policies/baseline.yaml", f"""\
        rules:
          - id: eu-regions
            require: {{regions: [eu-west-1]}}
          - id: prod-accounts
            require: {{accounts: ["111111111111"]}}
        waivers:
          - rule: eu-regions
            connection: aws prod        # names are compared ignoring case
            expires: {SOON}
            reason: OPS-1234, moving to eu-west-1
          - rule: prod-accounts
            connection: AWS Prod
            expires: {PAST}
            reason: OPS-999, was due yesterday
        """)
    code, report = validate_json(run)
    assert code == 1
    rules = sorted(f["rule"] for f in report["findings"])
    assert rules == ["policy-waiver", "policy/prod-accounts"]  # the expired waiver waives nothing
    expired = next(f for f in report["findings"] if f["rule"] == "policy-waiver")
    assert expired["severity"] == "warning" and expired["file"] == "policies/baseline.yaml"
    assert (expired["line"], expired["column"]) == (where(workdir / "policies/baseline.yaml",
                                                          "- rule: prod-accounts")[0], 5)
    assert f"expired on {PAST}" in expired["message"]
    (waived,) = report["waived"]
    assert waived["rule"] == "policy/eu-regions" and waived["file"] == "connections/prod.yaml"
    line = where(workdir / "policies/baseline.yaml", "- rule: eu-regions")[0]
    assert waived["waiver"] == {"file": "policies/baseline.yaml", "line": line, "expires": SOON,
                                "reason": "OPS-1234, moving to eu-west-1"}
    text = run("validate")
    assert "1 error, 1 warning, 1 waived by policy waivers - failed" in text.out
    assert "policy/eu-regions" not in text.out


# The policy file starts with three lines (apiVersion, kind, metadata): the body's line 1 is line 4.
@pytest.mark.parametrize(
    ("body", "line", "column", "fragment"),
    [
        ("rules:\n  - id: a\n    require: {labelz: [owner]}\n", 6, 15, "unknown key; did you mean 'labels'?"),
        ("rules:\n  - id: a\n    match: {names: '(unclosed'}\n    require: {labels: [x]}\n", 6, 20,
         "not a valid RE2 regular expression: missing )"),
        ("rules:\n  - id: a\n    require: {name: '(?<=x)y'}\n", 6, 21, "not a valid RE2"),
        ("rules:\n  - id: a\n    require: {expression: 'spec.region =='}\n", 6, 27, "does not compile"),
        ("rules:\n  - id: a\n    require: {expression: 'secrets.x == 1'}\n", 6, 27,
         "unknown variable 'secrets'"),
        ("rules:\n  - id: a\n    require:\n      expression: 'labels.all(a, labels.all(b, labels.exists(c, "
         "true)))'\n", 7, 19, "3 comprehension macros (all, exists, exists_one, map, filter); at most 2"),
        ("rules:\n  - id: a\n    require: {labels: [x]}\n  - id: a\n    require: {labels: [y]}\n", 7, 9,
         "rule id 'a' is already used"),
        ("rules: []\nwaivers:\n  - {rule: a, connection: X, expires: 2026-01-01}\n", 6, 5,
         "'reason' is a required property"),
        ("rules: []\nwaivers:\n  - {rule: a, connection: X, reason: later}\n", 6, 5,
         "'expires' is a required property"),
        ("rules:\n  - id: a\n    require: {labels: [x]}\nwaivers:\n  - {rule: a, connection: X, "
         f"expires: {(TODAY + timedelta(days=400)).isoformat()}, reason: later}}\n", 8, 39,
         "more than a year ahead"),
        ("rules:\n  - id: a\n    require: {labels: [x]}\nwaivers:\n  - {rule: b, connection: X, "
         f"expires: {SOON}, reason: later}}\n", 8, 5, "names rule 'b', which no policy file defines"),
        ("rules:\n  - id: a\n    severity: fatal\n    require: {labels: [x]}\n", 6, 15,
         "'fatal' is not one of"),
    ],
)
def test_a_bad_policy_file_is_a_located_finding_and_stops_plan(
    run: Run, workdir: Path, prod: Path, body: str, line: int, column: int, fragment: str
) -> None:
    policy(workdir / "policies/bad.yaml", body)
    code, report = validate_json(run)
    assert code == 1
    problems = [f for f in report["findings"] if f["rule"] == "policy-file"]
    assert len(problems) == 1, report["findings"]
    (problem,) = problems
    assert problem["file"] == "policies/bad.yaml" and fragment in problem["message"], problem
    assert (problem["line"], problem["column"]) == (line, column), problem
    if "no policy file defines" not in fragment:  # that file's own rules are sound, and in force
        assert not any(f["rule"].startswith("policy/") for f in report["findings"])
    planned = run("plan")
    assert planned.code == 1 and "1 policy file(s) have errors; nothing was planned" in planned.err
    verified = run("verify")  # its online rules would go unchecked: nothing is verified
    assert verified.code == 1 and "1 policy file(s) have errors; nothing was verified" in verified.err
    assert f"policies/bad.yaml:{line}:{column}: error [policy-file]" in verified.err
    applied = run("apply", "--auto-approve")
    assert applied.code == 1 and "1 policy file(s) have errors; nothing was applied" in applied.err


def test_a_policy_of_another_kind_is_refused(run: Run, workdir: Path, prod: Path) -> None:
    (workdir / "policies").mkdir()
    (workdir / "policies/x.yaml").write_text("apiVersion: connsync/v1\nkind: Connection\n"
                                             "metadata: {name: x}\nrules: []\n")
    code, report = validate_json(run)
    (problem,) = report["findings"]
    assert (code, problem["rule"], problem["line"], problem["column"]) == (1, "policy-file", 2, 7)
    assert "'Policy' was expected" in problem["message"]


def test_an_expression_that_fails_at_run_time_is_a_finding_never_a_pass(run: Run, workdir: Path,
                                                                         prod: Path) -> None:
    policy(workdir / "policies/baseline.yaml", """\
        rules:
          - id: team
            require: {expression: 'labels.team == "data"'}
            message: never shown for an error
          - id: typed
            require: {expression: 'size(name)'}
          - id: zero
            require: {expression: '1 / (size(labels) - 2) == 1'}
        """)
    code, report = validate_json(run)
    assert code == 1
    found = {f["rule"]: f["message"] for f in report["findings"]}
    assert "could not be evaluated: no such key: team" in found["policy/team"]
    assert "never shown" not in found["policy/team"]
    assert "must give true or false, not a int" in found["policy/typed"]
    assert "could not be evaluated: division by zero" in found["policy/zero"]


def test_expressions_never_see_secret_fields(run: Run, workdir: Path, prod: Path) -> None:
    policy(workdir / "policies/baseline.yaml", """\
        rules:
          - id: no-secrets
            require: {expression: '!has(spec.secret_access_key) && has(spec.access_key_id)'}
        """)
    code, report = validate_json(run)
    assert (code, report["findings"]) == (0, [])


def test_policy_flag_replaces_the_configured_policies(run: Run, workdir: Path, prod: Path) -> None:
    policy(workdir / "policies/own.yaml", f"""\
        rules:
          - id: eu-regions
            require: {{regions: [eu-west-1]}}
        waivers:
          - {{rule: eu-regions, connection: AWS Prod, expires: {SOON}, reason: the branch waives itself}}
        """)
    assert run("validate").code == 0  # the repository's own policy, with its waiver
    policy(workdir / "base/policies/baseline.yaml",
           "rules:\n  - id: eu-regions\n    require: {regions: [eu-west-1]}\n")
    code, report = validate_json(run, "--policy", "base/policies")
    assert code == 1 and [f["rule"] for f in report["findings"]] == ["policy/eu-regions"]
    assert report["waived"] == []
    missing = run("validate", "--policy", "nowhere.yaml")
    assert missing.code == 1 and "no policy file or directory at nowhere.yaml" in missing.err


def test_policies_setting_in_connsync_yaml(run: Run, workdir: Path, prod: Path) -> None:
    policy(workdir / "org/strict.yaml", "rules:\n  - id: eu-regions\n    require: {regions: [eu-west-1]}\n")
    (workdir / "connsync.yaml").write_text("policies: [org/strict.yaml]\n")
    code, report = validate_json(run)
    assert code == 1 and report["findings"][0]["rule"] == "policy/eu-regions"
    (workdir / "connsync.yaml").write_text("policies: org/missing\n")
    result = run("validate")
    assert result.code == 1 and "no policy file or directory at org/missing" in result.err
    (workdir / "connsync.yaml").write_text("policies: 7\n")
    result = run("validate")
    assert result.code == 1 and "connsync.yaml:1:11: $.policies" in result.err


def test_no_policy_directory_means_no_policy(run: Run, workdir: Path, prod: Path) -> None:
    code, report = validate_json(run)
    assert (code, report["findings"], report["waived"]) == (0, [], [])


def test_schema_policy_prints_the_shipped_schema(run: Run) -> None:
    result = run("schema", "policy")
    assert result.code == 0
    assert json.loads(result.out) == json.loads((REPO / "schemas/policy.schema.json").read_text())


def test_the_plan_comment_shows_the_policy_and_what_the_branch_changes(run: Run, workdir: Path,
                                                                        prod: Path) -> None:
    base = workdir / ".connsync/base"
    (base / "connections").mkdir(parents=True)
    policy(base / "policies/baseline.yaml", f"""\
        rules:
          - id: prod-accounts
            require: {{accounts: ["123456789012"]}}
          - id: owner
            severity: warning
            require: {{labels: [owner]}}
          - id: rotation
            require: {{max_key_age_days: 30}}
          - id: eu-regions
            require: {{regions: [eu-west-1]}}
        waivers:
          - {{rule: eu-regions, connection: AWS Prod, expires: {SOON}, reason: OPS-7 moving}}
        """)
    later = (TODAY + timedelta(days=60)).isoformat()
    policy(workdir / "policies/baseline.yaml", f"""\
        rules:
          - id: prod-accounts
            severity: warning
            require: {{accounts: ["123456789012", "999999999999"]}}
          - id: owner
            severity: warning
            require: {{labels: [owner]}}
          - id: eu-regions
            require: {{regions: [eu-west-1]}}
          - id: named
            require: {{name: '^AWS'}}
        waivers:
          - {{rule: eu-regions, connection: AWS Prod, expires: {later}, reason: OPS-7 moving}}
          - {{rule: owner, connection: AWS Prod, expires: {SOON}, reason: 'team <b>TBD</b> | soon'}}
        """)
    comment = ("plan", "--base", ".connsync/base", "--format", "markdown",
               "--policy", ".connsync/base/policies")
    result = run(*comment)
    assert result.code == 0, result.err
    out = result.out
    assert "**Policy**: 1 warning" in out
    line, column = where(prod, "labels:")[0] + 1, 5
    assert f"| warning | `policy/owner` | `connections/prod.yaml:{line}:{column}` |" in out
    waiver_line = where(base / "policies/baseline.yaml", "- {rule: eu-regions")[0]
    assert (f"- `policy/eu-regions` on `connections/prod.yaml`: waived until {SOON} by "
            f"`.connsync/base/policies/baseline.yaml` line {waiver_line} (`OPS-7 moving`)") in out
    assert "**Policy changes in this pull request**" in out
    assert "- rule added: `named` (`policies/baseline.yaml`)" in out
    assert "- rule removed: `rotation`" in out
    assert ("- rule relaxed: `prod-accounts` (`severity error -> warning; require.accounts also allows "
            "999999999999`)") in out
    assert (f"- waiver extended: `eu-regions / AWS Prod` (`until {later}: OPS-7 moving "
            f"(was until {SOON})`)") in out
    # File text stays in code spans: no markup reaches the comment.
    assert f"- waiver added: `owner / AWS Prod` (`until {SOON}: team <b>TBD</b> \\| soon`)" in out

    # The base branch's policy stops the plan: the comment gets the findings that stop it.
    policy(base / "policies/baseline.yaml",
           "rules:\n  - id: eu-regions\n    require: {regions: [eu-west-1]}\n")
    stopped = run(*comment)
    assert stopped.code == 1
    assert stopped.out.startswith("The files do not pass validation, so nothing was planned:\n\n| | Rule |")
    assert "| error | `policy/eu-regions` | `connections/prod.yaml:" in stopped.out


def test_the_example_repository_shows_a_located_and_a_waived_policy_finding(
        run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    code, report = validate_json(run)
    assert code == 0
    owner = [f for f in report["findings"] if f["rule"] == "policy/prod-owner"]
    labels_line = where(REPO / "connections/aws-prod.yaml", "labels:")[0] + 1
    assert [(f["file"], f["line"], f["column"]) for f in owner] == [
        ("connections/aws-prod.yaml", labels_line, 9)]
    text = (REPO / "policies/baseline.yaml").read_text()
    expires = datetime.strptime(text.split("expires: ")[1][:10], "%Y-%m-%d").date()
    if expires >= TODAY:
        (waived,) = report["waived"]
        assert (waived["rule"], waived["file"]) == ("policy/eu-regions", "connections/aws-prod.yaml")
        assert "1 waived by policy waivers - ok" in run("validate").out
    else:  # the waiver has run out: the finding and the expired waiver are both shown
        assert {"policy/eu-regions", "policy-waiver"} <= {f["rule"] for f in report["findings"]}


def test_init_writes_an_example_policy_that_is_valid_once_uncommented(run: Run, workdir: Path) -> None:
    assert run("init", "--age-recipient", AGE_RECIPIENT).code == 0
    written = workdir / "policies/baseline.yaml"
    assert run("validate").code == 0
    lines = written.read_text().splitlines()
    start = lines.index("rules: []")
    header = [line for line in lines[:start] if not line.startswith("#")]
    body = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines[start + 1:]]
    written.write_text("\n".join([*header, *body]) + "\n")
    code, report = validate_json(run)
    assert (code, report["findings"]) == (0, []), report
    rules = yaml.safe_load(written.read_text())["rules"]
    assert {r["id"] for r in rules} == {"prod-accounts", "owner-label", "eu-only", "safe-keys"}
    # init again leaves a policy in place, whatever it holds
    assert run("init", "--force", "--age-recipient", AGE_RECIPIENT).code == 0
    assert "rules: []" not in written.read_text()


def test_an_evaluation_over_the_time_bound_is_a_finding(run: Run, workdir: Path, prod: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from connsync.validate import cel

    policy(workdir / "policies/baseline.yaml",
           "rules:\n  - id: slow\n    require: {expression: 'size(name) > 0'}\n")
    assert run("validate").code == 0
    monkeypatch.setattr(cel, "MAX_SECONDS", 0.0)  # every evaluation is now over the bound
    code, report = validate_json(run)
    (finding,) = report["findings"]
    assert code == 1 and finding["rule"] == "policy/slow"
    assert "could not be evaluated: evaluation took" in finding["message"]
    assert "over the bound of 0.0 s" in finding["message"]
