"""The in-process decryptor against the real sops binary: same answers, same refusals."""

from __future__ import annotations

import base64
import json
import logging
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from connsync import sops
from connsync.model import Declaration, Secret
from connsync.sops import keys as sops_keys
from connsync.sops import native as sops_native
from connsync.sops import yaml_view as sops_yaml
from connsync.sops.native import NeedsBinary, decrypt_text
from tests.conftest import CANARY, AgeKey, MotoServer, run_process

PLAIN = """\
# a comment at the top
name: connsync
unicode: "h\u00e9llo \u2603 \u65e5\u672c"
empty: ""
nothing: null
count: 42
negative: -7
ratio: 1.5
million: 1e+06
whole: 3.0
small: 0.0001
enabled: true
disabled: false
word_yes: "yes"
date_like: "2024-01-01"
nested:
  deeper:
    secret_token: s3cr3t   # inline comment
    list: [1, two, 3.5, false, {inner: value}]
  password_unencrypted: visible
items:
  - a
  - b: c
---
second_doc: {key: value, n: 1}
"""

VARIANTS: dict[str, str] = {
    "default": "",
    "mac-only-regex": "    encrypted_regex: ^(secret_token|inner|count)$\n    mac_only_encrypted: true\n",
    "regex": "    encrypted_regex: ^(secret_token|inner|count)$\n",
    "unencrypted-regex": "    unencrypted_regex: ^(name|ratio)$\n",
    "encrypted-suffix": "    encrypted_suffix: _token\n",
    "unencrypted-suffix": "    unencrypted_suffix: _unencrypted\n    mac_only_encrypted: true\n",
}


def sops_bin(*args: str, stdin: bytes | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sops.binary(), *args], input=stdin, capture_output=True, cwd=cwd, check=False)


