"""The pure retry decision as tables: backoff ceilings, jitter, Retry-After, the cap and the horizon."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from snapbridge.errors import (
    AuthFailed,
    Conflict,
    DeliveryError,
    InvalidInput,
    NotFound,
    Permanent,
    Retryable,
    ScopeMissing,
)
from snapbridge.runtime.retry import DEFAULT_HORIZON, MAX_DELAY, GiveUp, Retry, decide

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def fixed(value: float) -> Callable[[], float]:
    def rand() -> float:
        return value

    return rand


def seconds_after_now(decision: Retry | GiveUp) -> float:
    assert isinstance(decision, Retry), decision
    return (decision.at - NOW).total_seconds()


@pytest.mark.parametrize(
    ("attempt", "draw", "retry_after", "expected"),
    [
        (1, 0.0, None, 0.0),            # full jitter may come back at once
        (1, 0.5, None, 0.5),            # ceiling 1 s
        (2, 0.5, None, 1.0),            # ceiling 2 s
        (3, 0.999, None, 3.996),        # ceiling 4 s
        (11, 1.0, None, 1024.0),        # ceiling 1024 s
        (13, 1.0, None, 3600.0),        # 4096 s capped at an hour
        (5000, 1.0, None, 3600.0),      # a huge attempt number neither overflows nor passes the cap
        (1, 0.0, 30.0, 30.0),           # Retry-After is a floor ...
        (3, 0.9, 2.0, 3.6),             # ... that the jitter may exceed
        (1, 1.0, 7200.0, 7200.0),       # ... and that the cap does not shorten
        (1, 1.7, None, 1.0),            # a bad rand is clamped to [0, 1]
        (1, -3.0, None, 0.0),
    ],
)
def test_backoff_table(attempt: int, draw: float, retry_after: float | None, expected: float) -> None:
    error = Retryable("boom", retry_after=retry_after, status=503)
    decision = decide(error, attempt, NOW, fixed(draw))
    assert seconds_after_now(decision) == pytest.approx(expected)


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 10, 20])
def test_jitter_stays_within_zero_and_the_ceiling(attempt: int) -> None:
    ceiling = min(MAX_DELAY.total_seconds(), 2.0 ** (attempt - 1))
    draws = [i / 50 for i in range(50)]
    waits = [seconds_after_now(decide(Retryable("x"), attempt, NOW, fixed(d))) for d in draws]
    assert min(waits) == 0.0
    assert max(waits) <= ceiling
    assert max(waits) >= 0.97 * ceiling
    assert waits == sorted(waits)  # the wait is the draw scaled, nothing else


@pytest.mark.parametrize(
    "error",
    [
        Permanent("validation failed", operation="snapshots.events.create", status=422),
        AuthFailed("Invalid token", status=401),
        ScopeMissing("not authorized", scopes=("events.write",), status=401),
        NotFound("no such location", status=404),
        Conflict("exists", existing_id="loc_1", status=409),
        InvalidInput("steps[1].input.email: rendered empty"),
        DeliveryError("plain delivery error"),
        RuntimeError("a bug"),
    ],
)
def test_anything_but_retryable_gives_up_at_once_with_the_reason(error: BaseException) -> None:
    decision = decide(error, 1, NOW, fixed(0.5))
    assert isinstance(decision, GiveUp)
    assert decision.reason == str(error)


@pytest.mark.parametrize(
    ("first_attempt_ago", "retry_after", "horizon", "gives_up"),
    [
        (timedelta(0), None, DEFAULT_HORIZON, False),
        (timedelta(days=2, hours=23), None, DEFAULT_HORIZON, False),     # 1 h left; the wait is 0.5 h
        (timedelta(days=2, hours=23, minutes=45), None, DEFAULT_HORIZON, True),  # 15 min left < 0.5 h
        (timedelta(days=3, seconds=1), None, DEFAULT_HORIZON, True),      # already past
        (timedelta(0), 3 * 86_400.0 + 1, DEFAULT_HORIZON, True),           # Retry-After beyond the horizon
        (timedelta(0), 3 * 86_400.0, DEFAULT_HORIZON, False),              # ... exactly at it is still fine
        (timedelta(minutes=29), None, timedelta(hours=1), False),         # 31 min left; the wait is 30
        (timedelta(minutes=31), None, timedelta(hours=1), True),          # 29 min left
    ],
)
def test_horizon_counts_from_the_first_attempt(first_attempt_ago: timedelta, retry_after: float | None,
                                               horizon: timedelta, gives_up: bool) -> None:
    error = Retryable("busy", retry_after=retry_after, status=503)
    # Attempt 20: the ceiling is the one-hour cap, so a draw of 0.5 waits half an hour.
    decision = decide(error, 20, NOW, fixed(0.5), horizon=horizon,
                      first_attempt_at=NOW - first_attempt_ago)
    assert isinstance(decision, GiveUp) is gives_up
    if isinstance(decision, GiveUp):
        assert "horizon" in decision.reason and "busy" in decision.reason


def test_without_a_first_attempt_time_the_horizon_counts_from_now() -> None:
    decision = decide(Retryable("x", retry_after=59.0), 1, NOW, fixed(0.0),
                      horizon=timedelta(minutes=1))
    assert seconds_after_now(decision) == 59.0
    decision = decide(Retryable("x", retry_after=61.0), 1, NOW, fixed(0.0),
                      horizon=timedelta(minutes=1))
    assert isinstance(decision, GiveUp)


def test_a_three_day_outage_retries_about_seventy_times_then_gives_up() -> None:
    now, attempts = NOW, 0
    decision: Retry | GiveUp = Retry(NOW)
    while isinstance(decision, Retry):
        attempts += 1
        decision = decide(Retryable("down", status=503), attempts, now, fixed(1.0),
                          first_attempt_at=NOW)
        if isinstance(decision, Retry):
            now = decision.at
    assert now - NOW <= DEFAULT_HORIZON
    assert 70 <= attempts <= 90


@pytest.mark.parametrize(
    ("now", "attempt", "first"),
    [
        (datetime(2025, 3, 1, 12, 0), 1, None),      # naive now
        (NOW, 1, datetime(2025, 3, 1, 11, 0)),      # naive first attempt
        (NOW, 0, None),                              # attempts count from 1
    ],
)
def test_bad_arguments_are_refused(now: datetime, attempt: int, first: datetime | None) -> None:
    with pytest.raises(ValueError):
        decide(Retryable("x"), attempt, now, fixed(0.5), first_attempt_at=first)
