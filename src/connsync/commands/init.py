"""``connsync init``: start a connections repository."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import click

from connsync import render
from connsync.config import CONFIG_NAME
from connsync.errors import EXIT_OK, ConnsyncError, UsageError
from connsync.fsutil import write_atomic
from connsync.sops import SOPS_CONFIG
from connsync.validate import schema

CONFIG_TEMPLATE = """\
# yaml-language-server: $schema=schemas/config.schema.json
# connsync settings; every key is optional. Flags beat environment variables
# (CONNSYNC_*), which beat this file. Relative paths are relative to this file.
workspace: default
store: sqlite:.connsync/store.db
connections: connections
verify:
  max_key_age_days: 90   # warn when an access key is older: rotate keys regularly
  concurrency: 64        # connections verified at once (the work waits on the network)
  per_account_concurrency: 8   # at most this many at once for one account/tenant/project
  timeout_seconds: 10
  history: 20            # results the store keeps per connection ('connsync report' shows the latest)
apply:
  prune: false           # true: plan and apply delete records whose file was deleted
  max_deletes: 10        # a prune never deletes more than this in one apply
"""

# Written once, when policies/ holds no policy yet; every rule starts commented out, so that a new
# repository validates clean and its owners choose what to enforce (README: Organisation policy).
POLICY_TEMPLATE = """\
# yaml-language-server: $schema=../schemas/policy.schema.json
# The organisation's rules for every connection here, as code: validate checks the offline
# ones (and so pre-commit and every plan), verify and apply the online ones. A violation is a
# finding policy/<id> at the offending line; 'connsync schema policy' describes this file.
# In a pull request the base branch's policies are in force, not the branch's own.
apiVersion: connsync/v1
kind: Policy
metadata:
  name: baseline
  description: What every connection here must satisfy
