"""Write a connection file: modeline, document, secrets encrypted through a pipe."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from connsync import sops
from connsync.errors import ConnsyncError
from connsync.fsutil import write_atomic
from connsync.model import Secret


def modeline(target: Path, root: Path) -> str:
    schema_path = os.path.relpath(root / "schemas" / "connection.schema.json", target.absolute().parent)
    return f"# yaml-language-server: $schema={schema_path}\n"


def write_connection(document: Mapping[str, Any], secrets: Mapping[str, Secret], target: Path,
                     root: Path, *, overwrite: bool = False) -> str:
    """Encrypt and write ``document`` plus ``secrets``; returns the sha256 of the written bytes."""
    plain = {**document, "spec": {**document["spec"], **{k: v.reveal() for k, v in secrets.items()}}}
    text = modeline(target, root) + yaml.safe_dump(plain, sort_keys=False, allow_unicode=True)
    encrypted = sops.encrypt(text.encode(), target, redact=[s.reveal() for s in secrets.values()])
    try:
        write_atomic(target, encrypted, overwrite=overwrite)
    except FileExistsError:  # appeared since the caller looked
        raise ConnsyncError(f"{target} already exists", hint="choose another file, or --force") from None
    return hashlib.sha256(encrypted).hexdigest()
