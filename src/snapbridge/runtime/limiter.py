"""Rate limiting per connection: pure token-bucket math, and limiters kept in memory or in the store.

The Snapshots API counts requests per key in a sliding window (X-RateLimit-Max per
X-RateLimit-Interval-Milliseconds) and per day. A classic bucket of capacity N refilled at N per window lets
2N through in one window (a full burst, then the refill), so the bucket is shaped to the window instead:
capacity 1 (no burst) and a refill of N per (window + margin). Requests are then at least
(window + margin) / N apart, which puts at most N in any window, with `margin` to absorb the jitter between
taking a token and the request reaching the server. The loss is margin / (window + margin) of the quota.

A 429's Retry-After blocks the bucket for everyone until then; an exhausted daily quota blocks it too.
A block in the table further ahead than an hour (stored before the worker capped Retry-After at max_throttle,
or by a host whose clock ran fast) counts as ending an hour from when it is read, and is saved so, with one
warning (store.buckets.capped); else it would park every job of the connection for good.
On PostgreSQL the bucket lives in the `rate_buckets` table (store.take_token), so every worker process on
every host shares it; in one process (SQLite) a dict of buckets is enough and costs no writes.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from snapbridge.http import RateLimitState
from snapbridge.store import Store

__all__ = [
    "DEFAULT_SHAPE",
    "Bucket",
    "BucketShape",
    "Limiter",
    "MemoryLimiter",
    "StoreLimiter",
    "block",
    "bounded_state",
    "daily_block_until",
    "limiter_for",
    "observe",
    "refill",
    "shape_for",
    "take",
]

# The contract's default plan (100 per 10 s) until the server's headers say otherwise.
DEFAULT_LIMIT = 100
DEFAULT_INTERVAL_SECONDS = 10.0
DEFAULT_MARGIN_SECONDS = 0.02
DEFAULT_MARGIN_FRACTION = 0.02
# When the daily quota is spent we do not know when it comes back (UNCONFIRMED in snapshots-api.md §5):
# wait until UTC midnight, but probe at least this often, so a rolling window is not wasted for hours.
DEFAULT_DAILY_PROBE = timedelta(minutes=15)
# Float sums of elapsed time come out a hair short of a whole token; that hair is not a real request.
_TOKEN_EPSILON = 1e-9
# Datetimes stop at microseconds: come back a hair late rather than a hair early and ask twice.
_SLEEP_PAD = 0.0002
# Header counts past these are as good as unlimited; bounded, they stay floats (a 400-digit X-RateLimit-Max
# overflowed the float math, and each response carrying it failed its job) and fit the store's columns.
MAX_HEADER_COUNT = 10**9
MAX_INTERVAL_MS = 86_400_000  # a window longer than a day is the daily quota's business


T = TypeVar("T")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class BucketShape:
    """How big a bucket is and how fast it fills, in tokens and tokens per second."""

    capacity: float
    refill_per_second: float


def shape_for(limit: int, interval_seconds: float, *, margin_seconds: float | None = None) -> BucketShape:
    """The bucket that lets at most `limit` requests into any window of `interval_seconds`.

    The default margin is 20 ms plus 2% of the window: 97.8% of a 100-per-10-s quota, 96% of 1-per-second.
    """
    if limit < 1 or interval_seconds <= 0:
        raise ValueError("a rate limit needs limit >= 1 and a positive interval")
    margin = DEFAULT_MARGIN_SECONDS + DEFAULT_MARGIN_FRACTION * interval_seconds if margin_seconds is None \
        else margin_seconds
    # Capacity 1: after any take the bucket is empty, so takes are 1/refill apart and a window of length
    # W holds at most 1 + floor(W · refill) = 1 + floor(W · limit / (W + margin)) <= limit of them.
    return BucketShape(capacity=1.0, refill_per_second=limit / (interval_seconds + margin))


DEFAULT_SHAPE = shape_for(DEFAULT_LIMIT, DEFAULT_INTERVAL_SECONDS)


@dataclass(frozen=True)
class Bucket:
    """One connection's bucket at `updated_at`; `blocked_until` holds every request back (a 429, the day)."""

    capacity: float
    refill_per_second: float
    tokens: float
    updated_at: datetime
    blocked_until: datetime | None = None

    @classmethod
    def full(cls, shape: BucketShape, now: datetime) -> Bucket:
        return cls(shape.capacity, shape.refill_per_second, shape.capacity, now)


def refill(bucket: Bucket, now: datetime) -> Bucket:
    """The bucket at `now`: tokens added for the time passed, never past capacity; time never runs back."""
    if now <= bucket.updated_at:
        return bucket
    elapsed = (now - bucket.updated_at).total_seconds()
    tokens = min(bucket.capacity, bucket.tokens + elapsed * bucket.refill_per_second)
    return replace(bucket, tokens=tokens, updated_at=now)


