"""The `snapbridge` command line."""

from snapbridge.cli.main import main, run

__all__ = ["main", "run"]
