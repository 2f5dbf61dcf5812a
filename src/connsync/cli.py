"""The command line: options -> a typed call -> an exit code. No logic lives here."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from connsync import __version__, render
from connsync.config import Config, load_config
from connsync.error_handler import error_handler

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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", metavar="PATH",
              help="connsync.yaml to use (env CONNSYNC_CONFIG; default: found in . or a parent).")
@click.option("--store", metavar="URL",
              help="Store URL, e.g. sqlite:.connsync/store.db (env CONNSYNC_STORE).")
@click.option("--workspace", metavar="NAME",
              help="Workspace in the store (env CONNSYNC_WORKSPACE; default: default).")
@click.option("--no-color", is_flag=True, help="No colour, even on a terminal (also NO_COLOR).")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(__version__, "--version", prog_name="connsync")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, store: str | None, workspace: str | None,
        no_color: bool, verbose: bool) -> None:
    """Manage a platform's cloud connections as code.

    Each connection is a YAML file under connections/, validated by its
    provider's JSON Schema, with secret fields encrypted by SOPS. connsync
    validates the files, verifies the credentials, and makes the platform's
    store match them: plan, then apply.
    """
    color = not no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()
    ctx.obj = App(config_path, store, workspace, color, verbose)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text",
              show_default=True, help="github prints ::error annotations for pull requests.")
@pass_app
def validate(app: App, paths: tuple[str, ...], fmt: str) -> int:
    """Check connection files offline: YAML, schema, and rules.

    PATHS are files or directories (default: the configured connections/).
    Needs no keys and no network, so it fits pre-commit and every pull request.
    Exit 0 when valid, 1 when any finding is an error.
    """
    from connsync.commands.validate import validate as run

    return run(paths, app.config, fmt=fmt, style=app.style)


@cli.command()
@click.argument("provider", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the providers and their secret fields.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
def schema(provider: str | None, list_only: bool, fmt: str) -> int:
    """Print the JSON Schema of PROVIDER (default: the connection envelope)."""
    from connsync.commands.schema import show_schema

    return show_schema(provider, list_only=list_only, fmt=fmt)


@cli.command()
@click.option("--age-recipient", "age_recipients", multiple=True, metavar="AGE_PUBLIC_KEY",
              help="Encrypt secrets to this age public key (repeatable).")
@click.option("--kms", "kms_arns", multiple=True, metavar="ARN",
              help="Encrypt secrets with this AWS KMS key (repeatable).")
@click.option("--generate-age-key", is_flag=True,
              help="Create an age key in sops's default location if none exists, and use it.")
@click.option("--force", is_flag=True, help="Overwrite existing connsync.yaml and .sops.yaml.")
def init(age_recipients: tuple[str, ...], kms_arns: tuple[str, ...], generate_age_key: bool,
         force: bool) -> int:
    """Start a connections repository in the current directory.

    Writes connsync.yaml, connections/, schemas/ (for editors), a .sops.yaml
    whose encrypted_regex covers every schema's secret fields, with
    mac_only_encrypted, and a .gitignore entry for .connsync/.
    """
    from pathlib import Path

    from connsync.commands.init import InitOptions
    from connsync.commands.init import init as run

    return run(Path.cwd(), InitOptions(age_recipients, kms_arns, generate_age_key, force))


@cli.command()
@click.argument("provider")
@click.option("--name", required=True, help="The connection's Name, unique in the workspace.")
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
def new(app: App, provider: str, name: str, description: str | None, labels: tuple[str, ...],
        sets: tuple[str, ...], secret_envs: tuple[str, ...], file: str | None, no_input: bool,
        force: bool) -> int:
    """Write one new connection file, its secrets encrypted with SOPS.

    Missing fields are prompted for on a terminal (secrets hidden). Secrets are
    never taken from the command line. The file is checked with the rules of
    validate before it is written, and plaintext never touches the disk.

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


def main(argv: Sequence[str] | None = None) -> int:
    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    with error_handler(verbose) as outcome:
        result: Any = cli.main(args=list(argv) if argv is not None else None,
                               prog_name="connsync", standalone_mode=False)
        outcome.code = result if isinstance(result, int) else 0
    return outcome.code


if __name__ == "__main__":
    raise SystemExit(main())
