"""Entry point of the `snapbridge` command: `main(argv) -> int`, exit codes 0 ok, 1 failure, 2 usage."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Sequence

import click

from snapbridge import __version__
from snapbridge.cli.logs import configure_logging
from snapbridge.errors import InvalidInput, SnapbridgeError

__all__ = ["cli", "main", "run"]


# Each command's module is imported only when that command runs (or help lists it): the modules behind `serve`
# and `demo` pull in the whole service, which would cost every short command (`runs`, `hooks`) about a second.
_COMMANDS = {
    "catalog": "snapbridge.cli.catalog:catalog_command",
    "connect": "snapbridge.cli.connections:connect_group",
    "connections": "snapbridge.cli.connections:connections_group",
    "dead-letters": "snapbridge.cli.history:dead_letters_command",
    "demo": "snapbridge.cli.demo:demo_command",
    "hooks": "snapbridge.cli.hooks:hooks_group",
    "replay": "snapbridge.cli.history:replay_command",
    "run": "snapbridge.cli.workflows:run_command",
    "runs": "snapbridge.cli.history:runs_command",
    "sandbox": "snapbridge.cli.sandbox:sandbox_command",
    "serve": "snapbridge.cli.service:serve_command",
    "sync": "snapbridge.cli.service:sync_group",
    "templates": "snapbridge.cli.workflows:templates_group",
    "users": "snapbridge.cli.users:users_group",
    "worker": "snapbridge.cli.service:worker_command",
    "workflows": "snapbridge.cli.workflows:workflows_group",
}


class _LazyGroup(click.Group):
    """A group whose subcommands are named here and imported from their modules on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            module, _, attribute = _COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command) and command.name == cmd_name, cmd_name
            self.add_command(command)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="snapbridge")
def cli() -> None:
    """Keep Gumroad and the Snapshots API in sync without writing code."""


# How SQLAlchemy starts its messages: "(psycopg.OperationalError) connection failed: ...".
_SQLALCHEMY_TAG = re.compile(r"^\([\w.]+\) ")


def _cause_text(exc: BaseException) -> str:
    text = str(exc).strip()
    if not isinstance(exc, SnapbridgeError) and _SQLALCHEMY_TAG.match(text):
        # The database's reason only: SQLAlchemy's next lines quote the statement, its values and a link.
        text = _SQLALCHEMY_TAG.sub("", text.splitlines()[0])
    return text or type(exc).__name__


def _causes(exc: BaseException) -> str:
    """The message and each cause it does not already say, joined with ': '."""
    message = str(exc) or type(exc).__name__
    seen = {id(exc)}
    cause = exc.__cause__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        text = _cause_text(cause)
        # "cannot migrate the database: OperationalError" names the type of the cause that follows: say it once.
        message = message.removesuffix(f": {type(cause).__name__}")
        if text not in message:  # a wrapper often repeats its cause ("All connection attempts failed" thrice)
            message = f"{message}: {text}"
        cause = cause.__cause__
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors become one readable line and an exit code, never a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    try:
        result = cli.main(args=args, prog_name="snapbridge", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # a group run without a command: its help
        return 2
    except click.ClickException as exc:
        # One line, like every other error (click would add the usage and a hint: three more lines).
        click.echo(f"error: {exc.format_message().rstrip('.')}", err=True)
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except InvalidInput as exc:
        click.echo(f"error: {_causes(exc)}", err=True)
        return 2
    except SnapbridgeError as exc:
        click.echo(f"error: {_causes(exc)}", err=True)
        return 1
    except OSError as exc:
        # A data directory, key file or database folder the system refuses (a file in the way, no permission).
        where = f": {exc.filename}" if exc.filename is not None else ""
        click.echo(f"error: {exc.strerror or _cause_text(exc)}{where}", err=True)
        return 1
    return result if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())