rules: []
# rules:
#   - id: prod-accounts                      # unique across all policy files
#     description: Production connections reach only the production accounts
#     severity: error                        # error (the default) fails validate; warning reports
#     match:                                 # all optional, all must hold; none = every connection
#       providers: [aws]
#       labels: {env: prod}
#     require:
#       accounts: ["111111111111"]           # spec.account_id is one of these
#       regions: [eu-west-1, eu-central-1]   # spec.default_region is one of these
#   - id: owner-label
#     severity: warning
#     require:
#       labels: [owner]                      # present, with a non-empty value
#       name: '^[A-Z][A-Za-z0-9 ]+$'         # metadata.name matches (RE2)
#   - id: eu-only
#     match: {providers: [aws]}
#     require:
#       # CEL over provider, name, description, labels and spec (secret fields are not there)
#       expression: 'spec.default_region.startsWith("eu-")'
#     message: AWS connections stay in the EU
#   - id: safe-keys
#     match: {providers: [aws]}
#     require:
#       max_key_age_days: 90                 # online: the key's age, from IAM
#       least_privilege: true                # online: no administrator-equivalent right in IAM
# waivers:                                   # one rule, one connection, a reason, at most a year
#   - rule: eu-only
#     connection: Legacy Billing             # metadata.name, ignoring case
#     expires: 2027-03-01
#     reason: OPS-1234, moving to eu-west-1
"""

WORKFLOWS = ("connections-pr.yml", "connections-apply.yml")
DEFAULT_ENVIRONMENT = "connections"
# Lines init adds to .gitignore: the embedded store and its key, and saved plans.
GITIGNORE = (".connsync/", "*.plan")


@dataclass(frozen=True)
class InitOptions:
    age_recipients: Sequence[str]
    kms_arns: Sequence[str]
    generate_age_key: bool
    force: bool
    github: bool = False
    environment: str = DEFAULT_ENVIRONMENT
    vault_transit: Sequence[str] = ()


def pinned_requirement() -> str:
    """The generated workflows install exactly this connsync, never whatever is newest."""
    from connsync import __version__

    return f"connsync=={__version__}"


def workflow_text(name: str, *, install: str | None = None, environment: str = DEFAULT_ENVIRONMENT,
                  connections: str = "connections") -> str:
    """A workflow template filled in. The plan jobs (PR plan, drift) run in ENVIRONMENT-plan, so
    that the key that writes the store lives only where apply runs."""
    template = (resources.files("connsync") / "templates" / name).read_text(encoding="utf-8")
    return (template.replace("__CONNSYNC_INSTALL__", install or pinned_requirement())
            .replace("__PLAN_ENVIRONMENT__", f"{environment}-plan")
            .replace("__ENVIRONMENT__", environment)
            .replace("__CONNECTIONS__", connections))


def sops_config_text(connections: str, age: Sequence[str], kms: Sequence[str],
                     vault_transit: Sequence[str] = ()) -> str:
    secrets = "|".join(sorted(schema.all_secret_fields()))
    lines = [
        "# Written by connsync init. Only the schemas' secret (writeOnly) fields are",
        "# encrypted, so the rest stays reviewable; mac_only_encrypted lets a reviewer",
        "# edit a clear field by hand while the secrets stay authenticated.",
        "creation_rules:",
        f"  - path_regex: ^{connections}/.*\\.ya?ml$",
        f"    encrypted_regex: ^({secrets})$",
        "    mac_only_encrypted: true",
    ]
    if age:
        lines.append(f"    age: {','.join(age)}")
    if kms:
        lines.append(f"    kms: {','.join(kms)}")
    if vault_transit:
        lines.append(f"    hc_vault_transit_uri: {','.join(vault_transit)}")
    return "\n".join(lines) + "\n"


# What .sops.yaml may hold: a value with a newline or a quote would rewrite its rules.
_KMS_ARN = re.compile(r"\Aarn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[A-Za-z0-9-]+|alias/[A-Za-z0-9/_-]+)\Z")
# sops's form: https://HOST[:PORT]/v1/MOUNT/keys/NAME (the mount may be nested, e.g. a namespace's).
_TRANSIT_URI = re.compile(r"\A(https?)://([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(:\d{1,5})?/v1/"
                          r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/keys/[A-Za-z0-9_.-]+\Z")


def check_vault_transit(uri: str) -> None:
    """A Vault transit key URI as sops takes it; plain HTTP only for a server on this machine."""
    from urllib.parse import urlsplit

    match = _TRANSIT_URI.match(uri)
    if not match:
        raise UsageError(f"{render.text(repr(uri), 120)} is not a Vault transit key URI",
                         hint="e.g. https://vault.example.com:8200/v1/transit/keys/connsync")
    host = (urlsplit(uri).hostname or "")
    if match.group(1) == "http" and host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError("plain HTTP to Vault is for a dev server on this machine only",
                         hint="use https:// (sops verifies it with VAULT_CACERT)")


def check_age_recipient(recipient: str) -> None:
    """An age X25519 public key, as age itself parses it; anything else is a usage error."""
    import pyrage

    if recipient.strip().upper().startswith("AGE-SECRET-KEY-"):
        # Not echoed: it is a secret, now in shell history; say so.
        raise UsageError("--age-recipient was given an age SECRET key, not a public key",
                         hint="pass the public key (age-keygen -y KEYFILE); consider that secret key exposed")
    try:
        pyrage.x25519.Recipient.from_str(recipient)
    except pyrage.RecipientError:
        raise UsageError(f"{render.text(repr(recipient), 80)} is not an age public key",
                         hint="an age public key starts with age1; 'age-keygen -y KEYFILE' prints it",
                         ) from None


def default_age_key_file() -> Path:
    """Where sops looks for age keys by default (SOPS_AGE_KEY_FILE wins)."""
    explicit = os.environ.get("SOPS_AGE_KEY_FILE")
    if explicit:
        return Path(explicit)
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "sops" / "age" / "keys.txt"


def ensure_age_key() -> tuple[str, Path, bool]:
    """The public key of the default age identity, creating one (0600) if none exists."""
    import pyrage

    path = default_age_key_file()
    if path.exists() or path.is_symlink():
        if not path.is_file():  # a FIFO would block the read forever
            raise ConnsyncError(f"{path} is not a regular file; an age key file is plain text")
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if line.startswith("AGE-SECRET-KEY-"):
                try:
                    return str(pyrage.x25519.Identity.from_str(line.strip()).to_public()), path, False
                except pyrage.IdentityError:
                    # Never quoted: it is (meant to be) a secret.
                    raise ConnsyncError(f"{path}:{number}: not a valid age secret key",
                                        hint="age-keygen writes AGE-SECRET-KEY-1... lines; "
                                             "fix or remove that line") from None
        raise ConnsyncError(f"{path} exists but holds no AGE-SECRET-KEY line")
    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = f"# created by connsync init\n# public key: {public}\n{identity}\n"
    write_atomic(path, text.encode(), mode=0o600)
    return public, path, True


def init(root: Path, options: InitOptions) -> int:
    recipients = list(options.age_recipients)
    asked_for_keys = recipients or options.kms_arns or options.generate_age_key
    if not asked_for_keys and (root / CONFIG_NAME).is_file() and (root / SOPS_CONFIG).is_file():
        # As `git init` in a repository: nothing to do is not an error.
        click.echo(f"connsync is already initialised in {render.text(str(root))} "
                   f"({CONFIG_NAME} and {SOPS_CONFIG} exist); nothing was changed.")
        click.echo("To change who can decrypt, run 'connsync init --force' with --age-recipient, --kms "
                   "or --generate-age-key.")
        return EXIT_OK
    if options.generate_age_key:
        public, key_path, created = ensure_age_key()
        click.echo(f"{'Created' if created else 'Using'} age key {key_path} (public key {public})")
        click.echo("Back it up in a password manager: without it nothing here can be decrypted.")
        recipients.append(public)
    if not recipients and not options.kms_arns and not options.vault_transit:
        raise UsageError(
            "no recipient for the secrets",
            hint="pass --age-recipient AGE_PUBLIC_KEY, --kms ARN, --vault-transit URI, or --generate-age-key",
        )
    for uri in options.vault_transit:
        check_vault_transit(uri)
    for recipient in recipients:
        check_age_recipient(recipient)
    for arn in options.kms_arns:
        if not _KMS_ARN.match(arn):
            raise UsageError(f"{render.text(repr(arn))} is not an AWS KMS key ARN "
                             "(arn:aws:kms:REGION:ACCOUNT:key/ID or alias/NAME)")

    files: dict[Path, bytes] = {
        root / CONFIG_NAME: CONFIG_TEMPLATE.encode(),
        root / SOPS_CONFIG: sops_config_text("connections", recipients, options.kms_arns,
                                             options.vault_transit).encode(),
    }
    for name, document in schema.all_schemas().items():
        # A copy beside the files, for the editors' $schema modelines.
        files[root / "schemas" / f"{name}.schema.json"] = (json.dumps(document, indent=2) + "\n").encode()
    if options.github:
        for name in WORKFLOWS:
            files[root / ".github" / "workflows" / name] = workflow_text(
                name, environment=options.environment).encode()
    existing = [p for p in files if p.exists() and p.read_bytes() != files[p]]
    if existing and not options.force:
        names = ", ".join(str(p.relative_to(root)) for p in existing)
        raise ConnsyncError(f"refusing to overwrite {names}", hint="use --force to replace them")
    for path, body in files.items():
        write_atomic(path, body, overwrite=True)
    (root / "connections").mkdir(exist_ok=True)
    policies = root / "policies"
    if not (policies.is_dir() and any(p.suffix in (".yaml", ".yml") for p in policies.iterdir())):
        policies.mkdir(exist_ok=True)
        write_atomic(policies / "baseline.yaml", POLICY_TEMPLATE.encode())
    _ensure_gitignore(root / ".gitignore")
    click.echo(f"Initialised connsync in {root}")
    if options.github:
        click.echo(github_next_steps(options.environment))
    click.echo("Next: connsync new aws --name 'AWS Prod'   (then: connsync validate, plan, apply)")
    return EXIT_OK


def github_next_steps(environment: str) -> str:
    plan_environment = f"{environment}-plan"
    return f"""\
