"""Snapshots sandbox: injected faults — latency, 5xx rate, 429 storms, apply-then-reset, slow bodies."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError
from test_snapshots_sandbox_support import Served, assert_rate_headers, auth, serving, wait_for

from snapbridge.sandbox.snapshots import SandboxKey


@pytest.fixture(scope="module")
def box() -> Iterator[Served]:
    with serving() as served:
        yield served


@pytest.fixture(autouse=True)
def no_faults_left(box: Served) -> Iterator[None]:
    box.sandbox.clear_faults()
    yield
    box.sandbox.clear_faults()


@pytest.fixture
def client(box: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=box.url, timeout=10) as c:
        yield c


@pytest.fixture
def key(box: Served) -> SandboxKey:
    return box.roomy_key()


def test_latency_delays_every_api_answer(box: Served, client: httpx.Client, key: SandboxKey) -> None:
    box.sandbox.set_faults(latency_ms=300)
    started = time.monotonic()
    assert client.get("/locations", headers=auth(key)).status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    client.get("/_sandbox/faults")  # the control API is never slowed down
    assert time.monotonic() - started < 0.3


def test_an_error_rate_of_one_answers_5xx_and_applies_nothing(box: Served, client: httpx.Client,
                                                              key: SandboxKey) -> None:
    box.sandbox.set_faults(error_rate=1.0)
    statuses = set()
    for n in range(20):
        r = client.put(f"/customers/fault_{n}", headers=auth(key), json={"plan": "x"})
        statuses.add(r.status_code)
        assert r.json()["statusCode"] == r.status_code
        assert_rate_headers(r)
    assert statuses <= {500, 502, 503} and len(statuses) >= 2
    box.sandbox.clear_faults()
    assert client.get("/customers/fault_0", headers=auth(key)).status_code == 404
    assert box.sandbox.writes_to("fault_0") == 0
    assert box.sandbox.journal.entries(path="/customers/fault_0")[0].status in {500, 502, 503}


def test_the_statuses_can_be_chosen(box: Served, client: httpx.Client, key: SandboxKey) -> None:
    box.sandbox.set_faults(error_rate=1.0, error_statuses=[503])
    r = client.get("/events", headers=auth(key))
    assert r.status_code == 503 and r.json() == {"statusCode": 503, "message": "Service Unavailable"}


def test_a_partial_error_rate_is_the_same_sequence_for_the_same_seed() -> None:
    def run() -> list[int]:
        with serving(seed=7) as served, httpx.Client(base_url=served.url) as c:
            k = served.roomy_key()
            served.sandbox.set_faults(error_rate=0.5)
            return [c.get("/events", headers=auth(k)).status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert 200 in first and set(first) - {200}, "a rate of 0.5 over 30 requests gives both outcomes"


def test_a_storm_of_n_requests_then_normal_service(client: httpx.Client, key: SandboxKey) -> None:
    client.post("/_sandbox/faults", json={"storm_requests": 3})
    answers = [client.get("/locations", headers=auth(key)) for _ in range(4)]
    assert [r.status_code for r in answers] == [429, 429, 429, 200]
    for r in answers[:3]:
        assert r.json() == {"statusCode": 429, "message": "Too many requests"}
        assert r.headers["Retry-After"] == "1" and r.headers["X-RateLimit-Remaining"] == "0"
        assert_rate_headers(r)


def test_a_storm_for_a_duration(box: Served, client: httpx.Client, key: SandboxKey) -> None:
    started = time.monotonic()
    box.sandbox.set_faults(storm_seconds=0.4)
    first = client.get("/events", headers=auth(key))
    assert first.status_code == 429 and first.headers["Retry-After"] == "1"
    wait_for(lambda: client.get("/events", headers=auth(key)).status_code == 200, timeout=5, what="storm end")
    assert time.monotonic() - started >= 0.4


def test_a_reset_write_is_applied_but_never_answered(box: Served, client: httpx.Client, key: SandboxKey
                                                     ) -> None:
    box.sandbox.lose_next_response("PUT", "/customers/c_reset")
    headers = auth(key, Idempotency_Key="evt_9:step_0")
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.put("/customers/c_reset", headers=headers, json={"email": "ada@example.com"})
    # The write happened: the journal shows it and the customer is there.
    first, = box.sandbox.journal.entries(path="/customers/c_reset")
    assert first.status == 201 and first.entity == "c_reset" and not first.replayed
    assert box.sandbox.writes_to("c_reset") == 1
    # The client's retry with the same key gets the first answer back, marked as a replay.
    retry = client.put("/customers/c_reset", headers=headers, json={"email": "ada@example.com"})
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    _, second = box.sandbox.journal.entries(path="/customers/c_reset")
    assert second.idempotency_key == first.idempotency_key and second.replayed
    assert box.sandbox.writes_to("c_reset") == 1


def test_a_reset_only_hits_matching_writes(box: Served, client: httpx.Client, key: SandboxKey) -> None:
    box.sandbox.set_faults(reset_writes=1, reset_method="POST", reset_path="/events")
    assert client.get("/events", headers=auth(key)).status_code == 200
    assert client.put("/customers/not_reset", headers=auth(key), json={}).status_code == 201
    body = {"event_id": "evt_reset", "type": "signup", "timestamp": "2026-01-01T00:00:00Z"}
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.post("/events", headers=auth(key), json=body)
    again = client.post("/events", headers=auth(key), json=body)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"  # it was stored
    assert client.get("/_sandbox/faults").json()["reset_writes"] == 0


def test_reset_over_http_control_for_any_write(box: Served, client: httpx.Client, key: SandboxKey) -> None:
    assert client.post("/_sandbox/faults", json={"reset_writes": 2}).status_code == 200
    for n in range(2):
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            client.post("/locations", headers=auth(key), json={"name": f"Reset {n}"})
    made = client.post("/locations", headers=auth(key), json={"name": "Answered"})
    assert made.status_code == 201
    names = [e.entity for e in box.sandbox.journal.entries(method="POST", path="/locations")[-3:]]
    assert all(names) and len(set(names)) == 3


def test_a_slow_body_arrives_in_chunks_over_time(box: Served, client: httpx.Client, key: SandboxKey) -> None:
    box.sandbox.set_faults(slow_body_chunk_bytes=256, slow_body_delay_ms=40)
    started = time.monotonic()
    with client.stream("GET", "/locations", headers=auth(key), params={"limit": 5}) as r:
        assert r.status_code == 200
        chunks = list(r.iter_raw())
    elapsed = time.monotonic() - started
    raw = b"".join(chunks)
    pieces = -(-len(raw) // 256)
    assert pieces >= 4 and len(chunks) >= 2
    assert elapsed >= 0.04 * (pieces - 1)  # a pause between each two chunks
    assert len(json.loads(raw)["locations"]) == 5


def test_fault_settings_are_validated(box: Served, client: httpx.Client) -> None:
    for bad in ({"error_rate": 2}, {"error_statuses": [404]}, {"latency_ms": -1}, {"typo": 1}, [1]):
        r = client.post("/_sandbox/faults", json=bad)
        assert r.status_code == 422 and isinstance(r.json()["message"], list), bad
    with pytest.raises(ValidationError):
        box.sandbox.set_faults(storm_requests=-1)


def test_faults_merge_show_and_clear_over_http(client: httpx.Client) -> None:
    client.post("/_sandbox/faults", json={"latency_ms": 5})
    shown = client.post("/_sandbox/faults", json={"error_rate": 0.25}).json()
    assert shown["latency_ms"] == 5 and shown["error_rate"] == 0.25
    assert client.get("/_sandbox/faults").json() == shown
    cleared = client.delete("/_sandbox/faults").json()
    assert cleared["latency_ms"] == 0 and cleared["error_rate"] == 0.0
