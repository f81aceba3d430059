"""Rate-limit state read from the five X-RateLimit-* headers the Snapshots API sends on every response."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

__all__ = ["RateLimitState", "header"]

_HEADERS = {
    "limit": "X-RateLimit-Max",
    "remaining": "X-RateLimit-Remaining",
    "interval_ms": "X-RateLimit-Interval-Milliseconds",
    "daily_limit": "X-RateLimit-Limit-Daily",
    "daily_remaining": "X-RateLimit-Daily-Remaining",
}


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value whatever the case of its name (a plain dict is case-sensitive, httpx.Headers not)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    # Only plain non-negative integers; anything else is treated as absent rather than guessed at.
    return int(value) if value.isascii() and value.isdigit() else None


@dataclass(frozen=True)
class RateLimitState:
    """The limits the server reported on one response; a field is None when its header was absent or bad."""

    limit: int | None
    remaining: int | None
    interval_ms: int | None
    daily_limit: int | None
    daily_remaining: int | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimitState | None:
        """The state in these headers, or None when none of the five is present and readable."""
        values = {name: _count(header(headers, wire)) for name, wire in _HEADERS.items()}
        if all(value is None for value in values.values()):
            return None
        return cls(**values)

    @property
    def exhausted(self) -> bool:
        """True when the burst window or the daily quota has nothing left."""
        return self.remaining == 0 or self.daily_remaining == 0

    def as_dict(self) -> dict[str, int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
