"""The in-process decryptor against the real sops binary, on generated files.

Documents are generated as YAML text (nested maps and lists, every scalar
spelling whose typing differs between YAML 1.1 and 1.2, comments, unicode,
keys that need quoting), encrypted by the real sops under a randomly chosen
creation rule, and decrypted both ways: values, types and key order must be
equal wherever the in-process engine answers. A second generator tampers
with encrypted files; whatever sops refuses, the in-process engine must hand
to the binary, never answer.

HYPOTHESIS_PROFILE=thorough runs thousands of examples; the suite runs a few
dozen. CONNSYNC_DIFFERENTIAL_REPORT=path.json records the counts.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from connsync import sops
from connsync.sops import yaml_view as sops_yaml
from connsync.sops.native import NeedsBinary, decrypt_text
from tests.conftest import AgeKey, make_age_key

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
SETTINGS = settings(
    max_examples=int(os.environ.get("CONNSYNC_DIFFERENTIAL_EXAMPLES", 3000 if THOROUGH else 25)),
    # The suite's few dozen examples are the same every run (a shared suite stays
    # stable); the thorough profile explores.
    deadline=None, database=None, derandomize=not THOROUGH,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
COUNTS: Counter[str] = Counter()

# --- documents ----------------------------------------------------------------------

# Plain spellings whose type differs between readers (YAML 1.1/1.2, Go/Python).
TRICKY = [
    "0777", "0X1F", "0x1f", "0o17", "0b101", "-0b101", "1_000", "1__0", "1_", "08", "08.5", "+1", "-7", "-0",
    "2025-06-01", "2025-6-1", "2024-02-30", "2024-01-02T03:04:05.5+02:00", "2024-01-02T03:04:05Z",
    "2001-12-14 21:59:43.10", "2024-01-02T03:04:05", "1e400", "-1e400", "1e+06", "1e6", "1.0", "100.0",
    "-0.0",
    "3.0", "1.5", "0.0001", "1e-7", "1e-400", "123456.0", "1234567.0", "999999.0", "1e21", ".5", "+.5", "1.",
    "1e000000000000000000000000000001", "yes", "no", "on", "off", "y", "n", "true", "False", "TRUE", "tRue",
    "~", "null", "Null", "", ".inf", "-.Inf", "+.INF", ".nan", ".NaN", "9223372036854775807",
    "-9223372036854775808", "12345678901234567890123", "0.1e1", "1:30", "0x", "+", "-", "=", "<<x",
    "plain text", "héllo ☃ 日本", "a#b", "null_ish", "0.", "00", "0o8",
]
KEYS = ["secret", "password", "name", "token_enc", "clear", "note_clear", "k1", "x", "id",
        "key with space", "ключ", "a:b", "#hash", "- dash", "yes", "null", "123", "true", "1_000", "tab\tkey",
        "sops_like", "_unencrypted", "data_unencrypted", "enc"]

RULES = [
    "",
    "    encrypted_regex: ^(secret|password|k\\d|enc)$\n",
    "    unencrypted_regex: ^(name|clear|id)$\n",
    "    encrypted_suffix: _enc\n",
    "    unencrypted_suffix: _clear\n",
    "    encrypted_regex: '^(a|aa)+$'\n",
    "    encrypted_regex: (?i)SECRET|^x$\n",
]


def quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t\\\"'#:"),
                max_size=12)
scalars = st.one_of(
    st.sampled_from(TRICKY),
    st.sampled_from(TRICKY).map(quoted),
    texts.map(quoted),
    texts.map(lambda t: "'" + t.replace("'", "''").replace("\n", " ") + "'"),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=False).map(repr),
    st.booleans().map(lambda b: str(b).lower()),
)
# Plain `null:` and `true:` keys make sops refuse to encrypt; the tampering test adds those.
keys = st.one_of(st.sampled_from(KEYS).map(lambda k: k if re.fullmatch(r"[A-Za-z_]\w*", k)
                                           and k not in ("null", "true") else quoted(k)),
                 texts.filter(bool).map(quoted))


@st.composite
def documents(draw: st.DrawFn, depth: int = 0) -> list[str]:
    """A block mapping as lines (without the indentation of its parent)."""
    lines: list[str] = []
    names = draw(st.lists(keys, min_size=1, max_size=5, unique_by=lambda k: k.strip('"')))
    for name in names:
        if draw(st.integers(0, 9)) == 0:
            lines.append("# " + draw(texts).replace("\n", " "))
        kind = draw(st.integers(0, 11)) if depth < 3 else 0
        if kind <= 5:
            comment = "  # c" if draw(st.integers(0, 5)) == 0 else ""
            lines.append(f"{name}: {draw(scalars)}{comment}")
        elif kind == 10:  # a block scalar
            style = draw(st.sampled_from(["|", "|-", ">", "|+", ">-"]))
            body = draw(st.lists(texts.map(lambda t: t.replace("\n", " ").strip()), min_size=1, max_size=3))
            lines.append(f"{name}: {style}")
            lines += ["  " + line if line else "" for line in body]
        elif kind == 11:  # flow collections
            flow_safe = st.sampled_from([t for t in TRICKY if t and "," not in t])
            items = draw(st.lists(flow_safe | texts.map(quoted), max_size=4))
            if draw(st.booleans()):
                lines.append(f"{name}: [{', '.join(items)}]")
            else:
                lines.append(f"{name}: {{{', '.join(f'f{i}: {v}' for i, v in enumerate(items))}}}")
        elif kind <= 7:
            lines.append(f"{name}:")
            lines += ["  " + line for line in draw(documents(depth + 1))]
        else:
            lines.append(f"{name}:")
            for _ in range(draw(st.integers(0, 4))):
                if draw(st.integers(0, 5)) == 0:
                    lines.append("  # a comment in a list")
                if depth < 2 and draw(st.booleans()):
                    inner = draw(documents(depth + 1))
                    lines.append("  - " + inner[0])
                    lines += ["    " + line for line in inner[1:]]
                else:
                    lines.append(f"  - {draw(scalars)}")
            if lines[-1].endswith(":"):
                lines[-1] += " []"
    return lines


# --- sops ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key_and_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AgeKey, Path]]:
    directory = tmp_path_factory.mktemp("differential")
    yield make_age_key(directory), directory
    report = os.environ.get("CONNSYNC_DIFFERENTIAL_REPORT")
    if report:
        Path(report).write_text(json.dumps(dict(sorted(COUNTS.items())), indent=2) + "\n")
    print("\ndifferential counts:", dict(sorted(COUNTS.items())))


@pytest.fixture
def setup(key_and_dir: tuple[AgeKey, Path], monkeypatch: pytest.MonkeyPatch) -> tuple[AgeKey, Path]:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_and_dir[0].file))
    return key_and_dir


def sops_run(*args: str, stdin: bytes | None = None, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sops.binary(), *args], input=stdin, capture_output=True, cwd=cwd,
                          env={**os.environ}, check=False, timeout=60)


def encrypt(setup: tuple[AgeKey, Path], plain: str, rule: str, mac_only: bool) -> str | None:
    key, directory = setup
    config = directory / ".sops.yaml"
    extra = "    mac_only_encrypted: true\n" if mac_only else ""
    config.write_text(f"creation_rules:\n  - age: {key.public}\n{rule}{extra}")
    result = sops_run("--config", str(config), "encrypt", "--filename-override", "x.yaml", "--input-type",
                      "yaml", "--output-type", "yaml", "/dev/stdin", stdin=plain.encode(), cwd=directory)
    if result.returncode != 0:
        reason = re.sub(r" \(type .*", "", result.stderr.decode().strip().splitlines()[-1])
        COUNTS[f"sops refuses to encrypt: {reason[:90]}"] += 1
        return None
    return result.stdout.decode()


def binary_decrypt(directory: Path, text: str) -> list[Any] | None:
    path = directory / "check.yaml"
    path.write_text(text)
    result = sops_run("decrypt", "--input-type", "yaml", "--output-type", "yaml", str(path), cwd=directory)
    if result.returncode != 0:
        return None
    try:
        return sops_yaml.load_all(result.stdout.decode())
    except sops_yaml.Unsupported:
        # Duplicate keys (sops 3.11 lets them through), or YAML go-yaml writes
        # and libyaml rejects (`- |4-`): sops's JSON output is checked instead.
        result = sops_run("decrypt", "--input-type", "yaml", "--output-type", "json", str(path),
                          cwd=directory)
        if result.returncode != 0:
            # JSON cannot hold .inf/.nan either: sops's answer cannot be read at all.
            return [UNCHECKABLE if b"json: unsupported value" in result.stderr else UNREADABLE]
        return [JsonReference(json.loads(result.stdout))]


UNREADABLE = object()
UNCHECKABLE = object()


class JsonReference(dict[str, Any]):
    """sops's JSON output: numbers lose the int/float distinction YAML keeps."""


