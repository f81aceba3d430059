"""Runs the snapbridge command line: `python -m snapbridge`."""

from snapbridge.cli import run

run()