def take(bucket: Bucket, now: datetime) -> tuple[Bucket, float]:
    """Take one token: (bucket after, 0.0), or (bucket, seconds until one could be taken) taking nothing."""
    if bucket.blocked_until is not None and now < bucket.blocked_until:
        return bucket, (bucket.blocked_until - now).total_seconds()
    current = refill(bucket, now)
    if current.tokens >= 1.0 - _TOKEN_EPSILON:
        return replace(current, tokens=max(0.0, current.tokens - 1.0)), 0.0
    if current.refill_per_second <= 0:
        return current, float("inf")
    # Whole microseconds, rounded up (datetimes have no finer grain): waiting that long is always enough.
    return current, math.ceil((1.0 - current.tokens) / current.refill_per_second * 1e6) / 1e6


def block(bucket: Bucket, until: datetime) -> Bucket:
    """Hold every request back until `until`; an earlier block never shortens a later one."""
    if bucket.blocked_until is not None and bucket.blocked_until >= until:
        return bucket
    return replace(bucket, blocked_until=until)


def daily_block_until(now: datetime, probe: timedelta = DEFAULT_DAILY_PROBE) -> datetime:
    """When to try again after the daily quota ran out: the next UTC midnight, or sooner to probe."""
    midnight = (now.astimezone(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return min(midnight, now + probe)


def bounded_state(state: RateLimitState | None) -> RateLimitState | None:
    """The headers with every count at most MAX_HEADER_COUNT and the window at most MAX_INTERVAL_MS."""
    if state is None:
        return None
    counts = {name: min(value, MAX_HEADER_COUNT) if value is not None else None
              for name, value in state.as_dict().items()}
    if state.interval_ms is not None:
        counts["interval_ms"] = min(state.interval_ms, MAX_INTERVAL_MS)
    return RateLimitState(**counts)


def observe(bucket: Bucket, state: RateLimitState | None, now: datetime, *,
            margin_seconds: float | None = None, daily_probe: timedelta = DEFAULT_DAILY_PROBE) -> Bucket:
    """The bucket after a response's X-RateLimit-* headers: its shape, what is left, the daily quota."""
    state = bounded_state(state)
    if state is None:
        return bucket
    current = refill(bucket, now)
    if state.limit and state.limit > 0 and state.interval_ms and state.interval_ms > 0:
        shape = shape_for(state.limit, state.interval_ms / 1000, margin_seconds=margin_seconds)
        current = replace(current, capacity=shape.capacity, refill_per_second=shape.refill_per_second,
                          tokens=min(current.tokens, shape.capacity))
    if state.remaining is not None:
        # The server counts every user of the key; never believe we have more than it says is left.
        current = replace(current, tokens=min(current.tokens, float(state.remaining)))
    if state.daily_remaining == 0:
        current = block(current, daily_block_until(now, daily_probe))
    return current


class Limiter(Protocol):
    """What a worker needs of a limiter; both kinds below provide it."""

    async def take(self, name: str) -> float:
        """0.0 when a token was taken for connection `name`; else seconds to wait (nothing taken)."""
        ...

    async def acquire(self, name: str, *, budget: float) -> float:
        """Wait in line for a token: 0.0 once taken; else the wait still ahead, when it passes `budget` s."""
        ...

    async def observe(self, name: str, state: RateLimitState | None) -> None:
        """Feed one response's rate-limit headers."""
        ...

    async def block(self, name: str, until: datetime) -> None:
        """Hold every request of `name` back until `until` (a 429's Retry-After)."""
        ...


class _Queued:
    """`acquire` over `take`: one waiter per connection asks the bucket at a time, the others queue (FIFO).

    Without the line, every job waiting for a token wakes at the same moment and asks again, a herd that on
    PostgreSQL queues on the bucket's row lock and delays the very token they are waiting for.
    """

    def __init__(self) -> None:
        self._lines: dict[str, asyncio.Lock] = {}

    async def take(self, name: str) -> float:
        raise NotImplementedError

    async def acquire(self, name: str, *, budget: float) -> float:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        line = self._lines.setdefault(name, asyncio.Lock())
        try:
            await asyncio.wait_for(line.acquire(), max(budget, 0.0))
        except TimeoutError:
            return max(budget, 0.001)  # the line is longer than the budget: come back after about that long
        try:
            while True:
                asked = loop.time()
                wait = await self.take(name)
                if wait <= 0:
                    return 0.0
                if wait > deadline - loop.time():
                    return wait
                # The wait counts from when we asked, not from when the answer came back: a full bucket of
                # capacity 1 wastes every moment spent late, and a database round trip is several ms.
                await asyncio.sleep(max(0.0, asked + wait - loop.time()) + _SLEEP_PAD)
        finally:
            line.release()


class _Shapes:
    """Each connection's bucket shape as far as we know it: configured, then learned from the headers."""

    def __init__(self, shapes: Mapping[str, BucketShape], default: BucketShape, margin_seconds: float | None,
                 daily_probe: timedelta) -> None:
        self.known = dict(shapes)
        self.default = default
        self.margin_seconds = margin_seconds
        self.daily_probe = daily_probe

    def get(self, name: str) -> BucketShape:
        return self.known.get(name, self.default)

    def learn(self, name: str, state: RateLimitState | None) -> BucketShape:
        if state is not None and state.limit and state.interval_ms:
            self.known[name] = shape_for(state.limit, state.interval_ms / 1000,
                                         margin_seconds=self.margin_seconds)
        return self.get(name)


class MemoryLimiter(_Queued):
    """Buckets in this process's memory: right when every worker using a connection runs in this process."""

    def __init__(self, *, shapes: Mapping[str, BucketShape] | None = None,
                 default: BucketShape = DEFAULT_SHAPE, margin_seconds: float | None = None,
                 daily_probe: timedelta = DEFAULT_DAILY_PROBE,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        super().__init__()
        self._shapes = _Shapes(shapes or {}, default, margin_seconds, daily_probe)
        self._buckets: dict[str, Bucket] = {}
        self._clock = clock

    def bucket(self, name: str) -> Bucket:
        """The bucket of `name` now (a fresh, full one if it was never used)."""
        found = self._buckets.get(name)
        return refill(found, self._clock()) if found else Bucket.full(self._shapes.get(name), self._clock())

    async def take(self, name: str) -> float:
        bucket, wait = take(self.bucket(name), self._clock())
        self._buckets[name] = bucket
        return wait

    async def observe(self, name: str, state: RateLimitState | None) -> None:
        state = bounded_state(state)
        self._shapes.learn(name, state)
        self._buckets[name] = observe(self.bucket(name), state, self._clock(),
                                      margin_seconds=self._shapes.margin_seconds,
                                      daily_probe=self._shapes.daily_probe)

    async def block(self, name: str, until: datetime) -> None:
        self._buckets[name] = block(self.bucket(name), until)


class StoreLimiter(_Queued):
    """Buckets in the database, so every worker process on every host shares one quota per connection.

    Each call is one short transaction (a row lock on PostgreSQL), run in a thread to keep the loop free. The
    time of a take is the store's, read inside its transaction: a time read before a slow call (a new
    database connection, a lock wait) would date the token back and let the next one out early.
    """

    def __init__(self, store: Store, *, shapes: Mapping[str, BucketShape] | None = None,
                 default: BucketShape = DEFAULT_SHAPE, margin_seconds: float | None = None,
                 daily_probe: timedelta = DEFAULT_DAILY_PROBE, clock: Callable[[], datetime] = _utc_now,
                 threads: int = 4) -> None:
        super().__init__()
        self._store = store
        self._shapes = _Shapes(shapes or {}, default, margin_seconds, daily_probe)
        self._clock = clock
        # Its own threads: a token taken must not wait behind slow work queued on the loop's default pool.
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="sb-limiter")

    async def _call(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(call, *args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=False)

    async def take(self, name: str) -> float:
        shape = self._shapes.get(name)
        if name not in self._shapes.known:
            # Until this process has seen the headers itself, follow the shape in the table: another process
            # may have learned the plan already, and the default (the contract's plan) may be too fast for it.
            found = await self._call(self._store.get_bucket, name)
            if found is not None and found.refill_per_second > 0 and found.capacity >= 1:
                shape = BucketShape(found.capacity, found.refill_per_second)
        return await self._call(self._store.take_token, name, capacity=shape.capacity,
                                refill_per_second=shape.refill_per_second)

    async def observe(self, name: str, state: RateLimitState | None) -> None:
        state = bounded_state(state)
        if state is None:
            return
        before = self._shapes.known.get(name)
        shape = self._shapes.learn(name, state)
        # Most responses change nothing: the same plan, and more requests left than the bucket ever holds
        # (tokens <= capacity). Writing anyway cost a committed transaction on the row every take waits for.
        lowers = state.remaining is not None and state.remaining < shape.capacity
        if shape != before or lowers:
            await self._call(self._store.observe_limits, name, capacity=shape.capacity,
                             refill_per_second=shape.refill_per_second, remaining=state.remaining)
        if state.daily_remaining == 0:
            await self.block(name, daily_block_until(self._clock(), self._shapes.daily_probe))

    async def block(self, name: str, until: datetime) -> None:
        await self._call(self._store.block_bucket, name, until)


def limiter_for(store: Store, **options: Any) -> MemoryLimiter | StoreLimiter:
    """The limiter a worker on this store needs: shared through the database on PostgreSQL (workers may run in
    other processes and hosts), in memory on SQLite (every worker runs in this one process)."""
    return StoreLimiter(store, **options) if store.is_postgres else MemoryLimiter(**options)
