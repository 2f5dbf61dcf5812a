"""Validation beyond the schema: secrets encrypted, unique names, provider rules.

:func:`validate_files` is the whole offline ``validate``: load, schema, rules.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connsync import providers
from connsync.model import Declaration, Finding, Severity, connection_id, json_path
from connsync.validate import discovery, loader, policy_check, schema
from connsync.validate.policy import NONE, PolicySet

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
    # policy findings that a waiver moved aside
    waived: list[policy_check.Waived] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def valid_declarations(self) -> list[Declaration]:
        bad = {f.file for f in self.findings if f.severity == "error"}
        return [d for d in self.declarations if d.file not in bad]


def validate_files(paths: Sequence[str | Path], default_dir: Path, root: Path | None = None,
                   policies: PolicySet = NONE) -> Validation:
    """``root`` is the repository, which no symlink may leave (default: the working directory);
    ``policies`` the organisation policy in force (its own findings are reported too)."""
    found = discovery.discover(paths, default_dir, root)
    files = found.files
    declarations: list[Declaration] = []
    findings: list[Finding] = list(found.findings)
    for item in loader.load_all(files):
        if isinstance(item, Finding):
            findings.append(item)
        else:
            decl, found_here = checked(item)
            declarations.append(decl)
            findings.extend(found_here)
    findings.extend(_cross_file(declarations, files, default_dir, root) if paths
                    else duplicate_names(declarations))
    policed = policy_check.check(declarations, policies)
    findings.extend([*policies.findings, *policed.findings])
    findings.sort(key=Finding.sort_key)
    # What could not be looked at counts as checked too: it is in the findings.
    return Validation(len(files) + len({f.file for f in found.findings}), declarations, findings,
                      policed.waived)


def _cross_file(declarations: list[Declaration], files: Sequence[Path], default_dir: Path,
                root: Path | None) -> list[Finding]:
    """Cross-file rules for some PATHS see every file of the directory (a pre-commit run passes only
    the staged files); findings are reported on the files that were asked about."""
    if not default_dir.is_dir():
        return duplicate_names(declarations)
    asked = {p.resolve() for p in files}
    others = [item for item in loader.load_all([p for p in discovery.discover((), default_dir, root).files
                                                if p.resolve() not in asked])
              if isinstance(item, Declaration)]
    wanted = {d.file for d in declarations}
    return [f for f in duplicate_names([*others, *declarations]) if f.file in wanted]


def is_encrypted(value: Any) -> bool:
    return isinstance(value, str) and ENC_RE.match(value) is not None


def _finding(decl: Declaration, rule: str, parts: list[str | int], message: str,
             severity: Severity = "error") -> Finding:
    line, column = decl.position(parts)
    return Finding(severity, rule, decl.file, line, column, json_path(parts), message)


def check_declaration(decl: Declaration) -> list[Finding]:
    """Every finding of the schema stage and of these rules for one declaration."""
    return checked(decl)[1]


def checked(decl: Declaration) -> tuple[Declaration, list[Finding]]:
    """The schema stage, then these rules, which read what it hands forward: the declaration
    with its provider's secret fields, and the schema's findings."""
    decl, schema_findings = schema.check(decl)
    return decl, _rules(decl, schema_findings)


def _rules(decl: Declaration, schema_findings: list[Finding]) -> list[Finding]:
    over_encrypted = _encrypted_clear_fields(decl)
    if over_encrypted:
        # Every schema finding would only repeat this one cause.
        return over_encrypted
    hidden = hidden_text(decl)
    # One mistake, one finding: the schema's pattern error on the same field says less.
    findings = [f for f in schema_findings if f.path not in {h.path for h in hidden}]
    findings.extend(hidden)
    findings.extend(plaintext_secrets(decl))
    provider = decl.data.get("provider")
    if isinstance(provider, str) and isinstance(decl.data.get("spec"), Mapping):
        # Semantic checks only where the schema had nothing to say, so that one
        # mistake gives one finding.
        flagged = {f.path for f in findings}
        for issue in providers.get(provider).check(decl.spec):
            path: list[str | int] = ["spec", issue.field]
            if json_path(path) not in flagged:
                findings.append(_finding(decl, issue.rule, path, issue.message, issue.severity))
    return findings


def _encrypted_clear_fields(decl: Declaration) -> list[Finding]:
    """A file where sops encrypted fields that are not secret (no encrypted_regex)."""
    provider = decl.data.get("provider")
    if is_encrypted(provider):
        return [_finding(decl, "encrypted-clear-field", ["provider"], _OVER_ENCRYPTED)]
    secrets = decl.secret_fields
    if secrets is None:
        return []  # the schema reports the unknown provider
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
    present = [f for f in sorted(decl.secret_fields or ()) if f in decl.spec]
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


_HIDDEN_HINT = "control and format characters can hide or fake text in reviews and output; remove it"
_BLANK_HINT = ("it looks like a space, or like nothing, so two different names or labels would read the "
               "same; use a plain space (U+0020) or remove it")


@functools.cache
def _unicode_set(pattern: str) -> Any:
    import icu  # ~60 ms to import: only for text that is not ASCII

    chars = icu.UnicodeSet(pattern)
    chars.freeze()  # immutable, and faster to query
    return chars


# Unicode's default-ignorable code points (zero-width characters, variation selectors, the Hangul
# fillers, ...) render as nothing or as a blank, White_Space ones as a space; the Braille blank is
# neither, and shows as a space too. In a name or a label each is refused: decided once here rather
# than folded only where two names meet, so that a label value cannot differ invisibly either.
_BLANKS = r"[[[:Default_Ignorable_Code_Point:][:White_Space:][\u2800]]-[\u0020]]"
# The ones among them that take a space's width (the rest take none): the look-alike check folds
# these to a space and the rest to nothing, for names read from a store, which no validate saw.
_SPACERS = r"[[:White_Space:]\u2800\u115f\u1160\u3164\uffa0]"


def blank_character(value: str) -> str | None:
    """A description of the first blank-looking character in ``value`` other than the space, if any."""
    if value.isascii():  # ASCII's only other blanks are controls, which hidden_character reports
        return None
    blanks = _unicode_set(_BLANKS)
    for index, char in enumerate(value):
        if blanks.contains(char):
            return f"U+{ord(char):04X} ({unicodedata.name(char, 'unassigned')}) at position {index + 1}"
    return None


def odd_character(value: str, *, prose: bool = False) -> tuple[str, str] | None:
    """What is wrong with a name, label (or, with ``prose``, description) character, and the hint."""
    bad = discovery.hidden_character(value.replace("\n", " ").replace("\t", " ") if prose else value)
    if bad:
        return bad, _HIDDEN_HINT
    bad = None if prose else blank_character(value)
    return (f"{bad}, a blank-looking character", _BLANK_HINT) if bad else None


def hidden_text(decl: Declaration) -> list[Finding]:
    """Control and format characters in the name, labels or description (prose may break lines);
    blank-looking ones in the name and labels (prose may hold a no-break space)."""
    metadata = decl.data.get("metadata")
    if not isinstance(metadata, Mapping):
        return []
    findings: list[Finding] = []

    def check(parts: list[str | int], value: object, what: str, *, prose: bool = False,
              at_key: bool = False) -> None:
        if not isinstance(value, str):
            return
        odd = odd_character(value, prose=prose)
        if odd:
            line, column = decl.position(parts, at_key=at_key)
            findings.append(Finding("error", "hidden-character", decl.file, line, column,
                                    json_path(parts), f"{what} contains {odd[0]}; {odd[1]}"))

    check(["metadata", "name"], metadata.get("name"), "the name")
    check(["metadata", "description"], metadata.get("description"), "the description", prose=True)
    labels = metadata.get("labels")
    if isinstance(labels, Mapping):
        for key, value in labels.items():
            check(["metadata", "labels", str(key)], key, "a label key", at_key=True)
            check(["metadata", "labels", str(key)], value, "a label value")
    return findings


def name_key(name: str) -> str:
    """What makes two names the same name: NFC, then case-insensitive."""
    return unicodedata.normalize("NFC", name).casefold()


@functools.cache
def _spoof_checker() -> Any:
    import icu  # ~60 ms to import; only needed once two names are compared

    return icu.SpoofChecker()


def skeleton(name: str) -> str:
    """Unicode's confusable skeleton (UTS #39) of the name: equal skeletons look alike."""
    key = name_key(name)
    if not key.isascii():
        spacers = _unicode_set(_SPACERS)
        key = "".join(" " if spacers.contains(c) else c for c in key)  # ICU drops the other ignorables
    return str(_spoof_checker().getSkeleton(0, key))


