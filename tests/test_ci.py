"""GitOps wiring: workflows pass actionlint; the action's and the hook's commands run as CI runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from connsync.commands.init import WORKFLOWS, workflow_text
from connsync.errors import ConnsyncError
from connsync.plan import Change, Plan
from connsync.render import plan_markdown
from tests.conftest import CANARY, REPO, AgeKey, Run, new_aws


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "actionlint"
    return subprocess.run([str(binary), "-no-color", *map(str, paths)], capture_output=True, text=True,
                          check=False)


def test_repository_workflows_pass_actionlint() -> None:
    workflows = sorted((REPO / ".github/workflows").glob("*.yml"))
    assert {p.name for p in workflows} == {"ci.yml", *WORKFLOWS}
    result = actionlint(*workflows)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    steps = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())["jobs"]["test"]["steps"]
    assert any(step.get("run") == "make test" for step in steps)
    assert "make test" in (REPO / ".ci/run").read_text()
    assert re.search(r"^make test$", (REPO / "README.md").read_text(), re.MULTILINE)


def test_repository_workflows_are_the_templates() -> None:
    for name in WORKFLOWS:
        assert (REPO / ".github/workflows" / name).read_text() == workflow_text(name, "./")


def test_init_github_writes_workflows_that_lint(workdir: Path, run: Run, age_key: AgeKey) -> None:
    result = run("init", "--age-recipient", age_key.public, "--github")
    assert result.code == 0, result.err
    written = [workdir / ".github/workflows" / name for name in WORKFLOWS]
    assert all(path.is_file() for path in written)
    assert "uses: connsync/connsync@v0" in written[0].read_text()
    lint = actionlint(*written)
    assert lint.returncode == 0, lint.stdout
    apply_workflow = yaml.safe_load(written[1].read_text())
    assert apply_workflow["concurrency"] == {"group": "connsync-apply", "cancel-in-progress": False}


def test_secrets_are_never_echoed_by_the_workflows() -> None:
    for name in WORKFLOWS:
        text = workflow_text(name)
        assert "secrets.SOPS_AGE_KEY" in text
        for line in text.splitlines():
            if "secrets." in line:
                assert re.match(r"\s+[A-Z_]+: \$\{\{ secrets\.[A-Z_]+ \}\}$", line), line


def action_script() -> str:
    steps = yaml.safe_load((REPO / "action.yml").read_text())["runs"]["steps"]
    (step,) = [s for s in steps if s.get("id") == "run"]
    return str(step["run"])


def run_action(args: str, cwd: Path, tmp_path: Path,
               output_file: str = "") -> tuple[int, dict[str, str], str]:
    """The composite action's run step, in bash, with the environment GitHub gives it."""
    outputs = tmp_path / "github_output"
    outputs.write_text("")
    env = {**os.environ, "ARGS": args, "OUTPUT_FILE": output_file, "GITHUB_OUTPUT": str(outputs),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "NO_COLOR": "1"}
    proc = subprocess.run(["bash", "-e", "-c", action_script()], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)
    values = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    return proc.returncode, values, proc.stdout


def test_composite_action_as_ci_runs_it(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    assert new_aws(run, monkeypatch).code == 0
    code, outputs, out = run_action("validate --format github", repo, tmp_path)
    assert (code, outputs["exit-code"]) == (0, "0")
    code, outputs, out = run_action("plan --format markdown --detailed-exitcode", repo, tmp_path,
                                    output_file="plan.md")
    assert code == 0 and outputs["exit-code"] == "2"  # changes pending is not a failure
    assert (repo / "plan.md").read_text().startswith("**connsync plan** for workspace `default`")
    (repo / "connections/broken.yaml").write_text("spec: [")
    code, outputs, out = run_action("validate --format github", repo, tmp_path)
    assert code == 1 and outputs["exit-code"] == "1"
    assert "::error file=connections/broken.yaml,line=2,col=1" in out
    assert CANARY not in out


def test_pre_commit_hook_as_pre_commit_runs_it(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "connsync-validate" and hook["language"] == "python"
    assert new_aws(run, monkeypatch).code == 0
    (repo / "connections/plain.yaml").write_text((repo / "connections/aws-prod.yaml").read_text()
                                                 .replace("name: AWS Prod", "name: Other"))
    (repo / "README.md").write_text("not a connection")
    staged = ["README.md", "connections/aws-prod.yaml", "connections/plain.yaml"]
    selected = [f for f in staged if re.search(hook["files"], f)]
    assert selected == ["connections/aws-prod.yaml", "connections/plain.yaml"]
    entry = hook["entry"].split()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("SOPS_AGE_KEY_FILE")  # the hook needs no keys
    ok = subprocess.run([*entry, *selected], cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout
    (repo / "connections/plain.yaml").write_text("apiVersion: connsync/v1\n")
    bad = subprocess.run([*entry, *selected], cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and "connections/plain.yaml:1:1" in bad.stdout


def test_markdown_folds_long_plans_and_marks_secrets() -> None:
    changes = tuple(Change("update", f"AWS {i:02d}", "aws", f"connections/{i}.yaml",
                           fields={"secret_access_key": {"sensitive": True, "changed": True}})
                    for i in range(12))
    text = plan_markdown(Plan("default", changes))
    assert text.splitlines()[0] == ("**connsync plan** for workspace `default`: Plan: 0 to create, "
                                    "12 to update, 0 to delete, 0 unchanged.")
    assert "<details><summary>12 changes</summary>" in text and text.endswith("</details>")
    assert "`secret_access_key (sensitive, changed)`" in text
    short = plan_markdown(Plan("default", changes[:2]))
    assert "<details>" not in short and "| ~ | update | `AWS 00` | `aws` |" in short


@pytest.mark.parametrize("leak", [CANARY, "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"])
def test_markdown_refuses_secret_shapes(leak: str) -> None:
    change = Change("update", "AWS", "aws", "x.yaml",
                    fields={"metadata.description": {"before": None, "after": f"oops {leak}"}})
    with pytest.raises(ConnsyncError, match="shaped like a secret"):
        plan_markdown(Plan("default", (change,)))


def test_markdown_allows_ordinary_values() -> None:
    change = Change("update", "AWS", "aws", "x.yaml", fields={
        "access_key_id": {"before": "AKIAIOSFODNN7EXAMPLE", "after": "AKIAI44QH8DHBEXAMPLE"},
        "metadata.description": {"before": None,
                                 "after": "a" * 40 + " 0123456789abcdef0123456789abcdef01234567"},
    })
    assert "AKIAI44QH8DHBEXAMPLE" in plan_markdown(Plan("default", (change,)))
