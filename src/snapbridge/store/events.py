"""Inbound events (stored once per dedupe key, in batches) and the pollers' cursors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
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

# New events go in with one statement per batch, written for the driver rather than compiled per row: the
# commit thread holds the GIL for SQLAlchemy's per-row parameter handling, which cost more than the database's
# own work, and it takes that time from the event loop answering webhooks.
_NEW_COLUMNS = ("source", "connection", "dedupe_key", "kind", "received_at", "payload", "status", "note")
_COLUMN_LIST = ", ".join(_NEW_COLUMNS)
_ON_CONFLICT = "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key"
# PostgreSQL: the batch is one JSON array parameter (a row per event, its values in _NEW_COLUMNS order), so the
# text never changes. psycopg rewrites the placeholders of any statement with over 50 parameters in Python,
# 20-40 µs per row of a multi-row VALUES. ORDINALITY keeps the rows, and so their ids, in the order given.
# The payload rides as its own JSON text in a string: PostgreSQL's JSON functions refuse to unescape \u0000,
# which a payload's JSON may hold (the json column stores it), but never its text, which json.dumps escapes.
_POSTGRES_INSERT = (
    f"INSERT INTO {inbound_events.name} ({_COLUMN_LIST}) "  # noqa: S608 (names from the schema only)
    "SELECT r->>0, r->>1, r->>2, r->>3, (r->>4)::timestamptz, (r->>5)::json, r->>6, r->>7 "
    f"FROM json_array_elements(%s::json) WITH ORDINALITY AS t(r, n) ORDER BY n {_ON_CONFLICT}"
)


@lru_cache(maxsize=128)
def _sqlite_insert(rows: int) -> str:
    """A multi-row VALUES for `rows` events; sqlite3 keeps each text's prepared statement (128 per connection)."""
    values = ", ".join(["(" + ", ".join(["?"] * len(_NEW_COLUMNS)) + ")"] * rows)
    return f"INSERT INTO {inbound_events.name} ({_COLUMN_LIST}) VALUES {values} {_ON_CONFLICT}"  # noqa: S608


def _insert_new(conn: Connection, events: list[NewInboundEvent]) -> sa.CursorResult[int, str]:
    """INSERT the events in the order given; the result holds (id, dedupe_key) of each row that went in."""
    if is_postgres(conn):
        rows = [[e.source.value, e.connection, e.dedupe_key, e.kind, utc(e.received_at).isoformat(),
                 json.dumps(dict(e.payload)), e.status.value, e.note] for e in events]
        return conn.exec_driver_sql(_POSTGRES_INSERT, (json.dumps(rows),))
    # SQLite: each value through its column's own bind processor, so the text stored is what a compiled
    # INSERT stores (SQLAlchemy's datetime format, its JSON serializer).
    dialect = conn.dialect
    when = inbound_events.c.received_at.type.dialect_impl(dialect).bind_processor(dialect) or _unchanged
    payload = inbound_events.c.payload.type.dialect_impl(dialect).bind_processor(dialect) or _unchanged
    values: list[object] = []
    for e in events:
        values += (e.source.value, e.connection, e.dedupe_key, e.kind, when(utc(e.received_at)),
                   payload(dict(e.payload)), e.status.value, e.note)
    return conn.exec_driver_sql(_sqlite_insert(len(events)), tuple(values))


def _unchanged(value: Any) -> Any:
    return value


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
    for part in chunks(keys):  # in order, each part numbering its rows in order
        for row_id, inserted_key in _insert_new(conn, [first[key] for key in part]):
            ids[inserted_key] = row_id
            new.add(inserted_key)
    for part in chunks([key for key in keys if key not in ids]):
        ids.update({row.dedupe_key: row.id for row in conn.execute(_IDS, {"b_keys": list(part)})})
    results: list[InsertResult] = []
    for event in events:
        key = event.dedupe_key
        results.append(InsertResult(id=ids[key], key=key, duplicate=key not in new))
        new.discard(key)  # a key repeated within the batch is a duplicate of its first copy
    return results


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
