"""What the receiver's batch INSERT keeps, on both engines: the text SQLAlchemy's compiled INSERT kept, whatever
the keys and payloads hold, and the answer a stored webhook gets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.responses import JSONResponse
from test_receiver_support import FORM, Served, sale_form, serve

from snapbridge.store import EventSource, EventStatus, NewInboundEvent, Store, is_sqlite
from snapbridge.store.schema import inbound_events

# Microseconds, and a zone other than UTC: both must come out as the compiled INSERT wrote them.
AT = datetime(2026, 7, 1, 12, 30, 45, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
KEYS = [
    "plain",
    "quotes ' \" and `",
    "placeholders ? %s %(name)s $1 :name",
    "back\\slash and json [1, {\"a\": 2}]",
    "unicode Zoë Ångström 日本 ☕",
    "x" * 500,  # the longest key the column takes
]
PAYLOAD: dict[str, object] = {
    "text": "Zoë Ångström 日本 ☕", "quote": 'a"b', "backslash": "a\\b", "nul": "a\x00b", "newline": "a\nb",
    "nested": {"list": [1, 2.5, None, True, False], "empty": {}}, "big": 2**63 - 1, "negative": -0.5, "": "",
}


@pytest.fixture
def served(migrated: Engine, tmp_path: Path) -> Iterator[Served]:
    with serve(migrated, tmp_path) as made:
        yield made


def _event(key: str, *, note: str = "") -> NewInboundEvent:
    return NewInboundEvent(EventSource.SNAPSHOTS, "snap", key, "LocationUpdate", PAYLOAD, AT, note=note)


def _stored_text(engine: Engine, key: str) -> tuple[object, ...]:
    """The row's columns as the database holds them, with no SQLAlchemy type processing on the way out."""
    payload = "payload" if is_sqlite(engine) else "payload::text"
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(f"SELECT source, connection, kind, received_at, {payload}, status, derived_at, note "  # noqa: S608
                    "FROM inbound_events WHERE dedupe_key = :key"),
            {"key": key},
        ).one()
    return tuple(row)


def test_a_batch_stores_what_the_compiled_insert_stored(store: Store, migrated: Engine) -> None:
    with migrated.begin() as conn:  # the reference: SQLAlchemy's own INSERT, compiled with its types
        for key in KEYS:
            conn.execute(sa.insert(inbound_events).values(
                source="snapshots", connection="snap", dedupe_key=f"ref {key}"[:500], kind="LocationUpdate",
                received_at=AT.astimezone(UTC), payload=PAYLOAD, status="received", derived_at=None,
                note="polled"))
    results = store.insert_events([_event(f"new {key}"[:500], note="polled") for key in KEYS])
    assert not any(result.duplicate for result in results)
    for key in KEYS:
        assert _stored_text(migrated, f"new {key}"[:500]) == _stored_text(migrated, f"ref {key}"[:500])


def test_awkward_keys_and_payloads_come_back_as_they_went_in(store: Store) -> None:
    results = store.insert_events([_event(key) for key in KEYS])
    assert [result.key for result in results] == KEYS and not any(result.duplicate for result in results)
    for key, result in zip(KEYS, results, strict=True):
        stored = store.get_event(result.id)
        assert stored is not None
        assert (stored.dedupe_key, stored.payload, stored.received_at) == (key, PAYLOAD, AT)
        assert stored.status is EventStatus.RECEIVED and stored.derived_at is None
    again = store.insert_events([_event(key) for key in reversed(KEYS)])
    assert [(r.id, r.duplicate) for r in again] == [(r.id, True) for r in reversed(results)]


def test_a_stored_webhook_is_answered_with_what_json_response_renders(served: Served) -> None:
    answer = httpx.post(served.gumroad_url(), content=sale_form("answer-1"), headers={"Content-Type": FORM})
    (row,) = served.rows()
    again = httpx.post(served.gumroad_url(), content=sale_form("answer-1"), headers={"Content-Type": FORM})
    for response, duplicate in ((answer, False), (again, True)):
        expected = JSONResponse({"status": "stored", "id": row.id, "duplicate": duplicate})
        assert response.status_code == 200
        assert response.content == expected.body
        assert response.headers["content-type"] == expected.headers["content-type"]


def test_a_nul_in_an_id_is_refused_with_400_and_one_in_a_value_is_stored(served: Served) -> None:
    refused = httpx.post(served.gumroad_url(), content=sale_form("nul%00id"), headers={"Content-Type": FORM})
    assert refused.status_code == 400 and "NUL" in refused.json()["error"]
    assert served.rows() == []
    body = sale_form("nul-in-a-value") + b"&offer_code=LA%00UNCH"
    stored = httpx.post(served.gumroad_url(), content=body, headers={"Content-Type": FORM})
    assert stored.status_code == 200, stored.text
    (row,) = served.rows()
    assert row.payload["offer_code"] == "LA\x00UNCH"