def encrypt(tmp_path: Path, age_key: AgeKey, variant: str, plain: str = PLAIN) -> str:
    config = tmp_path / ".sops.yaml"
    config.write_text(f"creation_rules:\n  - age: {age_key.public}\n{VARIANTS[variant]}")
    result = sops_bin("--config", str(config), "encrypt", "--filename-override", "x.yaml",
                      "--input-type", "yaml", "--output-type", "yaml", "/dev/stdin",
                      stdin=plain.encode(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def binary_decrypt(tmp_path: Path, text: str) -> subprocess.CompletedProcess[bytes]:
    path = tmp_path / "check.yaml"
    path.write_text(text)
    return sops_bin("decrypt", "--input-type", "yaml", "--output-type", "yaml", str(path))


def as_sops_reads_it(output: bytes) -> list[Any]:
    return sops_yaml.load_all(output.decode())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_decrypts_exactly_like_sops(tmp_path: Path, age_key: AgeKey, variant: str) -> None:
    text = encrypt(tmp_path, age_key, variant)
    reference = binary_decrypt(tmp_path, text)
    assert reference.returncode == 0, reference.stderr
    assert decrypt_text(text) == as_sops_reads_it(reference.stdout)


def test_float_and_bool_formatting_follow_go() -> None:
    assert [sops_native.go_bytes(v) for v in (1e6, 1.5, 3.0, 0.0001, 1e-7, True, False, -7)] == [
        b"1000000", b"1.5", b"3", b"0.0001", b"0.0000001", b"True", b"False", b"-7"]


def flip(text: str, pattern: str) -> str:
    """Change one base64 character inside the first match of ``pattern``."""
    match = re.search(pattern, text)
    assert match, pattern
    start = match.start(1)
    replacement = "A" if text[start] != "A" else "B"
    return text[:start] + replacement + text[start + 1:]


TAMPERINGS: dict[str, Callable[[str], str]] = {
    "secret data": lambda t: flip(t, r"secret_token: ENC\[AES256_GCM,data:([A-Za-z0-9+/])"),
    "secret tag": lambda t: flip(t, r"secret_token: ENC\[AES256_GCM,data:[^,]*,iv:[^,]*,tag:([A-Za-z0-9+/])"),
    "mac": lambda t: flip(t, r"mac: ENC\[AES256_GCM,data:([A-Za-z0-9+/])"),
    "lastmodified": lambda t: re.sub(r'lastmodified: "(\d{4})', 'lastmodified: "1999', t, count=1),
    "moved secret": lambda t: t.replace("    secret_token:", "    secret_tokens:", 1),
    "dropped secret": lambda t: re.sub(r"\n +secret_token: ENC\[[^\]]*\]", "", t, count=1),
    "clear value": lambda t: t.replace("ratio: 1.5", "ratio: 2.5", 1),
    "enc value swapped": lambda t: _swap_first_two_enc(t),
}


def _swap_first_two_enc(text: str) -> str:
    values = re.findall(r"ENC\[AES256_GCM,data:[^\]]*type:str\]", text)
    first, second = values[0], values[1]
    return text.replace(first, "\0", 1).replace(second, first, 1).replace("\0", second, 1)


@pytest.mark.parametrize(
    ("variant", "tampering"),
    # Under "default" every value is encrypted: there is no clear value to edit.
    [(v, t) for v in ("regex", "mac-only-regex", "default") for t in sorted(TAMPERINGS)
     if (v, t) != ("default", "clear value")],
)
def test_refuses_whatever_sops_refuses(tmp_path: Path, age_key: AgeKey, variant: str, tampering: str) -> None:
    original = encrypt(tmp_path, age_key, variant)
    tampered = TAMPERINGS[tampering](original)
    assert tampered != original
    verdict = binary_decrypt(tmp_path, tampered)
    if verdict.returncode == 0:
        # sops accepts it (a clear field under mac_only_encrypted): so must we, with its values.
        assert decrypt_text(tampered) == as_sops_reads_it(verdict.stdout)
    else:
        with pytest.raises(NeedsBinary):
            decrypt_text(tampered)


def test_clear_edits_are_refused_unless_mac_only(tmp_path: Path, age_key: AgeKey) -> None:
    for variant, accepted in (("regex", False), ("mac-only-regex", True)):
        tampered = encrypt(tmp_path, age_key, variant).replace("ratio: 1.5", "ratio: 2.5")
        assert (binary_decrypt(tmp_path, tampered).returncode == 0) is accepted
        if accepted:
            assert decrypt_text(tampered)[0]["ratio"] == 2.5
        else:
            with pytest.raises(NeedsBinary):
                decrypt_text(tampered)


@pytest.mark.parametrize(
    ("change", "env"),
    [
        (lambda t: t.replace("sops:\n", "sops:\n    pgp:\n        - fp: ABCDEF\n          enc: x\n", 1), {}),
        (lambda t: t.replace("sops:\n", "sops:\n    encrypted_comment_regex: secret\n", 1), {}),
        (lambda t: t, {"SOPS_AGE_KEY_CMD": "cat /dev/null"}),
        (lambda t: t, {"SOPS_AGE_KEY_FILE": "/nonexistent"}),
    ],
    ids=["pgp", "comment-regex", "key-cmd", "no-key"],
)
def test_unsupported_goes_to_the_binary(tmp_path: Path, age_key: AgeKey, monkeypatch: pytest.MonkeyPatch,
                                        change: Callable[[str], str], env: dict[str, str]) -> None:
    text = change(encrypt(tmp_path, age_key, "mac-only-regex"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(NeedsBinary):
        decrypt_text(text)


def test_fallback_is_silent_and_correct(tmp_path: Path, age_key: AgeKey, caplog: pytest.LogCaptureFixture,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"apiVersion": "connsync/v1", "provider": "aws", "metadata": {"name": "X"},
           "spec": {"account_id": "123456789012", "default_region": "us-east-1",
                    "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": CANARY}}
    config = tmp_path / ".sops.yaml"
    config.write_text(f"creation_rules:\n  - age: {age_key.public}\n"
                      "    encrypted_regex: ^secret_access_key$\n")
    target = tmp_path / "x.yaml"
    encrypted = sops.encrypt(yaml.safe_dump(doc).encode(), target).decode()
    # A second recipient of a kind only the binary knows: sops still decrypts with age.
    text = encrypted.replace("sops:\n", "sops:\n    pgp:\n        - fp: 0123456789ABCDEF\n"
                             "          created_at: '2026-01-01T00:00:00Z'\n          enc: x\n", 1)
    target.write_text(text)
    with pytest.raises(NeedsBinary):
        decrypt_text(text)
    decl = Declaration("x.yaml", yaml.safe_load(text), "d", text)
    with caplog.at_level(logging.DEBUG):
        desired = sops.decrypt_many([(decl, target)] * 3)
    assert [d.secrets["secret_access_key"] for d in desired] == [Secret(CANARY)] * 3  # type: ignore[union-attr]
    assert caplog.records == [] and capsys.readouterr() == ("", "")


def test_kms_in_process(tmp_path: Path, age_key: AgeKey, aws_endpoint: MotoServer,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    arn = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    (tmp_path / ".sops.yaml").write_text(
        f"creation_rules:\n  - kms: {arn}\n    encrypted_regex: ^secret$\n    mac_only_encrypted: true\n")
    result = sops_bin("--config", str(tmp_path / ".sops.yaml"), "encrypt", "--filename-override", "k.yaml",
                      "--input-type", "yaml", "--output-type", "yaml", "/dev/stdin",
                      stdin=f"secret: {CANARY}\nregion: us-east-1\n".encode(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    assert decrypt_text(result.stdout.decode()) == [{"secret": CANARY, "region": "us-east-1"}]
    sops_keys._kms_client.cache_clear()


def test_the_data_key_never_leaves_in_an_error(tmp_path: Path, age_key: AgeKey) -> None:
    text = flip(encrypt(tmp_path, age_key, "regex"), r"secret_token: ENC\[AES256_GCM,data:([A-Za-z0-9+/])")
    with pytest.raises(NeedsBinary) as caught:
        decrypt_text(text)
    assert "s3cr3t" not in str(caught.value) and "s3cr3t" not in repr(caught.value.__cause__)
    assert base64.b64encode(b"s3cr3t").decode() not in json.dumps(str(caught.value))


def test_a_retyped_value_never_shows_its_plaintext(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sops itself quotes the plaintext when `type:str` is changed to `type:int`."""
    env = {"TEST_AWS_SECRET": CANARY}
    monkeypatch.setenv("TEST_AWS_SECRET", CANARY)
    created = run_process("new", "aws", "--name", "Typed", "--no-input", "--set", "account_id=123456789012",
                          "--set", "default_region=us-east-1", "--set", "access_key_id=AKIAIOSFODNN7EXAMPLE",
                          "--secret-env", "secret_access_key=TEST_AWS_SECRET", cwd=repo, env=env)
    assert created.code == 0, created.err
    path = repo / "connections/typed.yaml"
    text = path.read_text()
    path.write_text(text.replace("type:str]", "type:int]", 1))
    with pytest.raises(NeedsBinary) as caught:
        decrypt_text(path.read_text())
    assert CANARY not in str(caught.value) and caught.value.__cause__ is None
    for command in (["verify"], ["plan"]):
        result = run_process(*command, cwd=repo)
        assert result.code == 1 and "connections/typed.yaml" in result.err + result.out
        assert CANARY not in result.out + result.err


def test_keys_from_sops_age_key_without_home(tmp_path: Path, age_key: AgeKey,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Like sops: no HOME and no XDG_CONFIG_HOME means no default key file, not a hand-over."""
    text = encrypt(tmp_path, age_key, "regex")
    monkeypatch.setenv("SOPS_AGE_KEY", age_key.file.read_text())
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    monkeypatch.delenv("HOME")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert decrypt_text(text)[0]["nested"]["deeper"]["secret_token"] == "s3cr3t"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # Go: "path in $XDG_CONFIG_HOME is relative"
    assert sops_keys.default_key_file() is None
    assert decrypt_text(text)[0]["nested"]["deeper"]["secret_token"] == "s3cr3t"
