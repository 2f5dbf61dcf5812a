"""Settings: flags beat environment, environment beats connsync.yaml, which beats defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from connsync import render
from connsync.errors import ConfigError
from connsync.fsutil import find_upward
from connsync.identity import in_ci
from connsync.model import NOWHERE, SourceMap
from connsync.providers.base import VerifySettings
from connsync.store.base import HISTORY_LIMIT
from connsync.validate import schema
from connsync.validate.loader import YamlProblem, parse_located

CONFIG_NAME = "connsync.yaml"
DEFAULT_STORE = "sqlite:.connsync/store.db"
_WORKSPACE_PATTERN = str(schema.get_schema(schema.CONFIG)["properties"]["workspace"]["pattern"])


@dataclass(frozen=True)
class Config:
    root: Path  # the directory of connsync.yaml, else the working directory
    file: Path | None
    workspace: str = "default"
    store_setting: str = ""  # the store's URL as chosen, see store_url
    # Why the store that connsync.yaml names may not be opened in this run (in CI, a shared one).
    store_refused: str | None = None
    connections_dir: Path = Path("connections")
    verify: VerifySettings = field(default_factory=VerifySettings)
    max_deletes: int = 10
    prune: bool = False  # apply.prune: plan and apply delete records whose file is gone
    verify_history: int = HISTORY_LIMIT  # verify.history: results kept per connection
    # Organisation policy files or directories (DESIGN section 10); ``policies_set`` when connsync.yaml
    # names them (then they must exist), else the default policies/ beside it, used when present.
    policies: tuple[Path, ...] = ()
    policies_set: bool = False
    # Set when --policy replaced them: the repository's own policies, which a pull request proposes.
    repository_policies: tuple[Path, ...] | None = None

    @property
    def store_url(self) -> str:
        """The store to open; refused here, before any connection, when the repository may not choose it."""
        if self.store_refused:
            raise ConfigError(self.store_refused, hint=_FILE_STORE_HINT)
        return self.store_setting

    def require_repository_or_store(self) -> None:
        """Outside any repository the embedded default store is nobody's: an "empty" answer from it
        would be a false one, so say that there is no repository (as plan and validate do)."""
        if self.file is None and self.store_url == resolve_store_url(DEFAULT_STORE, self.root):
            raise ConfigError(f"no {CONFIG_NAME} in {render.text(str(self.root))} or any parent: "
                              "not a connections repository",
                              hint="run this inside one ('connsync init' makes one), or name a store "
                                   "with --store or CONNSYNC_STORE")


def _read(path: Path) -> tuple[SourceMap, Mapping[str, Any]]:
    """The positions and settings, checked against schemas/config.schema.json; every problem located."""
    try:
        data, source = parse_located(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except YamlProblem as problem:
        raise ConfigError(f"{path}:{problem.line}:{problem.column}: {problem.message}") from None
    if data is None:
        return source, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of settings")
    problems = schema.config_problems(data, source) or _path_problems(data, path, source)
    if problems:
        raise ConfigError(
            "\n".join(f"{path}:{line}:{column}: {where}: {message}"
                      for line, column, where, message in problems),
            hint="the settings are described by schemas/config.schema.json ('connsync schema config')",
        )
    return source, data


def _path_problems(data: Mapping[str, Any], path: Path, source: SourceMap) -> list[tuple[int, int, str, str]]:
    """``connections`` names a directory inside the repository: elsewhere, every record is orphaned."""
    value = data.get("connections")
    if not isinstance(value, str):
        return []
    root = Path(os.path.realpath(path.parent))
    target = root / value
    line, column = source.position(["connections"])
    if not Path(os.path.realpath(target)).is_relative_to(root):
        problem = (f"{value!r} is outside the repository (the directory of connsync.yaml); "
                   "plan would see every record as orphaned")
    elif not target.is_dir():
        problem = f"{value!r} is not a directory (create it, or fix the setting)"
    else:
        return []
    return [(line, column, "$.connections", problem)]


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


# Where the Azure and GCP verifiers send credentials. Only the environment of whoever runs
# connsync may move them (as AWS_ENDPOINT_URL does for AWS), never connsync.yaml: a pull
# request can change that file, and a changed endpoint would receive every client secret
# (Azure) or a signed grant (GCP) in clear.
ENDPOINT_VARIABLES = {
    "ca_bundle": "CONNSYNC_CA_BUNDLE",
    "azure_authority_host": "CONNSYNC_AZURE_AUTHORITY_HOST",
    "azure_management_endpoint": "CONNSYNC_AZURE_MANAGEMENT_ENDPOINT",
    "azure_graph_endpoint": "CONNSYNC_AZURE_GRAPH_ENDPOINT",
    "gcp_token_uri": "CONNSYNC_GCP_TOKEN_URI",
    "gcp_resource_manager_endpoint": "CONNSYNC_GCP_RESOURCE_MANAGER_ENDPOINT",
    "gcp_iam_endpoint": "CONNSYNC_GCP_IAM_ENDPOINT",
    "gcp_certificates_endpoint": "CONNSYNC_GCP_CERTIFICATES_ENDPOINT",
}
INSTANCE_DISCOVERY_VARIABLE = "CONNSYNC_AZURE_INSTANCE_DISCOVERY"


def _endpoints(env: Mapping[str, str]) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    for setting, variable in ENDPOINT_VARIABLES.items():
        value = env.get(variable, "").strip()
        if not value:
            continue
        if setting == "ca_bundle":
            if not Path(value).is_file():
                raise ConfigError(f"{variable}: no file at {render.text(repr(value))} "
                                  "(a PEM file of CA certificates)")
        elif not re.fullmatch(r"https?://[^\s\x00-\x1f\x7f]+", value):
            raise ConfigError(f"{variable}: {render.text(repr(value))} is not an http(s) URL")
        chosen[setting] = value
    discovery = env.get(INSTANCE_DISCOVERY_VARIABLE, "").strip().lower()
    if discovery:
        if discovery not in ("true", "false", "1", "0"):
            raise ConfigError(f"{INSTANCE_DISCOVERY_VARIABLE} must be true or false")
        chosen["azure_instance_discovery"] = discovery in ("true", "1")
    return chosen


def _verify_settings(verify: Mapping[str, Any], env: Mapping[str, str]) -> VerifySettings:
    # Types and ranges are the schema's business: what reaches here is checked.
    defaults = VerifySettings()
    return VerifySettings(
        max_key_age_days=int(verify.get("max_key_age_days", defaults.max_key_age_days)),
        concurrency=int(verify.get("concurrency", defaults.concurrency)),
        per_account_concurrency=int(verify.get("per_account_concurrency", defaults.per_account_concurrency)),
        timeout_seconds=float(verify.get("timeout_seconds", defaults.timeout_seconds)),
        require_verified=bool(verify.get("require_verified", False)),
        **_endpoints(env),
    )


# connsync.yaml is part of every pull request. A store it names must never receive what the
# runner holds for the real store: not its endpoint (an awssm:// endpoint_url would receive
# the plaintext secrets on apply), not the PostgreSQL password of the environment, and in CI
# (where the PR's plan runs with the store's credentials) no shared store at all.
_FILE_STORE_HINT = ("name the shared store in CONNSYNC_STORE (a CI secret) or --store; connsync.yaml "
                    "may name only the embedded sqlite: store there")


def _file_store(url: str, path: Path, source: SourceMap, env: Mapping[str, str]) -> tuple[str, str | None]:
    """The store connsync.yaml names, made safe to open, and why it may not be opened in this run."""
    scheme = url.partition(":")[0]
    line, column = source.position(["store"])
    # Decoded as the backends decode them (endpoint%5Furl is endpoint_url), any backend's spelling.
    override = next((key for key, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)
                     if "endpoint" in key.lower()), None)
    if override is not None:
        raise ConfigError(
            f"{path}:{line}:{column}: $.store: the store URL in connsync.yaml may not set "
            f"{render.text(override, 40)}: a pull request can change this file, and the "
            "endpoint would receive every secret that apply writes",
            hint="an endpoint comes from --store, CONNSYNC_STORE or the environment (AWS_ENDPOINT_URL) only")
    if scheme == "sqlite":
        return url, None
    if scheme.startswith("vault") and urlsplit(url).netloc:
        # The runner's VAULT_TOKEN goes to the server of the URL: the file may name the mount, not it.
        raise ConfigError(
            f"{path}:{line}:{column}: $.store: a Vault store in connsync.yaml may not name its server "
            f"({render.text(urlsplit(url).hostname or '', 80)}): a pull request can change this file, "
            "and that server would receive the job's Vault token",
            hint="write vault:///MOUNT/PREFIX and set VAULT_ADDR, or give the whole URL with --store or "
                 "CONNSYNC_STORE")
    if in_ci(env):
        return url, (f"{path}:{line}:{column}: the store connsync.yaml names is not used on a CI runner "
                     f"(CI is set): a pull request can change that file, and a shared store would get "
                     "the job's store credentials; nothing was opened")
    if scheme in ("postgresql", "postgres"):
        return _without_environment_password(url), None
    return url, None


def _without_environment_password(url: str) -> str:
    """libpq's explicit empty ``password=``: PGPASSWORD is not sent; ~/.pgpass (matched by host) still is."""
    query = url.partition("?")[2]
    if re.search(r"(?:^|&)password=", query) or re.match(r"[a-z]+://[^/@?]*:[^/@?]*@", url):
        return url  # the file carries its own password: it goes only where the file says
    return f"{url}{'&' if query else '' if url.endswith('?') else '?'}password="


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
    source, data = _read(file) if file else (NOWHERE, {})
    root = file.resolve().parent if file else cwd
    verify = _section(data, "verify")
    apply_ = _section(data, "apply")

    store_refused = None
    if store or env.get("CONNSYNC_STORE"):
        store_url = resolve_store_url(store or env["CONNSYNC_STORE"], cwd)
    elif file and "store" in data:
        store_url, store_refused = _file_store(resolve_store_url(str(data["store"]), root), file, source, env)
    else:
        store_url = resolve_store_url(DEFAULT_STORE, root)

    # An empty --workspace is a mistake to report; an empty variable is an unset one, as usual.
    chosen = workspace if workspace is not None else (env.get("CONNSYNC_WORKSPACE") or None)
    if chosen is not None and not re.fullmatch(_WORKSPACE_PATTERN, chosen):
        # The file's value is checked by the schema; a flag or the environment here.
        raise ConfigError(f"workspace {render.text(repr(chosen))} (from --workspace or CONNSYNC_WORKSPACE) "
                          f"does not match {_WORKSPACE_PATTERN}")
    return Config(
        root=root,
        file=file,
        workspace=str(chosen or data.get("workspace", "default")),
        store_setting=store_url,
        store_refused=store_refused,
        connections_dir=root / str(data.get("connections", "connections")),
        verify=_verify_settings(verify, env),
        max_deletes=int(apply_.get("max_deletes", 10)),
        prune=bool(apply_.get("prune", False)),
        verify_history=int(verify.get("history", HISTORY_LIMIT)),
        policies=tuple(root / p for p in _policy_paths(data.get("policies", "policies"))),
        policies_set="policies" in data,
    )


def _policy_paths(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]
