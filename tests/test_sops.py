"""SOPS with the real binary and real age keys: init, new, decrypt, and every failure."""

from __future__ import annotations

import math
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from connsync import sops
from connsync.errors import SopsError
from connsync.model import Declaration, Secret
from connsync.validate import loader
from tests.conftest import CANARY, AgeKey, Run, make_age_key, new_aws, run_in_terminal


def load(path: Path) -> Declaration:
    item = loader.load_file(path)
    assert isinstance(item, Declaration), item
    return item


def all_files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def test_init_writes_the_repository(repo: Path, age_key: AgeKey) -> None:
    sops_config = yaml.safe_load((repo / ".sops.yaml").read_text())
    (rule,) = sops_config["creation_rules"]
    assert rule["encrypted_regex"] == "^(client_secret|external_id|private_key|secret_access_key)$"
    assert rule["mac_only_encrypted"] is True
    assert rule["age"] == age_key.public
    assert (repo / "connections").is_dir()
    assert ".connsync/" in (repo / ".gitignore").read_text().splitlines()
    assert yaml.safe_load((repo / "connsync.yaml").read_text())["workspace"] == "default"
    assert (repo / "schemas/aws.schema.json").is_file()


def test_init_refuses_to_overwrite(repo: Path, run: Run) -> None:
    other = make_age_key(repo / "other").public  # age checks a recipient for real
    (repo / ".sops.yaml").write_text("# mine\n")
    result = run("init", "--age-recipient", other)
    assert result.code == 1
    assert "refusing to overwrite .sops.yaml" in result.err
    assert (repo / ".sops.yaml").read_text() == "# mine\n"
    assert run("init", "--age-recipient", other, "--force").code == 0
    assert other in (repo / ".sops.yaml").read_text()


def test_init_needs_a_recipient(workdir: Path, run: Run) -> None:
    result = run("init")
    assert result.code == 64 and "no recipient" in result.err
    assert not (workdir / ".sops.yaml").exists()


def test_init_generates_an_age_key_once(workdir: Path, run: Run) -> None:
    result = run("init", "--generate-age-key")
    assert result.code == 0, result.err
    key_file = Path(os.environ["XDG_CONFIG_HOME"]) / "sops/age/keys.txt"
    assert key_file.stat().st_mode & 0o777 == 0o600
    public = re.search(r"age1[0-9a-z]+", result.out)
    assert public and public.group(0) in (workdir / ".sops.yaml").read_text()
    before = key_file.read_text()
    again = run("init", "--generate-age-key", "--force")
    assert "Using age key" in again.out and key_file.read_text() == before


