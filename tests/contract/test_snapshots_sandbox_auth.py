"""Snapshots sandbox: keys, scopes, location binding, the Version header, unknown routes, malformed bodies."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from test_snapshots_sandbox_support import ALL_SCOPES, Served, assert_rate_headers, auth, serving

from snapbridge.sandbox import Sandboxes

SCOPE_BODY = {"statusCode": 401, "message": "The token is not authorized for this scope."}
FORBIDDEN_BODY = {"statusCode": 403, "message": "The token does not have access to this location.",
                  "error": "Forbidden"}

# Every operation of the contract with the scope it needs and a body that would otherwise be fine.
OPERATIONS = [
    ("GET", "/locations", "saas/location.read", None),
    ("GET", "/locations/{loc}", "saas/location.read", None),
    ("POST", "/locations", "saas/location.write", {"name": "Scoped", "timezone": "UTC"}),
    ("PUT", "/locations/{loc}", "saas/location.write", {"tier": "pro"}),
    ("POST", "/events", "events.write",
     {"event_id": "evt_scope", "type": "signup", "timestamp": "2026-01-01T00:00:00Z"}),
    ("POST", "/events/batch", "events.write",
     {"events": [{"event_id": "evt_scope_b", "type": "signup", "timestamp": "2026-01-01T00:00:00Z"}]}),
    ("GET", "/events", "events.readonly", None),
    ("PUT", "/customers/cus_scope", "customers.write", {"email": "scope@example.com"}),
    ("GET", "/customers/cus_0001", "customers.readonly", None),
    ("GET", "/customers", "customers.readonly", None),
]


@pytest.fixture(scope="module")
def box() -> Iterator[Served]:
    with serving() as served:
        yield served


@pytest.fixture
def client(box: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=box.url, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def loc(box: Served) -> str:
    """The id of a seeded location of the sandbox's company."""
    with httpx.Client(base_url=box.url) as c:
        page = c.get("/locations", headers=auth(box.roomy_key()), params={"limit": 1}).json()
    return str(page["locations"][0]["location_id"])


def test_the_seeded_keys_are_full_read_only_no_location_read_and_location_bound(box: Served) -> None:
    full, read_only, no_saas, bound = box.sandbox.keys()
    assert full.scopes == ALL_SCOPES and full.location_id is None
    assert read_only.scopes == {"saas/location.read", "events.readonly", "customers.readonly"}
    assert no_saas.scopes == ALL_SCOPES - {"saas/location.read"}
    assert bound.location_id is not None and bound.scopes == ALL_SCOPES
    seeded = box.sandbox.keys()
    assert {k.company_id for k in seeded} == {box.sandbox.company_id}
    assert (full.burst_limit, full.burst_window_ms, full.daily_limit) == (100, 10_000, 200_000)


def test_no_key_is_401_with_the_unauthorized_body(client: httpx.Client) -> None:
    r = client.get("/locations", headers={"Version": "2021-07-28"})
    assert r.status_code == 401
    body = r.json()
    assert body["statusCode"] == 401 and body["error"] == "Unauthorized"
    assert body["message"].startswith("Invalid token")
    assert_rate_headers(r)


@pytest.mark.parametrize("header", ["Bearer pit-00000000-0000-4000-8000-000000000000", "Bearer", "Basic abc"])
def test_an_unknown_or_malformed_key_is_401(client: httpx.Client, header: str) -> None:
    r = client.get("/locations", headers={"Authorization": header, "Version": "2021-07-28"})
    assert r.status_code == 401
    assert r.json()["message"].startswith("Invalid token") and r.json()["error"] == "Unauthorized"


def test_a_key_without_location_read_gets_the_exact_scope_message(box: Served, client: httpx.Client) -> None:
    no_saas = box.sandbox.keys()[2]
    r = client.get("/locations", headers=auth(no_saas))
    assert r.status_code == 401 and r.json() == SCOPE_BODY
    assert_rate_headers(r)


@pytest.mark.parametrize(("method", "path", "scope", "body"), OPERATIONS)
def test_each_operation_needs_its_scope(box: Served, client: httpx.Client, loc: str, method: str, path: str,
                                        scope: str, body: object) -> None:
    path = path.format(loc=loc)
    without = box.roomy_key(ALL_SCOPES - {scope})
    denied = client.request(method, path, headers=auth(without), json=body)
    assert denied.status_code == 401 and denied.json() == SCOPE_BODY
    allowed = client.request(method, path, headers=auth(box.roomy_key(frozenset({scope}))), json=body)
    assert allowed.status_code in {200, 201}, allowed.text


