"""Bodies that parse but could not be stored or read back are refused with 400 (never 200, never a 'retry later'),
a sender that stalls mid-body gets 408, and none of them costs the webhooks sent beside it (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from test_receiver_support import FORM, GUMROAD_DATA, Served, sale_form, serve, signature, snapshots_body

from snapbridge.errors import InvalidInput, StoreUnavailable
from snapbridge.runtime import ReceiverLimits
from snapbridge.store import EventSource, NewInboundEvent, Store, is_sqlite

JSON_TYPE = {"Content-Type": "application/json"}


@pytest.fixture
def served(migrated: Engine, tmp_path: Path) -> Iterator[Served]:
    with serve(migrated, tmp_path, limits=ReceiverLimits(body_timeout_seconds=0.5)) as made:
        yield made


def _sale_json(**changes: str) -> bytes:
    fields = json.loads((GUMROAD_DATA / "sale.json").read_bytes())
    text = json.dumps({**fields, **{k: "@@" + k for k in changes}})
    for key, raw in changes.items():  # spelled as the sender wrote it, escapes included
        text = text.replace(f'"@@{key}"', raw)
    return text.encode()


def _deep_json(levels: int) -> bytes:
    body = _sale_json().rstrip()
    return body[:-1] + b', "extra": ' + b"[" * levels + b"1" + b"]" * levels + b"}"


def _deep_form(levels: int) -> bytes:
    return sale_form("deep-form") + b"&x" + b"[b]" * levels + b"=1"


GUMROAD_UNSTORABLE = [
    pytest.param(_sale_json(email='"ada\\udc00@example.com"'), JSON_TYPE, "not valid Unicode", id="surrogate-email"),
    pytest.param(_sale_json(sale_id='"\\ud800"'), JSON_TYPE, "not valid Unicode", id="surrogate-sale-id"),
    pytest.param(_deep_json(40), JSON_TYPE, "nested more than", id="json-40-deep"),
    pytest.param(_deep_json(3_000), JSON_TYPE, "nested too deeply", id="json-3000-deep"),  # past json's own
    pytest.param(_deep_form(40), {"Content-Type": FORM}, "nested more than", id="form-40-deep"),
    pytest.param(_deep_form(1_500), {"Content-Type": FORM}, "nested more than", id="form-1500-deep"),
    pytest.param(_sale_json(sale_timestamp='"9999-12-31T23:59:59-01:00"'), JSON_TYPE, "out of the range of dates",
                 id="timestamp-past-9999"),
    pytest.param(_sale_json(sale_timestamp='"0001-01-01T00:00:00+01:00"'), JSON_TYPE, "out of the range of dates",
                 id="timestamp-before-1"),
]


@pytest.mark.parametrize(("body", "headers", "message"), GUMROAD_UNSTORABLE)
def test_gumroad_bodies_that_could_not_be_kept_get_400(served: Served, body: bytes, headers: dict[str, str],
                                                       message: str) -> None:
    with httpx.Client(timeout=10) as http:
        answer = http.post(served.gumroad_url(), content=body, headers=headers)
        assert answer.status_code == 400, answer.text
        assert message in answer.json()["error"] and "Traceback" not in answer.text
        assert served.rows() == []
        fine = http.post(served.gumroad_url(), content=sale_form("after-the-refusal"), headers={"Content-Type": FORM})
    assert fine.status_code == 200, fine.text
    assert served.keys() == ["gumroad:sale:after-the-refusal"]


def _signed_raw(webhook_id: str, **raw_fields: str) -> bytes:
    body = snapshots_body(webhook_id)
    extra = "".join(f', "{key}": {raw}' for key, raw in raw_fields.items())
    return body[:-1] + extra.encode() + b"}"


SNAPSHOTS_UNSTORABLE = [
    pytest.param(snapshots_body("wh_x").replace(b'"wh_x"', b'"\\ud800"'), "not valid Unicode", id="surrogate-id"),
    pytest.param(_signed_raw("wh_deep", extra="[" * 40 + "1" + "]" * 40), "nested more than", id="40-deep"),
    pytest.param(_signed_raw("wh_deeper", extra="[" * 3_000 + "1" + "]" * 3_000), "nested too deeply",
                 id="3000-deep"),
    pytest.param(snapshots_body("wh_late", updated_at="9999-12-31T23:59:59-01:00"), "out of the range of dates",
                 id="updated-at-past-9999"),
]


@pytest.mark.parametrize(("body", "message"), SNAPSHOTS_UNSTORABLE)
def test_signed_snapshots_bodies_that_could_not_be_kept_get_400_not_429(served: Served, body: bytes,
                                                                       message: str) -> None:
    with httpx.Client(timeout=10) as http:
        answer = http.post(served.snapshots_url, content=body, headers=signature(body))
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"] and "Retry-After" not in answer.headers
    assert served.rows() == []


def test_a_refused_surrogate_does_not_fail_the_webhooks_sent_with_it(served: Served) -> None:
    # Sent at once, so they share group commits (on PostgreSQL the bad one would fail its whole batch).
    bodies = [sale_form(f"mixed-{n}") for n in range(12)]
    bodies.insert(5, _sale_json(sale_id='"bad-\\ud800"'))

    def send(body: bytes) -> int:
        headers = JSON_TYPE if body.startswith(b"{") else {"Content-Type": FORM}
        with httpx.Client(timeout=10) as client:
            return client.post(served.gumroad_url(), content=body, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        statuses = list(pool.map(send, bodies))
    assert statuses == [200] * 5 + [400] + [200] * 7
    assert sorted(served.keys()) == sorted(f"gumroad:sale:mixed-{n}" for n in range(12))


def _stalled_answer(served: Served, sale_id: str) -> str:
    url = httpx.URL(served.gumroad_url())
    body = sale_form(sale_id)
    head = (f"POST {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: {FORM}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(head + body[: len(body) // 2])  # and then nothing more
        answer = ""
        while "}" not in answer:  # the head and the JSON body may come in two segments
            part = sock.recv(65536).decode()
            assert part, f"the connection closed after {answer!r}"
            answer += part
    return answer


def test_a_sender_that_stalls_mid_body_gets_408_and_nothing_is_stored(served: Served) -> None:
    # Twice: the second stall comes after every deadline of the first was settled (none pending).
    for attempt in range(2):
        answer = _stalled_answer(served, f"stalled-{attempt}")
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "did not arrive within 0.5 seconds" in answer
    with httpx.Client(timeout=10) as http:  # the connection pool and the receiver are fine afterwards
        fine = http.post(served.gumroad_url(), content=sale_form("after-stalls"), headers={"Content-Type": FORM})
    assert fine.status_code == 200, fine.text
    assert served.keys() == ["gumroad:sale:after-stalls"]


def test_the_store_tells_bad_data_from_an_outage(migrated: Engine) -> None:
    store = Store(migrated)
    try:
        event = NewInboundEvent(EventSource.GUMROAD, "g", "sale:\ud800", "sale", {}, datetime.now(UTC))
        with pytest.raises(Exception) as refused:  # each engine words it its own way
            store.insert_events([event])
        assert not isinstance(refused.value, StoreUnavailable)  # an outage would be retried forever
        if not is_sqlite(migrated):  # SQLite's driver refuses to encode it before the database sees it
            assert isinstance(refused.value, InvalidInput)
            assert "the database refused a value" in str(refused.value)
    finally:
        store.close()
