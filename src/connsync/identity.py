"""Who is acting, and at which git revision: for the audit log and the lock."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from pathlib import Path

# CI systems each name their run differently.
_CI_RUN_VARIABLES = ("GITHUB_RUN_ID", "CI_JOB_ID", "BUILD_ID", "CIRCLE_WORKFLOW_ID", "BUILDKITE_BUILD_ID")


def user_at_host() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, as in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def ci_run_id() -> str | None:
    for name in _CI_RUN_VARIABLES:
        if os.environ.get(name):
            return f"{name}={os.environ[name]}"
    return None


def in_ci(env: Mapping[str, str] | None = None) -> bool:
    """True on a CI runner: GitHub Actions, GitLab, CircleCI, Buildkite and others set CI."""
    return (os.environ if env is None else env).get("CI", "").strip().lower() not in ("", "0", "false", "no")


def actor() -> str:
    ci = ci_run_id()
    return f"{user_at_host()} ({ci})" if ci else user_at_host()


def git_revision(directory: Path) -> str | None:
    """``git rev-parse HEAD`` in ``directory``, or None outside a repository."""
    import subprocess  # for the runs that write an audit entry, not for every start

    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
            timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
