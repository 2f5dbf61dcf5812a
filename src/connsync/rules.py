"""Validation beyond the schema: secrets encrypted, unique names, provider rules.

:func:`validate_files` is the whole offline ``validate``: load, schema, rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connsync import discovery, loader, providers, schema
from connsync.model import Declaration, Finding, Severity

_B64 = r"[A-Za-z0-9+/=]"
ENC_RE = re.compile(rf"^ENC\[AES256_GCM,data:{_B64}*,iv:{_B64}+,tag:{_B64}+,type:\w+\]$")


_OVER_ENCRYPTED = (
    "non-secret fields are encrypted, so the file cannot be validated or reviewed; "
    "the .sops.yaml creation rule needs the encrypted_regex that 'connsync init' writes "
    "(then re-encrypt: sops decrypt -i FILE && sops encrypt -i FILE)"
)


@dataclass(frozen=True)
class Validation:
    files: int
    declarations: list[Declaration]  # every file that parsed, valid or not
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def valid_declarations(self) -> list[Declaration]:
        bad = {f.file for f in self.findings if f.severity == "error"}
        return [d for d in self.declarations if d.file not in bad]


def validate_files(paths: Sequence[str | Path], default_dir: Path, root: Path | None = None) -> Validation:
    """``root`` is the repository, which no symlink may leave (default: the working directory)."""
    found = discovery.discover(paths, default_dir, root)
    files = found.files
    declarations: list[Declaration] = []
    findings: list[Finding] = list(found.findings)
    for item in loader.load_all(files):
        if isinstance(item, Finding):
            findings.append(item)
        else:
            declarations.append(item)
            findings.extend(check_declaration(item))
    findings.extend(duplicate_names(declarations))
    findings.sort(key=Finding.sort_key)
    # What could not be looked at counts as checked too: it is in the findings.
    return Validation(len(files) + len({f.file for f in found.findings}), declarations, findings)


def is_encrypted(value: Any) -> bool:
    return isinstance(value, str) and ENC_RE.match(value) is not None


def _finding(decl: Declaration, rule: str, parts: list[str | int], message: str,
             severity: Severity = "error") -> Finding:
    line, column = loader.locate(decl.text, parts)
    return Finding(severity, rule, decl.file, line, column, loader.json_path(parts), message)


def check_declaration(decl: Declaration) -> list[Finding]:
    over_encrypted = _encrypted_clear_fields(decl)
    if over_encrypted:
        # Every schema finding would only repeat this one cause.
        return over_encrypted
    findings = schema.validate_document(decl)
    findings.extend(plaintext_secrets(decl))
    provider = decl.data.get("provider")
    if isinstance(provider, str) and isinstance(decl.data.get("spec"), Mapping):
        # Semantic checks only where the schema had nothing to say, so that one
        # mistake gives one finding.
        flagged = {f.path for f in findings}
        for issue in providers.get(provider).check(decl.spec):
            path: list[str | int] = ["spec", issue.field]
            if loader.json_path(path) not in flagged:
                findings.append(_finding(decl, issue.rule, path, issue.message, issue.severity))
    return findings


def _encrypted_clear_fields(decl: Declaration) -> list[Finding]:
    """A file where sops encrypted fields that are not secret (no encrypted_regex)."""
    provider = decl.data.get("provider")
    if is_encrypted(provider):
        return [_finding(decl, "encrypted-clear-field", ["provider"], _OVER_ENCRYPTED)]
    if provider not in schema.provider_names():
        return []  # the schema reports the unknown provider
    secrets = schema.secret_fields(provider)
    clear = [
        ("spec", key) for key, value in decl.spec.items() if key not in secrets and is_encrypted(value)
    ]
    if not clear:
        return []
    where: list[str | int] = [p for p in clear[0] if p]
    return [_finding(decl, "encrypted-clear-field", where, _OVER_ENCRYPTED)]


def plaintext_secrets(decl: Declaration) -> list[Finding]:
    provider = decl.data.get("provider")
    if not isinstance(provider, str):
        return []
    findings = []
    present = [f for f in sorted(schema.secret_fields(provider)) if f in decl.spec]
    for field in present:
        if not is_encrypted(decl.spec[field]):
            findings.append(
                _finding(
                    decl, "plaintext-secret", ["spec", field],
                    f"{field} is a secret and is not SOPS-encrypted; rotate it if this was ever "
                    "pushed, then write it with 'connsync new' or 'sops encrypt -i FILE'",
                )
            )
    sops = decl.data.get("sops")
    if present and not (isinstance(sops, Mapping) and "mac" in sops):
        findings.append(
            _finding(
                decl, "plaintext-secret", [],
                "file has secret fields but no complete sops metadata (no sops.mac); encrypt it with sops",
            )
        )
    return findings


def duplicate_names(declarations: Iterable[Declaration]) -> list[Finding]:
    first_seen: dict[str, Declaration] = {}
    findings = []
    for decl in declarations:
        metadata = decl.data.get("metadata")
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        if not isinstance(name, str):
            continue
        key = name.casefold()
        if key in first_seen:
            other = first_seen[key]
            findings.append(
                _finding(
                    decl, "duplicate-name", ["metadata", "name"],
                    f"name {name!r} is already used by {other.file} "
                    f"(as {other.name!r}); names are unique in a workspace, ignoring case",
                )
            )
        else:
            first_seen[key] = decl
    return findings
