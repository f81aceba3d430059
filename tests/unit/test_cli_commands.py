"""The command table: every command is found by its name, and a short command loads only what it uses."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from snapbridge.cli.main import _COMMANDS, cli, main


@pytest.mark.parametrize("name", sorted(_COMMANDS))
def test_each_listed_command_loads_under_its_own_name(name: str) -> None:
    with click.Context(cli) as ctx:
        command = cli.get_command(ctx, name)
    assert command is not None and command.name == name


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(_COMMANDS)


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    assert "No such command 'no-such-command'" in capsys.readouterr().err


def test_a_short_command_does_not_load_the_service() -> None:
    # In a fresh interpreter: this one has imported everything already.
    probe = ("import sys; from snapbridge.cli.main import main; main(['runs', '--help']); "
             "print(sorted(m for m in ('snapbridge.runtime', 'snapbridge.web', 'snapbridge.sandbox') "
             "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