Wrote .github/workflows/connections-pr.yml and connections-apply.yml. In the repository's
Settings > Environments, create two environments and give each these secrets:
  {environment:<20} apply on merge to main (restrict it to main; add required reviewers)
  {plan_environment:<20} pull-request plans and the daily drift check (read-only is enough)
  secret SOPS_AGE_KEY        the age identity that decrypts the files (or KMS: variable AWS_ROLE_ARN)
  secret CONNSYNC_STORE      the shared store, postgresql://user@host/db (a secret: it may hold a
                             password); the embedded sqlite: store is thrown away with the runner
  secret CONNSYNC_STORE_KEY  the key that seals the store's secrets
  secret PGPASSWORD          optional: the database password, if the URL does not carry it
  variable AWS_ROLE_ARN      optional, per environment: a role assumed through GitHub's OIDC for
                             KMS, an awssm:// store and role connections (no long-lived AWS key;
                             its trust policy: README, "connsync's workflows on AWS")
Pull requests from forks get no secrets: they are validated and planned on their clear fields."""


def _ensure_gitignore(path: Path) -> None:
    lines = path.read_text().splitlines() if path.exists() else []
    missing = [entry for entry in GITIGNORE if entry not in lines]
    if missing:
        path.write_text("\n".join([*lines, *missing]) + "\n")
