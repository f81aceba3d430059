"""The Secret type: a credential that never shows its value in repr, str, f-strings or logs."""

from __future__ import annotations

import hmac
from typing import NoReturn

__all__ = ["Secret"]

_MASK = "Secret('****')"


class Secret:
    """A credential. Compare and hash it freely; only the vault and a connector's auth step reveal it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret takes a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The plain value; call only where it must go on the wire or into the vault."""
        return self._value

    def __repr__(self) -> str:
        return _MASK

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # Constant time, so comparing a guessed webhook secret leaks nothing through timing.
        return hmac.compare_digest(self._value.encode("utf-8"), other._value.encode("utf-8"))

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self  # immutable, so sharing is a copy

    def __reduce__(self) -> NoReturn:
        # Pickling would write the value somewhere we do not control (a cache, a queue, a crash dump).
        raise TypeError("a Secret cannot be pickled; store it through the vault")