def _differences(name: str, other: str) -> str:
    odd = sorted(set(name) - set(other), key=name.index)[:3]
    return ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, '(unnamed)')}" for c in odd)


def duplicate_names(declarations: Iterable[Declaration]) -> list[Finding]:
    """Names are unique in a workspace ignoring case and normalisation, and distinguishable at a glance."""
    named = []
    for decl in declarations:
        metadata = decl.data.get("metadata")
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        if isinstance(name, str) and not odd_character(name):  # else its own finding says why
            named.append((unicodedata.normalize("NFC", name), decl))
    first_seen: dict[str, tuple[str, Declaration]] = {}
    look_alikes: dict[str, tuple[str, Declaration]] = {}
    findings = []
    for name, decl in named:
        key = name_key(name)
        if key in first_seen:
            other_name, other = first_seen[key]
            findings.append(
                _finding(
                    decl, "duplicate-name", ["metadata", "name"],
                    f"name {name!r} is already used by {other.file} "
                    f"(as {other_name!r}); names are unique in a workspace, ignoring case",
                )
            )
            continue
        first_seen[key] = (name, decl)
        if len(named) < 2:
            continue
        look = skeleton(name)
        if look in look_alikes:
            other_name, other = look_alikes[look]
            findings.append(
                _finding(
                    decl, "confusable-name", ["metadata", "name"],
                    f"name {name!r} looks the same as {other_name!r} in {other.file} "
                    f"({_differences(name, other_name) or 'other characters'}); "
                    "names must be told apart at a glance",
                )
            )
        else:
            look_alikes[look] = (name, decl)
    # A name already reported (the same, or a look-alike) is not reported again for its id.
    reported = {f.file for f in findings}
    return findings + duplicate_ids([decl for _, decl in named if decl.file not in reported])


