"""Requests per connection per minute (count, errors, 429s, latency), for the quota and health views."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from snapbridge.store.models import UsageSample, UsageWindow
from snapbridge.store.rows import InsertFn, aware, per_dialect, utc
from snapbridge.store.schema import in_workspace, usage

__all__ = ["minute", "record_usage", "summarise", "usage_since"]

Counts = tuple[int, int, int, float, int]  # requests, errors, throttled, latency sum, latency count
COUNTERS = ("requests", "errors", "throttled", "latency_ms_sum", "latency_count")


def _add(insert: InsertFn) -> sa.Insert:
    stmt = insert(usage)
    return stmt.on_conflict_do_update(
        index_elements=["connection", "window_start"],
        set_={name: usage.c[name] + stmt.excluded[name] for name in COUNTERS},
    )


_ADD = per_dialect(_add)


def minute(at: datetime) -> datetime:
    """The start of the UTC minute holding `at`."""
    return utc(at).replace(second=0, microsecond=0)


def summarise(samples: Sequence[UsageSample]) -> dict[tuple[str, datetime], Counts]:
    """Samples added up per (connection, minute). An error is a network failure or any status ≥ 400."""
    totals: dict[tuple[str, datetime], Counts] = {}
    for sample in samples:
        key = (sample.connection, minute(sample.at))
        requests, errors, throttled, latency, count = totals.get(key, (0, 0, 0, 0.0, 0))
        failed = sample.status is None or sample.status >= 400
        totals[key] = (requests + 1, errors + failed, throttled + sample.throttled,
                       latency + sample.latency_ms, count + 1)
    return totals


def record_usage(conn: Connection, samples: Sequence[UsageSample]) -> None:
    """Add the samples to their minutes' counters (sorted, so concurrent writers lock rows in one order)."""
    for (connection, window), counts in sorted(summarise(samples).items()):
        conn.execute(_ADD[conn.dialect.name], {"connection": connection, "window_start": window,
                                               **dict(zip(COUNTERS, counts, strict=True))})


def _window(row: sa.Row[Any]) -> UsageWindow:
    m = row._mapping
    return UsageWindow(
        connection=m["connection"], window_start=aware(m["window_start"]), requests=m["requests"],
        errors=m["errors"], throttled=m["throttled"], latency_ms_sum=m["latency_ms_sum"],
        latency_count=m["latency_count"],
    )


def usage_since(conn: Connection, connection: str | None, since: datetime, *, workspace: int | None = None
                ) -> list[UsageWindow]:
    """Minutes from `since` on (the minute holding it included), oldest first; every connection if None (of
    the workspace, if one is given)."""
    stmt = sa.select(usage).where(usage.c.window_start >= minute(since))
    if workspace is not None:
        stmt = stmt.where(in_workspace(usage.c.connection, workspace))
    if connection is not None:
        stmt = stmt.where(usage.c.connection == connection)
    return [_window(row) for row in conn.execute(stmt.order_by(usage.c.window_start, usage.c.connection))]
