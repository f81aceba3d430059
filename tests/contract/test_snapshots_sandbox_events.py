"""Snapshots sandbox: events — create with event_id idempotency, the 16 KiB data limit, batches, listing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_snapshots_sandbox_support import Served, auth, serving

from snapbridge.sandbox.snapshots import SandboxKey

LIMIT = 16 * 1024


@pytest.fixture(scope="module")
def box() -> Iterator[Served]:
    with serving() as served:
        yield served


@pytest.fixture
def client(box: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=box.url, timeout=10) as c:
        yield c


@pytest.fixture
def key(box: Served, request: pytest.FixtureRequest) -> SandboxKey:
    # One company per test: event ids are unique per company, and each test starts from none.
    return box.roomy_key(company_id=f"co_{request.node.name}")


def event(event_id: str, **more: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": "purchase", "timestamp": "2026-03-01T10:00:00Z", **more}


def data_of_size(size: int) -> dict[str, str]:
    """A data object whose compact UTF-8 JSON is exactly `size` bytes."""
    overhead = len(json.dumps({"x": ""}, separators=(",", ":")))
    return {"x": "a" * (size - overhead)}


def test_an_event_is_created_with_201(client: httpx.Client, key: SandboxKey) -> None:
    body = event("evt_1", customer_id="cus_1", data={"price_cents": 1900, "product": "Zürich ☕"})
    r = client.post("/events", headers=auth(key), json=body)
    assert r.status_code == 201
    assert r.json() == {"event": {"event_id": "evt_1", "type": "purchase",
                                  "timestamp": "2026-03-01T10:00:00.000Z", "location_id": None,
                                  "customer_id": "cus_1",
                                  "data": {"price_cents": 1900, "product": "Zürich ☕"}}}
    assert "Idempotent-Replayed" not in r.headers


def test_the_same_event_again_is_200_replayed_and_stored_once(box: Served, client: httpx.Client,
                                                               key: SandboxKey) -> None:
    first = client.post("/events", headers=auth(key), json=event("evt_same", data={"a": 1}))
    # The same instant spelled another way and keys in another order are the same event.
    reordered = {"data": {"a": 1}, "timestamp": "2026-03-01T11:00:00+01:00", "type": "purchase",
                 "event_id": "evt_same"}
    again = client.post("/events", headers=auth(key), json=reordered)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    listed = client.get("/events", headers=auth(key)).json()
    assert [e["event_id"] for e in listed["events"]] == ["evt_same"]
    assert box.sandbox.writes_to("evt_same") == 1


def test_the_same_event_id_with_another_body_is_409(client: httpx.Client, key: SandboxKey) -> None:
    client.post("/events", headers=auth(key), json=event("evt_clash", data={"a": 1}))
    r = client.post("/events", headers=auth(key), json=event("evt_clash", data={"a": 2}))
    assert r.status_code == 409
    assert r.json() == {"statusCode": 409, "message": "Event evt_clash already exists with a different body",
                        "meta": {"event_id": "evt_clash"}}


def test_data_of_16_kib_is_accepted_and_one_byte_more_is_422(client: httpx.Client, key: SandboxKey) -> None:
    at_limit = client.post("/events", headers=auth(key), json=event("evt_big", data=data_of_size(LIMIT)))
    assert at_limit.status_code == 201
    past = client.post("/events", headers=auth(key), json=event("evt_bigger", data=data_of_size(LIMIT + 1)))
    assert past.status_code == 422
    assert past.json()["message"] == [f"data must not be larger than {LIMIT} bytes (got {LIMIT + 1})"]


def test_data_size_counts_utf8_bytes(client: httpx.Client, key: SandboxKey) -> None:
    # "é" is 2 bytes in UTF-8: 8,200 of them are 16,400 bytes although only 8,200 characters.
    r = client.post("/events", headers=auth(key), json=event("evt_utf8", data={"x": "é" * 8200}))
    assert r.status_code == 422


@pytest.mark.parametrize(("body", "messages"), [
    ({}, ["event_id should not be empty", "type should not be empty", "timestamp should not be empty"]),
    (event("e", timestamp="2026-03-01T10:00:00"),
     ["timestamp must be a valid ISO 8601 date string with a time zone offset"]),
    (event("e", timestamp="2026-03-01"),
     ["timestamp must be a valid ISO 8601 date string with a time zone offset"]),
    (event("e", data=[1, 2]), ["data must be an object"]),
    (event("e", type=""), ["type should not be empty"]),
    (event("e", location_id="nowhere"), ["location_id nowhere is not a location of this company"]),
    (event("e", source="gumroad"), ["property source should not exist"]),
])
def test_invalid_events_are_422(client: httpx.Client, key: SandboxKey, body: dict[str, Any],
                                messages: list[str]) -> None:
    r = client.post("/events", headers=auth(key), json=body)
    assert r.status_code == 422
    assert r.json() == {"statusCode": 422, "message": messages, "error": "Unprocessable Entity"}


def test_a_batch_answers_per_event(client: httpx.Client, key: SandboxKey) -> None:
    client.post("/events", headers=auth(key), json=event("evt_b0"))
    batch = [event("evt_b1"), event("evt_b0"), event("evt_b0", type="refund"), {"type": "signup"},
             event("evt_b1")]
    r = client.post("/events/batch", headers=auth(key), json={"events": batch})
    assert r.status_code == 200
    assert r.json() == {"results": [
        {"event_id": "evt_b1", "status": "created", "error": None},
        {"event_id": "evt_b0", "status": "duplicate", "error": None},
        {"event_id": "evt_b0", "status": "error",
         "error": "Event evt_b0 already exists with a different body"},
        {"event_id": None, "status": "error",
         "error": "event_id should not be empty; timestamp should not be empty"},
        {"event_id": "evt_b1", "status": "duplicate", "error": None},
    ]}
    stored = client.get("/events", headers=auth(key)).json()
    assert [e["event_id"] for e in stored["events"]] == ["evt_b0", "evt_b1"]


def test_a_batch_of_100_is_accepted_and_101_is_422(client: httpx.Client, key: SandboxKey) -> None:
    hundred = [event(f"evt_{n:03d}") for n in range(100)]
    r = client.post("/events/batch", headers=auth(key), json={"events": hundred})
    assert r.status_code == 200 and [x["status"] for x in r.json()["results"]] == ["created"] * 100
    over = client.post("/events/batch", headers=auth(key), json={"events": [*hundred, event("evt_x")]})
    assert over.status_code == 422
    assert over.json()["message"] == ["events must contain no more than 100 elements"]


@pytest.mark.parametrize(("body", "messages"), [
    ({"events": []}, ["events should not be empty"]),
    ({}, ["events must be an array"]),
    ({"events": {"a": 1}}, ["events must be an array"]),
    ({"events": [event("e")], "mode": "fast"}, ["property mode should not exist"]),
])
def test_bad_batches_are_422(client: httpx.Client, key: SandboxKey, body: dict[str, Any],
                             messages: list[str]) -> None:
    r = client.post("/events/batch", headers=auth(key), json=body)
    assert r.status_code == 422 and r.json()["message"] == messages


def test_a_batch_counts_as_one_request_against_the_rate_limit(box: Served, client: httpx.Client) -> None:
    tight = box.sandbox.create_key(["events.write"], company_id="co_batch_rate", burst_limit=3)
    batch = {"events": [event(f"e{n}") for n in range(100)]}
    r = client.post("/events/batch", headers=auth(tight), json=batch)
    assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "2"
    assert r.headers["X-RateLimit-Daily-Remaining"] == str(200_000 - 1)


def test_list_filters_by_customer_and_type_and_pages(client: httpx.Client, key: SandboxKey) -> None:
    for n in range(7):
        kind = "refund" if n % 3 == 0 else "purchase"
        client.post("/events", headers=auth(key), json=event(f"evt_{n}", type=kind, customer_id=f"c{n % 2}"))
    by_customer = client.get("/events", headers=auth(key), params={"customer_id": "c0"}).json()
    assert [e["event_id"] for e in by_customer["events"]] == ["evt_0", "evt_2", "evt_4", "evt_6"]
    by_both = client.get("/events", headers=auth(key), params={"customer_id": "c0", "type": "refund"}).json()
    assert [e["event_id"] for e in by_both["events"]] == ["evt_0", "evt_6"]
    page = client.get("/events", headers=auth(key), params={"limit": 3}).json()
    assert page["meta"]["total"] == 7 and page["meta"]["startAfterId"] == "evt_2"
    rest = client.get(page["meta"]["nextPageUrl"], headers=auth(key)).json()
    assert [e["event_id"] for e in rest["events"]] == ["evt_3", "evt_4", "evt_5"]
    bad = client.get("/events", headers=auth(key), params={"location_id": "x"})
    assert bad.status_code == 422 and bad.json()["message"] == ["property location_id should not exist"]


def test_the_seeded_events_are_listed(box: Served, client: httpx.Client) -> None:
    page = client.get("/events", headers=auth(box.roomy_key()), params={"limit": 100}).json()
    assert page["meta"]["total"] >= 12
    assert {"purchase", "refund", "signup"} <= {e["type"] for e in page["events"]}


def test_a_bound_keys_events_take_its_location(box: Served, client: httpx.Client) -> None:
    bound = box.sandbox.keys()[3]
    r = client.post("/events", headers=auth(bound), json=event("evt_bound_default"))
    assert r.status_code == 201 and r.json()["event"]["location_id"] == bound.location_id
    listed = client.get("/events", headers=auth(bound), params={"limit": 100}).json()["events"]
    assert listed and {e["location_id"] for e in listed} == {bound.location_id}
