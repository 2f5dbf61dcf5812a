"""connsync report through the CLI: states, problems first, Markdown limits, JSON, never a secret."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import cmarkgfm
import pytest

from connsync.report.markdown import COMMENT_LIMIT
from tests import report_fleet
from tests.conftest import CANARY, Run
from tests.report_fleet import EXPOSED_MESSAGE, HOSTILE, HOSTILE_LABEL

PROBLEMS = ["Billing", HOSTILE, "Broken", "Drifted", "Old Key", "Retired", "Bad Region"]


@pytest.fixture
def fleet(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> Path:
    report_fleet.build(repo, run, monkeypatch)
    # The report needs no key: it never decrypts.
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(repo / "no-such-key.txt"))
    return repo


def _json(run: Run, *args: str) -> dict[str, Any]:
    result = run("report", "--format", "json", *args)
    assert result.code == 0, result.err
    document: dict[str, Any] = json.loads(result.out)
    return document


def test_json_has_every_state_problems_first_and_the_fields(fleet: Path, run: Run) -> None:
    document = _json(run)
    assert (document["format_version"], document["command"], document["workspace"]) == (
        1, "report", "default")
    rows = {c["name"]: c for c in document["connections"]}
    order = [c["name"] for c in document["connections"]]
    assert order[:7] == PROBLEMS and set(order[7:]) == {"Azure Dev", "GCP Analytics", "New One"}
    assert {n: rows[n]["state"] for n in rows} == {
        "Billing": "in-sync", "Broken": "in-sync", HOSTILE: "in-sync", "Drifted": "drift",
        "Old Key": "in-sync", "Retired": "orphan", "Bad Region": "not-applied", "Azure Dev": "in-sync",
        "GCP Analytics": "in-sync", "New One": "not-applied"}
    assert rows["Billing"]["exposed"] is True and rows["Billing"]["problems"][0] == "exposed"
    assert rows["Billing"]["last_verification"]["messages"] == [EXPOSED_MESSAGE]
    assert rows["Billing"]["history"] == ["failed", "ok"] and rows["Billing"]["labels"] == {"env": "prod"}
    assert rows["Broken"]["last_verification"]["status"] == "failed"
    assert rows["Old Key"]["key_age_days"] == 200 and rows["Old Key"]["key_overdue"] is True
    assert rows["GCP Analytics"]["key_age_days"] == 30 and rows["GCP Analytics"]["last_rotated"]
    assert (rows["GCP Analytics"]["account"], rows["Azure Dev"]["account"]) == (
        "analytics-1", "00000000-0000-0000-0000-000000000001")
    assert rows["New One"]["last_verification"] is None and rows["New One"]["problems"] == []
    assert rows["Retired"]["file"] == "connections/retired.yaml"
    [finding] = rows["Bad Region"]["findings"]
    assert finding["file"] == "connections/bad-region.yaml" and finding["severity"] == "error"
    assert document["summary"] == {
        "connections": 10, "problems": 7, "exposed": 1,
        "states": {"in-sync": 6, "drift": 1, "not-applied": 2, "orphan": 1},
        "verification": {"ok": 2, "warning": 1, "failed": 3, "skipped": 0, "never": 4},
        "keys_overdue": 1, "unmanaged": 0}


def test_json_validates_against_its_schema(fleet: Path, run: Run) -> None:
    from tests.test_outputs import checked

    checked("report", run("report", "--format", "json"), ok=True)


def test_no_secret_and_no_decryption(fleet: Path, run: Run) -> None:
    outputs = [run("report", "--format", fmt) for fmt in ("html", "markdown", "json")]
    for result in outputs:
        assert result.code == 0, result.err  # no age key here: nothing was decrypted
        assert CANARY not in result.out + result.err
        assert "ENC[" not in result.out and "PRIVATE KEY" not in result.out


def test_html_escapes_every_file_text(fleet: Path, run: Run) -> None:
    page = run("report").out
    assert HOSTILE not in page and HOSTILE_LABEL not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;b&gt;ops&lt;/b&gt;" in page
    assert "http://" not in page and "https://" not in page and "src=" not in page.replace("src=x", "")
    assert re.search(r'<meta http-equiv="Content-Security-Policy" content="default-src \'none\';', page)


def test_markdown_problems_table_and_the_rest_folded(fleet: Path, run: Run) -> None:
    text = run("report", "--format", "markdown").out
    summary, _, rest = text.partition("### Needs attention (7)")
    assert "**10 connections**: 6 in sync, 1 drift, 2 not applied, 1 orphan · **7 need attention**" in summary
    assert "[!CAUTION]" in summary and "`Billing`" in summary
    problems, _, folded = rest.partition("<details><summary>Everything else (3)</summary>")
    assert all(f"`{name}`" in problems for name in PROBLEMS)
    assert "`Azure Dev`" in folded and folded.rstrip().endswith("</details>")
    rendered = cmarkgfm.github_flavored_markdown_to_html(text)
    assert "<img" not in rendered and "<b>ops" not in rendered  # GitHub's renderer shows it as text


@pytest.mark.parametrize("limit", [2_000, 3_000, 5_000, COMMENT_LIMIT])
def test_markdown_is_cut_between_rows_and_says_how_many_were_left_out(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    # Many connections, each with a long name: no page of this size holds them all.
    url = report_fleet.build(repo, run, monkeypatch)
    from connsync.store import Write, opened

    with opened(url, "default") as store:
        for index in range(400):
            store.put(Write(f"Bulk {index:04d} " + "x" * 100, "aws", {"account_id": "123456789012"}, {},
                            True, "t", "create", source=f"connections/gone-{index}.yaml"),
                      expected_version=None)
    result = run("report", "--format", "markdown", "--max-size", str(limit))
    assert result.code == 0, result.err
    text = result.out
    assert len(text.encode()) <= limit
    cut = re.findall(r"^_(\d[\d,]*) more rows? left out to stay within ([\d,]+) characters", text, re.M)
    assert cut and all(int(n.replace(",", "")) > 0 and int(m.replace(",", "")) == limit for n, m in cut)
    shown = sum(1 for line in text.splitlines() if line.startswith("| `"))
    left_out = sum(int(n.replace(",", "")) for n, _ in cut)
    assert shown + left_out == 410  # every row is either in a table or counted as left out
    for line in text.splitlines():  # never a broken table: each row whole, with all its cells
        if line.startswith("|"):
            assert line.endswith("|") and line.replace("\\|", "").count("|") == 8
    assert "</details>" in text if "<details>" in text else True


def test_markdown_refuses_a_limit_too_small_and_html_refuses_max_size(fleet: Path, run: Run) -> None:
    small = run("report", "--format", "markdown", "--max-size", "100")
    assert small.code == 64 and "at least 2,000" in small.err
    assert run("report", "--max-size", "5000").code == 64


def test_out_writes_the_file_and_says_where(fleet: Path, run: Run) -> None:
    result = run("report", "--out", "site/connections.html")
    assert result.code == 0 and result.out == ""
    assert "Report of 10 connections (7 need attention) written to site/connections.html" in result.err
    assert (fleet / "site" / "connections.html").read_text().startswith("<!doctype html>")


def test_a_store_that_does_not_exist_yet_is_not_created(repo: Path, run: Run,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import new_aws

    assert new_aws(run, monkeypatch).code == 0
    document = _json(run)
    assert [c["state"] for c in document["connections"]] == ["not-applied"]
    assert not (repo / ".connsync" / "store.db").exists()


def test_paths_limit_the_report_and_find_no_orphans(fleet: Path, run: Run) -> None:
    document = _json(run, "connections/billing.yaml")
    assert [c["name"] for c in document["connections"]] == ["Billing"]


def test_the_drift_job_writes_the_report_to_the_summary_and_uploads_the_page(fleet: Path,
                                                                              tmp_path: Path) -> None:
    """The drift workflow's own report step, run as the runner would, in the fleet's repository."""
    import os
    import subprocess
    import sys

    import yaml

    from connsync.commands.init import workflow_text

    steps = yaml.safe_load(workflow_text("connections-apply.yml"))["jobs"]["drift"]["steps"]
    names = [s.get("name") for s in steps]
    report = steps[names.index("Connections report (job summary, and the HTML page as an artifact)")]
    upload = steps[names.index("Upload the report")]
    assert names.index("Verify the credentials (each result kept in the store for the report)") < \
        names.index(report["name"]) < names.index(upload["name"])
    summary = tmp_path / "summary.md"
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "GITHUB_STEP_SUMMARY": str(summary),
           "HOME": os.environ["HOME"], "NO_COLOR": "1"}
    proc = subprocess.run(["bash", "-e", "-c", report["run"]], cwd=fleet, env=env, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert summary.read_text().startswith("## Connections: workspace `default`")
    assert "### Needs attention (7)" in summary.read_text()
    assert (fleet / upload["with"]["path"]).read_text().startswith("<!doctype html>")


def test_a_broken_file_is_reported_not_a_crash(repo: Path, run: Run) -> None:
    (repo / "connections" / "odd.yaml").write_text(
        "apiVersion: connsync/v1\nprovider: aws\nmetadata:\n  name: Odd\n  labels: {1: [a, b], team: 7}\n"
        "spec: {account_id: '123456789012', default_region: us-east-1}\n")
    (repo / "connections" / "broken.yaml").write_text("apiVersion: [unclosed\n")
    for fmt in ("html", "markdown", "json"):
        result = run("report", "--format", fmt)
        assert result.code == 0 and "Traceback" not in result.err, result.err
    document = _json(run)
    [odd] = document["connections"]
    assert odd["labels"] == {"1": "['a', 'b']", "team": "7"} and odd["findings"]
    assert odd["problems"] == ["finding"]
    assert [f["rule"] for f in document["file_findings"]] == ["yaml"]


def test_policy_findings_show_on_the_page_from_the_policies_validate_uses(fleet: Path, run: Run) -> None:
    rule = ("apiVersion: connsync/v1\nkind: Policy\nmetadata: {{name: org}}\nrules:\n"
            "  - id: {id}\n    match: {{names: '^GCP Analytics$'}}\n    require: {{labels: [owner]}}\n")
    (fleet / "policies").mkdir(exist_ok=True)
    (fleet / "policies" / "org.yaml").write_text(rule.format(id="needs-owner"))
    other = fleet / "base-policy.yaml"
    other.write_text(rule.format(id="base-owner"))
    rows = {c["name"]: c for c in _json(run)["connections"]}
    assert [f["rule"] for f in rows["GCP Analytics"]["findings"]] == ["policy/needs-owner"]
    assert rows["GCP Analytics"]["problems"] == ["finding"]
    # --policy replaces the default policies/, as in validate (a PR runs under the base branch's).
    rows = {c["name"]: c for c in _json(run, "--policy", str(other))["connections"]}
    assert [f["rule"] for f in rows["GCP Analytics"]["findings"]] == ["policy/base-owner"]
    page = run("report", "--format", "html", "--policy", str(other))
    assert page.code == 0 and "policy/base-owner" in page.out
