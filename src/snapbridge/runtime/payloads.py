"""What a webhook payload must be for the store to keep it and the deriver to read it back.

A body can parse and still be unstorable or unreadable later: Python's JSON reader accepts NaN and Infinity and
lone surrogates ("\\ud800"), which UTF-8 cannot encode, and a deeply nested body commits but overflows the stack
when it is read back. Accepting such a body would answer 200 for an event that fails every later step (and on
PostgreSQL, fails the group commit it shares with good events), so the receiver refuses it up front with 400.
A NUL in a value is kept: JSON holds it, and an event whose NUL reaches a text column is rejected by the deriver,
visibly, rather than every body with one being refused here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, ValuesView

from snapbridge.errors import InvalidInput

__all__ = ["MAX_PAYLOAD_DEPTH", "check_storable"]

# Gumroad nests three levels at most (custom fields, card), the Snapshots API a few more; far beyond either.
MAX_PAYLOAD_DEPTH = 32


def check_storable(payload: Mapping[str, object]) -> None:
    """InvalidInput naming the first thing in a parsed body that cannot be stored as JSON text in UTF-8."""
    # Every webhook passes through here, so the common case (ASCII text in a flat object) costs one test each.
    pending: list[tuple[Mapping[str, object] | list[object], int]] = [(payload, 1)]
    while pending:  # not recursive: the depth is what is being checked
        container, depth = pending.pop()
        if depth > MAX_PAYLOAD_DEPTH:
            raise InvalidInput(f"webhook body is nested more than {MAX_PAYLOAD_DEPTH} levels deep")
        if isinstance(container, list):
            values: list[object] | ValuesView[object] = container
        else:
            for key in container:
                if not key.isascii():
                    _check_text(key)
            values = container.values()
        for value in values:
            if isinstance(value, str):
                if not value.isascii():
                    _check_text(value)
            elif isinstance(value, dict | list):
                pending.append((value, depth + 1))
            elif isinstance(value, float):
                _check_number(value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("webhook body holds text that is not valid Unicode (a lone surrogate such as "
                           "\\ud800)") from None


def _check_number(value: float) -> None:
    if math.isnan(value):
        raise InvalidInput("webhook body holds NaN, which is not a JSON number")
    if math.isinf(value):
        sign = "-" if value < 0 else ""
        raise InvalidInput(f"webhook body holds {sign}Infinity (or a number too large for a float), "
                           "which is not a JSON number")
