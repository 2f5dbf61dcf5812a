"""init: recipients and key files are checked the way age parses them; nothing is injected or echoed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connsync.config import load_config
from tests.conftest import AgeKey, Run

BAD_SECRET_LINE = "AGE-SECRET-KEY-1NOTAREALKEYBUTLOOKSLIKEONEQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"


@pytest.mark.parametrize(
    "recipient",
    ["garbage", "age1garbage", "age1qqqq\n    kms: arn:aws:kms:us-east-1:111111111111:key/evil", ""],
)
def test_a_bad_recipient_is_a_usage_error_and_nothing_is_written(run: Run, workdir: Path,
                                                                 recipient: str) -> None:
    result = run("init", "--age-recipient", recipient)
    assert result.code == 64, result.err
    assert "is not an age public key" in result.err and "age-keygen -y" in result.err
    assert not (workdir / ".sops.yaml").exists() and not (workdir / "connsync.yaml").exists()
    assert all(line.isprintable() for line in result.err.splitlines())


def test_a_secret_key_given_as_recipient_is_not_echoed(run: Run, workdir: Path) -> None:
    result = run("init", "--age-recipient", BAD_SECRET_LINE)
    assert result.code == 64
    assert "SECRET key" in result.err and BAD_SECRET_LINE not in result.err + result.out


def test_a_kms_arn_cannot_inject_rules(run: Run, workdir: Path, age_key: AgeKey) -> None:
    evil = "arn:aws:kms:us-east-1:111111111111:key/x\n  - path_regex: .*"
    result = run("init", "--age-recipient", age_key.public, "--kms", evil)
    assert result.code == 64 and "not an AWS KMS key ARN" in result.err
    assert not (workdir / ".sops.yaml").exists()


def test_a_bad_key_line_is_a_clear_error_not_a_crash(run: Run, workdir: Path) -> None:
    keys = Path(os.environ["XDG_CONFIG_HOME"]) / "sops" / "age" / "keys.txt"
    keys.parent.mkdir(parents=True)
    keys.write_text(f"# my key\n{BAD_SECRET_LINE}\n")
    result = run("init", "--generate-age-key")
    assert result.code == 1, result.err
    assert f"{keys}:2: not a valid age secret key" in result.err
    assert BAD_SECRET_LINE not in result.out + result.err


def test_a_fifo_as_the_key_file_does_not_hang(run: Run, workdir: Path) -> None:
    keys = Path(os.environ["XDG_CONFIG_HOME"]) / "sops" / "age" / "keys.txt"
    keys.parent.mkdir(parents=True)
    os.mkfifo(keys)
    result = run("init", "--generate-age-key")
    assert result.code == 1 and "not a regular file" in result.err


def test_init_writes_a_config_that_its_schema_accepts(repo: Path) -> None:
    text = (repo / "connsync.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=schemas/config.schema.json\n")
    assert (repo / "schemas/config.schema.json").is_file()
    assert load_config(env={}, cwd=repo).workspace == "default"
