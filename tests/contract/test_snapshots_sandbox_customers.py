"""Snapshots sandbox: customers (upsert, get, list by email) and the Idempotency-Key on every write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_snapshots_sandbox_support import Served, auth, serving

from snapbridge.sandbox.snapshots import SandboxKey

FIELDS = {"customer_id", "email", "name", "plan", "location_id", "tags", "last_activity_at", "updated_at"}


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
    return box.roomy_key(company_id=f"co_{request.node.name}")


def test_put_creates_with_201_then_updates_with_200(client: httpx.Client, key: SandboxKey) -> None:
    created = client.put("/customers/cus_a", headers=auth(key),
                         json={"email": "ada@example.com", "name": "Ada Łovelace", "plan": "pro",
                               "tags": ["vip", "beta"], "last_activity_at": "2026-02-01T08:00:00+02:00"})
    assert created.status_code == 201
    body = created.json()["customer"]
    assert set(body) == FIELDS
    assert body["tags"] == ["vip", "beta"] and body["last_activity_at"] == "2026-02-01T06:00:00.000Z"
    updated = client.put("/customers/cus_a", headers=auth(key), json={"plan": "unlimited", "tags": ["gold"]})
    assert updated.status_code == 200
    after = updated.json()["customer"]
    assert after["plan"] == "unlimited" and after["tags"] == ["gold"]  # tags replace, they do not merge
    assert after["email"] == "ada@example.com" and after["name"] == "Ada Łovelace"  # untouched fields stay
    assert client.get("/customers/cus_a", headers=auth(key)).json() == {"customer": after}


def test_tags_can_be_emptied_and_fields_cleared(client: httpx.Client, key: SandboxKey) -> None:
    client.put("/customers/cus_b", headers=auth(key),
               json={"email": "b@example.com", "tags": ["x"], "plan": "p"})
    r = client.put("/customers/cus_b", headers=auth(key), json={"tags": [], "plan": None})
    assert r.json()["customer"]["tags"] == [] and r.json()["customer"]["plan"] is None


def test_an_unknown_customer_is_404(client: httpx.Client, key: SandboxKey) -> None:
    r = client.get("/customers/cus_nobody", headers=auth(key))
    assert r.status_code == 404
    assert r.json() == {"statusCode": 404, "message": "Customer with id cus_nobody not found"}


def test_a_customer_id_with_reserved_characters_round_trips(client: httpx.Client, key: SandboxKey) -> None:
    r = client.put("/customers/buyer%2F42%20%C3%A9", headers=auth(key), json={"name": "Slash"})
    assert r.status_code == 201 and r.json()["customer"]["customer_id"] == "buyer/42 é"
    assert client.get("/customers/buyer%2F42%20%C3%A9", headers=auth(key)).status_code == 200


def test_list_by_email_ignores_case_and_pages(client: httpx.Client, key: SandboxKey) -> None:
    for n in range(5):
        client.put(f"/customers/c{n}", headers=auth(key), json={"email": f"user{n % 2}@example.com"})
    found = client.get("/customers", headers=auth(key), params={"email": "USER0@Example.com"}).json()
    assert [c["customer_id"] for c in found["customers"]] == ["c0", "c2", "c4"]
    assert found["meta"] == {"total": 3, "startAfterId": None, "nextPageUrl": None}
    page = client.get("/customers", headers=auth(key), params={"limit": 2}).json()
    assert [c["customer_id"] for c in page["customers"]] == ["c0", "c1"] and page["meta"]["total"] == 5
    assert page["meta"]["startAfterId"] == "c1" and "startAfterId=c1" in page["meta"]["nextPageUrl"]


def test_the_seeded_customers_have_unicode_names(box: Served, client: httpx.Client) -> None:
    page = client.get("/customers", headers=auth(box.roomy_key())).json()
    names = {c["name"] for c in page["customers"]}
    assert {"李小龍", "Zoë Ångström", "José Martínez Ñúñez"} <= names


@pytest.mark.parametrize(("body", "messages"), [
    ({"email": "nope"}, ["email must be an email"]),
    ({"tags": "vip"}, ["tags must be an array"]),
    ({"tags": ["ok", 3]}, ["each value in tags must be a string"]),
    ({"tags": [str(n) for n in range(101)]}, ["tags must contain no more than 100 elements"]),
    ({"last_activity_at": "soon"},
     ["last_activity_at must be a valid ISO 8601 date string with a time zone offset"]),
    ({"location_id": "nowhere"}, ["location_id nowhere is not a location of this company"]),
    ({"customer_id": "other"}, ["property customer_id should not exist"]),
])
def test_invalid_customers_are_422(client: httpx.Client, key: SandboxKey, body: dict[str, Any],
                                   messages: list[str]) -> None:
    r = client.put("/customers/cus_bad", headers=auth(key), json=body)
    assert r.status_code == 422
    assert r.json() == {"statusCode": 422, "message": messages, "error": "Unprocessable Entity"}


def test_a_bound_key_only_reaches_customers_of_its_location(box: Served, client: httpx.Client) -> None:
    bound = box.sandbox.keys()[3]
    made = client.put("/customers/cus_bound_own", headers=auth(bound), json={"name": "Mine"})
    assert made.status_code == 201 and made.json()["customer"]["location_id"] == bound.location_id
    full = box.roomy_key()
    others = [c for c in client.get("/customers", headers=auth(full)).json()["customers"]
              if c["location_id"] != bound.location_id]
    assert others
    assert client.get(f"/customers/{others[0]['customer_id']}", headers=auth(bound)).status_code == 403
    listed = client.get("/customers", headers=auth(bound), params={"limit": 100}).json()["customers"]
    assert {c["location_id"] for c in listed} == {bound.location_id}


# ---- Idempotency-Key ------------------------------------------------------------------------------------


def test_the_same_key_and_body_replays_the_first_answer(box: Served, client: httpx.Client, key: SandboxKey
                                                        ) -> None:
    headers = auth(key, Idempotency_Key="evt_9:step_0")
    first = client.put("/customers/cus_idem", headers=headers, json={"email": "i@example.com", "plan": "a"})
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    second = client.put("/customers/cus_idem", headers=headers, json={"plan": "a", "email": "i@example.com"})
    assert second.status_code == 201 and second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    journal = box.sandbox.journal.entries(path="/customers/cus_idem")
    assert [(e.idempotency_key, e.replayed) for e in journal] == [("evt_9:step_0", False),
                                                                  ("evt_9:step_0", True)]
    assert box.sandbox.writes_to("cus_idem") == 1


def test_the_same_key_with_another_body_is_422(client: httpx.Client, key: SandboxKey) -> None:
    headers = auth(key, Idempotency_Key="k-mismatch")
    client.put("/customers/cus_m", headers=headers, json={"plan": "a"})
    r = client.put("/customers/cus_m", headers=headers, json={"plan": "b"})
    assert r.status_code == 422
    assert r.json() == {"statusCode": 422, "error": "Unprocessable Entity",
                        "message": ["Idempotency-Key has already been used with a different request"]}
    other_path = client.put("/customers/cus_m2", headers=headers, json={"plan": "a"})
    assert other_path.status_code == 422
    assert client.get("/customers/cus_m", headers=auth(key)).json()["customer"]["plan"] == "a"


def test_the_key_replays_on_every_write_operation(box: Served, client: httpx.Client, key: SandboxKey) -> None:
    made = client.post("/locations", headers=auth(key), json={"name": "Idem"})
    loc = made.json()["location"]["location_id"]
    writes = [("POST", "/locations", {"name": "Idem twice"}),
              ("PUT", f"/locations/{loc}", {"tier": "gold"}),
              ("POST", "/events", {"event_id": "e1", "type": "signup", "timestamp": "2026-01-01T00:00:00Z"}),
              ("POST", "/events/batch", {"events": [{"event_id": "e2", "type": "signup",
                                                     "timestamp": "2026-01-01T00:00:00Z"}]})]
    for n, (method, path, body) in enumerate(writes):
        headers = auth(key, Idempotency_Key=f"every-{n}")
        first = client.request(method, path, headers=headers, json=body)
        again = client.request(method, path, headers=headers, json=body)
        assert again.status_code == first.status_code and again.json() == first.json(), path
        assert again.headers["Idempotent-Replayed"] == "true"
    assert client.get("/locations", headers=auth(key)).json()["meta"]["total"] == 2  # not 3


@pytest.mark.parametrize(("length", "status"), [(255, 201), (256, 422), (0, 422)])
def test_the_key_may_be_up_to_255_characters(client: httpx.Client, key: SandboxKey, length: int,
                                              status: int) -> None:
    r = client.put(f"/customers/len{length}", headers=auth(key, Idempotency_Key="k" * length), json={})
    assert r.status_code == status
    if status == 422:
        assert r.json()["message"] == ["Idempotency-Key must be 1 to 255 characters long"]


def test_keys_are_kept_per_company(box: Served, client: httpx.Client) -> None:
    one, two = box.roomy_key(company_id="co_idem_1"), box.roomy_key(company_id="co_idem_2")
    for k in (one, two):
        r = client.put("/customers/shared", headers=auth(k, Idempotency_Key="same-key"), json={"plan": "x"})
        assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    sibling = box.roomy_key(company_id="co_idem_1")  # another key of the same company shares the key space
    r = client.put("/customers/shared", headers=auth(sibling, Idempotency_Key="same-key"), json={"plan": "x"})
    assert r.headers["Idempotent-Replayed"] == "true"


def test_a_first_answer_that_failed_validation_is_replayed_too(client: httpx.Client, key: SandboxKey) -> None:
    headers = auth(key, Idempotency_Key="bad-first")
    first = client.put("/customers/cus_v", headers=headers, json={"email": "bad"})
    second = client.put("/customers/cus_v", headers=headers, json={"email": "bad"})
    assert first.status_code == second.status_code == 422
    assert second.headers["Idempotent-Replayed"] == "true"
