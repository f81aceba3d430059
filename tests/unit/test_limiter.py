"""Token-bucket math as tables: shapes, refill, take, blocks, headers; a simulation of the window promise."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from snapbridge.http import RateLimitState
from snapbridge.runtime.limiter import (
    DEFAULT_SHAPE,
    Bucket,
    BucketShape,
    MemoryLimiter,
    block,
    daily_block_until,
    observe,
    refill,
    shape_for,
    take,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("limit", "interval", "margin", "refill_per_second"),
    [
        (100, 10.0, 0.0, 10.0),
        (100, 10.0, 0.22, 100 / 10.22),
        (100, 10.0, None, 100 / 10.22),   # default margin: 20 ms + 2% of the window
        (5, 0.5, None, 5 / 0.53),
        (1, 1.0, 0.0, 1.0),
        (1, 1.0, None, 1 / 1.04),
    ],
)
def test_shape_for_a_window(limit: int, interval: float, margin: float | None,
                            refill_per_second: float) -> None:
    shape = shape_for(limit, interval, margin_seconds=margin)
    assert shape.capacity == 1.0
    assert shape.refill_per_second == pytest.approx(refill_per_second)


@pytest.mark.parametrize(("limit", "interval"), [(0, 1.0), (-1, 1.0), (5, 0.0), (5, -1.0)])
def test_shape_for_refuses_nonsense(limit: int, interval: float) -> None:
    with pytest.raises(ValueError):
        shape_for(limit, interval)


@pytest.mark.parametrize(
    ("tokens", "capacity", "rate", "elapsed", "expected"),
    [
        (0.0, 1.0, 10.0, 0.05, 0.5),
        (0.0, 1.0, 10.0, 0.1, 1.0),
        (0.0, 1.0, 10.0, 5.0, 1.0),     # never past capacity
        (2.0, 5.0, 1.0, 1.5, 3.5),
        (0.3, 1.0, 0.0, 100.0, 0.3),    # no refill
        (0.5, 1.0, 10.0, -1.0, 0.5),    # a clock that runs back adds nothing
    ],
)
def test_refill_table(tokens: float, capacity: float, rate: float, elapsed: float, expected: float) -> None:
    bucket = Bucket(capacity, rate, tokens, T0)
    after = refill(bucket, at(elapsed))
    assert after.tokens == pytest.approx(expected)
    assert after.updated_at == max(T0, at(elapsed))


@pytest.mark.parametrize(
    ("tokens", "rate", "blocked_for", "elapsed", "taken", "wait", "left"),
    [
        (1.0, 10.0, None, 0.0, True, 0.0, 0.0),
        (0.0, 10.0, None, 0.0, False, 0.1, 0.0),
        (0.0, 10.0, None, 0.04, False, 0.06, 0.4),
        (0.0, 10.0, None, 0.1, True, 0.0, 0.0),
        (0.99, 2.0, None, 0.0, False, 0.005, 0.99),
        (1.0, 10.0, 2.0, 0.0, False, 2.0, 1.0),       # blocked: wait for the block, keep the token
        (1.0, 10.0, 2.0, 1.5, False, 0.5, 1.0),
        (1.0, 10.0, 2.0, 2.0, True, 0.0, 0.0),        # the block ends exactly then
        (0.0, 0.0, None, 1.0, False, float("inf"), 0.0),
    ],
)
def test_take_table(tokens: float, rate: float, blocked_for: float | None, elapsed: float, taken: bool,
                    wait: float, left: float) -> None:
    bucket = Bucket(1.0, rate, tokens, T0, at(blocked_for) if blocked_for is not None else None)
    after, waited = take(bucket, at(elapsed))
    assert (waited == 0.0) is taken
    assert waited == pytest.approx(wait, abs=2e-6)
    assert after.tokens == pytest.approx(left)


@pytest.mark.parametrize(
    ("current", "until", "expected"),
    [(None, 5.0, 5.0), (3.0, 5.0, 5.0), (8.0, 5.0, 8.0), (5.0, 5.0, 5.0)],
)
def test_block_never_shortens(current: float | None, until: float, expected: float) -> None:
    bucket = Bucket(1.0, 1.0, 1.0, T0, at(current) if current is not None else None)
    assert block(bucket, at(until)).blocked_until == at(expected)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2025, 3, 1, 12, 0, tzinfo=UTC), datetime(2025, 3, 1, 12, 15, tzinfo=UTC)),
        (datetime(2025, 3, 1, 23, 50, tzinfo=UTC), datetime(2025, 3, 2, 0, 0, tzinfo=UTC)),
        (datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_daily_block_until_midnight_or_the_next_probe(now: datetime, expected: datetime) -> None:
    assert daily_block_until(now) == expected


def state(limit: int | None = None, remaining: int | None = None, interval_ms: int | None = None,
          daily_limit: int | None = None, daily_remaining: int | None = None) -> RateLimitState:
    return RateLimitState(limit, remaining, interval_ms, daily_limit, daily_remaining)


@pytest.mark.parametrize(
    ("headers", "tokens", "capacity", "rate", "blocked_until"),
    [
        (None, 1.0, 1.0, 10.0, None),                                       # no headers: unchanged
        (state(limit=100, remaining=50, interval_ms=10_000), 1.0, 1.0, 10.0, None),
        (state(limit=5, remaining=4, interval_ms=500), 1.0, 1.0, 10.0, None),
        (state(limit=5, remaining=0, interval_ms=500), 0.0, 1.0, 10.0, None),   # nothing left: empty it
        (state(remaining=0), 0.0, 1.0, 10.0, None),                         # a partial set of headers
        (state(limit=0, interval_ms=500), 1.0, 1.0, 10.0, None),             # a nonsense limit is ignored
        (state(daily_limit=1000, daily_remaining=0), 1.0, 1.0, 10.0, at(15 * 60)),
        (state(daily_limit=1000, daily_remaining=1), 1.0, 1.0, 10.0, None),
    ],
)
def test_observe_table(headers: RateLimitState | None, tokens: float, capacity: float, rate: float,
                       blocked_until: datetime | None) -> None:
    bucket = Bucket(1.0, 10.0, 1.0, T0)
    after = observe(bucket, headers, T0, margin_seconds=0.0)
    assert after.tokens == tokens
    assert after.capacity == capacity
    assert after.refill_per_second == pytest.approx(rate)
    assert after.blocked_until == blocked_until


def test_observe_learns_a_slower_plan() -> None:
    after = observe(Bucket.full(DEFAULT_SHAPE, T0), state(limit=2, remaining=1, interval_ms=1000), T0,
                    margin_seconds=0.0)
    assert after.refill_per_second == pytest.approx(2.0)


def max_in_any_window(times: list[float], window: float) -> int:
    """The most entries in any half-open window (t - window, t], as the sandbox counts them."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.parametrize(
    ("limit", "interval", "jitter", "least_used"),
    [
        (5, 0.5, 0.0, 0.94),
        (5, 0.5, 0.01, 0.94),
        (100, 10.0, 0.2, 0.97),
        (1, 1.0, 0.02, 0.95),
        (3, 0.1, 0.002, 0.8),   # the fixed 20 ms of margin weighs on a tiny window
    ],
)
def test_a_greedy_client_never_puts_more_than_limit_in_a_window(limit: int, interval: float, jitter: float,
                                                                least_used: float) -> None:
    # Take tokens as fast as the bucket allows; each request reaches the server up to `jitter` later,
    # alternating early and late, the worst case for bunching.
    shape = shape_for(limit, interval)
    bucket, now = Bucket.full(shape, T0), 0.0
    arrivals: list[float] = []
    while now < 20 * interval:
        bucket, wait = take(bucket, at(now))
        if wait == 0.0:
            arrivals.append(now + (jitter if len(arrivals) % 2 == 0 else 0.0))
        else:
            now += wait
    arrivals.sort()
    assert max_in_any_window(arrivals, interval) <= limit
    used = len(arrivals) / (20 * limit)
    assert used >= least_used, f"only {used:.0%} of the quota used"


