"""Backfill (`snapbridge sync gumroad --since DATE`): every sale since a date, stored as inbound events in batches.

Gumroad lists sales newest first and filters by whole UTC days only. The walk goes through the history one
window of days at a time, oldest window first, and stores each window oldest sale first, so the deriver sees a
customer's first purchase first (customer.created) even for history. Each sale is keyed as its webhook is, so a
backfill run twice, or over sales the webhooks or the poller already brought, stores nothing twice. Each batch is
its own transaction; progress goes to a callback after each one. The poller's cursor is left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from snapbridge.connectors.gumroad import GumroadClient
from snapbridge.errors import InvalidInput
from snapbridge.runtime.pollers import DEFAULT_BATCH, insert_in_order, sale_inbound_events
from snapbridge.store import InsertResult, NewInboundEvent, Store

__all__ = ["BackfillProgress", "BackfillReport", "backfill_gumroad"]

DEFAULT_WINDOW_DAYS = 7


@dataclass(frozen=True)
class BackfillProgress:
    """Where a backfill is: the day it has read up to (of `since`..`until`), and the counts so far."""

    since: date
    until: date
    reached: date  # every sale created before this day has been read and stored
    sales: int
    inserted: int
    duplicates: int

    @property
    def fraction(self) -> float:
        """How far through the days it is, 0.0 to 1.0 (for a progress bar)."""
        total = (self.until - self.since).days
        return 1.0 if total <= 0 else min(1.0, (self.reached - self.since).days / total)


@dataclass(frozen=True)
class BackfillReport:
    since: date
    until: date
    sales: int
    inserted: int
    duplicates: int
    batches: int


async def backfill_gumroad(
    store: Store,
    client: GumroadClient,
    *,
    connection: str,
    since: date,
    until: date | None = None,
    batch_size: int = DEFAULT_BATCH,
    window_days: int = DEFAULT_WINDOW_DAYS,
    on_progress: Callable[[BackfillProgress], object] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> BackfillReport:
    """Store every sale created from `since` (inclusive) to `until` (exclusive; default: tomorrow, UTC)."""
    now = (clock or (lambda: datetime.now(UTC)))()
    end = until or (now.astimezone(UTC).date() + timedelta(days=1))
    if since >= end:
        raise InvalidInput(f"--since {since.isoformat()} is not before {end.isoformat()}")
    if batch_size < 1 or window_days < 1:
        raise InvalidInput("batch_size and window_days must be at least 1")
    sales = inserted = duplicates = batches = 0
    pending: list[NewInboundEvent] = []

    async def flush() -> None:
        nonlocal inserted, duplicates, batches, pending
        if not pending:
            return
        results = await asyncio.to_thread(_store_batch, store, pending)
        inserted += sum(1 for r in results if not r.duplicate)
        duplicates += sum(1 for r in results if r.duplicate)
        batches += 1
        pending = []

    start = since
    while start < end:
        stop = min(end, start + timedelta(days=window_days))
        window = [sale async for sale in client.iter_sales(after=start, before=stop)]
        window.sort(key=lambda s: (s.created_at, s.id))
        for sale in window:
            pending.extend(sale_inbound_events(sale, connection=connection, now=now))
            if len(pending) >= batch_size:
                await flush()
        await flush()
        sales += len(window)
        start = stop
        if on_progress is not None:
            on_progress(BackfillProgress(since, end, start, sales, inserted, duplicates))
    return BackfillReport(since, end, sales, inserted, duplicates, batches)


def _store_batch(store: Store, events: list[NewInboundEvent]) -> list[InsertResult]:
    with store.transaction() as tx:
        return insert_in_order(tx, events)
