"""Token bucket arithmetic as tables, then the shared bucket rows on both engines."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from snapbridge.store import BucketState, Store
from snapbridge.store.buckets import refill, take

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _bucket(tokens: float, *, capacity: float = 10, rate: float = 2, at: datetime = T0,
            blocked: datetime | None = None) -> BucketState:
    return BucketState("hl", capacity, tokens, rate, at, blocked)


@pytest.mark.parametrize(
    ("tokens", "elapsed", "capacity", "rate", "expected"),
    [
        (0.0, 0.0, 10, 2, 0.0),
        (0.0, 1.0, 10, 2, 2.0),
        (3.0, 2.5, 10, 2, 8.0),
        (9.0, 1.0, 10, 2, 10.0),  # capped at capacity
        (9.0, 1000.0, 10, 2, 10.0),
        (5.0, -3.0, 10, 2, 5.0),  # a clock behind the bucket adds nothing
        (8.0, 0.0, 4, 2, 4.0),  # a smaller capacity caps what is there
        (1.0, 10.0, 10, 0, 1.0),  # no refill
    ],
)
def test_refill(tokens: float, elapsed: float, capacity: float, rate: float, expected: float) -> None:
    now = T0 + timedelta(seconds=elapsed)
    state = refill(_bucket(tokens), now=now, capacity=capacity, refill_per_second=rate)
    assert state.tokens == pytest.approx(expected)
    assert (state.capacity, state.refill_per_second) == (capacity, rate)
    assert state.updated_at == max(T0, now)


@pytest.mark.parametrize(
    ("tokens", "rate", "blocked_for", "left", "wait"),
    [
        (1.0, 2, None, 0.0, 0.0),  # exactly one token: taken
        (10.0, 2, None, 9.0, 0.0),
        (1.0 - 1e-12, 2, None, 0.0, 0.0),  # float dust under a whole token still counts as one
        (0.5, 2, None, 0.5, 0.25),  # half a token at 2/s: a quarter second
        (0.0, 4, None, 0.0, 0.25),
        (0.0, 0, None, 0.0, math.inf),
        (5.0, 2, 3.0, 5.0, 3.0),  # blocked: wait out the block even with tokens
        (5.0, 2, 0.0, 4.0, 0.0),  # the block ends at that instant
    ],
)
def test_take(tokens: float, rate: float, blocked_for: float | None, left: float, wait: float) -> None:
    blocked = None if blocked_for is None else T0 + timedelta(seconds=blocked_for)
    state, granted, waited = take(_bucket(tokens, rate=rate, blocked=blocked), T0)
    assert state.tokens == pytest.approx(left)
    assert granted == (1 if wait == 0.0 else 0)
    assert waited == pytest.approx(wait)


@pytest.mark.parametrize(
    ("tokens", "want", "granted", "left"),
    [(5.0, 3, 3, 2.0), (2.5, 3, 2, 0.5), (3.0, 3, 3, 0.0), (3.0 - 1e-12, 3, 3, 0.0), (0.9, 3, 0, 0.9)],
)
def test_take_several(tokens: float, want: int, granted: int, left: float) -> None:
    state, got, _ = take(_bucket(tokens), T0, want)
    assert got == granted
    assert state.tokens == pytest.approx(left)


def test_a_new_bucket_starts_full_and_refills(store: Store) -> None:
    taken = [store.take_token("hl", capacity=3, refill_per_second=1, now=T0) for _ in range(4)]
    assert taken[:3] == [0.0, 0.0, 0.0]
    assert taken[3] == pytest.approx(1.0)
    assert store.take_token("hl", capacity=3, refill_per_second=1, now=T0 + timedelta(seconds=0.5)) == (
        pytest.approx(0.5))
    assert store.take_token("hl", capacity=3, refill_per_second=1, now=T0 + timedelta(seconds=1)) == 0.0
    bucket = store.get_bucket("hl")
    assert bucket is not None and bucket.tokens == pytest.approx(0.0)
    assert bucket.updated_at == T0 + timedelta(seconds=1)
    assert store.get_bucket("other") is None


def test_tokens_are_taken_in_bulk(store: Store) -> None:
    assert store.take_tokens("hl", want=4, capacity=10, refill_per_second=1, now=T0) == (4, 0.0)
    assert store.take_tokens("hl", want=10, capacity=10, refill_per_second=1, now=T0) == (6, 0.0)
    granted, wait = store.take_tokens("hl", want=1, capacity=10, refill_per_second=2, now=T0)
    assert granted == 0
    assert wait == pytest.approx(0.5)


def test_a_429_blocks_everyone_until_retry_after(store: Store) -> None:
    store.take_token("hl", capacity=10, refill_per_second=10, now=T0)
    store.block_bucket("hl", T0 + timedelta(seconds=5), now=T0)
    store.block_bucket("hl", T0 + timedelta(seconds=2), now=T0)  # an earlier deadline does not shorten it
    assert store.take_token("hl", capacity=10, refill_per_second=10, now=T0 + timedelta(seconds=1)) == (
        pytest.approx(4.0))
    assert store.take_token("hl", capacity=10, refill_per_second=10, now=T0 + timedelta(seconds=5)) == 0.0


def test_blocking_an_unknown_bucket_creates_it_empty(store: Store) -> None:
    store.block_bucket("new", T0 + timedelta(seconds=1), now=T0)
    assert store.take_token("new", capacity=5, refill_per_second=1, now=T0) == pytest.approx(1.0)
    assert store.take_token("new", capacity=5, refill_per_second=1, now=T0 + timedelta(seconds=1)) == 0.0


def test_reported_limits_lower_the_tokens_and_set_the_rate(store: Store) -> None:
    store.take_token("hl", capacity=100, refill_per_second=10, now=T0)
    store.observe_limits("hl", capacity=50, refill_per_second=5, remaining=2, now=T0)
    bucket = store.get_bucket("hl")
    assert bucket is not None and (bucket.capacity, bucket.refill_per_second, bucket.tokens) == (50, 5, 2)
    store.observe_limits("hl", capacity=50, refill_per_second=5, remaining=40, now=T0)  # never raises tokens
    assert store.get_bucket("hl").tokens == 2  # type: ignore[union-attr]
    later = T0 + timedelta(seconds=1)
    store.observe_limits("hl", capacity=50, refill_per_second=5, remaining=None, now=later)
    assert store.get_bucket("hl").tokens == pytest.approx(7)  # type: ignore[union-attr]
