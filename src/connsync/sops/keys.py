"""Where sops finds the key to a file's data key, and the data key itself.

The in-process engine reads exactly the sources sops 3.11 reads
(getsops/sops ``age/keysource.go``): ``SOPS_AGE_KEY``, the file named by
``SOPS_AGE_KEY_FILE`` and the default ``$XDG_CONFIG_HOME/sops/age/keys.txt``
(``~/.config`` without XDG_CONFIG_HOME), and AWS KMS through boto3's credential
chain. Everything else (SOPS_AGE_KEY_CMD, SSH and plugin identities, a key file
sops would reject as a whole, KMS with a role or a profile) is the binary's.

:func:`key_sources` describes those places for an error message, and
:func:`check_key_file` refuses a key file that is a FIFO or a device: sops
opens it once per file and blocks on a FIFO until something writes to it.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from connsync.errors import SopsError

AGE_KEY = "SOPS_AGE_KEY"
AGE_KEY_FILE = "SOPS_AGE_KEY_FILE"
AGE_KEY_CMD = "SOPS_AGE_KEY_CMD"
_IDENTITY = re.compile(r"AGE-SECRET-KEY-1[02-9ACDEFGHJKLMNPQRSTUVWXYZ]{58}")
_ARMOR = re.compile(r"-----BEGIN AGE ENCRYPTED FILE-----\n(?:[A-Za-z0-9+/=]{1,64}\n)+"
                    r"-----END AGE ENCRYPTED FILE-----\n?")


class NeedsBinary(Exception):
    """This file (or this failure) is for the sops binary to handle."""


def default_key_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """Go's os.UserConfigDir()/sops/age/keys.txt on Linux; None where Go errs."""
    env = os.environ if environ is None else environ
    config_home = env.get("XDG_CONFIG_HOME", "")
    if config_home:
        return Path(config_home) / "sops" / "age" / "keys.txt" if os.path.isabs(config_home) else None
    home = env.get("HOME", "")
    return Path(home) / ".config" / "sops" / "age" / "keys.txt" if home else None