def loosely(value: Any) -> Any:
    if isinstance(value, dict):
        return ("map", [(k, loosely(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("seq", [loosely(v) for v in value])
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ("number", float(value))
    return (type(value).__name__, value)


def canonical(value: Any) -> Any:
    """Values with their types and key order, NaN equal to itself."""
    if isinstance(value, dict):
        return ("map", [(k, canonical(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("seq", [canonical(v) for v in value])
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else repr(value))
    return (type(value).__name__, value)


def verdict(directory: Path, text: str) -> str:
    """Decrypt both ways; assert they agree; return what happened."""
    reference = binary_decrypt(directory, text)
    try:
        mine = decrypt_text(text)
    except NeedsBinary as exc:
        if reference is None:
            return "refused by both"
        COUNTS[f"handed over because: {exc}"] += 1
        return "handed over"
    assert reference is not None, "the in-process engine returned plaintext for a file sops refuses"
    if reference == [UNCHECKABLE]:
        return "not checkable (sops's YAML unreadable to libyaml, its JSON cannot hold .inf/.nan)"
    assert reference != [UNREADABLE], "the in-process engine answered where sops's answer is unreadable"
    if len(reference) == 1 and isinstance(reference[0], JsonReference):
        if len(mine) > 1:  # sops's JSON output holds only the first document
            assert loosely(mine[0]) == loosely(dict(reference[0]))
            return "first document agrees (with sops's JSON output)"
        assert [loosely(dict(d)) for d in mine] == [loosely(dict(reference[0]))]
        return "agree (with sops's JSON output)"
    assert canonical(mine) == canonical(reference)
    return "agree"


@SETTINGS
@given(lines=documents(), more=st.none() | documents(), rule=st.sampled_from(RULES), mac_only=st.booleans())
def test_generated_documents_decrypt_like_sops(setup: tuple[AgeKey, Path], lines: list[str],
                                               more: list[str] | None, rule: str, mac_only: bool) -> None:
    plain = "\n".join(lines) + "\n" + ("---\n" + "\n".join(more) + "\n" if more else "")
    encrypted = encrypt(setup, plain, rule, mac_only)
    if encrypted is None:
        COUNTS["documents: sops refuses to encrypt"] += 1
        assume(False)
    assert encrypted is not None
    COUNTS["documents compared"] += 1
    COUNTS[f"documents: {verdict(setup[1], encrypted)}"] += 1


# --- tampering ---------------------------------------------------------------------

ENC = re.compile(r"ENC\[AES256_GCM,data:([^,]*),iv:([^,]*),tag:([^,]*),type:(\w+)\]")
BASE = """\
name: connsync
secret: s3cr3t
password: "0777"
count: 42
ratio: 1.5
flag: true
when: 2025-06-01
nested:
    k1: [1, two, 3.0]
    note_clear: visible
    token_enc: abc
items:
    # a comment in a list
    - a
    - b: c
"""


def _flip(text: str, data: st.DataObject) -> str:
    matches = list(ENC.finditer(text))
    match = data.draw(st.sampled_from(matches))
    group = data.draw(st.integers(1, 3))
    start, end = match.span(group)
    if start == end:
        return text[:start] + "A" + text[start:]
    at = data.draw(st.integers(start, end - 1))
    new = [c for c in "AB+/=ab0" if c != text[at]][data.draw(st.integers(0, 6))]
    return text[:at] + new + text[at + 1:]


def _retype(text: str, data: st.DataObject) -> str:
    matches = list(ENC.finditer(text))
    match = data.draw(st.sampled_from(matches))
    start, end = match.span(4)
    new = data.draw(st.sampled_from(["str", "int", "float", "bool", "bytes", "time", "comment", "nope"]))
    return text[:start] + new + text[end:]


def _meta(text: str, data: st.DataObject) -> str:
    edit = data.draw(st.sampled_from([
        ("mac_only_encrypted: true", "mac_only_encrypted: \"true\""),
        ("mac_only_encrypted: true", "mac_only_encrypted: yes"),
        ("mac_only_encrypted: true", "mac_only_encrypted: 1"),
        ("mac_only_encrypted: true", "mac_only_encrypted: false"),
        ("    version:", "    unencrypted_suffix: _x\n    version:"),
        ("    version:", "    encrypted_suffix: _enc\n    version:"),
        ("    version:", "    mac_only_encrypted: true\n    version:"),
        ("    version:", "    mac_only_encrypted: \"false\"\n    version:"),
        ("    version:", "    pgp: []\n    version:"),
        ("    version:", "    shamir_threshold: 1\n    version:"),
        ("    version:", "    unknown_field: 1\n    version:"),
        ("    version:", "    version: [1]\n    old_version:"),
        ("    version:", "    encrypted_comment_regex: x\n    version:"),
        ("Z\"\n", "+00:00\"\n"),
        ("Z\"\n", ".5Z\"\n"),
        ("Z\"\n", "+01:00\"\n"),
        ("    lastmodified: \"", "    lastmodified: \"x"),
        ("    mac: ", "    mac_x: "),
        ("    mac: ", "    mac: x\n    mac_old: "),
        ("    lastmodified: \"", "    lastmodified: !!str \""),
        ("encrypted_regex: ", "encrypted_regex: (a+)+$|"),
        ("encrypted_regex: ", "unencrypted_regex: "),
        ("unencrypted_suffix: _unencrypted", "unencrypted_suffix: _clear"),
        ("    age:\n", "    age: []\n    age_old:\n"),
        ("\n            -----END", "\n            AAAA\n            -----END"),
    ]))
    assume(edit[0] in text)
    return text.replace(edit[0], edit[1], 1)


def _keys(text: str, data: st.DataObject) -> str:
    lines = text.split("\n")
    body = [i for i, line in enumerate(lines) if (line and not line.startswith(("sops:", "    ", "        ")))
            or (line.startswith("    ") and not line.startswith("        ") and i < lines.index("sops:"))]
    at = data.draw(st.sampled_from(body))
    action = data.draw(st.sampled_from(["remove", "rename", "add", "dup", "comment"]))
    line = lines[at]
    indent = line[: len(line) - len(line.lstrip())]
    if action == "remove" and ":" in line:
        del lines[at]
    elif action == "rename" and ":" in line:
        lines[at] = line.replace(":", "x:", 1)
    elif action == "add":
        value = data.draw(st.sampled_from(TRICKY))
        lines.insert(at, f"{indent}{data.draw(st.sampled_from(['new', '1_000', 'true', 'ratio2']))}: {value}")
    elif action == "dup" and ":" in line and not line.lstrip().startswith("- "):
        lines.insert(at, line)
    else:
        found = ENC.search(text)
        assert found is not None
        lines.insert(at, f"{indent}#{found.group(0)}")
    return "\n".join(lines)


def _clear_value(text: str, data: st.DataObject) -> str:
    clear = [m for m in re.finditer(r"^(\s*(?:- )?[\w\"]+: )(?!ENC\[)([^\n|>]+)$", text, re.M)
             if not m.group(1).strip().startswith(("mac", "lastmodified", "version", "recipient", "enc",
                                                   "encrypted_", "unencrypted_"))]
    assume(clear)
    match = data.draw(st.sampled_from(clear))
    value = data.draw(st.sampled_from(TRICKY) | scalars)
    return text[: match.start(2)] + value + text[match.end(2):]


ENCRYPTED_BASE: dict[tuple[str, str, bool], str | None] = {}
TAMPERINGS = {"flip": _flip, "retype": _retype, "metadata": _meta, "keys": _keys, "clear value": _clear_value}


@SETTINGS
@given(data=st.data(), rule=st.sampled_from(RULES[:5]), mac_only=st.booleans(),
       how=st.lists(st.sampled_from(sorted(TAMPERINGS)), min_size=1, max_size=2))
def test_tampered_files_never_decrypt_where_sops_refuses(setup: tuple[AgeKey, Path], data: st.DataObject,
                                                         rule: str, mac_only: bool, how: list[str]) -> None:
    # One encryption per rule, so every draw below sees the same text when
    # hypothesis replays an example (sops's IVs are random).
    cache_key = (setup[0].public, rule, mac_only)
    if cache_key not in ENCRYPTED_BASE:
        ENCRYPTED_BASE[cache_key] = encrypt(setup, BASE, rule, mac_only)
    encrypted = ENCRYPTED_BASE[cache_key]
    assert encrypted is not None
    tampered = encrypted
    for name in how:
        tampered = TAMPERINGS[name](tampered, data)
    COUNTS["tampered compared"] += 1
    COUNTS[f"tampered: {verdict(setup[1], tampered)}"] += 1


# --- the cases an outside check found, each pinned --------------------------------

ISSUE_CASES: dict[str, tuple[str, str, str, str]] = {
    # name: (creation rule, edit: old, new, what both engines must do)
    "str retyped as bytes": ("", "type:str]", "type:bytes]", "refused by both"),
    "a second crypt rule": ("    encrypted_regex: ^secret$\n", "    version:",
                            "    encrypted_suffix: _x\n    version:", "refused by both"),
    "mac_only_encrypted quoted true": ("    encrypted_regex: ^secret$\n    mac_only_encrypted: true\n",
                                       "mac_only_encrypted: true", 'mac_only_encrypted: "true"',
                                       "refused by both"),
    "mac_only_encrypted quoted false": ("    encrypted_regex: ^secret$\n", "    version:",
                                        '    mac_only_encrypted: "false"\n    version:', "refused by both"),
    "a non-string clear key": ("    encrypted_regex: ^secret$\n    mac_only_encrypted: true\n",
                               "count: 42\n", "count: 42\n1_000: x\n", "refused by both"),
    "lastmodified with +00:00": ("", 'Z"\n', '+00:00"\n', "agree"),
    "hand-edited clear values": ("    encrypted_regex: ^secret$\n    mac_only_encrypted: true\n",
                                 "count: 42\n",
                                 "count: 0777\nhex: 0X1F\nbin: 0b101\nthousand: 1_000\nday: 2025-06-01\n"
                                 'huge: "1e400"\nhuger: 1e400\nf: 1e000000000000000000000000000001\n',
                                 "agree"),
    # sops writes a float -0.0 as -0, which reads back as the int 0.
    "a clear negative zero": ("    encrypted_regex: ^secret$\n    mac_only_encrypted: true\n", "count: 42\n",
                              "count: -0.0\n", "agree"),
    "a huge integer": ("    encrypted_regex: ^secret$\n    mac_only_encrypted: true\n",
                       "count: 42\n", "count: 18446744073709551615\n", "refused by both"),
}
PINNED_PLAIN = """\
secret: s3cr3t
count: 42
floats: [1.0, 100.0, 1e+06, 123456.0, 1234567.0, .inf, -.inf, .nan]
when: 2025-06-01
at: 2024-01-02T03:04:05.5+02:00
items:
  # a comment inside a list
  - a
  - b # and one after an item
nested: {yes: no, "on": off}
"""


@pytest.mark.parametrize("name", sorted(ISSUE_CASES))
def test_issue_cases(setup: tuple[AgeKey, Path], name: str) -> None:
    rule, old, new, expected = ISSUE_CASES[name]
    encrypted = encrypt(setup, PINNED_PLAIN, rule, mac_only=False)
    assert encrypted is not None and old in encrypted
    assert verdict(setup[1], encrypted.replace(old, new, 1)) == expected


@pytest.mark.parametrize("rule", RULES)
def test_types_sops_gives(setup: tuple[AgeKey, Path], rule: str) -> None:
    """Whole floats, type:time and comments in lists: decrypted in process, as sops returns them."""
    encrypted = encrypt(setup, PINNED_PLAIN, rule, mac_only=False)
    assert encrypted is not None
    assert verdict(setup[1], encrypted) == "agree"
    values = decrypt_text(encrypted)[0]
    # yaml.v3 writes floats with 'g': 1e+06 stays a float, 100.0 becomes 100.
    assert [type(v).__name__ for v in values["floats"]] == ["int", "int", "float", "int"] + ["float"] * 4
    assert values["when"] == "2025-06-01T00:00:00Z" and values["at"] == "2024-01-02T03:04:05.5+02:00"
    assert values["items"] == ["a", "b"] and values["nested"] == {"yes": "no", "on": "off"}


def test_a_hostile_regex_runs_in_linear_time(setup: tuple[AgeKey, Path]) -> None:
    """(a+)+$ against a 40-character key: 2^40 steps for a backtracking engine, none for RE2."""
    plain = f"secret: s3cr3t\nlabels:\n  {'a' * 40}!: x\n"
    encrypted = encrypt(setup, plain, "    encrypted_regex: ^secret$\n", mac_only=False)
    assert encrypted is not None
    hostile = encrypted.replace("encrypted_regex: ^secret$", "encrypted_regex: (a+)+$|^secret$")
    assert hostile != encrypted
    assert decrypt_text(hostile) == [{"secret": "s3cr3t", "labels": {"a" * 40 + "!": "x"}}]
    assert verdict(setup[1], hostile) == "agree"


def test_validation_reads_clear_values_as_sops_does(setup: tuple[AgeKey, Path]) -> None:
    """One typing: the loader (validate) and sops agree on every spelling, types included."""
    from connsync.validate import loader

    # "v: -" is a YAML syntax error; sops cannot decrypt its own clear -0.0 (written -0, read as 0).
    spellings = [s for s in TRICKY if s not in ("-", "-0.0")]
    plain = "secret: x\n" + "".join(f"v{i}: {s}\n" for i, s in enumerate(spellings))
    encrypted = encrypt(setup, plain, "    encrypted_regex: ^secret$\n", mac_only=False)
    assert encrypted is not None
    reference = binary_decrypt(setup[1], encrypted)
    assert reference is not None
    assert canonical(loader.parse(plain)) == canonical(reference[0])


# --- one parse per file: the loader's parse, handed to the engine -------------------


def read_both_ways(text: str) -> str:
    """The engine reading the loader's parse answers exactly as when it composes the text itself
    (the reading the tests above hold against sops)."""
    from connsync.validate import loader

    def outcome(parsed: sops_yaml.Parsed | None) -> tuple[str, Any]:
        try:
            return "decrypted", canonical(decrypt_text(text, parsed))
        except NeedsBinary as exc:
            return "handed over", str(exc)

    try:
        parsed = loader.parse_located(text)[1]
    except loader.YamlProblem:
        return "refused by the loader"
    assert outcome(parsed) == outcome(None)
    return "tree read as is" if parsed.sops_reads_as_is else "text composed again"


@SETTINGS
@given(lines=documents(), rule=st.sampled_from(RULES), mac_only=st.booleans())
def test_the_loaders_parse_decrypts_as_the_text_does(setup: tuple[AgeKey, Path], lines: list[str], rule: str,
                                                     mac_only: bool) -> None:
    encrypted = encrypt(setup, "\n".join(lines) + "\n", rule, mac_only)
    assume(encrypted is not None)
    assert encrypted is not None
    COUNTS[f"one parse: {read_both_ways(encrypted)}"] += 1


@SETTINGS
@given(data=st.data(), rule=st.sampled_from(RULES[:5]), mac_only=st.booleans(),
       how=st.lists(st.sampled_from(sorted(TAMPERINGS)), min_size=1, max_size=2))
def test_the_loaders_parse_of_tampered_files_decrypts_as_the_text_does(
        setup: tuple[AgeKey, Path], data: st.DataObject, rule: str, mac_only: bool, how: list[str]) -> None:
    cache_key = (setup[0].public, rule, mac_only)
    if cache_key not in ENCRYPTED_BASE:
        ENCRYPTED_BASE[cache_key] = encrypt(setup, BASE, rule, mac_only)
    tampered = ENCRYPTED_BASE[cache_key]
    assert tampered is not None
    for name in how:
        tampered = TAMPERINGS[name](tampered, data)
    COUNTS[f"one parse, tampered: {read_both_ways(tampered)}"] += 1


@pytest.mark.parametrize("name", sorted(ISSUE_CASES))
def test_the_loaders_parse_decrypts_the_issue_cases_as_the_text_does(setup: tuple[AgeKey, Path],
                                                                     name: str) -> None:
    rule, old, new, _ = ISSUE_CASES[name]
    encrypted = encrypt(setup, PINNED_PLAIN, rule, mac_only=False)
    assert encrypted is not None
    read_both_ways(encrypted.replace(old, new, 1))
    assert read_both_ways(encrypted) == "tree read as is"
