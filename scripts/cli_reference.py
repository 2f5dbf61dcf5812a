"""Write docs/cli.md from the CLI's own --help (the reference is generated, never hand-kept).

    python scripts/cli_reference.py           # rewrite docs/cli.md
    python scripts/cli_reference.py --check   # exit 1 if it is out of date (the tests do this)
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from connsync.cli import cli

TARGET = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def reference() -> str:
    parts = ["# connsync command reference", "",
             "Generated from `--help` by `scripts/cli_reference.py`; do not edit by hand.", ""]
    root = click.Context(cli, info_name="connsync", terminal_width=100, max_content_width=100,
                         help_option_names=["-h", "--help"])
    sections = [("connsync", root.get_help())]

    def add(group: click.Group, parent: click.Context) -> None:
        for name in group.list_commands(parent):
            command = group.commands[name]
            context = click.Context(command, info_name=name, parent=parent, terminal_width=100,
                                    max_content_width=100, help_option_names=["-h", "--help"])
            sections.append((context.command_path, context.get_help()))
            if isinstance(command, click.Group):
                add(command, context)

    add(cli, root)
    for title, text in sections:
        parts += [f"## {title}", "", "```", text.rstrip(), "```", ""]
    return "\n".join(parts)


def main() -> int:
    text = reference()
    if "--check" in sys.argv[1:]:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
