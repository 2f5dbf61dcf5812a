"""Atomic file writes: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def find_upward(start: Path, name: str) -> Path | None:
    """``name`` in ``start`` or the nearest parent that has it, as git finds .git."""
    for directory in (start, *start.parents):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = False) -> None:
    write_atomic_chunks(path, (data,), mode=mode, overwrite=overwrite)


def write_atomic_chunks(path: Path, chunks: Iterable[bytes], *, mode: int = 0o644,
                        overwrite: bool = False) -> None:
    """As :func:`write_atomic`, from pieces: a large file is never whole in memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise FileExistsError(path)
    import tempfile  # only for runs that write: validate and plan start without it

    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        if overwrite:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # fails if the path appeared meanwhile
            os.unlink(temp)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
