"""Settings: flags beat environment, environment beats connsync.yaml, which beats defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connsync.errors import ConfigError
from connsync.fsutil import find_upward
from connsync.loader import YamlProblem, parse
from connsync.providers.base import VerifySettings

CONFIG_NAME = "connsync.yaml"
DEFAULT_STORE = "sqlite:.connsync/store.db"
_KEYS = {"workspace", "store", "connections", "verify", "apply"}


@dataclass(frozen=True)
class Config:
    root: Path  # the directory of connsync.yaml, else the working directory
    file: Path | None
    workspace: str = "default"
    store_url: str = ""
    connections_dir: Path = Path("connections")
    verify: VerifySettings = field(default_factory=VerifySettings)
    max_deletes: int = 10
    prune: bool = False  # apply.prune: plan and apply delete records whose file is gone


def _read(path: Path) -> Mapping[str, Any]:
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except YamlProblem as problem:
        raise ConfigError(f"{path}:{problem.line}:{problem.column}: {problem.message}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of settings")
    unknown = set(data) - _KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s): {', '.join(sorted(unknown))}",
            hint=f"known settings: {', '.join(sorted(_KEYS))}",
        )
    return data


def _section(data: Mapping[str, Any], key: str, path: Path | None) -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: '{key}' must be a mapping")
    return value


def _number(section: Mapping[str, Any], key: str, default: float, where: str) -> Any:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}: '{key}' must be a non-negative number")
    return value


def _flag(section: Mapping[str, Any], key: str, where: str) -> bool:
    value = section.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' must be true or false")
    return value


def _text(section: Mapping[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' must be a string")
    return value


def _verify_settings(verify: Mapping[str, Any], where: str, root: Path) -> VerifySettings:
    defaults = VerifySettings()
    azure, gcp = verify.get("azure") or {}, verify.get("gcp") or {}
    for name, section in (("verify.azure", azure), ("verify.gcp", gcp)):
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: '{name}' must be a mapping")
    for name, flag in (("require_verified", verify.get("require_verified")),
                       ("azure.instance_discovery", azure.get("instance_discovery"))):
        if flag is not None and not isinstance(flag, bool):
            raise ConfigError(f"{where}: 'verify.{name}' must be true or false")
    ca_bundle = _text(verify, "ca_bundle", where)
    return VerifySettings(
        max_key_age_days=int(_number(verify, "max_key_age_days", defaults.max_key_age_days, where)),
        concurrency=max(1, int(_number(verify, "concurrency", defaults.concurrency, where))),
        per_account_concurrency=max(1, int(_number(
            verify, "per_account_concurrency", defaults.per_account_concurrency, where))),
        timeout_seconds=float(_number(verify, "timeout_seconds", defaults.timeout_seconds, where)),
        require_verified=bool(verify.get("require_verified", False)),
        ca_bundle=str(root / ca_bundle) if ca_bundle else None,
        azure_authority_host=_text(azure, "authority_host", where),
        azure_management_endpoint=_text(azure, "management_endpoint", where),
        azure_instance_discovery=bool(azure.get("instance_discovery", True)),
        gcp_token_uri=_text(gcp, "token_uri", where),
        gcp_resource_manager_endpoint=_text(gcp, "resource_manager_endpoint", where),
        gcp_iam_endpoint=_text(gcp, "iam_endpoint", where),
        gcp_certificates_endpoint=_text(gcp, "certificates_endpoint", where),
    )


def resolve_store_url(url: str, base: Path) -> str:
    """Make a ``sqlite:`` path absolute against ``base``; other schemes pass through."""
    scheme, sep, rest = url.partition(":")
    if scheme == "sqlite" and sep and rest and not Path(rest).is_absolute():
        return f"sqlite:{base / rest}"
    return url


def load_config(
    *,
    config_path: str | None = None,
    store: str | None = None,
    workspace: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    explicit = config_path or env.get("CONNSYNC_CONFIG")
    file: Path | None
    if explicit:
        file = Path(explicit)
        if not file.is_file():
            raise ConfigError(f"{explicit}: config file not found")
    else:
        file = find_upward(cwd, CONFIG_NAME)
    data = _read(file) if file else {}
    root = file.resolve().parent if file else cwd
    where = str(file)
    verify = _section(data, "verify", file)
    apply_ = _section(data, "apply", file)

    if store or env.get("CONNSYNC_STORE"):
        store_url = resolve_store_url(store or env["CONNSYNC_STORE"], cwd)
    else:
        store_url = resolve_store_url(str(data.get("store", DEFAULT_STORE)), root)

    return Config(
        root=root,
        file=file,
        workspace=str(workspace or env.get("CONNSYNC_WORKSPACE") or data.get("workspace", "default")),
        store_url=store_url,
        connections_dir=root / str(data.get("connections", "connections")),
        verify=_verify_settings(verify, where, root),
        max_deletes=int(_number(apply_, "max_deletes", 10, where)),
        prune=_flag(apply_, "prune", where),
    )
