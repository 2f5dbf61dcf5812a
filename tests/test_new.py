"""``new`` as a form that helps, ``--secret-env`` that never echoes, and where new and import may write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from connsync import sops
from connsync.model import Declaration, Secret
from connsync.store import Write
from connsync.store.sqlite import SqliteStore
from connsync.validate import loader
from tests.conftest import CANARY, AgeKey, Run, make_age_key, new_aws, run_in_terminal


def load(path: Path) -> Declaration:
    loaded = loader.load_file(path)
    assert isinstance(loaded, Declaration), loaded
    return loaded


def test_new_asks_for_the_name_checks_each_answer_and_asks_again(repo: Path) -> None:
    code, transcript = run_in_terminal(
        "new", "aws",
        answers=((b"Name:", b"AWS Prod\n"),
                 (b"Account ID (account_id):", b"12345\n"),  # too short: asked again
                 (b"Account ID (account_id):", b"123456789012\n"),
                 (b"Default Region (default_region):", b"us-esat-1\n"),
                 (b"Default Region (default_region):", b"us-east-1\n"),
                 (b"Which one [1]:", b"\n"),  # the first: an access key pair
                 (b"Access Key ID (access_key_id):", b"AKIAIOSFODNN7EXAMPLE\n"),
                 (b"Secret Access Key (secret_access_key):", b"too-short\n"),
                 (b"Secret Access Key (secret_access_key):", CANARY.encode() + b"\n")),
    )
    text = transcript.decode()
    assert code == 0, text
    # Each prompt explains its field and gives an example (never one for a secret).
    assert "user-friendly label for the connection" in text and "Example: AWS Prod" in text
    assert "12-digit identifier" in text and "Example: 123456789012" in text
    assert "✗ account_id must be exactly 12 digits" in text
    # The account id was checked before the secret was asked for.
    assert text.index("✗ account_id") < text.index("Secret Access Key (secret_access_key):")
    assert "did you mean 'us-east-1'?" in text
    assert "✗ secret_access_key must be 40 characters (got 9)" in text
    assert "too-short" not in text and CANARY not in text
    assert "Wrote connections/aws-prod.yaml" in text
    desired = sops.decrypt(load(repo / "connections/aws-prod.yaml"), repo / "connections/aws-prod.yaml")
    assert desired.spec["default_region"] == "us-east-1"
    assert desired.secrets["secret_access_key"] == Secret(CANARY)


@pytest.mark.parametrize(("flags", "env", "coloured"), [
    ((), {}, True), (("--no-color",), {}, False), ((), {"NO_COLOR": "1"}, False)])
def test_prompts_are_plain_under_no_color(repo: Path, flags: tuple[str, ...], env: dict[str, str],
                                          coloured: bool) -> None:
    code, transcript = run_in_terminal(
        *flags, "new", "aws", "--name", "Plain", "--set", "account_id=123456789012",
        "--set", "default_region=us-east-1", "--set", "access_key_id=AKIAIOSFODNN7EXAMPLE",
        answers=((b"Secret Access Key", CANARY.encode() + b"\n"),), env=env)
    assert code == 0, transcript
    assert (b"\x1b[" in transcript) is coloured, transcript


def test_a_bad_flag_is_asked_again_on_a_terminal(repo: Path) -> None:
    code, transcript = run_in_terminal(
        "new", "aws", "--name", "AWS Dev", "--set", "account_id=1234", "--set", "default_region=us-east-1",
        "--set", "access_key_id=AKIAIOSFODNN7EXAMPLE",
        answers=((b"Account ID (account_id):", b"123456789012\n"),
                 (b"Secret Access Key", CANARY.encode() + b"\n")),
    )
    text = transcript.decode()
    assert code == 0, text
    assert "✗ --set account_id: account_id must be exactly 12 digits" in text


def test_without_a_terminal_each_field_is_one_line_naming_its_flag(repo: Path, run: Run,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    result = new_aws(run, monkeypatch, secret="short", account_id="12", default_region="us-east1",
                     access_key_id="ASIAIOSFODNN7EXAMPLE")
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines == [
        "connsync: error: --set account_id: account_id must be exactly 12 digits, like 123456789012",
        "connsync: error: --set default_region: default_region must be an AWS region code like "
        "us-east-1; did you mean 'us-east-1'?",
        "connsync: error: --set access_key_id: access_key_id is a temporary key (ASIA...) from STS; it "
        "expires and the platform would lose access: use a long-term access key (AKIA...) of an IAM user",
        "connsync: error: --secret-env secret_access_key: secret_access_key must be 40 characters (got 5)",
        "Nothing was written to connections/aws-prod.yaml.",
    ]
    assert not list((repo / "connections").iterdir())


def test_without_a_name_and_no_terminal(repo: Path, run: Run) -> None:
    result = run("new", "aws", "--no-input")
    assert result.code == 64
    assert result.err.splitlines()[0] == "connsync: error: --name: missing (Name)"


@pytest.mark.parametrize("given", [CANARY, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aB3dE5gH7jK9mN1pQ3"])
def test_secret_env_never_echoes_what_looks_like_a_value(repo: Path, run: Run, given: str) -> None:
    result = run("new", "aws", "--name", "X", "--no-input", "--secret-env", f"secret_access_key={given}")
    assert result.code == 64
    assert "looks like a value, not the name of an environment variable; it is not shown" in result.err
    assert given not in result.out + result.err
    result = run("new", "aws", "--name", "X", "--no-input", "--secret-env", given)  # no FIELD= at all
    assert result.code == 64 and given not in result.out + result.err


# A secret that happens to look like a variable name (one case, letters, digits and _).
LOOKS_LIKE_A_NAME = "AAAAZ7QJ3KXW5RT2M8PLVN4HBYDCE6GSUF0TIO91"


@pytest.mark.parametrize("command", [("new", "aws", "--name", "X", "--no-input"), ("set", "AWS Prod")])
def test_secret_env_never_echoes_what_follows_the_equals_sign(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]) -> None:
    assert new_aws(run, monkeypatch).code == 0
    for given in ("MY_AWS_SECRET", LOOKS_LIKE_A_NAME, LOOKS_LIKE_A_NAME.lower()):
        result = run(*command, "--secret-env", f"secret_access_key={given}")
        assert result.code == 64, result.err
        assert ("--secret-env secret_access_key=…: the environment variable named after '=' is not set"
                in result.err)
        assert given not in result.out + result.err


def test_force_keeps_description_and_labels(repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    assert new_aws(run, monkeypatch, extra=("--description", "Billing", "--label", "env=prod")).code == 0
    result = new_aws(run, monkeypatch, extra=("--force",), default_region="eu-west-1")
    assert result.code == 0, result.err
    assert "kept its description and labels" in result.out
    data = load(repo / "connections/aws-prod.yaml").data
    assert data["metadata"] == {"name": "AWS Prod", "description": "Billing", "labels": {"env": "prod"}}
    assert data["spec"]["default_region"] == "eu-west-1"
    result = new_aws(run, monkeypatch, extra=("--force", "--description", "New", "--label", "env=dev"))
    assert load(repo / "connections/aws-prod.yaml").data["metadata"]["labels"] == {"env": "dev"}
    assert "kept" not in result.out


def test_new_in_the_repository_outside_connections_says_why(repo: Path, run: Run,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    result = new_aws(run, monkeypatch, extra=("--file", "rooted.yaml"))
    assert result.code == 1
    assert "outside its connections directory connections" in result.err
    assert "--file connections/rooted.yaml" in result.err and "init --force" not in result.err
    assert not (repo / "rooted.yaml").exists()
    assert new_aws(run, monkeypatch, extra=("--file", "connections/rooted.yaml")).code == 0


def test_new_outside_the_repository_uses_its_sops_rules_and_0600(
        repo: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("elsewhere")
    attacker = make_age_key(outside / "attacker")
    (outside / ".sops.yaml").write_text(f"creation_rules:\n  - age: {attacker.public}\n")
    result = new_aws(run, monkeypatch, extra=("--file", str(outside / "copy.yaml")))
    assert result.code == 0, result.err
    assert "outside the repository" in result.out
    written = outside / "copy.yaml"
    assert written.stat().st_mode & 0o777 == 0o600
    sops_meta = yaml.safe_load(written.read_text())["sops"]
    assert [a["recipient"] for a in sops_meta["age"]] != [attacker.public]
    assert "secret_access_key" in sops_meta["encrypted_regex"]  # the repository's rule
    # Decrypts with the repository's key (the age_key fixture), not the attacker's.
    assert sops.decrypt(load(written), written).secrets["secret_access_key"] == Secret(CANARY)
    assert (repo / "connections/aws-prod.yaml").exists() is False


def store_of(repo: Path) -> SqliteStore:
    return SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default")


def ui_record(store: SqliteStore, name: str) -> None:
    store.put(Write(name=name, provider="aws",
                    spec={"account_id": "123456789012", "default_region": "us-east-1",
                          "access_key_id": "AKIAIOSFODNN7EXAMPLE"},
                    secrets={"secret_access_key": Secret(CANARY)}, managed=False, actor="ui",
                    action="ui-create"), expected_version=None)


def test_import_all_reports_each_failure_and_imports_the_rest(repo: Path, run: Run) -> None:
    store = store_of(repo)
    long_name = "Very long " * 30  # 300 characters: once a file name no file system holds
    for name in ("Alpha", long_name.strip(), "Omega"):
        ui_record(store, name)
    (repo / "connections/omega.yaml").write_text("in the way\n")
    result = run("import", "--all")
    assert result.code == 1
    assert "Omega: FAILED: connections/omega.yaml already exists" in result.err
    assert "Imported 'Alpha'" in result.out
    long_files = [p for p in (repo / "connections").iterdir() if p.name.startswith("very-long")]
    assert len(long_files) == 1 and len(long_files[0].name) <= 70
    assert load(long_files[0]).name == long_name.strip()
    managed = {r.name: r.managed for r in store_of(repo).records()}
    assert managed == {"Alpha": True, long_name.strip(): True, "Omega": False}


def test_import_outside_the_repository_leaves_the_record_unmanaged(
        repo: Path, run: Run, age_key: AgeKey, tmp_path_factory: pytest.TempPathFactory) -> None:
    ui_record(store_of(repo), "From UI")
    outside = tmp_path_factory.mktemp("export")
    result = run("import", "From UI", "--dir", str(outside))
    assert result.code == 0, result.err
    assert "the record stays unmanaged" in result.out
    written = outside / "from-ui.yaml"
    assert written.stat().st_mode & 0o777 == 0o600
    record = store_of(repo).get("From UI")
    assert record is not None and not record.managed and record.source is None
    # A later prune cannot delete it: it was never a managed record with a file.
    plan = json.loads(run("plan", "--prune", "--format", "json").out)
    assert [c["action"] for c in plan["changes"]] == []


def test_import_beside_the_connections_directory_leaves_the_record_unmanaged(
        repo: Path, run: Run, age_key: AgeKey) -> None:
    with (repo / ".sops.yaml").open("a") as rules:
        rules.write(f"  - path_regex: ^exports/.*\\.yaml$\n    encrypted_regex: ^(secret_access_key)$\n"
                    f"    age: {age_key.public}\n")
    ui_record(store_of(repo), "From UI")
    result = run("import", "From UI", "--dir", "exports")
    assert result.code == 0, result.err
    assert "outside connections: the record stays unmanaged" in result.out
    record = store_of(repo).get("From UI")
    assert record is not None and not record.managed
    plan = json.loads(run("plan", "--prune", "--format", "json").out)
    assert [c["action"] for c in plan["changes"]] == []
