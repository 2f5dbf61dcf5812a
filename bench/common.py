"""Shared helpers for the benchmarks: generating connection files and timing commands."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAKE_ENC = ("ENC[AES256_GCM,data:BCw5MA==,iv:Tvmqj/SsQkqVW3mnxTZQG7RHg04HYiI9P9FqNl0fNWM=,"
            "tag:hLKHFVSaJbM5QQ5io6fwTw==,type:str]")


def connection_text(index: int) -> str:
    return (
        "# yaml-language-server: $schema=../schemas/connection.schema.json\n"
        "apiVersion: connsync/v1\nprovider: aws\n"
        f"metadata:\n  name: AWS Account {index:05d}\n  labels: {{team: t{index % 7}}}\n"
        "spec:\n"
        f'  account_id: "{100000000000 + index}"\n  default_region: us-east-1\n'
        "  access_key_id: AKIAIOSFODNN7EXAMPLE\n"
        f"  secret_access_key: {FAKE_ENC}\n"
        f"sops:\n  mac: {FAKE_ENC}\n  lastmodified: '2026-01-01T00:00:00Z'\n  version: 3.11.0\n"
    )


def timed(argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None,
          expect: Sequence[int] = (0,)) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                            check=False)
    elapsed = time.perf_counter() - started
    if result.returncode not in expect:
        sys.exit(f"{' '.join(argv[:4])}... exited {result.returncode}:\n{result.stderr.decode()[-2000:]}")
    # ru_maxrss of children is the max over all children so far: a lower bound for later runs.
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    return elapsed, peak


def median_of(runs: int, argv: Sequence[str], **kwargs: object) -> float:
    return statistics.median(timed(argv, **kwargs)[0] for _ in range(runs))  # type: ignore[arg-type]


def connsync_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "connsync", *args]


def byte_compile() -> None:
    """connsync's modules compiled ahead, as pip compiles an installed wheel's. The peers are
    installed wheels; an editable checkout run with PYTHONDONTWRITEBYTECODE=1 (as some shells and
    CI images set it) would otherwise compile every module again in every timed run (~50 ms), and
    a module changed since its last compile in every run that imports it."""
    import compileall

    import connsync

    compileall.compile_dir(Path(connsync.__file__).parent, quiet=1)
