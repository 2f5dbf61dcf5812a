"""Which connections ``rotate --older-than DAYS`` picks: each card's key age, asked of its provider.

- AWS: IAM's ``CreateDate`` of the access key (``ListAccessKeys``);
- GCP: the key's ``validAfterTime`` (``serviceAccounts.keys.list``);
- Azure: the client secret's ``startDateTime`` (Graph's ``passwordCredentials``;
  the secret is told apart by ``client_secret_id``, else by its first three
  characters, Graph's ``hint``).

Each is asked as rotate itself would sign (the connection's own credential, or
the administrator's with ``--admin-env``/``--admin-profile``). The key-age rule
is :mod:`connsync.providers.key_age`'s. A connection whose age cannot be known
is listed with the reason, never skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from connsync import sops
from connsync.config import Config
from connsync.errors import ConnsyncError
from connsync.model import Declaration, Desired
from connsync.providers import key_age
from connsync.providers.rotation import ROTATABLE, RotateOptions
from connsync.validate import rules

# provider -> (the key's id, when it was created, or None when the provider does not say)
AgeOf = Callable[[Desired, Config, RotateOptions], tuple[str, datetime | None]]


def _aws(desired: Desired, config: Config, options: RotateOptions) -> tuple[str, datetime | None]:
    from connsync.providers.aws_keys import Credentials, Iam
    from connsync.providers.aws_rotation import owner

    key_id = str(desired.spec["access_key_id"])
    who = owner(desired, options)
    iam = Iam(options.admin or Credentials(key_id, desired.secrets["secret_access_key"]),
              str(desired.spec["default_region"]), options.timeout)
    key = next((k for k in iam.keys(str(who.user_name)) if k.key_id == key_id), None)
    if key is None:
        raise ConnsyncError(f"IAM did not list {key_id}")
    return key_id, key.created


def _gcp(desired: Desired, config: Config, options: RotateOptions) -> tuple[str, datetime | None]:
    from connsync.providers.gcp_rotation import keys_api

    key_id = str(desired.spec["private_key_id"])
    api = keys_api(desired, config, options)
    try:
        listed = api.keys()
    finally:
        api.close()
    key = next((k for k in listed if k.key_id == key_id), None)
    if key is None:
        raise ConnsyncError(f"IAM did not list {key_id} among {desired.spec['client_email']}'s keys")
    return key_id, _when(key.created)


def _azure(desired: Desired, config: Config, options: RotateOptions) -> tuple[str, datetime | None]:
    from connsync.providers.azure_rotation import applications, mine

    api = applications(desired, config, options)
    try:
        found = mine(api.passwords(), desired)
    finally:
        api.close()
    if len(found) != 1:
        raise ConnsyncError(f"Graph lists {len(found)} secrets of app {desired.spec['client_id']} that could "
                            "be the one in the file")
    return found[0].key_id, _when(found[0].starts)


_AGES: dict[str, AgeOf] = {"aws": _aws, "gcp": _gcp, "azure": _azure}


def _when(text: str | None) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None
    return at if at is None or at.tzinfo else at.replace(tzinfo=UTC)


def due(config: Config, days: int, options: RotateOptions) -> tuple[list[Declaration], list[str]]:
    """The connections whose key is more than ``days`` old, and for every other one why not."""
    chosen, skipped = [], []
    for decl in rules.validate_files([], config.connections_dir).valid_declarations():
        if decl.provider not in ROTATABLE:
            skipped.append(f"{decl.name}: a {decl.provider} connection; rotate supports "
                           f"{', '.join(ROTATABLE)} keys")
            continue
        if decl.provider == "aws" and "access_key_id" not in decl.spec:
            skipped.append(f"{decl.name}: no long-term key (a role)")
            continue
        try:
            key_id, created = _AGES[decl.provider](sops.decrypt(decl, Path(decl.file)), config, options)
        except ConnsyncError as exc:
            skipped.append(f"{decl.name}: age unknown ({exc.message})")
            continue
        if created is None:
            skipped.append(f"{decl.name}: age unknown ({decl.provider} did not say when {key_id} was made)")
        elif key_age.overdue(created, days):
            chosen.append(decl)
        else:
            skipped.append(f"{decl.name}: {key_id} is {key_age.describe(key_age.age_days(created))} old")
    return chosen, skipped
