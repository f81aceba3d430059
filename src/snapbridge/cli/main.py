"""Entry point of the `snapbridge` command: `main(argv) -> int`, exit codes 0 ok, 1 failure, 2 usage."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from snapbridge import __version__
from snapbridge.cli.catalog import catalog_command
from snapbridge.cli.connections import connect_group, connections_group
from snapbridge.cli.demo import demo_command
from snapbridge.cli.history import dead_letters_command, replay_command, runs_command
from snapbridge.cli.hooks import hooks_group
from snapbridge.cli.logs import configure_logging
from snapbridge.cli.sandbox import sandbox_command
from snapbridge.cli.service import serve_command, sync_group, worker_command
from snapbridge.cli.users import users_group
from snapbridge.cli.workflows import run_command, templates_group, workflows_group
from snapbridge.errors import InvalidInput, SnapbridgeError

__all__ = ["cli", "main", "run"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="snapbridge")
def cli() -> None:
    """Keep Gumroad and the Snapshots API in sync without writing code."""


cli.add_command(catalog_command)
cli.add_command(connect_group)
cli.add_command(connections_group)
cli.add_command(sandbox_command)
for command in (demo_command, serve_command, worker_command, sync_group, hooks_group, runs_command,
                dead_letters_command, replay_command):
    cli.add_command(command)
cli.add_command(templates_group)
cli.add_command(workflows_group)
cli.add_command(run_command)
cli.add_command(users_group)


def _causes(exc: BaseException) -> str:
    parts = [str(exc) or type(exc).__name__]
    seen = {id(exc)}
    cause = exc.__cause__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        parts.append(str(cause) or type(cause).__name__)
        cause = cause.__cause__
    return ": ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors become one readable line and an exit code, never a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    try:
        result = cli.main(args=args, prog_name="snapbridge", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except InvalidInput as exc:
        click.echo(f"error: {_causes(exc)}", err=True)
        return 2
    except SnapbridgeError as exc:
        click.echo(f"error: {_causes(exc)}", err=True)
        return 1
    return result if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())