def test_a_key_bound_to_another_location_is_403(box: Served, client: httpx.Client) -> None:
    locations = client.get("/locations", headers=auth(box.roomy_key())).json()["locations"]
    mine, other = locations[0]["location_id"], locations[1]["location_id"]
    bound = box.roomy_key(location_id=mine)
    assert client.get(f"/locations/{mine}", headers=auth(bound)).status_code == 200
    for method, body in (("GET", None), ("PUT", {"tier": "x"})):
        r = client.request(method, f"/locations/{other}", headers=auth(bound), json=body)
        assert r.status_code == 403 and r.json() == FORBIDDEN_BODY
    r = client.put("/customers/cus_bound", headers=auth(bound), json={"location_id": other})
    assert r.status_code == 403 and r.json() == FORBIDDEN_BODY
    event = {"event_id": "evt_bound", "type": "signup", "timestamp": "2026-01-01T00:00:00Z",
             "location_id": other}
    r = client.post("/events", headers=auth(bound), json=event)
    assert r.status_code == 403 and r.json() == FORBIDDEN_BODY


def test_a_bound_key_lists_only_its_location_and_cannot_create_one(box: Served, client: httpx.Client) -> None:
    bound = box.sandbox.keys()[3]
    page = client.get("/locations", headers=auth(bound)).json()
    assert [x["location_id"] for x in page["locations"]] == [bound.location_id]
    assert page["meta"]["total"] == 1
    r = client.post("/locations", headers=auth(bound), json={"name": "Sub-account tries", "timezone": "UTC"})
    assert r.status_code == 401
    assert r.json() == {"statusCode": 401, "message": "E-102. This AuthClass is not yet supported!",
                        "error": "Unauthorized"}


def test_a_refusal_of_the_key_is_not_kept_as_the_idempotency_keys_answer(box: Served, client: httpx.Client) -> None:
    # A dead letter caused by the key (E-102) must be fixable: the same request with the same Idempotency-Key
    # and a key that may call it creates the location, instead of replaying the refusal.
    bound, body = box.sandbox.keys()[3], {"name": "Retried with the right key", "timezone": "UTC"}
    headers = {"Idempotency-Key": "idem-refused-then-allowed"}
    refused = client.post("/locations", headers={**auth(bound), **headers}, json=body)
    assert refused.status_code == 401
    created = client.post("/locations", headers={**auth(box.sandbox.keys()[0]), **headers}, json=body)
    assert created.status_code == 201 and "idempotent-replayed" not in created.headers
    again = client.post("/locations", headers={**auth(box.sandbox.keys()[0]), **headers}, json=body)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"


def test_a_location_of_another_company_is_403(box: Served, client: httpx.Client) -> None:
    theirs = box.roomy_key(company_id="company_other")
    created = client.post("/locations", headers=auth(theirs), json={"name": "Theirs", "timezone": "UTC"})
    assert created.status_code == 201
    loc = created.json()["location"]["location_id"]
    r = client.get(f"/locations/{loc}", headers=auth(box.roomy_key()))
    assert r.status_code == 403 and r.json() == FORBIDDEN_BODY
    listed = client.get("/locations", headers=auth(theirs)).json()
    assert [x["location_id"] for x in listed["locations"]] == [loc]


@pytest.mark.parametrize("version", [None, "", "2021-04-15", "v3"])
def test_a_missing_or_other_version_header_is_400(box: Served, client: httpx.Client, version: str | None
                                                  ) -> None:
    headers = {"Authorization": f"Bearer {box.roomy_key().key}"}
    if version is not None:
        headers["Version"] = version
    r = client.get("/locations", headers=headers)
    assert r.status_code == 400
    assert r.json() == {"statusCode": 400, "message": "Version header must be 2021-07-28",
                        "error": "Bad Request"}
    assert_rate_headers(r)


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("DELETE", "/locations"),
                                              ("PATCH", "/events"), ("GET", "/events/batch"), ("GET", "/")])
def test_an_unknown_route_is_a_nestjs_404(box: Served, client: httpx.Client, method: str, path: str) -> None:
    r = client.request(method, path, headers=auth(box.roomy_key()))
    assert r.status_code == 404
    assert r.json() == {"statusCode": 404, "message": f"Cannot {method} {path}", "error": "Not Found"}
    assert_rate_headers(r)


