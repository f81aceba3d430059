"""The retry decision, pure: after a failed attempt, when to try again (exponential backoff) or to give up.

Full jitter: the wait is a uniform draw in [0, ceiling], ceiling = base · 2^(attempt-1) capped at `max_delay`,
which spreads a burst of failures instead of synchronising them. A server's Retry-After is a floor, never
shortened. The horizon bounds the whole life of a job, counted from its first attempt: a retry that would
land past it gives up instead. Anything but `Retryable` (auth, scope, validation, not found, bad input, a bug)
gives up at once: repeating the same request cannot fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from snapbridge.errors import Retryable

__all__ = [
    "BASE_DELAY",
    "DEFAULT_HORIZON",
    "MAX_DELAY",
    "GiveUp",
    "Retry",
    "decide",
]

BASE_DELAY = timedelta(seconds=1)
MAX_DELAY = timedelta(hours=1)
DEFAULT_HORIZON = timedelta(days=3)


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
    if not isinstance(error, Retryable):
        return GiveUp(reason=str(error) or type(error).__name__)
    # Cap the exponent before raising 2 to it: attempt 5000 must not overflow a float.
    ceiling = min(max_delay.total_seconds(), base_delay.total_seconds() * 2.0 ** min(attempt - 1, 60))
    draw = min(max(rand(), 0.0), 1.0)
    delay = max(error.retry_after or 0.0, draw * ceiling)
    at = now + timedelta(seconds=delay)
    deadline = (first_attempt_at or now) + horizon
    if at > deadline:
        days = horizon.total_seconds() / 86_400
        span = f"{days:g} days" if days >= 1 else f"{horizon.total_seconds():g} s"
        return GiveUp(reason=f"gave up after {attempt} attempts: the retry horizon of {span} has passed "
                             f"(last error: {error})")
    return Retry(at=at)
