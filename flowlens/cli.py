"""The `flowlens` command line: a click group whose commands live in flowlens/commands/.

Data goes to stdout, diagnostics to stderr. Library errors become one line,
`Error: FILE: problem`, and exit code 1; bad arguments exit 2 through click.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from .errors import FlowlensError

__all__ = ["main", "cli", "all_commands"]

# command modules, each defining a click command of the same name
COMMANDS = [
    "flows",
    "ladder",
    "timeline",
    "states",
    "rtt",
    "batch",
    "anomalies",
    "report",
    "plot",
    "extract",
]


class _Group(click.Group):
    """Imports a command's module only when that command runs (startup is part of every run)."""

    def list_commands(self, ctx: click.Context | None) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context | None, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            module = importlib.import_module(f".commands.{name}", __package__)
            self.add_command(getattr(module, name.replace("-", "_")))
        return self.commands.get(name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FlowlensError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
        except BrokenPipeError:
            # `flowlens flows big.pcap | head`: the reader left; that is not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except KeyboardInterrupt:
            click.echo("Interrupted", err=True)
            ctx.exit(130)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import version

    from .compiled import describe  # only here: it costs startup time every command would pay

    click.echo(f"{ctx.find_root().info_name} {version('flowlens')}, {describe()}")
    ctx.exit()


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version, and whether the compiled hot path is in use, and exit.",
)
def cli() -> None:
    """Tell the life story of every connection in a tcpdump capture.

    \b
    Example:
      flowlens flows capture.pcap
    """


def all_commands() -> dict[str, click.Command]:
    """Every command, loaded (for tests and tools that walk them all)."""
    commands = {name: cli.get_command(None, name) for name in cli.list_commands(None)}
    return {name: cmd for name, cmd in commands.items() if cmd is not None}


def main() -> None:
    cli(prog_name="flowlens")
