"""Runs the snapbridge command line: `python -m snapbridge`."""

from snapbridge.cli.main import run

run()
