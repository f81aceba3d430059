"""Server numbers of any size: a Retry-After bounded where it is parsed, a retry decision that never overflows a
datetime, and rate-limit headers too big for a float."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from snapbridge.errors import Retryable
from snapbridge.http import RateLimitState, error_for_status, parse_retry_after
from snapbridge.http.retry import MAX_RETRY_AFTER_SECONDS
from snapbridge.runtime.limiter import (
    DEFAULT_SHAPE,
    MAX_HEADER_COUNT,
    MAX_INTERVAL_MS,
    Bucket,
    MemoryLimiter,
    bounded_state,
    observe,
)
from snapbridge.runtime.retry import DEFAULT_HORIZON, RETRY_AFTER_BOUND, GiveUp, Retry, decide, describe_span

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def zero() -> float:
    return 0.0


def test_the_decision_knows_the_parsers_bound() -> None:
    assert RETRY_AFTER_BOUND == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize(
    "value",
    ["99999999999999", "9" * 400, "Fri, 31 Dec 9999 23:59:59 GMT", "Fri, 31 Dec 9999 23:59:59 -1400",
     "31536001"],
)
def test_parse_retry_after_is_bounded(value: str) -> None:
    assert parse_retry_after(value, NOW) == MAX_RETRY_AFTER_SECONDS


def test_parse_retry_after_keeps_a_wait_under_the_bound() -> None:
    assert parse_retry_after("864000", NOW) == 864_000.0
    assert parse_retry_after("31536000", NOW) == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("asked", [99999999999999.0, 1e300, math.inf, MAX_RETRY_AFTER_SECONDS])
def test_a_retry_after_past_any_datetime_gives_up_with_what_the_api_asked(asked: float) -> None:
    decision = decide(Retryable("Too many requests", retry_after=asked, status=429), 1, NOW, zero)
    assert isinstance(decision, GiveUp)
    assert decision.reason.startswith("gave up after 1 attempt: the API asked to wait ")
    assert "past the retry horizon of 3 days" in decision.reason and "has passed" not in decision.reason
    assert "Too many requests" in decision.reason
    if asked >= MAX_RETRY_AFTER_SECONDS:
        assert "365 days or more" in decision.reason


def test_a_far_retry_after_names_the_wait_and_when_it_ends() -> None:
    decision = decide(Retryable("slow down", retry_after=864_000.0, status=429), 2, NOW, zero,
                      first_attempt_at=NOW - timedelta(hours=1))
    assert isinstance(decision, GiveUp)
    assert decision.reason.startswith("gave up after 2 attempts: the API asked to wait 10 days "
                                      "(until 2025-03-11T12:00:00+00:00), past the retry horizon of 3 days")


def test_our_own_backoff_past_the_horizon_still_says_the_horizon_passed() -> None:
    decision = decide(Retryable("down", retry_after=1.0, status=503), 20, NOW, lambda: 1.0,
                      first_attempt_at=NOW - DEFAULT_HORIZON + timedelta(minutes=5))
    assert isinstance(decision, GiveUp)
    assert "the retry horizon of 3 days has passed" in decision.reason and "API asked" not in decision.reason


@pytest.mark.parametrize("asked", [math.nan, -5.0])
def test_an_unreadable_retry_after_is_no_floor(asked: float) -> None:
    decision = decide(Retryable("x", retry_after=asked), 1, NOW, lambda: 0.5)
    assert isinstance(decision, Retry) and decision.at == NOW + timedelta(seconds=0.5)


def test_an_endless_horizon_does_not_overflow() -> None:
    decision = decide(Retryable("x", retry_after=1e300), 1, NOW, zero, horizon=timedelta.max)
    assert isinstance(decision, GiveUp)
    decision = decide(Retryable("x", retry_after=MAX_RETRY_AFTER_SECONDS), 1, NOW, zero, horizon=timedelta.max)
    assert isinstance(decision, Retry) and decision.at == NOW + timedelta(seconds=MAX_RETRY_AFTER_SECONDS)


@pytest.mark.parametrize(
    ("span", "text"),
    [(timedelta(days=3), "3 days"), (timedelta(days=1), "1 day"), (timedelta(hours=1.5), "1.5 h"),
     (timedelta(seconds=90), "90 s"), (timedelta(days=10), "10 days")],
)
def test_describe_span(span: timedelta, text: str) -> None:
    assert describe_span(span) == text


# ---- rate-limit headers too big for a float ----------------------------------------------------------------


HUGE_COUNT = "9" * 400


@pytest.mark.parametrize(
    "headers",
    [
        {"X-RateLimit-Max": HUGE_COUNT, "X-RateLimit-Interval-Milliseconds": "10000"},
        {"X-RateLimit-Max": "100", "X-RateLimit-Interval-Milliseconds": HUGE_COUNT},
        {"X-RateLimit-Max": "100", "X-RateLimit-Interval-Milliseconds": "10000", "X-RateLimit-Remaining": HUGE_COUNT},
    ],
)
async def test_the_limiter_takes_headers_of_any_size(headers: dict[str, str]) -> None:
    state = RateLimitState.from_headers(headers)
    limiter = MemoryLimiter(clock=lambda: NOW)
    await limiter.observe("c", state)
    bucket = limiter.bucket("c")
    assert math.isfinite(bucket.refill_per_second) and bucket.refill_per_second > 0
    assert observe(Bucket.full(DEFAULT_SHAPE, NOW), state, NOW).tokens <= 1.0


def test_bounded_state_keeps_ordinary_headers_and_caps_the_rest() -> None:
    ordinary = RateLimitState(limit=100, remaining=7, interval_ms=10_000, daily_limit=200_000, daily_remaining=0)
    assert bounded_state(ordinary) == ordinary
    state = bounded_state(RateLimitState.from_headers({"X-RateLimit-Max": HUGE_COUNT,
                                                 "X-RateLimit-Interval-Milliseconds": HUGE_COUNT}))
    assert state is not None and state.limit == MAX_HEADER_COUNT and state.interval_ms == MAX_INTERVAL_MS
    assert bounded_state(None) is None


def test_a_429_with_a_huge_window_and_no_retry_after_is_bounded() -> None:
    error = error_for_status(429, "slow down", operation="op", excerpt="", now=NOW,
                             headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Interval-Milliseconds": HUGE_COUNT})
    assert isinstance(error, Retryable) and error.retry_after == MAX_RETRY_AFTER_SECONDS
