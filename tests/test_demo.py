"""`make demo` runs the main job end to end, leaves nothing behind, and says what to do next."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO


def reports(tmp_path: Path) -> Path:
    """Where the demo writes its report in these tests: outside the temporary directory it cleans."""
    return tmp_path.parent / f"{tmp_path.name}-report"


def demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path), "CONNSYNC_DEMO_REPORT_DIR": str(reports(tmp_path))}
    return subprocess.run([sys.executable, str(REPO / "scripts/demo.py"), *args], capture_output=True,
                          text=True, timeout=300, env=env, check=False)


def test_demo_runs_end_to_end_and_removes_what_it_made(tmp_path: Path) -> None:
    result = demo(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "4 connections verified: 4 ok" in out
    assert "Apply complete: 4 created" in out
    assert "No changes. The store matches the files (4 connections)." in out
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # age key, store key, TLS key: all gone
    assert "make demo KEEP=1" in out.splitlines()[-5] and "make local-aws" in out
    # It ends with the report, which outlives the clean-up, and says where it is.
    page = (reports(tmp_path) / "connections.html").resolve()
    assert out.rstrip().splitlines()[-2] == f"The Connections report: {page}"
    assert "**4 connections**: 4 in sync · **0 need attention** · verification: 4 ok" in out
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "AWS Prod" in html and "GCP Analytics" in html
    assert (reports(tmp_path) / "connections.md").read_text().startswith("## Connections")


def test_demo_keep_says_how_to_go_on_working_there(tmp_path: Path) -> None:
    result = demo(tmp_path, "--keep")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cd = re.search(r"^    cd (\S+)$", result.stdout, re.M)
    key = re.search(r"^    export SOPS_AGE_KEY_FILE=(\S+)", result.stdout, re.M)
    assert cd and key, result.stdout[-1500:]
    repo, key_file = Path(cd.group(1)), Path(key.group(1))
    assert (repo / "connsync.yaml").is_file() and key_file.is_file()
    assert "make demo-clean" in result.stdout
    # The printed lines are enough: in the kept repository, plan decrypts and finds nothing to do.
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(key_file)}
    plan = subprocess.run([sys.executable, "-m", "connsync", "plan", "--detailed-exitcode"], cwd=repo,
                          env=env, capture_output=True, text=True, check=False, timeout=120)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    for leftover in tmp_path.iterdir():
        assert leftover.name.startswith("connsync-demo-")
        assert all(p.stat().st_mode & 0o077 == 0 for p in leftover.rglob("*.pem") if "key" in p.name)


def test_demo_interrupted_removes_what_it_made(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts/demo.py")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.stdout is not None
    for line in proc.stdout:  # ^C once the demo has made its repository and its clouds
        if "Four connections" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "Interrupted (^C)" in out and "Traceback" not in out
    assert list(tmp_path.iterdir()) == []


def test_local_aws_serves_the_quick_start(tmp_path: Path) -> None:
    """`make local-aws`, then the README's Quick start with the lines it printed: verify passes."""
    server = subprocess.Popen([sys.executable, str(REPO / "scripts/local_aws.py")], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        printed = ""
        for line in server.stdout:
            printed += line
            if line.startswith("Stop it with ^C"):
                break
        exports = dict(re.findall(r"^export (\w+)=(\S+)", printed, re.M))
        assert set(exports) == {"AWS_ENDPOINT_URL", "AWS_EC2_METADATA_DISABLED", "QUICKSTART_SECRET"}
        assert exports["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        key_id = re.search(r"access_key_id=(AKIA[A-Z2-7]{16})", printed)
        assert key_id, printed
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SOPS_", "CONNSYNC_"))}
        env |= {**exports, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}

        def connsync(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "connsync", *args], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, check=False, timeout=120)

        assert connsync("init", "--generate-age-key").returncode == 0
        new = connsync("new", "aws", "--name", "AWS Local", "--no-input", "--set", "account_id=123456789012",
                       "--set", "default_region=us-east-1", "--set", f"access_key_id={key_id.group(1)}",
                       "--secret-env", "secret_access_key=QUICKSTART_SECRET")
        assert new.returncode == 0, new.stderr
        verified = connsync("verify")
        assert verified.returncode == 0 and "1 connection verified: 1 ok" in verified.stdout, verified
        assert exports["QUICKSTART_SECRET"] not in verified.stdout + verified.stderr
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert server.returncode == 0
