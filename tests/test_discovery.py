"""Nothing drops out of view: what discovery cannot look at is a finding, and plan/apply refuse."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connsync.store import Write
from connsync.store.sqlite import SqliteStore
from connsync.validate import rules
from tests.conftest import CANARY, Result, Run
from tests.helpers import aws_doc, write_doc


def findings_of(run: Run, *args: str) -> tuple[int, list[dict[str, Any]]]:
    result = run("validate", "--format", "json", *args)
    assert "Traceback" not in result.out + result.err
    report = json.loads(result.out)
    return result.code, report["findings"]


def rules_of(findings: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["rule"], f["file"]) for f in findings]


def test_fifo_is_a_finding_and_never_read(run: Run, workdir: Path) -> None:
    os.mkfifo(workdir / "connections/prod.yaml")
    os.mkfifo(workdir / "connections/notes")
    code, findings = findings_of(run)
    assert code == 1
    assert rules_of(findings) == [("not-a-file", "connections/notes"),
                                  ("not-a-file", "connections/prod.yaml")]
    assert "a FIFO" in findings[0]["message"]


def test_a_socket_is_a_finding(run: Run, workdir: Path) -> None:
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("connections/agent.yaml")  # relative: AF_UNIX paths are short
        code, findings = findings_of(run)
    assert code == 1 and rules_of(findings) == [("not-a-file", "connections/agent.yaml")]
    assert "a socket" in findings[0]["message"]


def test_fifo_named_explicitly_does_not_hang(run: Run, workdir: Path) -> None:
    os.mkfifo(workdir / "connections/prod.yaml")
    code, findings = findings_of(run, "connections/prod.yaml")
    assert code == 1 and rules_of(findings) == [("not-a-file", "connections/prod.yaml")]


def test_symlink_to_a_file_outside_is_never_read(run: Run, workdir: Path,
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("other-repo") / "prod.yaml"
    write_doc(outside, aws_doc(account_id=CANARY))  # would be quoted in a schema finding if read
    (workdir / "connections/prod.yaml").symlink_to(outside)
    code, findings = findings_of(run)
    assert code == 1 and rules_of(findings) == [("symlink", "connections/prod.yaml")]
    assert "outside the repository" in findings[0]["message"]
    result = run("validate")
    assert CANARY not in result.out + result.err


def test_symlinked_directory_outside_is_not_followed(run: Run, workdir: Path,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("elsewhere")
    write_doc(outside / "prod.yaml", aws_doc())
    (workdir / "connections/team").symlink_to(outside, target_is_directory=True)
    code, findings = findings_of(run)
    assert code == 1 and rules_of(findings) == [("symlink", "connections/team")]


def test_symlinks_inside_are_resolved_once(run: Run, workdir: Path) -> None:
    write_doc(workdir / "shared/prod.yaml", aws_doc())
    (workdir / "connections/prod.yaml").symlink_to(workdir / "shared/prod.yaml")
    (workdir / "connections/again").symlink_to(workdir / "shared", target_is_directory=True)
    (workdir / "connections/same.yaml").symlink_to("prod.yaml")
    result = run("validate", "--format", "json")
    report = json.loads(result.out)
    assert (result.code, report["files"], report["findings"]) == (0, 1, [])  # one file, no duplicate name
    validation = rules.validate_files([], workdir / "connections", workdir)
    assert [d.file for d in validation.declarations] == ["shared/prod.yaml"]


@pytest.mark.parametrize("target", ["..", ".", "../.."])
def test_directory_loop_is_a_finding(run: Run, workdir: Path, target: str) -> None:
    (workdir / "connections/sub").mkdir()
    (workdir / "connections/sub/loop").symlink_to(target, target_is_directory=True)
    write_doc(workdir / "connections/prod.yaml", aws_doc())
    code, findings = findings_of(run)
    assert code == 1 and rules_of(findings) == [("directory-loop", "connections/sub/loop")]


def test_broken_symlink_and_self_loop(run: Run, workdir: Path) -> None:
    (workdir / "connections/gone.yaml").symlink_to("nowhere.yaml")
    (workdir / "connections/self.yaml").symlink_to("self.yaml")
    code, findings = findings_of(run)
    assert code == 1
    assert rules_of(findings) == [("symlink", "connections/gone.yaml"), ("symlink", "connections/self.yaml")]
    assert "broken symlink" in findings[0]["message"] and "loop" in findings[1]["message"]


def test_a_1500_deep_tree_is_one_finding_not_a_crash(run: Run, workdir: Path) -> None:
    top = deep = str(workdir / "connections")
    try:
        for _ in range(1500):  # os.makedirs would recurse 1,500 deep itself
            deep += "/d"
            os.mkdir(deep)
        Path(deep, "x.yaml").write_text("a: 1\n")
        code, findings = findings_of(run)
        assert code == 1 and [f["rule"] for f in findings] == ["too-deep"]
        assert findings[0]["file"].startswith("connections/d/d/")
    finally:  # pytest's own cleanup (shutil.rmtree) recurses, and would crash on this tree later
        Path(deep, "x.yaml").unlink(missing_ok=True)
        while deep != top:
            os.rmdir(deep)
            deep = os.path.dirname(deep)


def test_newline_in_a_file_name_is_a_finding_and_cannot_forge_the_summary(run: Run, workdir: Path) -> None:
    write_doc(workdir / "connections/x.yaml\n0 files checked: 0 errors, 0 warnings - ok\n.yaml", aws_doc())
    result = run("validate")
    assert result.code == 1
    assert result.out.splitlines()[-1] == "1 file checked: 1 error, 0 warnings - failed"
    assert "[file-name]" in result.out and "U+000A" in result.out


def _without_dac(*args: str, cwd: Path) -> Result:
    """The CLI as a process that file permissions apply to, even when the tests run as root."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions cannot be tested")
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]
    proc = subprocess.run([*prefix, sys.executable, "-m", "connsync", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_unreadable_directory_and_file_are_findings(workdir: Path) -> None:
    write_doc(workdir / "connections/team/prod.yaml", aws_doc())
    write_doc(workdir / "connections/dev.yaml", aws_doc("AWS Dev"))
    (workdir / "connections/dev.yaml").chmod(0)
    (workdir / "connections/team").chmod(0)
    try:
        result = _without_dac("validate", "--format", "json", cwd=workdir)
    finally:
        (workdir / "connections/team").chmod(0o755)
    report = json.loads(result.out)
    assert result.code == 1, result.err
    assert rules_of(report["findings"]) == [("yaml", "connections/dev.yaml"),
                                            ("unreadable", "connections/team")]
    assert all("Permission denied" in f["message"] for f in report["findings"])


@pytest.fixture
def managed_record(repo: Path) -> Path:
    store = SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default")
    try:
        store.put(Write(name="AWS Prod", provider="aws", spec={"account_id": "123456789012"}, secrets={},
                        managed=True, actor="test", action="create", source="connections/team/prod.yaml"),
                  expected_version=None)
    finally:
        store.close()
    return repo


def _record_names(repo: Path) -> list[str]:
    store = SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default")
    try:
        return [r.name for r in store.records()]
    finally:
        store.close()


@pytest.mark.parametrize("hide", ["fifo", "symlink-outside", "unreadable"])
def test_prune_refuses_while_anything_is_out_of_view(managed_record: Path, run: Run, hide: str,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    repo = managed_record
    team = repo / "connections/team"
    if hide == "fifo":
        team.mkdir()
        os.mkfifo(team / "prod.yaml")
    elif hide == "symlink-outside":
        outside = tmp_path_factory.mktemp("outside")
        write_doc(outside / "prod.yaml", aws_doc())
        team.symlink_to(outside, target_is_directory=True)
    else:
        write_doc(team / "prod.yaml", aws_doc())
        team.chmod(0)
    try:
        if hide == "unreadable":
            result = _without_dac("apply", "--prune", "--auto-approve", "--skip-verify", cwd=repo)
        else:
            result = run("apply", "--prune", "--auto-approve", "--skip-verify")
    finally:
        if team.is_dir() and not team.is_symlink():
            team.chmod(0o755)
    assert result.code == 1, result.out + result.err
    assert "nothing was planned" in result.err and "connections/team" in result.err
    assert _record_names(repo) == ["AWS Prod"]


@pytest.mark.parametrize("cwd", ["/", "/tmp", "/tmp/a"])
@pytest.mark.parametrize("path", ["/tmp/a/b.yaml", "/tmp/a/../b.yaml", "/tmp", "/tmp/a", "/tmpx/a", "//tmp/a",
                                  "/tmp//a/./b", "a/b", "../x", "/", "//x", "/tmp/a/b/../../c"])
def test_display_path_is_relpath(cwd: str, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are shown relative to the working directory exactly as os.path.relpath shows them."""
    from connsync.validate.loader import display_path

    monkeypatch.setattr(os, "getcwd", lambda: cwd)
    assert display_path(Path(path)) == os.path.relpath(path) == display_path(path)  # type: ignore[arg-type]
