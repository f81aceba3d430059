"""Backfill (`snapbridge sync gumroad --since DATE`): every sale since a date, stored as inbound events in batches.

Gumroad lists sales newest first and filters by whole UTC days only. The walk goes through the history one
window of days at a time, oldest window first, and stores each window oldest sale first, so the deriver sees a
customer's first purchase first (customer.created) even for history. A window is stored only once it is read
whole (its oldest sale is on its last page), but while the next window is read: the two overlap, the stores do
not. Each sale is keyed as its webhook is, so a backfill run twice, or over sales the webhooks or the poller
already brought, stores nothing twice. Each batch is its own transaction; progress goes to a callback after each
one. The poller's cursor is left alone. A page that fails transiently (network, 429, 5xx) is asked for again
(`PageRetry`), so one bad answer in ten thousand pages does not end a long backfill.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from snapbridge.connectors.gumroad import GumroadClient
from snapbridge.errors import InvalidInput
from snapbridge.runtime.pollers import (
    DEFAULT_BATCH,
    DEFAULT_PAGE_RETRY,
    PageRetry,
    insert_in_order,
    sale_inbound_events,
)
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
    retry: PageRetry | None = DEFAULT_PAGE_RETRY,
) -> BackfillReport:
    """Store every sale created from `since` (inclusive) to `until` (exclusive; default: tomorrow, UTC).

    A failed read lets the window before it finish storing, then raises; a failed store stops the read at once.
    """
    now = (clock or (lambda: datetime.now(UTC)))()
    end = until or (now.astimezone(UTC).date() + timedelta(days=1))
    if since >= end:
        raise InvalidInput(f"--since {since.isoformat()} is not before {end.isoformat()}")
    if batch_size < 1 or window_days < 1:
        raise InvalidInput("batch_size and window_days must be at least 1")
    tally = _Tally(since, end, on_progress)
    reading: asyncio.Task[_Window] | None = None
    writing: asyncio.Task[None] | None = None
    try:
        start = since
        while start < end:
            stop = min(end, start + timedelta(days=window_days))
            reading = asyncio.create_task(_read_window(client, start, stop, connection=connection, now=now,
                                                       retry=retry))
            window = await _read_beside(reading, writing)
            writing = asyncio.create_task(_store_window(store, window, start, stop, batch_size, tally))
            start = stop
        if writing is not None:
            await writing
    except asyncio.CancelledError:
        for task in (reading, writing):
            if task is not None:
                task.cancel()
        raise
    return BackfillReport(since, end, tally.sales, tally.inserted, tally.duplicates, tally.batches)


# A window's sales, oldest first, each as the events it stands for (a sale's events are never split up).
_Window = list[list[NewInboundEvent]]


async def _read_window(client: GumroadClient, start: date, stop: date, *, connection: str, now: datetime,
                       retry: PageRetry | None) -> _Window:
    # Each sale becomes its events as it arrives, while the client has the next page on its way.
    read: list[tuple[datetime, str, list[NewInboundEvent]]] = []
    async for sale in client.iter_sales(after=start, before=stop, retry=retry):
        read.append((sale.created_at, sale.id, sale_inbound_events(sale, connection=connection, now=now)))
    read.sort(key=lambda item: (item[0], item[1]))
    return [events for _, _, events in read]


async def _read_beside(reading: asyncio.Task[_Window], writing: asyncio.Task[None] | None) -> _Window:
    """The window being read, once the window before it is stored; the first failure of either is raised."""
    if writing is not None:
        await asyncio.wait((reading, writing), return_when=asyncio.FIRST_EXCEPTION)
        if writing.done() and writing.exception() is not None:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # the store's failure is the news
                await reading
        await writing  # raises the store's failure; after a failed read, lets the window before finish
    return await reading


async def _store_window(store: Store, window: _Window, start: date, stop: date, batch_size: int,
                        tally: _Tally) -> None:
    parts = list(_batches(window, batch_size))
    for index, (events, sales) in enumerate(parts):
        results = await asyncio.to_thread(_store_batch, store, events)
        tally.add(results, sales, reached=stop if index == len(parts) - 1 else start)
    if not parts:
        tally.add([], 0, reached=stop)


def _batches(window: _Window, batch_size: int) -> Iterator[tuple[list[NewInboundEvent], int]]:
    """(events, sales they stand for): whole sales, until a batch holds at least `batch_size` events."""
    pending: list[NewInboundEvent] = []
    sales = 0
    for events in window:
        pending.extend(events)
        sales += 1
        if len(pending) >= batch_size:
            yield pending, sales
            pending, sales = [], 0
    if pending:
        yield pending, sales


def _store_batch(store: Store, events: list[NewInboundEvent]) -> list[InsertResult]:
    with store.transaction() as tx:
        return insert_in_order(tx, events)


@dataclass
class _Tally:
    """The counts so far, told to `on_progress` after every batch."""

    since: date
    until: date
    on_progress: Callable[[BackfillProgress], object] | None
    sales: int = 0
    inserted: int = 0
    duplicates: int = 0
    batches: int = 0

    def add(self, results: list[InsertResult], sales: int, *, reached: date) -> None:
        self.sales += sales
        duplicates = sum(1 for r in results if r.duplicate)
        self.inserted += len(results) - duplicates
        self.duplicates += duplicates
        self.batches += 1 if results else 0
        if self.on_progress is not None:
            self.on_progress(BackfillProgress(self.since, self.until, reached, self.sales, self.inserted,
                                              self.duplicates))
