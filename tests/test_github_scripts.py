"""The workflows' github-script steps, run by node against a fake GitHub REST API on 127.0.0.1.

The script bodies are taken from the workflows `init --github` writes, unmodified, and run as
actions/github-script runs them: an async function of require, github, context and core.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from connsync.commands.init import workflow_text
from tests.github.fake_api import FakeGitHub

RUNNER = Path(__file__).parent / "github" / "run_script.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (apt-get install nodejs)")
PR_NUMBER = 7


def script_of(workflow: str, job: str) -> str:
    steps = yaml.safe_load(workflow_text(workflow))["jobs"][job]["steps"]
    (step,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/github-script@")]
    return str(step["with"]["script"])


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


def run_script(github: FakeGitHub, tmp_path: Path, script: str, *, exit_code: str, plan: str,
               verify: str | None = None, verify_outcome: str = "success") -> None:
    """``verify`` is what the verify step wrote to verify.md (None: no such file)."""
    (tmp_path / "script.js").write_text(script)
    (tmp_path / "plan.md").write_text(plan)
    (tmp_path / "verify.md").unlink(missing_ok=True)
    if verify is not None:
        (tmp_path / "verify.md").write_text(verify)
    context = {"owner": "acme", "name": "connections", "serverUrl": "https://github.example",
               "runId": 42, "payload": {"pull_request": {"number": PR_NUMBER}}}
    (tmp_path / "context.json").write_text(json.dumps(context))
    env = {"PATH": os.environ["PATH"], "GITHUB_API_URL": github.url, "EXIT_CODE": exit_code,
           "PLAN_FILE": str(tmp_path / "plan.md"), "VERIFY_FILE": str(tmp_path / "verify.md"),
           "VERIFY_OUTCOME": verify_outcome}
    assert NODE is not None
    proc = subprocess.run([NODE, str(RUNNER), str(tmp_path / "script.js"), str(tmp_path / "context.json")],
                          env=env, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr


PR_SCRIPT = script_of("connections-pr.yml", "plan")
DRIFT_SCRIPT = script_of("connections-apply.yml", "drift")


def test_new_pull_request_gets_one_comment_and_the_changes_label(github: FakeGitHub, tmp_path: Path) -> None:
    github.state.add_issue(title="Add AWS Prod", pull_request=True, number=PR_NUMBER)
    run_script(github, tmp_path, PR_SCRIPT, exit_code="2", plan="**connsync plan**: 1 to create")
    (comment,) = github.state.comments_on(PR_NUMBER)
    assert comment["body"] == "<!-- connsync-plan -->\n**connsync plan**: 1 to create"
    assert github.state.label_names(PR_NUMBER) == ["connsync: changes"]


def test_updated_pull_request_edits_its_comment_in_place(github: FakeGitHub, tmp_path: Path) -> None:
    github.state.add_issue(title="Add AWS Prod", pull_request=True, number=PR_NUMBER)
    # A person quoting the marker is not the bot's comment, and is never edited.
    github.state.add_comment(PR_NUMBER, "<!-- connsync-plan -->\nmine", {"login": "eve", "type": "User"})
    for i in range(31):  # the bot's comment is on the second page
        github.state.add_comment(PR_NUMBER, f"review {i}", {"login": "bob", "type": "User"})
    run_script(github, tmp_path, PR_SCRIPT, exit_code="2", plan="first plan")
    run_script(github, tmp_path, PR_SCRIPT, exit_code="2", plan="second plan")
    bots = [c for c in github.state.comments_on(PR_NUMBER) if c["user"]["type"] == "Bot"]
    assert [c["body"] for c in bots] == ["<!-- connsync-plan -->\nsecond plan"]
    assert github.state.comments_on(PR_NUMBER)[0]["body"] == "<!-- connsync-plan -->\nmine"
    assert github.state.label_names(PR_NUMBER) == ["connsync: changes"]


def test_no_changes_swaps_the_label(github: FakeGitHub, tmp_path: Path) -> None:
    github.state.add_issue(title="Edit", pull_request=True, labels=("connsync: changes", "team"),
                           number=PR_NUMBER)
    run_script(github, tmp_path, PR_SCRIPT, exit_code="0", plan="No changes.")
    assert github.state.label_names(PR_NUMBER) == ["team", "connsync: no changes"]
    # Again: the label to remove is already gone (404), which is not an error.
    run_script(github, tmp_path, PR_SCRIPT, exit_code="0", plan="No changes.")
    assert github.state.label_names(PR_NUMBER) == ["team", "connsync: no changes"]
    assert len(github.state.comments_on(PR_NUMBER)) == 1


def test_a_failed_plan_replaces_the_stale_plan_and_its_label(github: FakeGitHub, tmp_path: Path) -> None:
    github.state.add_issue(title="Edit", pull_request=True, number=PR_NUMBER)
    run_script(github, tmp_path, PR_SCRIPT, exit_code="0", plan="No changes.")
    run_script(github, tmp_path, PR_SCRIPT, exit_code="1", plan="")
    (comment,) = github.state.comments_on(PR_NUMBER)
    assert comment["body"].startswith("<!-- connsync-plan -->\n**connsync plan failed** (exit code 1)")
    assert "https://github.example/acme/connections/actions/runs/42" in comment["body"]
    assert github.state.label_names(PR_NUMBER) == []  # neither "changes" nor "no changes" holds


def test_what_did_not_verify_comes_before_the_plan(github: FakeGitHub, tmp_path: Path) -> None:
    github.state.add_issue(title="Edit", pull_request=True, number=PR_NUMBER)
    verified = "**connsync verify failed**: 1 connection verified: 0 ok, 0 warnings, 1 failed\n\n| row |\n"
    run_script(github, tmp_path, PR_SCRIPT, exit_code="2", plan="**connsync plan**: 1 to create",
               verify=verified, verify_outcome="failure")
    (comment,) = github.state.comments_on(PR_NUMBER)
    assert comment["body"] == ("<!-- connsync-plan -->\n**connsync verify failed**: 1 connection verified: "
                               "0 ok, 0 warnings, 1 failed\n\n| row |\n\n**connsync plan**: 1 to create")
    # The next run verifies cleanly: the comment says that instead.
    run_script(github, tmp_path, PR_SCRIPT, exit_code="2", plan="**connsync plan**: 1 to create",
               verify="**connsync verify**: 1 connection verified: 1 ok, 0 warnings, 0 failed\n")
    (comment,) = github.state.comments_on(PR_NUMBER)
    assert comment["body"].startswith("<!-- connsync-plan -->\n**connsync verify**: 1 connection verified")
    assert "failed**" not in comment["body"] and "| row |" not in comment["body"]


def test_a_verify_that_wrote_nothing_is_still_said_to_have_failed(github: FakeGitHub, tmp_path: Path) -> None:
    github.state.add_issue(title="Edit", pull_request=True, number=PR_NUMBER)
    run_script(github, tmp_path, PR_SCRIPT, exit_code="0", plan="No changes.", verify="",
               verify_outcome="failure")
    (comment,) = github.state.comments_on(PR_NUMBER)
    assert comment["body"] == ("<!-- connsync-plan -->\n**connsync verify failed**: see the "
                               "[run](https://github.example/acme/connections/actions/runs/42) for why."
                               "\n\nNo changes.")


def test_drift_found_opens_one_issue_and_updates_it(github: FakeGitHub, tmp_path: Path) -> None:
    github.state.add_issue(title="a PR with the label", pull_request=True, labels=("connsync-drift",))
    run_script(github, tmp_path, DRIFT_SCRIPT, exit_code="2", plan="~ update AWS Prod")
    run_script(github, tmp_path, DRIFT_SCRIPT, exit_code="2", plan="~ update AWS Dev")
    drift = [i for i in github.state.issues.values() if "pull_request" not in i]
    assert len(drift) == 1
    (issue,) = drift
    assert issue["state"] == "open" and issue["title"] == "connsync: drift detected"
    assert [label["name"] for label in issue["labels"]] == ["connsync-drift"]
    assert "~ update AWS Dev" in issue["body"] and "AWS Prod" not in issue["body"]
    assert "https://github.example/acme/connections/actions/runs/42" in issue["body"]


def test_drift_gone_closes_the_issue_with_a_comment(github: FakeGitHub, tmp_path: Path) -> None:
    run_script(github, tmp_path, DRIFT_SCRIPT, exit_code="0", plan="No changes.")
    assert github.state.issues == {}  # nothing to close, nothing opened
    run_script(github, tmp_path, DRIFT_SCRIPT, exit_code="2", plan="~ update AWS Prod")
    run_script(github, tmp_path, DRIFT_SCRIPT, exit_code="0", plan="No changes.")
    (issue,) = github.state.issues.values()
    assert (issue["state"], issue["state_reason"]) == ("closed", "completed")
    (comment,) = github.state.comments_on(issue["number"])
    assert comment["body"].startswith("The store matches `main` again")
    # The next drift opens a new issue rather than reopening the closed one.
    run_script(github, tmp_path, DRIFT_SCRIPT, exit_code="2", plan="~ update AWS Prod")
    assert [i["state"] for i in github.state.issues.values()] == ["closed", "open"]


def test_a_plan_stopped_by_findings_shows_them(github: FakeGitHub, tmp_path: Path) -> None:
    github.state.add_issue(title="Edit", pull_request=True, number=PR_NUMBER)
    table = ("| | Rule | Where | Finding |\n|---|---|---|---|\n"
             "| error | `policy/eu` | `connections/a.yaml:9:3` | x |")
    run_script(github, tmp_path, PR_SCRIPT, exit_code="1",
               plan=f"The files do not pass validation:\n\n{table}\n")
    (comment,) = github.state.comments_on(PR_NUMBER)
    assert comment["body"].startswith("<!-- connsync-plan -->\n**connsync plan failed** (exit code 1)")
    assert comment["body"].endswith(f"for why. No plan is shown until it succeeds.\n\n"
                                    f"The files do not pass validation:\n\n{table}")


def test_only_the_comment_of_the_workflows_own_bot_is_updated(github: FakeGitHub, tmp_path: Path) -> None:
    """Another app's bot (any app a contributor can install) may post the marker first."""
    github.state.add_issue(title="Add AWS Prod", pull_request=True, number=PR_NUMBER)
    forged = "<!-- connsync-plan -->\n**connsync plan**: no changes. Approved."
    github.state.add_comment(PR_NUMBER, forged, {"login": "helpful-app[bot]", "type": "Bot"})
    github.state.add_comment(PR_NUMBER, forged, {"login": "github-actions", "type": "User"})
    run_script(github, tmp_path, PR_SCRIPT, exit_code="2", plan="**connsync plan**: 1 to delete")
    run_script(github, tmp_path, PR_SCRIPT, exit_code="2", plan="**connsync plan**: 2 to delete")
    by_author = {c["user"]["login"]: c["body"] for c in github.state.comments_on(PR_NUMBER)}
    assert by_author == {"helpful-app[bot]": forged, "github-actions": forged,
                         "github-actions[bot]": "<!-- connsync-plan -->\n**connsync plan**: 2 to delete"}


def test_drift_is_never_written_into_an_issue_someone_else_opened(github: FakeGitHub, tmp_path: Path) -> None:
    mallory = {"login": "mallory", "type": "User"}
    theirs = github.state.add_issue(title="Please review", body="mine", labels=("connsync-drift",),
                                    user=mallory)
    run_script(github, tmp_path, DRIFT_SCRIPT, exit_code="2", plan="~ update AWS Prod")
    run_script(github, tmp_path, DRIFT_SCRIPT, exit_code="0", plan="No changes.")
    assert (theirs["body"], theirs["state"]) == ("mine", "open")
    assert github.state.comments_on(theirs["number"]) == []
    (ours,) = [i for i in github.state.issues.values() if i["user"]["login"] == "github-actions[bot]"]
    assert ours["state"] == "closed" and "~ update AWS Prod" in ours["body"]