def test_new_round_trips_through_sops(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    result = new_aws(run, monkeypatch)
    assert result.code == 0, result.out + result.err
    path = repo / "connections/aws-prod.yaml"
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=../schemas/connection.schema.json\n")
    assert CANARY not in text
    assert 'account_id: "123456789012"' in text  # clear fields stay reviewable
    desired = sops.decrypt(load(path), path)
    assert desired.secrets == {"secret_access_key": Secret(CANARY)}
    assert desired.spec["default_region"] == "us-east-1"
    assert run("validate").code == 0


def test_new_leaves_no_plaintext_anywhere(
    repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    temp = tmp_path_factory.mktemp("tmpdir")
    monkeypatch.setenv("TMPDIR", str(temp))
    results = [new_aws(run, monkeypatch)]
    # Failures on the way must not leave plaintext behind either.
    results.append(new_aws(run, monkeypatch, name="Elsewhere", extra=("--file", "other/x.yaml")))
    (repo / ".sops.yaml").write_text("creation_rules:\n  - path_regex: ^connections/\n")
    results.append(new_aws(run, monkeypatch, name="No Recipient"))
    assert [r.code for r in results] == [0, 1, 1]
    for result in results:
        assert CANARY not in result.out + result.err
    for path in all_files(repo, temp):
        assert CANARY.encode() not in path.read_bytes(), path


def test_new_refuses_secrets_on_the_command_line(repo: Path, run: Run) -> None:
    result = run("new", "aws", "--name", "X", "--set", f"secret_access_key={CANARY}", "--no-input")
    assert result.code == 64
    assert "--secret-env" in result.err and CANARY not in result.err
    assert not list((repo / "connections").iterdir())


def test_new_without_input_names_what_is_missing(repo: Path, run: Run) -> None:
    result = run("new", "aws", "--name", "X", "--set", "account_id=123456789012", "--no-input")
    assert result.code == 64
    assert result.err.splitlines()[:3] == [
        "connsync: error: --set default_region: missing (Default Region (default_region))",
        "connsync: error: --set access_key_id: missing (Access Key ID (access_key_id))",
        "connsync: error: --secret-env secret_access_key: missing (Secret Access Key (secret_access_key))"]


def test_new_validates_before_writing(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    result = new_aws(run, monkeypatch, secret="too-short", default_region="us-east-99")
    assert result.code == 1
    assert "--set default_region: 'us-east-99' is not an AWS region" in result.err
    assert "--secret-env secret_access_key: secret_access_key must be 40 characters" in result.err
    assert ":1:" not in result.err  # no line of a file that was never written
    assert "too-short" not in result.out + result.err
    assert not list((repo / "connections").iterdir())


def test_new_refuses_a_duplicate_name(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    assert new_aws(run, monkeypatch, name="AWS Prod").code == 0
    result = new_aws(run, monkeypatch, name="aws prod", extra=("--file", "connections/other.yaml"))
    assert result.code == 1 and "--name: name 'aws prod' is already used" in result.err
    assert "connections/aws-prod.yaml" in result.err
    assert not (repo / "connections/other.yaml").exists()


def test_new_prompts_on_a_terminal_with_the_secret_hidden(repo: Path) -> None:
    code, transcript = run_in_terminal(
        "new", "aws", "--name", "Typed", "--set", "account_id=123456789012",
        answers=((b"Default Region", b"us-east-1\n"), (b"Which one", b"1\n"),
                 (b"Access Key ID", b"AKIAIOSFODNN7EXAMPLE\n"),
                 (b"Secret Access Key", CANARY.encode() + b"\n")),
    )
    assert code == 0, transcript
    assert b"Wrote connections/typed.yaml" in transcript
    assert CANARY.encode() not in transcript  # hidden input is not echoed
    desired = sops.decrypt(load(repo / "connections/typed.yaml"), repo / "connections/typed.yaml")
    assert desired.secrets["secret_access_key"] == Secret(CANARY)


def test_no_creation_rule_for_the_path(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S", CANARY)
    rules = repo / ".sops.yaml"  # hand-edited so that no rule matches the connections directory
    rules.write_text(rules.read_text().replace("path_regex: ^connections/", "path_regex: ^nowhere/"))
    result = run("new", "aws", "--name", "Elsewhere", "--file", "connections/x.yaml", "--no-input",
                 "--set", "account_id=123456789012", "--set", "default_region=us-east-1",
                 "--set", "access_key_id=AKIAIOSFODNN7EXAMPLE", "--secret-env", "secret_access_key=S")
    assert result.code == 1
    assert result.err.startswith("connsync: error: connections/x.yaml: no creation rule in")
    assert "Traceback" not in result.err and not (repo / "connections/x.yaml").exists()


def test_no_sops_config_at_all(workdir: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    result = new_aws(run, monkeypatch)
    assert result.code == 1 and "no .sops.yaml" in result.err and "connsync init" in result.err


def test_rule_without_recipients(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / ".sops.yaml").write_text(
        "creation_rules:\n  - path_regex: ^connections/\n    encrypted_regex: ^secret_access_key$\n"
    )
    result = new_aws(run, monkeypatch)
    assert result.code == 1
    assert len(result.err.strip().splitlines()) <= 2 and "connections/aws-prod.yaml" in result.err
    assert CANARY not in result.err and not list((repo / "connections").iterdir())


@pytest.fixture
def encrypted(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> Path:
    assert new_aws(run, monkeypatch).code == 0
    return repo / "connections/aws-prod.yaml"


def test_wrong_key_lists_recipients_and_key_sources(
    encrypted: Path, age_key: AgeKey, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(make_age_key(tmp_path / "other").file))
    with pytest.raises(SopsError) as caught:
        sops.decrypt(load(encrypted), encrypted)
    message = caught.value.message
    assert message.startswith("connections/aws-prod.yaml: no key could decrypt")
    assert age_key.public in message
    hint = str(caught.value.hint)
    other = tmp_path / "other" / "keys.txt"
    default = tmp_path.parent / "nowhere" / "sops" / "age" / "keys.txt"
    assert f"SOPS_AGE_KEY (not set); SOPS_AGE_KEY_FILE={other} (read, but no key in it opens this file)" \
        in hint
    assert "XDG_CONFIG_HOME" in hint and "sops/age/keys.txt" in hint and "AWS" not in hint
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path.parent / "nowhere"))
    monkeypatch.setenv("SOPS_AGE_KEY", "AGE-SECRET-KEY-1NOTAKEY")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "missing.txt"))
    with pytest.raises(SopsError) as caught:
        sops.decrypt(load(encrypted), encrypted)
    hint = str(caught.value.hint)
    assert "SOPS_AGE_KEY (set)" in hint and "NOTAKEY" not in hint
    assert f"SOPS_AGE_KEY_FILE={tmp_path / 'missing.txt'} (no such file)" in hint
    assert f"{default} (default key file via XDG_CONFIG_HOME; no such file)" in hint


def test_a_missing_kms_key_names_the_aws_credentials(encrypted: Path) -> None:
    meta = {"kms": [{"arn": "arn:aws:kms:us-east-1:111122223333:key/x"}]}
    error = sops.decrypt_error("x.yaml", sops.EXIT_NO_KEY, b"", meta)
    assert "KMS arn:aws:kms:us-east-1:111122223333:key/x" in error.message
    assert "AWS credentials for KMS (no AWS_* credential variables set" in str(error.hint)


@pytest.mark.parametrize("which", ["SOPS_AGE_KEY_FILE", "default"])
def test_a_fifo_as_the_key_file_is_a_clear_error_not_a_hang(
    encrypted: Path, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, which: str
) -> None:
    fifo = tmp_path / "keys.fifo"
    if which == "default":
        monkeypatch.delenv("SOPS_AGE_KEY_FILE")
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        fifo = tmp_path / "config" / "sops" / "age" / "keys.txt"
        fifo.parent.mkdir(parents=True)
    else:
        monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(fifo))
    os.mkfifo(fifo)
    result = run("plan")
    assert result.code == 1
    assert f"{fifo} is a FIFO (named pipe), not a file" in result.err
    assert "hint: point SOPS_AGE_KEY_FILE at a regular file" in result.err


def test_the_binary_engine_reads_inf_and_nan(repo: Path, age_key: AgeKey,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """sops's JSON output cannot hold them; its YAML output can."""
    target = repo / "connections" / "floats.yaml"
    doc = ("apiVersion: connsync/v1\nprovider: aws\nmetadata:\n  name: F\n  labels: {a: .inf, b: -.inf}\n"
           "spec:\n  ratio: .nan\n  whole: 100.0\n  big: 1e+06\n  secret_access_key: 1.0\n")
    target.write_bytes(sops.encrypt(doc.encode(), target))
    monkeypatch.setenv("CONNSYNC_SOPS_ENGINE", "binary")
    desired = sops.decrypt(load(target), target)
    assert math.isnan(desired.spec["ratio"]) and desired.spec["whole"] == 100
    assert type(desired.spec["whole"]) is int and desired.spec["big"] == 1e6
    assert desired.secrets["secret_access_key"].reveal() == "1"
    monkeypatch.setenv("CONNSYNC_SOPS_ENGINE", "auto")
    native = sops.decrypt(load(target), target)
    assert native.secrets == desired.secrets and repr(native.spec) == repr(desired.spec)


def test_hand_edit_of_a_clear_field_still_decrypts(encrypted: Path) -> None:
    encrypted.write_text(encrypted.read_text().replace("us-east-1", "eu-west-1"))
    assert sops.decrypt(load(encrypted), encrypted).spec["default_region"] == "eu-west-1"


def test_tampered_secret_is_refused(encrypted: Path) -> None:
    text = encrypted.read_text()
    tampered = re.sub(r"(secret_access_key: ENC\[AES256_GCM,data:)(.)", lambda m: m.group(1) + (
        "A" if m.group(2) != "A" else "B"), text)
    encrypted.write_text(tampered)
    with pytest.raises(SopsError) as caught:
        sops.decrypt(load(encrypted), encrypted)
    assert "connections/aws-prod.yaml" in caught.value.message
    assert CANARY not in caught.value.message


def test_mac_mismatch_without_mac_only_encrypted_explains(
    repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo / ".sops.yaml").write_text((repo / ".sops.yaml").read_text().replace(
        "    mac_only_encrypted: true\n", ""))
    assert new_aws(run, monkeypatch).code == 0
    path = repo / "connections/aws-prod.yaml"
    path.write_text(path.read_text().replace("us-east-1", "eu-west-1"))
    with pytest.raises(SopsError) as caught:
        sops.decrypt(load(path), path)
    assert "MAC mismatch" in caught.value.message
    assert "mac_only_encrypted" in str(caught.value.hint) and "sops edit" in str(caught.value.hint)


def test_truncated_sops_block(encrypted: Path) -> None:
    lines = encrypted.read_text().splitlines()
    cut = lines.index("sops:") + 2
    encrypted.write_text("\n".join(lines[:cut]) + "\n")
    item = loader.load_file(encrypted)
    assert isinstance(item, Declaration)
    with pytest.raises(SopsError) as caught:
        sops.decrypt(item, encrypted)
    assert caught.value.message.startswith("connections/aws-prod.yaml: ")


def test_every_value_encrypted_is_one_clear_error(repo: Path, age_key: AgeKey, run: Run) -> None:
    rules = f"creation_rules:\n  - path_regex: ^connections/\n    age: {age_key.public}\n"
    (repo / ".sops.yaml").write_text(rules)
    doc = {"apiVersion": "connsync/v1", "provider": "aws", "metadata": {"name": "X"},
           "spec": {"account_id": "123456789012", "default_region": "us-east-1",
                    "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": CANARY}}
    target = repo / "connections/x.yaml"
    target.write_bytes(sops.encrypt(yaml.safe_dump(doc).encode(), target))
    result = run("validate")
    assert result.code == 1
    assert "encrypted-clear-field" in result.out and "encrypted_regex" in result.out
    assert len(result.out.strip().splitlines()) == 2


def test_missing_binary_and_timeout(encrypted: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONNSYNC_SOPS", str(tmp_path / "no-such-sops"))
    with pytest.raises(SopsError, match="sops executable not found"):
        sops.decrypt_with_binary(load(encrypted), encrypted)
    slow = tmp_path / "slow-sops"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setenv("CONNSYNC_SOPS", str(slow))
    monkeypatch.setattr(sops, "DEFAULT_TIMEOUT", 0.5)
    with pytest.raises(SopsError, match="did not finish within"):
        sops.run_sops(["decrypt", str(encrypted)], shown="x", timeout=0.5)


def test_decrypt_many_keeps_order_and_failures(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(4):
        assert new_aws(run, monkeypatch, name=f"AWS {index}").code == 0
    paths = sorted((repo / "connections").glob("*.yaml"))
    paths[2].write_text(paths[2].read_text().replace("mac: ENC[", "mac: ENC[x"))
    results = sops.decrypt_many((load(p), p) for p in paths)
    assert [type(r).__name__ for r in results] == ["Desired", "Desired", "SopsError", "Desired"]
    assert [r.name for r in results if not isinstance(r, SopsError)] == ["AWS 0", "AWS 1", "AWS 3"]


def test_kms_round_trip_on_a_moto_server(
    workdir: Path, run: Run, monkeypatch: pytest.MonkeyPatch, aws_endpoint: object
) -> None:
    import boto3

    arn = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    assert run("init", "--kms", arn).code == 0
    result = new_aws(run, monkeypatch)
    assert result.code == 0, result.err
    path = workdir / "connections/aws-prod.yaml"
    assert yaml.safe_load(path.read_text())["sops"]["kms"][0]["arn"] == arn
    assert sops.decrypt(load(path), path).secrets["secret_access_key"] == Secret(CANARY)


def test_broken_sops_metadata_goes_to_the_binary_not_a_crash(encrypted: Path) -> None:
    text = encrypted.read_text()
    start = text.index("    age:\n")
    end = text.index("    lastmodified:")
    encrypted.write_text(text[:start] + "    age: oops\n" + text[end:])
    with pytest.raises(SopsError) as caught:
        sops.decrypt(load(encrypted), encrypted)
    assert caught.value.message.startswith("connections/aws-prod.yaml: ")


def test_the_binary_engine_reads_yaml_libyaml_rejects(tmp_path: Path, age_key: AgeKey,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """go-yaml writes a list item that starts with a newline as `- |4-`, which libyaml
    rejects inside an indented list: the binary engine then reads sops's JSON output."""
    (tmp_path / ".sops.yaml").write_text(f"creation_rules:\n  - age: {age_key.public}\n")
    target = tmp_path / "odd.yaml"
    doc = ('apiVersion: connsync/v1\nprovider: aws\nmetadata:\n  name: O\n'
           'spec:\n  regions: ["\\n0", b]\n  secret_access_key: x\n')
    target.write_bytes(sops.encrypt(doc.encode(), target))
    decl = load(target)
    output = subprocess.run([sops.binary(), "decrypt", str(target)], capture_output=True, check=True).stdout
    assert b"- |4-" in output
    for engine in ("binary", "auto"):
        monkeypatch.setenv("CONNSYNC_SOPS_ENGINE", engine)
        assert sops.decrypt(decl, target).spec["regions"] == ["\n0", "b"]


def test_a_hostile_regex_in_the_metadata_does_not_hold_plan(repo: Path, run: Run,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """#11: `(a+)+$` in encrypted_regex (not covered by the MAC) and a 32-character label key made a
    backtracking engine run for minutes while holding the workspace lock; RE2 answers at once."""
    assert new_aws(run, monkeypatch).code == 0
    path = repo / "connections/aws-prod.yaml"
    text = path.read_text()
    assert "    mac_only_encrypted: true\n" in text  # a clear label is outside the MAC
    text = text.replace("metadata:\n", f"metadata:\n    labels:\n        {'a' * 32}!: x\n", 1)
    # Anchored so that "metadata" (ending in a) stays clear; still 2^32 steps for backtracking.
    hostile = re.sub(r"encrypted_regex: (\S+)", r"encrypted_regex: ^(a+)+$|\1", text, count=1)
    assert hostile != text
    path.write_text(hostile)
    from connsync.sops import native as sops_native

    assert sops_native.decrypt_text(hostile)[0]["metadata"]["labels"] == {"a" * 32 + "!": "x"}
    result = run("plan", "--format", "json")
    assert result.code == 0, result.err
    assert "AWS Prod" in result.out and CANARY not in result.out + result.err
