"""A rate-limit block stored years ahead (before 429s were capped, or by a fast clock) holds a connection back for
max_throttle at most: the shared limiter reads it as ending an hour from then, saves it so, and says so once.

Each test writes the far row straight into a real database (a SQLite file, then the PostgreSQL), and moves the
store's and the limiter's clock instead of waiting the hour.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from snapbridge.runtime import StoreLimiter
from snapbridge.store import BucketState, Store
from snapbridge.store.buckets import MAX_BLOCK, capped
from snapbridge.store.schema import rate_buckets

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FAR = T0 + timedelta(days=3650)  # ten years ahead
HOUR = MAX_BLOCK.total_seconds()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clocked(migrated: Engine, clock: Clock) -> Iterator[Store]:
    store = Store(migrated, clock=clock)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def limiter(clocked: Store, clock: Clock) -> Iterator[StoreLimiter]:
    made = StoreLimiter(clocked, clock=clock)
    try:
        yield made
    finally:
        made.close()


def plant(engine: Engine, name: str, blocked_until: datetime | None, *, tokens: float = 1.0,
          updated_at: datetime = T0) -> None:
    """A bucket row as an older version (or a host with a wrong clock) left it."""
    with engine.begin() as conn:
        conn.execute(sa.insert(rate_buckets).values(name=name, capacity=1.0, tokens=tokens, refill_per_second=10.0,
                                                    updated_at=updated_at, blocked_until=blocked_until))


def stored_until(engine: Engine, name: str) -> datetime | None:
    with engine.connect() as conn:
        value = conn.execute(sa.select(rate_buckets.c.blocked_until).where(rate_buckets.c.name == name)).scalar_one()
    return None if value is None else (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC))


def capped_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "stored_block_capped" in r.getMessage()]


@pytest.mark.parametrize(
    ("blocked_for", "expected_for"),
    [
        (None, None),
        (timedelta(minutes=5), timedelta(minutes=5)),
        (MAX_BLOCK, MAX_BLOCK),  # at the cap: kept
        (MAX_BLOCK + timedelta(microseconds=1), MAX_BLOCK),  # one past it: capped
        (timedelta(days=3650), MAX_BLOCK),
        (-timedelta(hours=5), -timedelta(hours=5)),  # a block in the past is left alone
    ],
)
def test_capped_brings_a_block_back_to_the_cap(blocked_for: timedelta | None,
                                               expected_for: timedelta | None) -> None:
    state = BucketState("snap", 1.0, 0.0, 1.0, T0, None if blocked_for is None else T0 + blocked_for)
    assert capped(state, T0).blocked_until == (None if expected_for is None else T0 + expected_for)


async def test_a_far_stored_block_lets_a_request_through_after_the_cap(
        migrated: Engine, limiter: StoreLimiter, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    plant(migrated, "snap", FAR)
    caplog.set_level(logging.WARNING)

    assert await limiter.take("snap") == pytest.approx(HOUR)  # not ten years
    assert stored_until(migrated, "snap") == T0 + MAX_BLOCK  # saved capped: the cap does not move with the clock
    [line] = capped_warnings(caplog)
    assert "connection=snap" in line and FAR.isoformat() in line and (T0 + MAX_BLOCK).isoformat() in line

    clock.now = T0 + timedelta(minutes=59)
    assert await limiter.take("snap") == pytest.approx(60.0)
    assert await limiter.acquire("snap", budget=1.0) == pytest.approx(60.0)  # still held, nothing taken
    clock.now = T0 + MAX_BLOCK
    assert await limiter.acquire("snap", budget=1.0) == 0.0  # through
    assert len(capped_warnings(caplog)) == 1  # one line, not one per take
    assert await limiter.take("other") == 0.0  # other connections were never held


async def test_a_new_block_does_not_keep_a_far_stored_one(migrated: Engine, limiter: StoreLimiter,
                                                          clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    plant(migrated, "snap", FAR)
    caplog.set_level(logging.WARNING)
    # A 429 arrives before any take: an earlier Retry-After must not leave the far block standing.
    await limiter.block("snap", T0 + timedelta(seconds=30))
    assert stored_until(migrated, "snap") == T0 + MAX_BLOCK
    assert len(capped_warnings(caplog)) == 1
    clock.now = T0 + MAX_BLOCK
    assert await limiter.take("snap") == 0.0


async def test_a_block_asked_for_past_the_cap_is_stored_capped(migrated: Engine, limiter: StoreLimiter,
                                                               clock: Clock) -> None:
    await limiter.block("snap", FAR)
    assert stored_until(migrated, "snap") == T0 + MAX_BLOCK
    clock.now = T0 + MAX_BLOCK
    assert await limiter.take("snap") == 0.0


async def test_a_bucket_last_updated_by_a_clock_years_ahead_refills_again(
        migrated: Engine, limiter: StoreLimiter, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    # Empty, and stamped ten years ahead: refills count from the stamp, so it would never hold a token again.
    plant(migrated, "snap", None, tokens=0.0, updated_at=FAR)
    caplog.set_level(logging.WARNING)
    assert await limiter.take("snap") == pytest.approx(0.1)  # one token at 10/s from now, not from the stamp
    clock.now = T0 + timedelta(seconds=1)
    assert await limiter.acquire("snap", budget=1.0) == 0.0
    assert len(capped_warnings(caplog)) == 1
