"""Logging for the command line: one line per event on stderr, every record passed through redaction."""

from __future__ import annotations

import logging
import os

from snapbridge.security import RedactingFilter, Secret

__all__ = ["configure_logging", "register_secret"]


def _filter() -> RedactingFilter | None:
    for handler in logging.getLogger().handlers:
        for f in handler.filters:
            if isinstance(f, RedactingFilter):
                return f
    return None


def configure_logging() -> None:
    """SNAPBRIDGE_LOG_LEVEL (default WARNING) sets the level; safe to call twice."""
    if _filter() is not None:
        return
    handler = logging.StreamHandler()
    # The process id: `serve --receivers N` runs N processes into one log.
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("SNAPBRIDGE_LOG_LEVEL", "WARNING").upper()
    root.setLevel(level if level in logging.getLevelNamesMapping() else "WARNING")


def register_secret(secret: Secret) -> None:
    """From now on this exact value is removed from every log line, whatever its shape around it."""
    found = _filter()
    if found is not None:
        found.register(secret)