def _special(path: str) -> str | None:
    """'a FIFO', 'a device', ... when ``path`` exists and is neither a file nor a directory."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def check_key_file() -> None:
    """A SopsError if a key file sops would read is a FIFO, device or socket."""
    default = default_key_file()
    for name, path in ((AGE_KEY_FILE, os.environ.get(AGE_KEY_FILE)),
                       ("the default age key file", str(default) if default else None)):
        kind = _special(path) if path else None
        if kind:
            raise SopsError(
                f"{name} {path} is {kind}, not a file: sops would wait on it forever",
                hint="point SOPS_AGE_KEY_FILE at a regular file, or pass the key in SOPS_AGE_KEY",
            )


def key_sources(recipients: list[str]) -> str:
    """Where sops looked for a key, and what it found there (never a key itself)."""
    places: list[str] = []
    places.append(f"{AGE_KEY} ({'set' if os.environ.get(AGE_KEY) else 'not set'})")
    key_file = os.environ.get(AGE_KEY_FILE)
    if key_file is None:
        places.append(f"{AGE_KEY_FILE} (not set)")
    else:
        places.append(f"{AGE_KEY_FILE}={key_file} ({_file_state(key_file)})")
    if os.environ.get(AGE_KEY_CMD):
        places.append(f"{AGE_KEY_CMD} (set)")
    default = default_key_file()
    if default is None:
        places.append("the default key file (no HOME, or XDG_CONFIG_HOME is not absolute)")
    else:
        via = "XDG_CONFIG_HOME" if os.environ.get("XDG_CONFIG_HOME") else "~/.config"
        places.append(f"{default} (default key file via {via}; {_file_state(str(default))})")
    if any(r.startswith("KMS") for r in recipients):
        chain = [n for n in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_WEB_IDENTITY_TOKEN_FILE",
                             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") if os.environ.get(n)]
        found = ", ".join(chain) if chain else "no AWS_* credential variables set"
        places.append(f"AWS credentials for KMS ({found}; also ~/.aws and instance roles)")
    if any(r.startswith("Vault transit") for r in recipients):
        token = "VAULT_TOKEN set" if os.environ.get("VAULT_TOKEN") else "VAULT_TOKEN not set"
        helper = Path.home() / ".vault-token"
        places.append(f"a Vault token allowed to decrypt with the transit key ({token}; ~/.vault-token "
                      f"{'exists' if helper.is_file() else 'absent'}; the token needs 'update' on "
                      "MOUNT/decrypt/KEY)")
    return "; ".join(places)


def _file_state(path: str) -> str:
    if not path:
        return "empty"
    kind = _special(path)
    if kind:
        return kind
    if not os.path.exists(path):
        return "no such file"
    if os.path.isdir(path):
        return "a directory"
    if not os.access(path, os.R_OK):
        return "not readable"
    return "read, but no key in it opens this file"


# --- age ------------------------------------------------------------------------


def _sources() -> Iterator[str]:
    if os.environ.get(AGE_KEY_CMD) is not None:
        raise NeedsBinary(AGE_KEY_CMD)
    if os.environ.get("SOPS_AGE_SSH_PRIVATE_KEY_FILE") is not None:
        raise NeedsBinary("SSH identities")
    if AGE_KEY in os.environ:
        yield os.environ[AGE_KEY]
    default = default_key_file()  # None where Go finds no config directory: sops skips it too
    for path in (os.environ.get(AGE_KEY_FILE), str(default) if default else None):
        if not path:
            continue
        if _special(path):
            raise NeedsBinary(f"{path} is not a regular file")
        if os.path.isfile(path):
            # Opened without following a swap to a FIFO between the check and the read.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as handle:
                raw = handle.read(1 << 24)  # age's privateKeySizeLimit
            yield raw.decode("utf-8", "replace")


def _identities_of(source: str) -> list[str]:
    """age.ParseIdentities: all of a source, or none of it (then the binary judges)."""
    found = []
    for line in source.split("\n"):
        line = line.removesuffix("\r")
        if line == "" or line.startswith("#"):
            continue
        if _IDENTITY.fullmatch(line) is None:
            raise NeedsBinary("a key source sops may read differently")
        found.append(line)
    return found


@functools.cache
def _age_identities(_cache_key: tuple[str | None, ...]) -> tuple[Any, ...]:
    import pyrage

    lines = [line for source in _sources() for line in _identities_of(source)]
    return tuple(pyrage.x25519.Identity.from_str(line) for line in lines)


def _identities() -> tuple[Any, ...]:
    # Keyed on what decides where keys come from, so tests and long-lived
    # processes see changes (file contents are read once per process).
    names = (AGE_KEY, AGE_KEY_FILE, AGE_KEY_CMD, "SOPS_AGE_SSH_PRIVATE_KEY_FILE", "XDG_CONFIG_HOME",
             "HOME")
    return _age_identities(tuple(os.environ.get(n) for n in names))


def data_key(age: list[dict[str, str]], kms: list[dict[str, Any]]) -> bytes:
    """The file's data key, trying age entries in order and then KMS, as sops does."""
    if age:
        import pyrage

        identities = _identities()
        for entry in age if identities else []:
            enc = entry.get("enc", "")
            if _ARMOR.fullmatch(enc) is None:
                raise NeedsBinary("an age stanza in a form the Go armor reader may judge differently")
            try:
                key = pyrage.decrypt(enc.encode(), list(identities))
            except (pyrage.DecryptError, ValueError, TypeError):
                continue
            if len(key) != 32:
                raise NeedsBinary("a data key that is not 32 bytes")
            return bytes(key)
    for entry in kms:
        found = _kms_data_key(entry)
        if found is not None:
            return found
    raise NeedsBinary("no key available in process")


def _kms_data_key(entry: Mapping[str, Any]) -> bytes | None:
    if entry.get("role") or entry.get("aws_profile"):
        raise NeedsBinary("KMS with a role or a profile")
    parts = str(entry.get("arn", "")).split(":")
    if len(parts) < 6:
        return None
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = _kms_client(parts[3]).decrypt(
            CiphertextBlob=base64.b64decode(str(entry.get("enc", ""))),
            EncryptionContext=dict(entry.get("context") or {}),
        )
    except (ClientError, BotoCoreError, ValueError):
        return None
    key = response.get("Plaintext")
    if isinstance(key, bytes) and len(key) != 32:
        raise NeedsBinary("a data key that is not 32 bytes")
    return bytes(key) if isinstance(key, bytes) else None


@functools.cache
def _kms_client(region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("kms", region_name=region,
                        config=Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard"}))
