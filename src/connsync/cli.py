"""The command line: options -> a typed call -> an exit code. No logic lives here."""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from connsync import render
from connsync.config import Config, load_config
from connsync.error_handler import error_handler
from connsync.errors import UsageError

FORMATS = click.Choice(["text", "json"])


@dataclass
class App:
    """What the global options decided; commands ask it for the config lazily."""

    config_path: str | None
    store: str | None
    workspace: str | None
    color: bool
    verbose: bool
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(
                config_path=self.config_path, store=self.store, workspace=self.workspace
            )
        return self._config

    @property
    def style(self) -> render.Style:
        return render.Style(self.color)


pass_app = click.make_pass_decorator(App)


def _late_global(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A global option given after the command (``connsync verify --no-color``) counts the same."""
    app = ctx.find_object(App)
    if app is None or value in (None, False):
        return
    if param.name == "no_color":
        app.color = False
    elif param.name == "verbose":
        app.verbose = True  # main() has already seen -v for tracebacks
    else:
        setattr(app, param.name or "", value)


def _global_params() -> list[click.Option]:
    """The group's options, for after the command too (hidden from the command's --help)."""
    hidden: dict[str, Any] = {"hidden": True, "expose_value": False, "callback": _late_global}
    return [
        click.Option(["--config", "config_path"], metavar="PATH", **hidden),
        click.Option(["--store"], metavar="URL", **hidden),
        click.Option(["--workspace"], metavar="NAME", **hidden),
        click.Option(["--no-color"], is_flag=True, **hidden),
        click.Option(["-v", "--verbose"], is_flag=True, **hidden),
    ]


def global_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Accept the global options after this command (the group also adds them to any it gets)."""
    params = command.__dict__.setdefault("__click_params__", [])
    params.extend(_global_params())
    return command


def json_errors(command: str, fmt: str) -> None:
    """From here on, an error of ``command`` in JSON format is printed as JSON too."""
    if fmt == "json":
        render.json_command.set(command)

# --help lists the commands in the order of the work, not alphabetically.
COMMAND_ORDER = ("init", "new", "set", "edit", "validate", "verify", "plan", "show", "apply", "rotate",
                 "list", "report", "import", "unlock", "store", "schema")


class OrderedGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands, key=lambda n: COMMAND_ORDER.index(n) if n in COMMAND_ORDER else 99)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Every command takes the global options after it too, whether or not it was decorated."""
        if not isinstance(cmd, click.Group) and "no_color" not in {p.name for p in cmd.params}:
            cmd.params.extend(_global_params())
        super().add_command(cmd, name)


@click.group(cls=OrderedGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", metavar="PATH",
              help="connsync.yaml to use (env CONNSYNC_CONFIG; default: found in . or a parent).")
@click.option("--store", metavar="URL",
              help="Store URL, e.g. sqlite:.connsync/store.db (env CONNSYNC_STORE).")
@click.option("--workspace", metavar="NAME",
              help="Workspace in the store (env CONNSYNC_WORKSPACE; default: default).")
@click.option("--no-color", is_flag=True, help="No colour, even on a terminal (also NO_COLOR).")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(package_name="connsync", prog_name="connsync")  # looked up only when asked
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, store: str | None, workspace: str | None,
        no_color: bool, verbose: bool) -> None:
    """Manage a platform's cloud connections as code.

    Each connection is a YAML file under connections/, validated by its
    provider's JSON Schema, with secret fields encrypted by SOPS. connsync
    validates the files, verifies the credentials, and makes the platform's
    store match them: plan, then apply.

    The global options may also follow the command (connsync verify --no-color).
    """
    color = not no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()
    ctx.obj = App(config_path, store, workspace, color, verbose)


POLICY = click.option(
    "--policy", "policies", multiple=True, type=click.Path(), metavar="PATH",
    help="An organisation policy file or directory (repeatable); replaces connsync.yaml's 'policies' "
    "(default: policies/ beside connsync.yaml).")


def _with_policies(config: Config, policies: tuple[str, ...]) -> Config:
    from connsync.validate.policy import with_flags

    return with_flags(config, policies)


@cli.command()
@global_options
@click.argument("paths", nargs=-1, type=click.Path())
@POLICY
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text",
              show_default=True, help="github prints ::error annotations for pull requests.")
@pass_app
def validate(app: App, paths: tuple[str, ...], policies: tuple[str, ...], fmt: str) -> int:
    """Check connection files offline: YAML, schema, rules and organisation policy.

    PATHS are files or directories (default: the configured connections/).
    Needs no keys and no network, so it fits pre-commit and every pull request.
    Policy rules (policies/*.yaml, kind: Policy) report as policy/<id>; findings
    that a waiver covers are counted as waived. Exit 0 when valid, 1 when any
    finding is an error (a policy file that is not valid included).
    """
    from connsync.commands.validate import validate as run

    json_errors("validate", fmt)
    return run(paths, _with_policies(app.config, policies), fmt=fmt, style=app.style)


@cli.command(short_help="Print a provider's JSON Schema.")
@global_options
@click.argument("provider", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the providers and their secret fields.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
def schema(provider: str | None, list_only: bool, fmt: str) -> int:
    """Print the JSON Schema of PROVIDER (default: the connection envelope).

    Also 'config' (connsync.yaml) and 'policy' (organisation policy files, policies/*.yaml).
    """
    from connsync.commands.schema import show_schema

    json_errors("schema", fmt)
    return show_schema(provider, list_only=list_only, fmt=fmt)


@cli.command()
@global_options
@click.option("--age-recipient", "age_recipients", multiple=True, metavar="AGE_PUBLIC_KEY",
              help="Encrypt secrets to this age public key (repeatable).")
@click.option("--kms", "kms_arns", multiple=True, metavar="ARN",
              help="Encrypt secrets with this AWS KMS key (repeatable).")
@click.option("--vault-transit", "vault_transit", multiple=True, metavar="URI",
              help="Encrypt secrets with this Vault / OpenBao transit key, "
              "https://HOST:PORT/v1/MOUNT/keys/NAME (repeatable; sops reads VAULT_TOKEN).")
@click.option("--generate-age-key", is_flag=True,
              help="Create an age key in sops's default location if none exists, and use it.")
@click.option("--github", is_flag=True,
              help="Also write the GitHub workflows: PR checks and plan comment, apply on merge, drift.")
@click.option("--environment", default="connections", show_default=True, metavar="NAME",
              help="With --github: the GitHub environment of the apply job; plans run in NAME-plan.")
@click.option("--force", is_flag=True, help="Overwrite existing connsync.yaml and .sops.yaml.")
def init(age_recipients: tuple[str, ...], kms_arns: tuple[str, ...], vault_transit: tuple[str, ...],
         generate_age_key: bool, github: bool, environment: str, force: bool) -> int:
    """Start a connections repository in the current directory.

    Writes connsync.yaml, connections/, schemas/ (for editors), a .sops.yaml
    whose encrypted_regex covers every schema's secret fields, with
    mac_only_encrypted, a .gitignore entry for .connsync/, and (when
    policies/ has none) an example organisation policy, every rule commented.
    """
    from pathlib import Path

    from connsync.commands.init import InitOptions
    from connsync.commands.init import init as run

    return run(Path.cwd(), InitOptions(age_recipients, kms_arns, generate_age_key, force, github,
                                       environment, vault_transit))


@cli.command()
@global_options
@click.argument("provider")
@click.option("--name", help="The connection's Name, unique in the workspace (asked for if missing).")
@click.option("--description", help="Optional description.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label (repeatable).")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE",
              help="A non-secret field, e.g. --set account_id=123456789012 (repeatable).")
@click.option("--secret-env", "secret_envs", multiple=True, metavar="FIELD=ENV_VAR",
              help="Read a secret field from an environment variable (repeatable).")
@click.option("--file", metavar="PATH", help="Where to write (default: connections/<name>.yaml).")
@click.option("--no-input", is_flag=True, help="Never prompt; fail if a field is missing.")
@click.option("--force", is_flag=True, help="Replace an existing file.")
@pass_app
def new(app: App, provider: str, name: str | None, description: str | None, labels: tuple[str, ...],
        sets: tuple[str, ...], secret_envs: tuple[str, ...], file: str | None, no_input: bool,
        force: bool) -> int:
    """Write one new connection file, its secrets encrypted with SOPS.

    On a terminal, whatever is missing (the name too) is asked for, each prompt
    with what the field is for and an example, secrets hidden; each answer is
    checked as it is typed and asked again when wrong. Without a terminal (or
    with --no-input) the same checks print one line per field. Secrets are
    never taken from the command line, and plaintext never touches the disk.
    --force keeps the replaced file's description and labels unless given again.

    \b
    Example:
      AWS_SECRET=... connsync new aws --name "AWS Prod" --set account_id=123456789012 \\
        --set default_region=us-east-1 --set access_key_id=AKIA... \\
        --secret-env secret_access_key=AWS_SECRET
    """
    from connsync.commands.new import NewOptions
    from connsync.commands.new import new as run

    options = NewOptions(provider, name, description, labels, sets, secret_envs, file, no_input, force)
    return run(app.config, options, app.style)


REQUIRE_VERIFIED = click.option(
    "--require-verified", is_flag=True,
    help="Fail connections whose provider cannot verify them, instead of counting them as skipped.")


def _requiring_verified(config: Config, require_verified: bool) -> Config:
    if not require_verified:
        return config
    return dataclasses.replace(config, verify=dataclasses.replace(config.verify, require_verified=True))


@cli.command(name="set", short_help="Change fields of a connection file in place.")
@global_options
@click.argument("name")
@click.argument("assignments", nargs=-1, metavar="FIELD=VALUE...")
@click.option("--secret-env", "secret_envs", multiple=True, metavar="FIELD=ENV_VAR",
              help="Read a secret field from an environment variable (repeatable).")
@click.option("--no-input", is_flag=True, help="Never prompt.")
@pass_app
def set_(app: App, name: str, assignments: tuple[str, ...], secret_envs: tuple[str, ...],
         no_input: bool) -> int:
    """Set fields of connection NAME (or of the file NAME), keeping everything else.

    Clear fields as FIELD=VALUE; a secret field named alone is asked for on
    the terminal (hidden), or read with --secret-env. The change is checked
    with validate's rules before the file is touched; sops re-encrypts it, so
    comments, description, labels and every other field stay as they were.

    \b
    Examples:
      connsync set "AWS Prod" default_region=eu-west-1
      connsync set "AWS Prod" access_key_id=AKIA... secret_access_key
    """
    from connsync.commands.edit import SetOptions, set_fields

    return set_fields(app.config, SetOptions(name, assignments, secret_envs, no_input), app.style)


@cli.command(short_help="Open a connection file in 'sops edit'.")
@global_options
@click.argument("name")
@pass_app
def edit(app: App, name: str) -> int:
    """Open connection NAME (or the file NAME) decrypted in your $EDITOR through 'sops edit'.

    sops re-encrypts on save; the file is then validated. Plaintext stays in
    sops's temporary file only while the editor is open, and the editor draws on
    the terminal only, never into connsync's output. Needs a terminal (exit 64
    without one: use 'connsync set'). When the editor leaves a file that does
    not parse, or that has a problem it did not have before, the edit ends at
    once: the file is left as it was and the problem is shown with its line.
    """
    from connsync.commands.edit import edit as run

    return run(app.config, name, app.style)


@cli.command(short_help="Check each credential with its provider.")
@global_options
@click.argument("paths", nargs=-1, type=click.Path())
@REQUIRE_VERIFIED
@click.option("--no-history", is_flag=True,
              help="Do not keep the results in the store's verification history (read by 'report').")
@POLICY
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True, help="markdown is a summary and a table of what did not pass, for a "
              "pull-request comment.")
@pass_app
def verify(app: App, paths: tuple[str, ...], require_verified: bool, no_history: bool,
           policies: tuple[str, ...], fmt: str) -> int:
    """Decrypt the files and check each credential with its provider (network).

    AWS: STS GetCallerIdentity with the connection's own key proves the key
    works, belongs to account_id and is not the root user's; IAM
    ListAccessKeys (best effort) warns when the key is inactive or older than
    verify.max_key_age_days. Azure: a token for the service principal, then
    its subscription. GCP: a token for the key, then its project; the key's
    age (best effort). Policy rules with max_key_age_days or least_privilege
    are checked here too (an AWS key's IAM user: its groups, policies and
    permission boundary); a check that cannot be made is reported as
    unverifiable, never as a pass. Exit 0 when none failed (warnings and
    skipped allowed, unless --require-verified), else 1.

    The results go into the store's verification history (the newest
    verify.history per connection, 20 by default) when the store exists;
    'connsync report' shows the latest. A store that cannot take them costs
    a warning, not the exit status.
    """
    from connsync.commands.verify import verify as run
    from connsync.validate.policy_check import with_online_rules

    json_errors("verify", fmt)
    config = with_online_rules(_with_policies(_requiring_verified(app.config, require_verified), policies))
    return run(config, paths, fmt=fmt, style=app.style, history=not no_history)


@cli.command()
@global_options
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--prune/--no-prune", default=None,
              help="Plan to delete managed records that no file declares (default: apply.prune, off).")
@click.option("--adopt", is_flag=True, help="Take over records made outside connsync (in the UI).")
@click.option("--out", metavar="FILE",
              help="Save the plan (0600, signed, no secrets in it) for 'apply FILE'; e.g. changes.plan.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 0 when apply would change nothing, 2 when it would, 1 on error.")
@click.option("--base", metavar="DIR",
              help="Compare with the files of another checkout (e.g. the base branch) instead of the "
              "store; needs no key and no store, compares clear fields only (fork pull requests).")
@POLICY
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True, help="markdown is a summary and a table for a pull-request comment.")
@pass_app
def plan(app: App, paths: tuple[str, ...], prune: bool | None, adopt: bool, out: str | None,
         detailed_exitcode: bool, base: str | None, policies: tuple[str, ...], fmt: str) -> int:
    """Show what apply would change in the store. Read-only.

    Compares each file with the store's record by name: create, update (with
    before/after for clear fields; secrets only as "sensitive, changed"),
    noop, conflict (a record made outside connsync), orphan (a managed record
    whose file is gone; kept, with a warning, unless prune is on). Files
    unchanged since the last apply are not even decrypted. With PATHS, only
    those files are planned and orphans are not looked for.
    """
    from connsync.commands.plan import plan as run

    json_errors("plan", fmt)
    return run(_with_policies(app.config, policies), paths, prune=prune, adopt=adopt, out=out,
               detailed_exitcode=detailed_exitcode, fmt=fmt, style=app.style, base=base)


@cli.command(short_help="The Connections page of the workspace: HTML, Markdown or JSON.")
@global_options
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["html", "markdown", "json"]), default="html",
              show_default=True,
              help="html: one self-contained page; markdown: for $GITHUB_STEP_SUMMARY or a PR comment.")
@click.option("--out", metavar="FILE", help="Write the report to FILE (replaced whole) instead of stdout.")
@click.option("--max-size", type=click.IntRange(min=1), metavar="N",
              help="markdown only: at most N characters, cutting long tables between rows "
              "(default 1048576, the job summary's limit; 65536 for a PR comment).")
@POLICY
@pass_app
def report(app: App, paths: tuple[str, ...], fmt: str, out: str | None, max_size: int | None,
           policies: tuple[str, ...]) -> int:
    """Render what the platform's Connections page would show, for the whole workspace.

    One card per provider; per connection its account and region (or
    subscription, project), labels, state against the files (in sync, drift,
    not applied, orphan), key age, last rotation, last verification (from the
    history verify and apply keep in the store) and validation or policy
    findings (under the policies validate uses: --policy, else connsync.yaml's).
    Exposed keys come first, then problems (failed verification, drift, keys
    over verify.max_key_age_days, findings), then the rest.
    Reads the files and the store; never decrypts, never shows a secret, never
    creates the store. With PATHS, only those files (and no orphans).

    \b
    Examples:
      connsync report --out connections.html
      connsync report --format markdown >> "$GITHUB_STEP_SUMMARY"
      connsync report --format markdown --max-size 65536 --out comment.md
    """
    from connsync.commands.report import report as run

    json_errors("report", fmt)
    return run(_with_policies(app.config, policies), paths, fmt=fmt, out=out, max_size=max_size)


@cli.command()
@global_options
@click.argument("planfile", required=False)
@click.option("--prune/--no-prune", default=None,
              help="Delete managed records that no file declares (default: apply.prune, off).")
@click.option("--adopt", is_flag=True, help="Take over records made outside connsync (in the UI).")
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation (for CI).")
@click.option("--skip-verify", is_flag=True, help="Write without verifying the credentials first.")
@REQUIRE_VERIFIED
@click.option("--max-deletes", type=click.IntRange(min=0), metavar="N",
              help="Refuse to delete more than N records (default: apply.max_deletes, 10).")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=60, show_default=True,
              metavar="SECONDS", help="How long to wait for another apply's workspace lock.")
@click.option("--allow-embedded-store", is_flag=True,
              help="Apply to an embedded (sqlite:) store even in CI, where the runner throws it away.")
@click.option("--destroy", is_flag=True,
              help="A store that keeps versions (vault://) deletes them all instead of a soft delete.")
@POLICY
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@pass_app
def apply(app: App, planfile: str | None, prune: bool | None, adopt: bool, auto_approve: bool,
          skip_verify: bool, require_verified: bool, max_deletes: int | None, lock_timeout: float,
          allow_embedded_store: bool, destroy: bool, policies: tuple[str, ...], fmt: str) -> int:
    """Make the store match the files, under the workspace lock.

    Plans afresh (or checks that PLANFILE is not stale and not edited),
    verifies every connection it creates or updates, and writes each one
    atomically. One that fails is not written; the others are, and the exit
    code is 1. Without --auto-approve it asks on a terminal (deletes only
    after typing 'yes') and refuses otherwise. A saved plan is applied as it
    was made: --prune, --no-prune and --adopt are refused with it.
    """
    from connsync.commands.apply import ApplyOptions
    from connsync.commands.apply import apply as run
    from connsync.providers.verification import verifier_for
    from connsync.validate.policy_check import with_online_rules

    json_errors("apply", fmt)
    options = ApplyOptions(planfile, prune, adopt, auto_approve, skip_verify, max_deletes, lock_timeout,
                           allow_embedded_store, destroy)
    if skip_verify and require_verified:
        raise UsageError("--skip-verify and --require-verified contradict each other")
    config = with_online_rules(_with_policies(_requiring_verified(app.config, require_verified), policies),
                               "applied")
    return run(config, (), options, verifier=verifier_for(config.verify), fmt=fmt, style=app.style)


@cli.command(short_help="Rotate AWS, Azure and GCP keys: new key in the file, then retire the old one.")
@global_options
@click.argument("names", nargs=-1)
@click.option("--older-than", type=click.IntRange(min=0), metavar="DAYS",
              help="Rotate every connection (AWS, GCP, Azure) whose key is more than DAYS days old, as its "
              "provider says; one whose age cannot be known is listed with why.")
@click.option("--finish", is_flag=True,
              help="Retire the old key once the store holds the new one (AWS: deactivate, GCP: disable, "
              "Azure: remove).")
@click.option("--delete", is_flag=True,
              help="With --finish: delete the old key once it is inactive and unused since.")
@click.option("--apply", "apply_", is_flag=True,
              help="Local mode: also store the new key (verified) and deactivate the old one, now.")
@click.option("--auto-approve", is_flag=True, help="With --apply: do not ask for confirmation.")
@click.option("--delete-inactive", is_flag=True,
              help="If the user already has two keys, delete the second one when it is inactive.")
@click.option("--admin-profile", metavar="PROFILE",
              help="Make the IAM calls with this AWS profile instead of the connection's own key.")
@click.option("--admin-env", is_flag=True,
              help="Make the IAM calls with the standard AWS environment (AWS_ACCESS_KEY_ID, ...).")
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0), default=60, show_default=True,
              metavar="SECONDS", help="How long to wait for AWS to accept the new key.")
@click.option("--dry-run", is_flag=True, help="Show the steps; change nothing.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=60, show_default=True,
              metavar="SECONDS")
@click.option("--exposed", is_flag=True,
              help="Incident runbook: the arguments are exposed key ids (AWS access key ids, GCP "
              "private_key_ids, Azure client secret ids); contain each and replace it everywhere it is held "
              "(admin identity; the exposed key signs nothing).")
@click.option("--detach-quarantine", is_flag=True,
              help="With --exposed: detach AWS's AWSCompromisedKeyQuarantine* policy from the user at "
              "the end.")
@click.option("--expires-in-days", type=click.IntRange(min=1, max=730), default=180, show_default=True,
              metavar="DAYS", help="Azure: how long a new client secret is valid.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@pass_app
def rotate(app: App, names: tuple[str, ...], older_than: int | None, finish: bool, delete: bool,
           apply_: bool, auto_approve: bool, delete_inactive: bool, admin_profile: str | None,
           admin_env: bool, wait_seconds: float, dry_run: bool, lock_timeout: float, exposed: bool,
           detach_quarantine: bool, expires_in_days: int, fmt: str) -> int:
    """Rotate the AWS access key of each connection NAME, the way AWS documents it, made safe.

    Finds the IAM user behind the key (root and temporary keys are refused),
    creates a second key, waits until AWS accepts it, and writes it into the
    file through sops, keeping every other field and comment. The old key
    stays active. GitOps (default): commit, let the apply job store the new
    key, then 'rotate --finish NAME' deactivates the old key, refusing while
    the store still holds it; 'rotate --finish --delete NAME' deletes it once
    unused since. --apply does it all now, against the store. Every step is
    in the store's audit log. The IAM calls are signed with the connection's
    own key (see the README's least-privilege policy) unless --admin-profile
    or --admin-env is given.

    A GCP connection rotates the same way through the IAM API: a new
    service-account key (serviceAccounts.keys.create) in the file, the old
    one disabled by --finish and deleted by --finish --delete; --admin-env
    signs with the environment's Google credentials (google.auth.default).
    An Azure connection gets a new client secret (Microsoft Graph addPassword,
    valid --expires-in-days), and --finish removes the app's other secrets
    (removePassword); --admin-env signs with AZURE_TENANT_ID/AZURE_CLIENT_ID/
    AZURE_CLIENT_SECRET.

    --exposed KEY_ID...: a key was leaked. Finds every file and store record
    (all workspaces) holding it, deactivates it first, creates a new key for
    the same user, writes it into every file (and with --apply the store), and
    records an 'exposed' audit entry. The IAM calls use --admin-profile,
    --admin-env or the standard AWS chain, never the exposed key. A GCP
    service-account key id (private_key_id, 40 hex digits) is contained in
    Google's order instead: a new key written everywhere (and stored), then
    the exposed key disabled, signed with the environment's Google
    credentials. An Azure client secret id (Graph's keyId, a GUID): its
    holders are found through Graph with the environment's administrator app
    (AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET); a new secret is
    added and written everywhere (and stored), then the exposed secret is
    removed in the same command (Azure secrets cannot be disabled).
    """
    from connsync.commands.rotate import RotateCommand
    from connsync.commands.rotate import rotate as run

    json_errors("rotate", fmt)
    command = RotateCommand(names, older_than, finish, delete, apply_, auto_approve, delete_inactive,
                            admin_profile, admin_env, wait_seconds, dry_run, lock_timeout, exposed,
                            detach_quarantine, expires_in_days)
    return run(app.config, command, fmt=fmt, style=app.style)


@cli.command(name="list", short_help="List what the store holds (never secrets).")
@global_options
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@pass_app
def list_(app: App, fmt: str) -> int:
    """List the connections the store holds in this workspace (never secrets)."""
    from connsync.commands.listing import list_connections

    json_errors("list", fmt)
    return list_connections(app.config, fmt=fmt)


@cli.command(short_help="Show who wrote what to the store, and when.")
@global_options
@click.argument("names", nargs=-1)
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@pass_app
def audit(app: App, names: tuple[str, ...], fmt: str) -> int:
    """Show the store's audit trail for this workspace, oldest first: each write's action, versions,
    actor, git revision and source file (never a secret). NAMES narrows it to those connections.

    The Secrets Manager store keeps the last entries of each record (as many as fit its metadata)
    and loses a record's entries when its recovery window ends; AWS CloudTrail has every call.
    """
    from connsync.commands.audit import audit as show_audit

    json_errors("audit", fmt)
    return show_audit(app.config, names, fmt=fmt)


@cli.command(short_help="Show a saved plan file.")
@global_options
@click.argument("planfile")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True)
@pass_app
def show(app: App, planfile: str, fmt: str) -> int:
    """Show the plan saved in PLANFILE by 'plan --out', as plan prints it.

    Reads only the file: no key, no store. Whether the plan is still fresh
    and unedited is checked by 'apply PLANFILE'.
    """
    from connsync.commands.show import show as run

    json_errors("show", fmt)
    return run(planfile, fmt=fmt, style=app.style)


@cli.command(name="import", short_help="Turn store records into encrypted files.")
@global_options
@click.argument("names", nargs=-1)
@click.option("--all", "all_records", is_flag=True, help="Import every record not yet managed.")
@click.option("--dir", "directory", metavar="DIR", help="Where to write (default: connections/).")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=60, show_default=True,
              metavar="SECONDS")
@pass_app
def import_(app: App, names: tuple[str, ...], all_records: bool, directory: str | None,
            lock_timeout: float) -> int:
    """Write store records (made in the UI) as encrypted connection files.

    The records become managed by connsync, so the next plan shows no changes
    for them.
    """
    from connsync.commands.import_ import import_connections

    return import_connections(app.config, names, all_records=all_records, directory=directory,
                              lock_timeout=lock_timeout, style=app.style)


@cli.group(short_help="Work with whole stores: copy a workspace from one to another.")
def store() -> None:
    """Work with whole stores."""


@store.command(name="copy", short_help="Copy a workspace between stores (e.g. SQLite to PostgreSQL).")
@click.argument("from_url", metavar="FROM_URL")
@click.argument("to_url", metavar="TO_URL")
@click.option("--replace", "overwrite", is_flag=True,
              help="Overwrite the workspace in TO_URL if it already holds records.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=60, show_default=True,
              metavar="SECONDS", help="How long to wait for each store's workspace lock.")
@click.option("--from-key-env", metavar="VAR",
              help="Environment variable with FROM_URL's store key, when it is not CONNSYNC_STORE_KEY.")
@click.option("--to-key-env", metavar="VAR",
              help="Environment variable with TO_URL's store key, when it is not CONNSYNC_STORE_KEY.")
@pass_app
def store_copy(app: App, from_url: str, to_url: str, overwrite: bool, lock_timeout: float,
               from_key_env: str | None, to_key_env: str | None) -> int:
    """Copy the workspace's records, versions, managed flags and audit from FROM_URL to TO_URL.

    Holds both stores' workspace locks while it copies. Secrets are opened with
    FROM_URL's key and sealed again with TO_URL's; fingerprints are made anew
    under TO_URL's salt. Refuses a target that already holds records unless
    --replace. From a laptop's store (which has its key file) to the team's:

      CONNSYNC_STORE_KEY=... connsync store copy sqlite:.connsync/store.db \
        postgresql://connsync@db.example.com/platform
    """
    from connsync.commands.store_copy import copy_store

    return copy_store(from_url, to_url, app.config.workspace, overwrite=overwrite,
                      lock_timeout=lock_timeout, from_key_env=from_key_env, to_key_env=to_key_env)


@cli.command()
@global_options
@click.argument("lock_id")
@pass_app
def unlock(app: App, lock_id: str) -> int:
    """Break the workspace lock of an apply that is alive but stuck.

    A dead holder's lock needs no unlock: the next apply takes it over and
    says whose it was. LOCK_ID is in the message of the apply that waited for
    the lock ("held by USER@HOST (pid N) since TIME, lock id LOCK_ID"). Only
    do this when that holder should not write: the lock is what stops two
    applies from interleaving.
    """
    from connsync.commands.unlock import unlock as run

    return run(app.config, lock_id)


def _json_requested(argv: list[str]) -> str | None:
    """The command, when ARGV asks it for --format json: click's own usage errors, raised before the
    command runs, then come out in the JSON envelope like every other error."""
    asked = "--format=json" in argv or ("--format", "json") in itertools.pairwise(argv)
    command = next((a for a in argv if a in cli.commands), None)
    return command if asked and command in render.JSON_COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    # Each run decides for itself (tests run many); a usage error under --format json is JSON too.
    args = list(argv if argv is not None else sys.argv[1:])
    json_errors_for = render.json_command.set(_json_requested(args))
    try:
        with error_handler(verbose) as outcome:
            result: Any = cli.main(args=list(argv) if argv is not None else None,
                                   prog_name="connsync", standalone_mode=False)
            outcome.code = result if isinstance(result, int) else 0
    finally:
        render.json_command.reset(json_errors_for)
    return outcome.code


if __name__ == "__main__":
    raise SystemExit(main())
