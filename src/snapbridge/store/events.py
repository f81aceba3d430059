"""Inbound events (stored once per dedupe key, in batches) and the pollers' cursors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from snapbridge.store.models import (
    EventMark,
    EventSource,
    EventStatus,
    InboundEvent,
    InsertResult,
    NewInboundEvent,
)
from snapbridge.store.rows import (
    WHEN,
    InsertFn,
    aware,
    aware_or_none,
    chunks,
    is_postgres,
    json_dict,
    param,
    per_dialect,
    utc,
)
from snapbridge.store.schema import inbound_events, poll_cursors

__all__ = [
    "event_from_row",
    "get_cursor",
    "get_event",
    "insert_events",
    "mark_events",
    "pending_events",
    "set_cursor",
]

_INSERT = per_dialect(
    lambda insert: insert(inbound_events)
    .on_conflict_do_nothing(index_elements=["dedupe_key"])
    .returning(inbound_events.c.id, inbound_events.c.dedupe_key)
)
_IDS = sa.select(inbound_events.c.id, inbound_events.c.dedupe_key).where(
    inbound_events.c.dedupe_key.in_(sa.bindparam("b_keys", expanding=True))
)
_MARK = (
    inbound_events.update()
    .where(inbound_events.c.id == param("id"))
    .values(status=param("status"), note=param("note"), derived_at=param("now", WHEN))
)
_GET_CURSOR = sa.select(poll_cursors.c.cursor).where(poll_cursors.c.name == param("name"))


def _cursor_upsert(insert: InsertFn) -> sa.Insert:
    stmt = insert(poll_cursors)
    return stmt.on_conflict_do_update(
        index_elements=["name"], set_={"cursor": stmt.excluded.cursor, "updated_at": stmt.excluded.updated_at}
    )


_SET_CURSOR = per_dialect(_cursor_upsert)


def event_from_row(row: sa.Row[Any]) -> InboundEvent:
    m = row._mapping
    return InboundEvent(
        id=m["id"], source=EventSource(m["source"]), connection=m["connection"], dedupe_key=m["dedupe_key"],
        kind=m["kind"], payload=json_dict(m["payload"]), received_at=aware(m["received_at"]),
        status=EventStatus(m["status"]), derived_at=aware_or_none(m["derived_at"]), note=m["note"],
    )


def insert_events(conn: Connection, events: Sequence[NewInboundEvent], *, in_order: bool = False
                  ) -> list[InsertResult]:
    """Store each event whose dedupe key is new; a known key is reported with the id it already has.

    Rows go in sorted by key, so two batches sharing keys lock them in the same order on PostgreSQL (no
    deadlock); a key that another uncommitted batch holds waits for that batch, then counts as a duplicate.
    `in_order` keeps the order given instead, so ids follow it (one multi-row statement numbers its rows in
    order). Should it ever meet a receiver batch holding the same keys in the other order, PostgreSQL aborts
    one of the two (StoreUnavailable): the poller polls again, the sender retries; nothing is lost.
    """
    first: dict[str, NewInboundEvent] = {}
    for event in events:
        first.setdefault(event.dedupe_key, event)
    if not first:
        return []
    keys = list(first) if in_order else sorted(first)
    ids: dict[str, int] = {}
    new: set[str] = set()
    for row in conn.execute(_INSERT[conn.dialect.name], [_values(first[key]) for key in keys]):
        ids[row.dedupe_key] = row.id
        new.add(row.dedupe_key)
    for part in chunks([key for key in keys if key not in ids]):
        ids.update({row.dedupe_key: row.id for row in conn.execute(_IDS, {"b_keys": list(part)})})
    results: list[InsertResult] = []
    for event in events:
        key = event.dedupe_key
        results.append(InsertResult(id=ids[key], key=key, duplicate=key not in new))
        new.discard(key)  # a key repeated within the batch is a duplicate of its first copy
    return results


def _values(event: NewInboundEvent) -> dict[str, object]:
    return {
        "source": event.source.value, "connection": event.connection, "dedupe_key": event.dedupe_key,
        "kind": event.kind, "received_at": utc(event.received_at), "payload": dict(event.payload),
        "status": event.status.value, "derived_at": None, "note": event.note,
    }


def pending_events(conn: Connection, limit: int, *, lock: bool = False) -> list[InboundEvent]:
    """Events not yet derived, oldest first; with `lock`, rows another deriver holds are skipped (PG)."""
    stmt = (
        sa.select(inbound_events)
        .where(inbound_events.c.status == EventStatus.RECEIVED.value)
        .order_by(inbound_events.c.id)
        .limit(limit)
    )
    if lock and is_postgres(conn):
        stmt = stmt.with_for_update(skip_locked=True)
    return [event_from_row(row) for row in conn.execute(stmt)]


def get_event(conn: Connection, event_id: int) -> InboundEvent | None:
    row = conn.execute(sa.select(inbound_events).where(inbound_events.c.id == event_id)).first()
    return event_from_row(row) if row else None


def mark_events(conn: Connection, marks: Sequence[EventMark], now: datetime) -> int:
    """Record what derivation made of each event; returns how many events there were to mark."""
    if not marks:
        return 0
    values = [{"b_id": m.event_id, "b_status": m.status.value, "b_note": m.note, "b_now": utc(now)}
              for m in marks]
    return conn.execute(_MARK, values).rowcount


def get_cursor(conn: Connection, name: str) -> str | None:
    return conn.execute(_GET_CURSOR, {"b_name": name}).scalar_one_or_none()


def set_cursor(conn: Connection, name: str, cursor: str, now: datetime) -> None:
    conn.execute(_SET_CURSOR[conn.dialect.name], {"name": name, "cursor": cursor, "updated_at": utc(now)})
