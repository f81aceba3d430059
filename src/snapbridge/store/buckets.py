"""Token buckets per connection in the database, so every worker process shares one quota.

The arithmetic is pure (`refill`, `take`); the shell reads the row under a lock, applies it, and writes it
back in one short transaction (PostgreSQL: SELECT … FOR UPDATE; SQLite: BEGIN IMMEDIATE).

A block is at most MAX_BLOCK ahead: one read further ahead (written before 429s were capped, or by a host whose
clock ran fast) is brought back to now + MAX_BLOCK and saved so, or it would hold the connection's jobs forever.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from snapbridge.store.models import BucketState
from snapbridge.store.rows import WHEN, aware, aware_or_none, param, per_dialect, utc
from snapbridge.store.schema import rate_buckets

__all__ = ["MAX_BLOCK", "block_bucket", "capped", "get_bucket", "observe_limits", "refill", "take", "take_tokens"]

log = logging.getLogger("snapbridge.limiter")

# The longest a bucket is blocked: the worker's cap on a 429's Retry-After (WorkerConfig.max_throttle).
MAX_BLOCK = timedelta(hours=1)
# Float sums of refills land a hair under a whole token; a billionth is not worth a sleep.
EPSILON = 1e-9

_LOCK = sa.select(rate_buckets).where(rate_buckets.c.name == param("name")).with_for_update()
_CREATE = per_dialect(lambda insert: insert(rate_buckets).on_conflict_do_nothing(index_elements=["name"]))
_SAVE = rate_buckets.update().where(rate_buckets.c.name == param("name")).values(
    capacity=param("capacity"), tokens=param("tokens"), refill_per_second=param("rate"),
    updated_at=param("now", WHEN), blocked_until=param("blocked", WHEN),
)


def refill(state: BucketState, *, now: datetime, capacity: float, refill_per_second: float) -> BucketState:
    """The bucket at `now` under the given limits: tokens added for the time passed, never above capacity.

    A clock behind the last update (another host) adds nothing and does not move the bucket's time back.
    """
    elapsed = max(0.0, (now - state.updated_at).total_seconds())
    tokens = min(capacity, state.tokens + elapsed * refill_per_second)
    return replace(
        state, capacity=capacity, refill_per_second=refill_per_second, tokens=tokens,
        updated_at=max(state.updated_at, now),
    )


def take(state: BucketState, now: datetime, want: int = 1) -> tuple[BucketState, int, float]:
    """Take up to `want` whole tokens: (new state, how many, 0.0), or when none is there (unchanged state, 0,
    seconds until one is; inf if never)."""
    if state.blocked_until is not None and now < state.blocked_until:
        return state, 0, (state.blocked_until - now).total_seconds()
    granted = min(want, math.floor(state.tokens + EPSILON))
    if granted >= 1:
        return replace(state, tokens=max(0.0, state.tokens - granted)), granted, 0.0
    if state.refill_per_second <= 0:
        return state, 0, math.inf
    return state, 0, (1.0 - state.tokens) / state.refill_per_second


def capped(state: BucketState, now: datetime, longest: timedelta = MAX_BLOCK) -> BucketState:
    """The bucket with its block ending no later than `now + longest`, and its time no later than that either
    (a bucket last updated by a clock years ahead would never refill)."""
    if state.updated_at - now > longest:
        state = replace(state, updated_at=now)
    if state.blocked_until is None or state.blocked_until - now <= longest:
        return state
    return replace(state, blocked_until=now + longest)


def _state(row: sa.Row[Any]) -> BucketState:
    m = row._mapping
    return BucketState(
        name=m["name"], capacity=m["capacity"], tokens=m["tokens"], refill_per_second=m["refill_per_second"],
        updated_at=aware(m["updated_at"]), blocked_until=aware_or_none(m["blocked_until"]),
    )


def _locked(
    conn: Connection, name: str, *, capacity: float, refill_per_second: float, now: datetime
) -> BucketState:
    """The bucket row, locked for this transaction, its block capped (the caller saves it); a new one starts full."""
    row = conn.execute(_LOCK, {"b_name": name}).first()
    if row is None:
        conn.execute(_CREATE[conn.dialect.name], {
            "name": name, "capacity": capacity, "tokens": capacity, "refill_per_second": refill_per_second,
            "updated_at": now, "blocked_until": None,
        })
        row = conn.execute(_LOCK, {"b_name": name}).one()
    state = _state(row)
    bounded = capped(state, now)
    if bounded != state:
        log.warning("action=limiter.stored_block_capped connection=%s stored_until=%s until=%s stored_at=%s",
                    name, state.blocked_until.isoformat() if state.blocked_until else "-",
                    bounded.blocked_until.isoformat() if bounded.blocked_until else "-", state.updated_at.isoformat())
    return bounded


def _save(conn: Connection, state: BucketState) -> None:
    conn.execute(_SAVE, {
        "b_name": state.name, "b_capacity": state.capacity, "b_tokens": state.tokens,
        "b_rate": state.refill_per_second, "b_now": state.updated_at, "b_blocked": state.blocked_until,
    })


def take_tokens(
    conn: Connection, name: str, *, want: int, capacity: float, refill_per_second: float, now: datetime
) -> tuple[int, float]:
    """(tokens taken, 0.0), or (0, seconds to wait before asking again) when there is none."""
    now = utc(now)
    state = refill(_locked(conn, name, capacity=capacity, refill_per_second=refill_per_second, now=now),
                   now=now, capacity=capacity, refill_per_second=refill_per_second)
    state, granted, wait = take(state, now, max(1, want))
    _save(conn, state)
    return granted, wait


def block_bucket(conn: Connection, name: str, until: datetime, now: datetime) -> None:
    """Nobody takes a token before `until` (a 429's Retry-After; at most MAX_BLOCK ahead), and the bucket is
    empty then."""
    now, until = utc(now), utc(until)
    until = min(until, now + MAX_BLOCK)
    state = _locked(conn, name, capacity=1.0, refill_per_second=0.0, now=now)
    state = refill(state, now=now, capacity=state.capacity, refill_per_second=state.refill_per_second)
    later = until if state.blocked_until is None else max(state.blocked_until, until)
    _save(conn, replace(state, tokens=0.0, blocked_until=later))


def observe_limits(
    conn: Connection,
    name: str,
    *,
    capacity: float,
    refill_per_second: float,
    remaining: int | None,
    now: datetime,
) -> None:
    """Adopt the limits an app reported; its count of requests left lowers ours (others spend it too)."""
    now = utc(now)
    state = refill(_locked(conn, name, capacity=capacity, refill_per_second=refill_per_second, now=now),
                   now=now, capacity=capacity, refill_per_second=refill_per_second)
    if remaining is not None:
        state = replace(state, tokens=min(state.tokens, float(max(0, remaining))))
    _save(conn, state)


def get_bucket(conn: Connection, name: str) -> BucketState | None:
    row = conn.execute(sa.select(rate_buckets).where(rate_buckets.c.name == name)).first()
    return _state(row) if row else None