def test_a_plain_bucket_of_the_full_quota_would_break_the_window() -> None:
    # Why the shape: capacity N refilled at N per window lets a burst plus the refill through.
    shape = BucketShape(capacity=5.0, refill_per_second=10.0)
    bucket, now = Bucket.full(shape, T0), 0.0
    arrivals: list[float] = []
    while now < 2.0:
        bucket, wait = take(bucket, at(now))
        if wait == 0.0:
            arrivals.append(now)
        else:
            now += wait
    assert max_in_any_window(arrivals, 0.5) > 5


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def test_memory_limiter_learns_from_headers_and_honours_a_block() -> None:
    clock = FakeClock()
    limiter = MemoryLimiter(default=shape_for(100, 10.0, margin_seconds=0.0), clock=clock)
    assert await limiter.take("snap") == 0.0
    assert await limiter.take("snap") == pytest.approx(0.1)
    await limiter.observe("snap", state(limit=2, remaining=1, interval_ms=1000))
    assert limiter.bucket("snap").refill_per_second == pytest.approx(2 / 1.04)
    clock.now = at(1.0)
    await limiter.block("snap", at(31.0))
    assert await limiter.take("snap") == pytest.approx(30.0)
    assert await limiter.take("other") == 0.0  # buckets are per connection
    clock.now = at(31.0)
    assert await limiter.take("snap") == 0.0


async def test_acquire_queues_waiters_and_gives_up_past_the_budget() -> None:
    limiter = MemoryLimiter(default=BucketShape(capacity=1.0, refill_per_second=20.0))  # a token per 50 ms
    assert await limiter.acquire("snap", budget=1.0) == 0.0  # a new bucket is full
    started = time.monotonic()
    assert await asyncio.gather(*(limiter.acquire("snap", budget=1.0) for _ in range(3))) == [0.0, 0.0, 0.0]
    assert 0.14 <= time.monotonic() - started < 0.6  # three more tokens: about 150 ms, in line
    wait = await limiter.acquire("snap", budget=0.005)
    assert 0.005 < wait <= 0.051  # the wait passes the budget: nothing taken, the wait reported
    await limiter.block("snap", datetime.now(UTC) + timedelta(seconds=30))
    assert 29 < await limiter.acquire("snap", budget=1.0) <= 30
