"""Write connection files: new ones through a pipe, changed ones field by field with ``sops set``.

Plaintext never touches the disk. Files inside the repository (the directory of
connsync.yaml) are encrypted under the ``.sops.yaml`` rules that apply there;
a file the user explicitly puts outside it is encrypted under the
repository's own rules (not whatever ``.sops.yaml`` happens to lie above it),
written 0600, and is never recorded as a managed source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from connsync import sops
from connsync.errors import ConnsyncError
from connsync.fsutil import find_upward, write_atomic
from connsync.model import Secret

INSIDE_MODE = 0o644  # encrypted, meant to be committed and reviewed
OUTSIDE_MODE = 0o600  # a stray copy somewhere else: readable by its owner only


def modeline(target: Path, root: Path) -> str:
    schema_path = os.path.relpath(root / "schemas" / "connection.schema.json", target.absolute().parent)
    return f"# yaml-language-server: $schema={schema_path}\n"


def inside(target: Path, root: Path) -> bool:
    """True when ``target`` (symlinks resolved) lies within the repository at ``root``."""
    return target.resolve().is_relative_to(root.resolve())


def write_connection(document: Mapping[str, Any], secrets: Mapping[str, Secret], target: Path,
                     root: Path, *, connections_dir: Path | None = None, overwrite: bool = False) -> str:
    """Encrypt and write ``document`` plus ``secrets``; returns the sha256 of the written bytes."""
    plain = {**document, "spec": {**document["spec"], **{k: v.reveal() for k, v in secrets.items()}}}
    text = modeline(target, root) + yaml.safe_dump(plain, sort_keys=False, allow_unicode=True)
    redact = [s.reveal() for s in secrets.values()]
    if inside(target, root):
        encrypted = sops.encrypt(text.encode(), target, redact=redact)
        mode = INSIDE_MODE
    else:
        config = find_upward(root.resolve(), sops.SOPS_CONFIG)
        if config is None:
            raise ConnsyncError(f"no {sops.SOPS_CONFIG} in the repository at {root}",
                                hint="run 'connsync init' first")
        # Match the repository's rule for its connections directory, as if the file were there.
        stand_in = (connections_dir or root / "connections").resolve() / target.name
        rule_path = (stand_in.relative_to(config.parent.resolve()) if stand_in.is_relative_to(
            config.parent.resolve()) else Path("connections") / target.name)
        encrypted = sops.encrypt(text.encode(), target, redact=redact, config=config, rule_path=rule_path)
        mode = OUTSIDE_MODE
    try:
        write_atomic(target, encrypted, mode=mode, overwrite=overwrite)
    except FileExistsError:  # appeared since the caller looked
        raise ConnsyncError(f"{target} already exists", hint="choose another file, or --force") from None
    except OSError as exc:
        raise ConnsyncError(f"{target}: cannot write: {exc.strerror}") from None
    return hashlib.sha256(encrypted).hexdigest()


def update_fields(path: Path, values: Mapping[str, str | int | Secret], *, shown: str,
                  sops_meta: Mapping[str, Any], check: Callable[[bytes, Path], None] | None = None) -> str:
    """Change ``spec`` fields of an encrypted file, keeping everything else; returns the new sha256.

    The change is made on a copy beside the file and renamed into place, so a
    reader (or a failure half-way) sees the old file or the new one, never a
    file with the new key id and the old secret. ``check`` sees the new
    encrypted bytes (and the copy holding them) before they replace the file,
    and may raise to stop it.
    """
    plain = {k: v.reveal() if isinstance(v, Secret) else v for k, v in values.items()}
    redact = [v.reveal() for v in values.values() if isinstance(v, Secret)]
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    temp = Path(temp_name)
    try:
        shutil.copyfile(path, temp)
        os.chmod(temp, path.stat().st_mode & 0o777)
        sops.set_values(temp, plain, shown=shown, sops_meta=sops_meta, redact=redact)
        data = temp.read_bytes()
        if check is not None:
            check(data, temp)
        os.replace(temp, path)
    except OSError as exc:
        raise ConnsyncError(f"{shown}: cannot write: {exc.strerror}") from None
    finally:
        temp.unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()
