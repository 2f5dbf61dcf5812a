"""Settings precedence: flags beat the environment, which beats connsync.yaml, which beats defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from connsync.config import load_config
from connsync.errors import ConfigError
from tests.conftest import Run


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config(env={}, cwd=tmp_path)
    assert config.file is None and config.workspace == "default"
    assert config.store_url == f"sqlite:{tmp_path / '.connsync/store.db'}"
    assert config.connections_dir == tmp_path / "connections"
    assert (config.verify.max_key_age_days, config.verify.concurrency, config.max_deletes) == (90, 64, 10)


def test_file_is_found_in_a_parent_and_paths_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "connsync.yaml").write_text(
        "workspace: prod\nstore: sqlite:state/s.db\nconnections: conns\n"
        "verify: {max_key_age_days: 30, concurrency: 2}\napply: {max_deletes: 1}\n")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (tmp_path / "conns").mkdir()
    config = load_config(env={}, cwd=nested)
    assert config.file == tmp_path / "connsync.yaml" and config.root == tmp_path
    assert config.store_url == f"sqlite:{tmp_path / 'state/s.db'}"
    assert config.connections_dir == tmp_path / "conns"
    assert (config.workspace, config.verify.max_key_age_days, config.verify.concurrency,
            config.max_deletes) == ("prod", 30, 2, 1)


def test_environment_beats_file_and_flags_beat_environment(tmp_path: Path) -> None:
    (tmp_path / "connsync.yaml").write_text("workspace: from-file\nstore: sqlite:file.db\n")
    env = {"CONNSYNC_WORKSPACE": "from-env", "CONNSYNC_STORE": "sqlite:env.db"}
    from_env = load_config(env=env, cwd=tmp_path)
    assert (from_env.workspace, from_env.store_url) == ("from-env", f"sqlite:{tmp_path / 'env.db'}")
    from_flags = load_config(env=env, cwd=tmp_path, workspace="from-flag", store="sqlite:/abs/flag.db")
    assert (from_flags.workspace, from_flags.store_url) == ("from-flag", "sqlite:/abs/flag.db")


def test_explicit_config_path(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.yaml"
    other.write_text("workspace: explicit\n")
    assert load_config(env={"CONNSYNC_CONFIG": str(other)}, cwd=tmp_path).workspace == "explicit"
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(config_path=str(tmp_path / "missing.yaml"), env={}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workspce: x\n", "unknown setting"),
        ("- a\n", "must be a mapping"),
        ("verify: {concurrency: many}\n", "connsync.yaml:1:23: $.verify.concurrency: 'many' is not of type"),
        ("verify: [1]\n", "connsync.yaml:1:9: $.verify: [1] is not of type 'object'"),
        ("a: [\n", "connsync.yaml:2:1"),
        ("a: 1\na: 2\n", "appears twice"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "connsync.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, cwd=tmp_path)
    assert message in caught.value.message + str(caught.value.hint)


def test_a_tagged_value_that_does_not_parse(tmp_path: Path) -> None:
    (tmp_path / "connsync.yaml").write_text("apply: {max_deletes: !!int many}\n")
    with pytest.raises(ConfigError, match="explicit YAML tag"):
        load_config(env={}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        # Each of these was read loosely: a setting that did nothing, a crash, or a wrong value.
        ("apply: {max_delete: 0}\n", "1:9: $.apply.max_delete",
         "unknown setting; did you mean 'max_deletes'?"),
        ("verify:\n  timeout: 5\n", "2:3: $.verify.timeout", "did you mean 'timeout_seconds'?"),
        ("verify: {timeout_seconds: .inf}\n", "1:27: $.verify.timeout_seconds",
         "must be a finite number, not inf"),
        ("verify: {timeout_seconds: .nan}\n", "1:27: $.verify.timeout_seconds", "not nan"),
        ("verify: {concurrency: .inf}\n", "1:23: $.verify.concurrency", "must be a finite integer, not inf"),
        ("apply: {max_deletes: 1.9}\n", "1:22: $.apply.max_deletes", "1.9 is not of type 'integer'"),
        ("apply: {max_deletes: -1}\n", "1:22: $.apply.max_deletes", "less than the minimum of 0"),
        ("apply: {max_deletes: true}\n", "1:22: $.apply.max_deletes", "True is not of type 'integer'"),
        ("verify: {timeout_seconds: 0}\n", "1:27: $.verify.timeout_seconds",
         "less than or equal to the minimum"),
        ("workspace:\n", "1:11: $.workspace", "has no value"),
        ("workspace: ''\n", "1:12: $.workspace", "does not match"),
        ("workspace: 'a b'\n", "1:12: $.workspace", "does not match"),
        ("verify:\n", "1:8: $.verify", "has no value"),
        ("connections: /etc\n", "1:14: $.connections", "outside the repository"),
        ("connections: ../elsewhere\n", "1:14: $.connections", "outside the repository"),
        ("connections: missing\n", "1:14: $.connections", "is not a directory"),
        ("store: 5\n", "1:8: $.store", "5 is not of type 'string'"),
    ],
)
def test_settings_are_checked_by_the_schema(tmp_path: Path, text: str, where: str, message: str) -> None:
    (tmp_path / "connsync.yaml").write_text(text)
    (tmp_path.parent / "elsewhere").mkdir(exist_ok=True)
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, cwd=tmp_path)
    assert caught.value.message.startswith(f"{tmp_path / 'connsync.yaml'}:{where}: ")
    assert message in caught.value.message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "connsync.yaml").write_text("workspace:\napply: {max_delete: 0}\nverify: {concurrency: 0}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, cwd=tmp_path)
    assert [line.split(": ")[1] for line in caught.value.message.splitlines()] == [
        "$.apply.max_delete", "$.verify.concurrency", "$.workspace"]


def test_a_blank_config_and_every_documented_setting_load(tmp_path: Path) -> None:
    from connsync.commands.init import CONFIG_TEMPLATE

    (tmp_path / "connections").mkdir()
    (tmp_path / "connsync.yaml").write_text(CONFIG_TEMPLATE)
    config = load_config(env={}, cwd=tmp_path)
    assert (config.workspace, config.verify.timeout_seconds, config.max_deletes) == ("default", 10.0, 10)
    (tmp_path / "connsync.yaml").write_text("# nothing set\n")
    assert load_config(env={}, cwd=tmp_path).workspace == "default"


def test_the_config_schema_is_valid_and_ships(run: Run) -> None:
    result = run("schema", "config")
    assert result.code == 0
    document = json.loads(result.out)
    Draft202012Validator.check_schema(document)
    assert document["additionalProperties"] is False
    assert "config" not in run("schema", "--list").out


def test_config_values_in_errors_are_escaped(workdir: Path, run: Run) -> None:
    (workdir / "connsync.yaml").write_text(
        'workspace: "x\\r::error title=Approved::All verified"\n"\\n::warning::k": 1\n')
    result = run("list")
    assert result.code == 1
    for line in result.err.splitlines():
        assert not line.lstrip().startswith("::"), line
        assert line.isprintable(), repr(line)
    assert "$.workspace" in result.err


def test_an_empty_workspace_flag_is_an_error_an_empty_variable_is_unset(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workspace ''"):
        load_config(workspace="", env={}, cwd=tmp_path)
    assert load_config(env={"CONNSYNC_WORKSPACE": ""}, cwd=tmp_path).workspace == "default"
