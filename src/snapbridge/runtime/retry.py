"""The retry decision, pure: after a failed attempt, when to try again (exponential backoff) or to give up.

Full jitter: the wait is a uniform draw in [0, ceiling], ceiling = base · 2^(attempt-1) capped at `max_delay`,
which spreads a burst of failures instead of synchronising them. A server's Retry-After is a floor, never
shortened. The horizon bounds the whole life of a job, counted from its first attempt: a retry that would
land past it gives up instead, and says whether the server's wait or our own backoff put it there. Anything
but `Retryable` and `StoreUnavailable` (auth, scope, validation, not found, bad input, a bug) gives up at
once: repeating the same request cannot fix it. Every wait is compared with the time left before a datetime is
built from it, so a Retry-After of any size (1e300, inf) gives up instead of overflowing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from snapbridge.errors import Retryable, StoreUnavailable
from snapbridge.http import MAX_RETRY_AFTER_SECONDS

__all__ = [
    "BASE_DELAY",
    "DEFAULT_HORIZON",
    "MAX_DELAY",
    "RETRY_AFTER_BOUND",
    "GiveUp",
    "Retry",
    "decide",
    "describe_span",
]

BASE_DELAY = timedelta(seconds=1)
MAX_DELAY = timedelta(hours=1)
DEFAULT_HORIZON = timedelta(days=3)
# http's bound on a parsed Retry-After: a wait at it may have been longer.
RETRY_AFTER_BOUND = MAX_RETRY_AFTER_SECONDS


@dataclass(frozen=True)
class Retry:
    """Try the same request again, with the same idempotency key, at `at`."""

    at: datetime


@dataclass(frozen=True)
class GiveUp:
    """Stop retrying; the job becomes a dead letter with this reason."""

    reason: str


def decide(
    error: BaseException,
    attempt: int,
    now: datetime,
    rand: Callable[[], float],
    *,
    horizon: timedelta = DEFAULT_HORIZON,
    first_attempt_at: datetime | None = None,
    base_delay: timedelta = BASE_DELAY,
    max_delay: timedelta = MAX_DELAY,
) -> Retry | GiveUp:
    """What to do after attempt number `attempt` (1 for the first) failed with `error` at `now`.

    `rand` returns a float in [0, 1); `first_attempt_at` (default `now`) is when the job was first tried.
    """
    if now.tzinfo is None or (first_attempt_at is not None and first_attempt_at.tzinfo is None):
        raise ValueError("datetimes must be timezone-aware")
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    # Our own store failing (a lost database connection, SQLite locked past its timeout) is an outage like a 503.
    if not isinstance(error, Retryable | StoreUnavailable):
        return GiveUp(reason=str(error) or type(error).__name__)
    # Cap the exponent before raising 2 to it: attempt 5000 must not overflow a float.
    ceiling = min(max_delay.total_seconds(), base_delay.total_seconds() * 2.0 ** min(attempt - 1, 60))
    draw = min(max(rand(), 0.0), 1.0)
    asked = error.retry_after if isinstance(error, Retryable) else None
    if asked is not None and not asked >= 0:  # NaN or negative: no floor at all
        asked = None
    delay = max(asked or 0.0, draw * ceiling)
    left = _seconds_left(first_attempt_at or now, horizon, now)
    if delay <= left:  # bounded by the horizon, so the timedelta below cannot overflow
        return Retry(at=now + timedelta(seconds=delay))
    tried = f"gave up after {attempt} attempt{'s' if attempt != 1 else ''}"
    if asked is not None and asked >= draw * ceiling:
        return GiveUp(reason=f"{tried}: the API asked to wait {_asked_until(now, asked)}, past the retry "
                             f"horizon of {describe_span(horizon)} (last error: {error})")
    return GiveUp(reason=f"{tried}: the retry horizon of {describe_span(horizon)} has passed "
                         f"(last error: {error})")


def describe_span(span: timedelta) -> str:
    """A duration for a reason: "3 days", "2 h", "90 s"."""
    seconds = span.total_seconds()
    if seconds >= 86_400:
        return f"{round(seconds / 86_400, 2):g} day{'s' if seconds != 86_400 else ''}"
    if seconds >= 3_600:
        return f"{round(seconds / 3_600, 2):g} h"
    return f"{round(seconds, 3):g} s"


def _seconds_left(first: datetime, horizon: timedelta, now: datetime) -> float:
    """Seconds from `now` to the end of the horizon (negative once past); a horizon that ends past the last
    datetime ends a day before it, so that `now` plus the time left is always a datetime."""
    try:
        return (first + horizon - now).total_seconds()
    except OverflowError:
        return (datetime.max.replace(tzinfo=UTC) - now).total_seconds() - 86_400


def _asked_until(now: datetime, seconds: float) -> str:
    """A server's wait for a reason: "10 days (until <time>)"; a wait at the parser's bound may be longer."""
    if seconds >= RETRY_AFTER_BOUND:
        return f"{describe_span(timedelta(seconds=RETRY_AFTER_BOUND))} or more"
    try:
        until = (now + timedelta(seconds=seconds)).astimezone(UTC).isoformat(timespec="seconds")
    except (OverflowError, ValueError):  # not from parse_retry_after (bounded): too far for a datetime
        return f"{seconds:g} s"
    return f"{describe_span(timedelta(seconds=seconds))} (until {until})"
