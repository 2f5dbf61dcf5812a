"""Settings precedence: flags beat the environment, which beats connsync.yaml, which beats defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from connsync.config import load_config
from connsync.errors import ConfigError


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
        ("verify: {concurrency: many}\n", "'concurrency' must be a non-negative number"),
        ("verify: [1]\n", "'verify' must be a mapping"),
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
