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


def demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts/demo.py"), *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TMPDIR": str(tmp_path)}, check=False)


def test_demo_runs_end_to_end_and_removes_what_it_made(tmp_path: Path) -> None:
    result = demo(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "4 connections verified: 4 ok" in out
    assert "Apply complete: 4 created" in out
    assert "No changes. The store matches the files (4 connections)." in out
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # age key, store key, TLS key: all gone
    assert "make demo KEEP=1" in out.splitlines()[-3] and "make local-aws" in out


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