def duplicate_ids(declarations: Iterable[Declaration]) -> list[Finding]:
    """Two connections that one id would name (Airflow's conn_id): ``EU-Prod`` and ``eu prod``."""
    seen: dict[str, Declaration] = {}
    findings = []
    for decl in declarations:
        chosen = decl.data["metadata"].get("id")
        if chosen is not None and not isinstance(chosen, str):
            continue  # the schema says why
        conn_id = connection_id(decl.name, chosen)
        other = seen.setdefault(conn_id, decl)
        if other is not decl:
            where: list[str | int] = ["metadata", "id" if chosen else "name"]
            findings.append(_finding(
                decl, "duplicate-id", where,
                f"the connection id {conn_id!r} is also {other.name!r}'s ({other.file}); stores and Airflow "
                "name a connection by it: set a unique metadata.id"))
    return findings


def confusable_with_store(declarations: Iterable[Declaration], record_names: Iterable[str]) -> list[Finding]:
    """Names that are new to the store but look like a record it holds (made in the UI, say)."""
    existing = {name_key(n): n for n in record_names}
    if not existing:
        return []
    looks = {skeleton(n): n for n in existing.values()}
    findings = []
    for decl in declarations:
        name = decl.name
        if name_key(name) in existing:
            continue  # the same record: an update, a noop or a conflict
        other = looks.get(skeleton(name))
        if other is not None:
            findings.append(
                _finding(
                    decl, "confusable-name", ["metadata", "name"],
                    f"name {name!r} looks the same as {other!r}, which the store already holds "
                    f"({_differences(name, other) or 'other characters'}); names must be told apart "
                    "at a glance",
                )
            )
    return findings
