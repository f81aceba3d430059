"""Tokens and rate limits of the HighLevel sandbox: who may call, and how often (snapshots-api.md §1, §5)."""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from snapbridge.catalog import TokenKind
from snapbridge.sandbox.highlevel.call import Token

__all__ = ["Quota", "RateLimiter", "TokenRegistry"]

BURST_LIMIT = 100  # requests per window, per (token, resource)
BURST_WINDOW_SECONDS = 10.0
DAILY_LIMIT = 200_000


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


class TokenRegistry:
    """The tokens the sandbox accepts; thread-safe because tests mint tokens from outside the server loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}

    def create(
        self, kind: TokenKind, scopes: Iterable[str], company_id: str, location_id: str | None
    ) -> Token:
        # "pit-": the prefix of a Private Integration Token, the static kind a sandbox hands out.
        value = f"pit-{secrets.token_hex(16)}"
        token = Token(value, kind, frozenset(scopes), company_id, location_id, fingerprint(value))
        with self._lock:
            self._tokens[value] = token
        return token

    def find(self, value: str) -> Token | None:
        with self._lock:
            return self._tokens.get(value)

    def revoke(self, value: str) -> None:
        with self._lock:
            self._tokens.pop(value, None)


@dataclass(frozen=True)
class Quota:
    """One answer of the limiter: the five header values, and how long to wait when refused."""

    allowed: bool
    limit: int
    remaining: int
    interval_ms: int
    daily_limit: int
    daily_remaining: int
    retry_after: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Max": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Interval-Milliseconds": str(self.interval_ms),
            "X-RateLimit-Limit-Daily": str(self.daily_limit),
            "X-RateLimit-Daily-Remaining": str(self.daily_remaining),
        }


class RateLimiter:
    """A fixed burst window and a daily count per (token, resource); windows scale with the time factor."""

    def __init__(self, time_factor: float, burst: int = BURST_LIMIT, daily: int = DAILY_LIMIT) -> None:
        self.time_factor = time_factor
        self.burst = burst
        self.daily = daily
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}
        self._days: dict[tuple[str, str], tuple[float, int]] = {}

    def set_limits(self, burst: int, daily: int) -> None:
        self.burst, self.daily = burst, daily
        self._windows.clear()
        self._days.clear()

    def take(self, token: str, resource: str, now: float) -> Quota:
        key = (token, resource)
        window = BURST_WINDOW_SECONDS * self.time_factor
        day = 86_400.0 * self.time_factor
        started, used = self._windows.get(key, (now, 0))
        if now - started >= window:
            started, used = now, 0
        day_started, day_used = self._days.get(key, (now, 0))
        if now - day_started >= day:
            day_started, day_used = now, 0
        allowed = used < self.burst and day_used < self.daily
        if allowed:
            used, day_used = used + 1, day_used + 1
        self._windows[key] = (started, used)
        self._days[key] = (day_started, day_used)
        wait = (started + window - now) if used >= self.burst else (day_started + day - now)
        return Quota(
            allowed=allowed,
            limit=self.burst,
            remaining=max(0, self.burst - used),
            interval_ms=int(window * 1000),
            daily_limit=self.daily,
            daily_remaining=max(0, self.daily - day_used),
            retry_after=max(1, math.ceil(wait)) if not allowed else 0,
        )
