"""^C at a real terminal while an apply of 3,000 files writes (at a fifth and at seven tenths of them),
while it verifies, and once it is done: exit 130 and one honest line.

The line's counts are what the store confirmed (the write under way checked against it), the summary
never says "0 failed" beside an interrupted write, and a re-run converges. ^C while verifying says
nothing was written; ^C once the apply is done says so.
"""

from __future__ import annotations

import os
import re
import select
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from connsync.store.sqlite import SqliteStore
from tests.conftest import Result, Run, new_aws
from tests.faultkit import connsync, held, many_connections

COUNT = 3000
LINE = re.compile(rb"Interrupted \(\^C\) after (\d+) of (\d+) writes \(as the store holds them\); the other "
                  rb"(\d+) were not written; each record is whole\. Run apply again to finish\.")


def _stored(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM connections").fetchone()[0])
    except sqlite3.Error:  # not created yet
        return 0


def _interrupt_when(args: tuple[str, ...], cwd: Path, env: dict[str, str], ready: Any,
                    timeout: float = 300) -> tuple[int, bytes]:
    """Run connsync on a pseudo-terminal; type ^C once ``ready(transcript)`` is true."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: a user at a terminal
        os.chdir(cwd)
        os.execvpe(sys.executable, [sys.executable, "-m", "connsync", *args], env)
    transcript, sent = b"", False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sent and ready(transcript):
            os.write(fd, b"\x03")  # the terminal turns it into SIGINT for the foreground process
            sent = True
        readable, _, _ = select.select([fd], [], [], 0.02)
        if readable:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            transcript += chunk
    else:
        os.kill(pid, 9)
        raise AssertionError(transcript[-2000:])
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert sent, transcript[-2000:]
    return os.waitstatus_to_exitcode(status), transcript


def test_ctrl_c_at_several_points_of_a_3000_file_apply(tmp_path: Path) -> None:
    env = many_connections(tmp_path, COUNT)
    db = tmp_path / "store.db"
    env["CONNSYNC_STORE"] = f"sqlite:{db}"
    before = 0
    for fraction in (0.2, 0.7):  # of the whole: each run starts where the last one stopped
        target = int(COUNT * fraction)
        code, transcript = _interrupt_when(("apply", "--auto-approve", "--skip-verify"), tmp_path, env,
                                           lambda _, at=target: _stored(db) >= at)
        assert code == 130, transcript[-2000:]
        found = LINE.findall(transcript)
        assert len(found) == 1, transcript[-2000:]  # one line, no second error
        written, planned, rest = (int(x) for x in found[0])
        now = len(held(f"sqlite:{db}", env).names)
        assert written == now - before > 0  # the store's count, not the loop's
        assert planned == COUNT - before and rest == planned - written
        assert b"connsync: error" not in transcript and b"failed" not in transcript
        assert f"Apply interrupted: {written} created, 0 updated, 0 deleted".encode() in transcript
        before = now
    rerun = connsync("apply", "--auto-approve", "--skip-verify", cwd=tmp_path, env=env)
    assert rerun.returncode == 0, rerun.stderr
    final = held(f"sqlite:{db}", env)
    assert len(final.names) == COUNT and not final.doubled


def test_ctrl_c_while_verifying_says_nothing_was_written(repo: Path, run: Run,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS A", "AWS B"):
        assert new_aws(run, monkeypatch, name=name).code == 0
    # The calls under way end at their own timeout before the process can exit: keep it short here.
    config = repo / "connsync.yaml"
    config.write_text(re.sub(r"timeout_seconds: \d+", "timeout_seconds: 1", config.read_text()))
    with socket.create_server(("127.0.0.1", 0)) as silent:  # STS that takes the call and never answers
        env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.getsockname()[1]}",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "NO_COLOR": "1"}
        started: list[float] = []

        def plan_shown(transcript: bytes) -> bool:
            if b"Plan: 2 to create" in transcript and not started:
                started.append(time.monotonic())
            return bool(started) and time.monotonic() - started[0] > 1

        code, transcript = _interrupt_when(("apply", "--auto-approve"), repo, env, plan_shown, timeout=60)
    assert code == 130, transcript
    assert b"Interrupted (^C) while verifying: nothing was written." in transcript
    assert b"Aborted." not in transcript and b"created" not in transcript
    assert not (repo / ".connsync/store.db").exists() or _stored(repo / ".connsync/store.db") == 0


def test_ctrl_c_after_the_apply_finished_says_so(repo: Path, run: Run,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert new_aws(run, monkeypatch).code == 0

    def release_then_ctrl_c(self: SqliteStore, lock: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(SqliteStore, "release_lock", release_then_ctrl_c)
    result: Result = run("apply", "--auto-approve", "--skip-verify")
    assert result.code == 130
    assert "Apply complete: 1 created" in result.out
    assert "Interrupted (^C) after the apply finished: the report above is complete" in result.err
