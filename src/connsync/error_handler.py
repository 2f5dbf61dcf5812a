"""Turn every way a command can end into an exit code and at most a few lines.

Expected failures (:class:`ConnsyncError`) print one line and a hint; ^C is
130; a bug prints one line pointing at a log file that holds the traceback
(the terminal gets the traceback only with ``-v``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import click

from connsync.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, ConnsyncError


def log_path() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "connsync" / "connsync.log"


class Outcome:
    code: int = 0


@contextlib.contextmanager
def error_handler(verbose: bool = False) -> Iterator[Outcome]:
    outcome = Outcome()
    try:
        yield outcome
    except ConnsyncError as exc:
        from connsync.render import text_lines  # messages quote names, paths and config values

        if not _json_error(exc):
            _explain_findings(exc)
        click.echo(f"connsync: error: {text_lines(exc.message)}", err=True)
        if exc.hint:
            click.echo(f"hint: {text_lines(exc.hint)}", err=True)
        outcome.code = exc.exit_code
    except click.exceptions.Exit as exc:
        outcome.code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        outcome.code = EXIT_INTERRUPTED
    except click.ClickException as exc:
        outcome.code = EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
        _json_error(ConnsyncError(exc.format_message(), hint=_usage_hint(exc)), outcome.code)
        exc.show()
    except KeyboardInterrupt:
        click.echo("Interrupted (^C).", err=True)
        outcome.code = EXIT_INTERRUPTED
    except Exception as exc:  # a bug: keep the traceback off the terminal
        where = _write_log(exc)
        _json_error(ConnsyncError(f"internal error ({type(exc).__name__}); details in {where}"),
                    EXIT_INTERNAL)
        click.echo(
            f"connsync: internal error ({type(exc).__name__}); details in {where}", err=True
        )
        if verbose:
            traceback.print_exception(exc, file=sys.stderr)
        outcome.code = EXIT_INTERNAL


def _json_error(exc: ConnsyncError, exit_code: int | None = None) -> bool:
    """With --format json the error is also the command's JSON output, on stdout (findings included)."""
    from connsync import render

    command = render.json_command.get()
    if command is not None:
        click.echo(render.error_envelope(command, exc, exit_code))
    return command is not None


def _usage_hint(exc: click.ClickException) -> str | None:
    ctx = getattr(exc, "ctx", None)
    return f"try '{ctx.command_path} --help'" if ctx is not None else None


def _explain_findings(exc: ConnsyncError) -> None:
    """An error about broken files (InvalidDeclarations) lists each finding above its one line."""
    from connsync import render

    findings = getattr(exc, "findings", None)
    if findings:
        click.echo(render.findings_text(findings, len({f.file for f in findings}), render.Style(False)),
                   err=True)


def _write_log(exc: BaseException) -> str:
    from connsync import __version__

    path = log_path()
    text = (
        f"connsync {__version__}, Python {sys.version.split()[0]}\n"
        + "".join(traceback.format_exception(exc))
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:
        return "(the log file could not be written; run with -v)"
    return str(path)
