"""Per-key rate limits of the Snapshots sandbox: a sliding burst window, a daily quota, the five headers."""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["DAY_SECONDS", "Decision", "Limits", "RateLimiter", "format_retry_after"]

DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class Limits:
    """One key's plan, with both windows already scaled by the sandbox's time factor."""

    burst_limit: int
    window_seconds: float
    daily_limit: int
    day_seconds: float

    @classmethod
    def scaled(cls, burst_limit: int, burst_window_ms: int, daily_limit: int, time_factor: float) -> Limits:
        return cls(burst_limit, burst_window_ms / 1000 * time_factor, daily_limit, DAY_SECONDS * time_factor)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    daily_remaining: int
    retry_after: float  # seconds until a request would be allowed again; 0 when allowed
    limits: Limits

    def headers(self) -> tuple[tuple[str, str], ...]:
        """The five headers HighLevel sends on every response (snapshots-api.md §5)."""
        return (
            ("X-RateLimit-Max", str(self.limits.burst_limit)),
            ("X-RateLimit-Remaining", str(self.remaining)),
            # The real window is reported, so a client that waits it out is right at any time factor.
            ("X-RateLimit-Interval-Milliseconds", str(max(1, round(self.limits.window_seconds * 1000)))),
            ("X-RateLimit-Limit-Daily", str(self.limits.daily_limit)),
            ("X-RateLimit-Daily-Remaining", str(self.daily_remaining)),
        )

    def exhausted(self) -> Decision:
        """The same numbers as seen by a request refused by a 429 storm."""
        return Decision(False, 0, self.daily_remaining, self.retry_after, self.limits)


def format_retry_after(seconds: float, time_factor: float) -> str:
    """Whole seconds, rounded up, as RFC 9110 asks; fractional when time is scaled down (fast tests)."""
    if time_factor >= 1:
        return str(max(1, math.ceil(seconds)))
    return f"{max(seconds, 0.001):.3f}"


class RateLimiter:
    """Counts accepted requests per key. Refused (429) requests are not counted, so Retry-After is honest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}
        self._daily: dict[str, tuple[int, int]] = {}  # key -> (day number, requests that day)

    def _state(self, key: str, limits: Limits, mono: float, wall: float) -> tuple[deque[float], int, int]:
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= mono - limits.window_seconds:
            recent.popleft()
        day = math.floor(wall / limits.day_seconds)
        counted_day, count = self._daily.get(key, (day, 0))
        return recent, day, count if counted_day == day else 0

    def _decide(self, limits: Limits, recent: deque[float], day: int, count: int, mono: float, wall: float,
                allowed: bool) -> Decision:
        waits = [0.0]
        if len(recent) >= limits.burst_limit:
            waits.append(recent[0] + limits.window_seconds - mono)
        if count >= limits.daily_limit:
            waits.append((day + 1) * limits.day_seconds - wall)
        return Decision(
            allowed,
            max(0, limits.burst_limit - len(recent)),
            max(0, limits.daily_limit - count),
            max(waits),
            limits,
        )

    def peek(self, key: str, limits: Limits, mono: float, wall: float) -> Decision:
        """The headers for an answer that does not count (unknown route, injected fault, no valid key)."""
        with self._lock:
            recent, day, count = self._state(key, limits, mono, wall)
            full = len(recent) >= limits.burst_limit or count >= limits.daily_limit
            return self._decide(limits, recent, day, count, mono, wall, not full)

    def take(self, key: str, limits: Limits, mono: float, wall: float) -> Decision:
        """Count one request if both windows have room; otherwise refuse it with the time to wait."""
        with self._lock:
            recent, day, count = self._state(key, limits, mono, wall)
            if len(recent) >= limits.burst_limit or count >= limits.daily_limit:
                return self._decide(limits, recent, day, count, mono, wall, False)
            recent.append(mono)
            self._daily[key] = (day, count + 1)
            return self._decide(limits, recent, day, count + 1, mono, wall, True)

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()
            self._daily.clear()
