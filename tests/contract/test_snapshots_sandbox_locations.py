"""Snapshots sandbox: locations — list (pagination, filters), get, create (409 on external_id), update."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_snapshots_sandbox_support import Served, auth, serving

from snapbridge.sandbox.snapshots import SandboxKey

FIELDS = {"location_id", "company_id", "name", "timezone", "email", "region", "onboarding_status", "tier",
          "snapshot_id", "external_id", "created_at", "updated_at"}


@pytest.fixture(scope="module")
def box() -> Iterator[Served]:
    with serving() as served:
        yield served


@pytest.fixture
def client(box: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=box.url, timeout=10) as c:
        yield c


@pytest.fixture
def key(box: Served) -> SandboxKey:
    return box.roomy_key()


def test_the_seeded_locations_have_unicode_names_and_valid_fields(client: httpx.Client, key: SandboxKey
                                                                  ) -> None:
    page = client.get("/locations", headers=auth(key), params={"limit": 100}).json()
    names = {x["name"] for x in page["locations"]}
    assert {"東京スタジオ", "Café Zürich Wellness", "Ålesund Tannlege 🦷"} <= names
    for location in page["locations"]:
        assert set(location) == FIELDS
        assert len(location["location_id"]) == 20 and location["location_id"].isalnum()
        assert location["onboarding_status"] in {"pending", "active", "paused", "cancelled"}
        assert location["created_at"].endswith("Z") and location["updated_at"].endswith("Z")


def test_the_list_defaults_to_20_and_walks_every_page_in_id_order(box: Served, client: httpx.Client) -> None:
    walker = box.roomy_key(company_id="company_walk")
    for n in range(45):
        r = client.post("/locations", headers=auth(walker),
                        json={"name": f"Walk {n} — Ærø", "timezone": "Europe/Copenhagen"})
        assert r.status_code == 201
    first = client.get("/locations", headers=auth(walker))
    body = first.json()
    assert len(body["locations"]) == 20 and body["meta"]["total"] == 45
    seen: list[str] = []
    url: str | None = str(first.url)
    sizes = []
    while url:
        page = client.get(url, headers=auth(walker)).json()
        sizes.append(len(page["locations"]))
        seen.extend(x["location_id"] for x in page["locations"])
        assert page["meta"]["total"] == 45
        if page["meta"]["nextPageUrl"]:
            assert page["meta"]["startAfterId"] == page["locations"][-1]["location_id"]
        else:
            assert page["meta"]["startAfterId"] is None
        url = page["meta"]["nextPageUrl"]
    assert sizes == [20, 20, 5]
    assert seen == sorted(seen) and len(set(seen)) == 45
    by_cursor = client.get("/locations", headers=auth(walker), params={"limit": 10, "startAfterId": seen[39]})
    assert [x["location_id"] for x in by_cursor.json()["locations"]] == seen[40:]
    assert by_cursor.json()["meta"]["nextPageUrl"] is None


@pytest.mark.parametrize(("limit", "count"), [("1", 1), ("2", 2), ("100", 3), ("", 3), ("+3", 3)])
def test_limit_is_accepted_from_1_to_100(box: Served, client: httpx.Client, limit: str, count: int) -> None:
    k = box.roomy_key(company_id=f"company_limit_{limit}")
    for n in range(3):
        client.post("/locations", headers=auth(k), json={"name": f"L{n}"})
    r = client.get("/locations", headers=auth(k), params={"limit": limit})
    assert r.status_code == 200 and len(r.json()["locations"]) == count


@pytest.mark.parametrize(("params", "message"), [
    ({"limit": "0"}, "limit must not be less than 1"),
    ({"limit": "101"}, "limit must not be greater than 100"),
    ({"limit": "ten"}, "limit must be an integer number"),
    ({"updated_since": "last tuesday"},
     "updated_since must be a valid ISO 8601 date string with a time zone offset"),
    ({"startAfterID": "abc"}, "property startAfterID should not exist"),
])
def test_bad_list_parameters_are_422_with_a_list(client: httpx.Client, key: SandboxKey,
                                                 params: dict[str, str], message: str) -> None:
    r = client.get("/locations", headers=auth(key), params=params)
    assert r.status_code == 422
    assert r.json() == {"statusCode": 422, "message": [message], "error": "Unprocessable Entity"}


def test_filters_by_external_id_and_updated_since(box: Served, client: httpx.Client) -> None:
    k = box.roomy_key(company_id="company_filters")
    a = client.post("/locations", headers=auth(k), json={"name": "A", "external_id": "gumroad:a"}).json()
    client.post("/locations", headers=auth(k), json={"name": "B", "external_id": "gumroad:b"})
    only_a = client.get("/locations", headers=auth(k), params={"external_id": "gumroad:a"}).json()
    assert [x["location_id"] for x in only_a["locations"]] == [a["location"]["location_id"]]
    assert only_a["meta"]["total"] == 1
    since = a["location"]["updated_at"]
    recent = client.get("/locations", headers=auth(k), params={"updated_since": since}).json()
    assert recent["meta"]["total"] == 2
    later = client.get("/locations", headers=auth(k), params={"updated_since": "2999-01-01T00:00:00Z"}).json()
    assert later["locations"] == []
    assert later["meta"] == {"total": 0, "startAfterId": None, "nextPageUrl": None}


def test_get_one_location_and_404_for_an_unknown_id(client: httpx.Client, key: SandboxKey) -> None:
    some = client.get("/locations", headers=auth(key), params={"limit": 1}).json()["locations"][0]
    r = client.get(f"/locations/{some['location_id']}", headers=auth(key))
    assert r.status_code == 200 and r.json() == {"location": some}
    missing = client.get("/locations/doesNotExist0000000", headers=auth(key))
    assert missing.status_code == 404
    assert missing.json() == {"statusCode": 404, "message": "Location with id doesNotExist0000000 not found"}


def test_create_assigns_the_id_and_defaults(client: httpx.Client, key: SandboxKey) -> None:
    r = client.post("/locations", headers=auth(key), json={"name": "Kraków Café ☕"})
    assert r.status_code == 201
    made = r.json()["location"]
    assert set(made) == FIELDS and len(made["location_id"]) == 20
    assert made["name"] == "Kraków Café ☕" and made["timezone"] == "UTC"
    assert made["onboarding_status"] == "pending" and made["external_id"] is None
    assert made["created_at"] == made["updated_at"]
    again = client.get(f"/locations/{made['location_id']}", headers=auth(key))
    assert again.json()["location"] == made


def test_create_with_every_field(client: httpx.Client, key: SandboxKey) -> None:
    body = {"name": "Full", "timezone": "America/Argentina/Buenos_Aires", "email": "full@example.com",
            "region": "latam", "onboarding_status": "active", "tier": "pro", "snapshot_id": "snap_1",
            "external_id": "gumroad:full@example.com"}
    made = client.post("/locations", headers=auth(key), json=body).json()["location"]
    assert {k: made[k] for k in body} == body


@pytest.mark.parametrize(("body", "messages"), [
    ({}, ["name should not be empty"]),
    ({"name": ""}, ["name should not be empty"]),
    ({"name": 5}, ["name must be a string"]),
    ({"name": "X", "timezone": "Mars/Olympus_Mons"},
     ["timezone must be a valid IANA time zone name (got 'Mars/Olympus_Mons')"]),
    ({"name": "X", "onboarding_status": "live"},
     ["onboarding_status must be one of the following values: pending, active, paused, cancelled"]),
    ({"name": "X", "email": "not-an-email"}, ["email must be an email"]),
    ({"name": "X", "location_id": "mine"}, ["property location_id should not exist"]),
    ({"name": "X" * 256}, ["name must be shorter than or equal to 255 characters"]),
    ({"timezone": None, "colour": "red"},
     ["property colour should not exist", "name should not be empty", "timezone should not be empty"]),
])
def test_create_validation_is_422_with_every_message(client: httpx.Client, key: SandboxKey,
                                                     body: dict[str, Any], messages: list[str]) -> None:
    r = client.post("/locations", headers=auth(key), json=body)
    assert r.status_code == 422
    assert r.json() == {"statusCode": 422, "message": messages, "error": "Unprocessable Entity"}


def test_a_duplicate_external_id_is_409_naming_the_existing_location(client: httpx.Client, key: SandboxKey
                                                                     ) -> None:
    first = client.post("/locations", headers=auth(key), json={"name": "One", "external_id": "buyer:dup"})
    existing = first.json()["location"]["location_id"]
    r = client.post("/locations", headers=auth(key), json={"name": "Two", "external_id": "buyer:dup"})
    assert r.status_code == 409
    assert r.json() == {"statusCode": 409, "message": "A location with external_id buyer:dup already exists",
                        "meta": {"location_id": existing}}


def test_external_id_is_unique_per_company_not_globally(box: Served, client: httpx.Client) -> None:
    body = {"name": "Same ext", "external_id": "buyer:shared"}
    assert client.post("/locations", headers=auth(box.roomy_key()), json=body).status_code == 201
    other = box.roomy_key(company_id="company_ext")
    assert client.post("/locations", headers=auth(other), json=body).status_code == 201


def test_update_changes_only_the_given_fields(client: httpx.Client, key: SandboxKey) -> None:
    made = client.post("/locations", headers=auth(key), json={"name": "Before", "tier": "starter"}).json()
    made = made["location"]
    loc = made["location_id"]
    r = client.put(f"/locations/{loc}", headers=auth(key), json={"name": "After — Ångström", "region": None})
    assert r.status_code == 200
    after = r.json()["location"]
    assert after["name"] == "After — Ångström" and after["tier"] == "starter" and after["region"] is None
    assert after["updated_at"] >= made["updated_at"] and after["created_at"] == made["created_at"]
    assert client.get(f"/locations/{loc}", headers=auth(key)).json()["location"] == after


def test_update_with_no_change_keeps_updated_at(client: httpx.Client, key: SandboxKey) -> None:
    made = client.post("/locations", headers=auth(key), json={"name": "Still"}).json()["location"]
    same = client.put(f"/locations/{made['location_id']}", headers=auth(key), json={"name": "Still"})
    assert same.status_code == 200 and same.json()["location"] == made


def test_update_errors_404_409_422(client: httpx.Client, key: SandboxKey) -> None:
    assert client.put("/locations/nowhere", headers=auth(key), json={"tier": "x"}).status_code == 404
    a = client.post("/locations", headers=auth(key), json={"name": "A", "external_id": "u:a"}).json()
    b = client.post("/locations", headers=auth(key), json={"name": "B", "external_id": "u:b"}).json()
    a, b = a["location"], b["location"]
    clash = client.put(f"/locations/{b['location_id']}", headers=auth(key), json={"external_id": "u:a"})
    assert clash.status_code == 409 and clash.json()["meta"] == {"location_id": a["location_id"]}
    keep = client.put(f"/locations/{a['location_id']}", headers=auth(key), json={"external_id": "u:a"})
    assert keep.status_code == 200
    bad = client.put(f"/locations/{a['location_id']}", headers=auth(key),
                     json={"name": None, "timezone": "X"})
    assert bad.status_code == 422
    assert bad.json()["message"] == ["name should not be empty",
                                     "timezone must be a valid IANA time zone name (got 'X')"]


def test_writes_are_journaled_with_the_entity(box: Served, client: httpx.Client, key: SandboxKey) -> None:
    made = client.post("/locations", headers=auth(key), json={"name": "Journaled"}).json()["location"]
    loc = made["location_id"]
    client.put(f"/locations/{loc}", headers=auth(key), json={"tier": "gold"})
    assert box.sandbox.writes_to(loc) == 2
    entries = client.get("/_sandbox/journal", params={"entity": loc}).json()["entries"]
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", "/locations", 201), ("PUT", f"/locations/{loc}", 200)]