def test_a_trailing_slash_is_the_same_route(box: Served, client: httpx.Client) -> None:
    r = client.post("/locations/", headers=auth(box.roomy_key()), json={"name": "Slash", "timezone": "UTC"})
    assert r.status_code == 201


MALFORMED = [
    b"{bad json",
    b"[1, 2]",
    b'"text"',
    b"\xff\xfe",
    b'{"name": NaN}',
    b'{"name": 5, "timezone": ["UTC"]}',
    b'{"email": {"a": 1}, "tags": "x", "last_activity_at": 17}',
    b'{"events": "nope"}',
    b'{"event_id": 1, "type": null, "timestamp": "yesterday", "data": [1]}',
]
WRITES = [("POST", "/locations"), ("PUT", "/locations/{loc}"), ("POST", "/events"), ("POST", "/events/batch"),
          ("PUT", "/customers/cus_malformed")]


@pytest.mark.parametrize(("method", "path"), WRITES)
@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_bodies_get_400_or_422_never_500(box: Served, client: httpx.Client, loc: str, method: str,
                                                   path: str, body: bytes) -> None:
    path = path.format(loc=loc)
    r = client.request(method, path, headers=auth(box.roomy_key(), Content_Type="application/json"),
                       content=body)
    assert r.status_code in {400, 422}, (r.status_code, r.text)
    payload = r.json()
    assert payload["statusCode"] == r.status_code
    if r.status_code == 422:
        assert isinstance(payload["message"], list) and all(isinstance(m, str) for m in payload["message"])
    else:
        assert payload["error"] == "Bad Request"


def test_an_oversized_body_is_413(box: Served, client: httpx.Client) -> None:
    r = client.post("/events", headers=auth(box.roomy_key()), content=b" " * (4 * 1024 * 1024 + 1))
    assert r.status_code == 413 and r.json()["statusCode"] == 413


def test_control_api_creates_keys_with_scopes_binding_and_limits(box: Served, client: httpx.Client, loc: str
                                                                 ) -> None:
    r = client.post("/_sandbox/keys", json={"scopes": ["saas/location.read"], "location_id": loc,
                                            "burst_limit": 7, "burst_window_ms": 3000, "daily_limit": 50})
    assert r.status_code == 201
    made = r.json()
    assert made["scopes"] == ["saas/location.read"] and made["location_id"] == loc
    assert made["company_id"] == box.sandbox.company_id and made["key"].startswith("pit-")
    listed = client.get("/locations", headers=auth(made["key"]))
    assert listed.status_code == 200 and listed.json()["meta"]["total"] == 1
    assert listed.headers["X-RateLimit-Max"] == "7"
    assert listed.headers["X-RateLimit-Interval-Milliseconds"] == "3000"
    assert listed.headers["X-RateLimit-Limit-Daily"] == "50"
    assert client.post("/events", headers=auth(made["key"]), json={}).json() == SCOPE_BODY


@pytest.mark.parametrize("body", [{"scopes": ["admin.everything"]}, {"scopes": "saas/location.read"},
                                  {"scopes": [], "burst_limit": 0}, {"scopes": [], "colour": "red"}, {}])
def test_control_api_rejects_bad_key_requests(client: httpx.Client, body: dict[str, object]) -> None:
    r = client.post("/_sandbox/keys", json=body)
    assert r.status_code == 422 and isinstance(r.json()["message"], list)


def test_the_journal_never_holds_the_key_itself(box: Served, client: httpx.Client) -> None:
    key = box.roomy_key()
    client.get("/customers", headers=auth(key))
    text = client.get("/_sandbox/journal", params={"path": "/customers"}).text
    assert key.key not in text
    entries = box.sandbox.journal.entries(path="/customers")
    assert entries and all(e.api_key and e.api_key.startswith("key_") for e in entries)


def test_the_shared_session_sandbox_serves_the_contract(sandboxes: Sandboxes) -> None:
    info = sandboxes.info()["snapshots"]
    assert info["webhook_public_key"] == sandboxes.snapshots.webhook_public_key
    full = info["keys"][0]
    assert sorted(full["scopes"]) == sorted(ALL_SCOPES)
    r = httpx.get(f"{info['base_url']}/locations", headers=auth(full["key"]))
    assert r.status_code == 200
    assert set(r.json()) == {"locations", "meta"} and set(r.json()["meta"]) == {"total", "startAfterId",
                                                                                 "nextPageUrl"}
