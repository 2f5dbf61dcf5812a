"""`make demo` runs the main job end to end; keep it working."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def test_demo_runs_end_to_end() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts/demo.py")], capture_output=True,
                            text=True, timeout=300, env=dict(os.environ), check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "4 connections verified: 4 ok" in out
    assert "Apply complete: 4 created" in out
    assert "No changes. The store matches the files (4 connections)." in out
    assert "Traceback" not in result.stderr
