"""The management API over real HTTP: auth, roles, CSRF, scoping, connections (and credential rotation) against
the sandboxes, workflows, dry runs, templates, runs in a time window, dead letters (filters, replay by filter, from
the trigger), usage, and an OpenAPI document that matches the routes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from test_api_support import ADMIN, PASSWORD, Served, make_dead_letter, make_run, serve_app, signed_in

from snapbridge.runtime import receiver_config
from snapbridge.sandbox import Sandboxes
from snapbridge.security import Role, Secret
from snapbridge.store import ConnectionRecord, JobStatus, RunStatus
from snapbridge.web.api import endpoints
from snapbridge.workflows import template_text

ALL_SNAPSHOTS_SCOPES = ["customers.readonly", "customers.write", "events.readonly", "events.write",
                        "saas/location.read", "saas/location.write"]
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def served(tmp_path: Path, sandboxes: Sandboxes) -> Iterator[Served]:
    with serve_app(tmp_path, sandboxes) as s:
        yield s


@pytest.fixture
def admin(served: Served) -> Iterator[httpx.Client]:
    """An admin API token client (no cookies), made through the dashboard session."""
    with httpx.Client(base_url=served.base_url) as browser:
        csrf = signed_in(browser)
        made = browser.post("/api/v1/tokens", json={"name": "ci", "role": "admin"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        token = made.json()["token"]
    with httpx.Client(base_url=served.base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def test_without_credentials_every_endpoint_is_401(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        for path in ("/api/v1/runs", "/api/v1/connections", "/api/v1/usage"):
            assert client.get(path).status_code == 401
        assert client.get("/api/v1/runs", headers={"Authorization": "Bearer sbt_wrong"}).status_code == 401


def test_a_session_needs_the_csrf_header_for_writes(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        csrf = signed_in(client)
        assert client.post("/api/v1/templates/churn/install").status_code == 403
        assert client.post("/api/v1/templates/churn/install", headers={"X-CSRF-Token": "0" * 64}).status_code == 403
        ok = client.post("/api/v1/templates/churn/install", headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200 and ok.json()["name"] == "churn"


def test_the_session_cookie_is_httponly_and_samesite(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        client.post("/setup", data={"username": ADMIN, "password": PASSWORD})
        answer = client.post("/signin", data={"username": ADMIN, "password": PASSWORD}, follow_redirects=False)
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "sb_session=" in cookie


def test_viewer_tokens_read_but_cannot_write(served: Served, admin: httpx.Client) -> None:
    made = admin.post("/api/v1/tokens", json={"name": "reader", "role": "viewer"})
    viewer = {"Authorization": f"Bearer {made.json()['token']}"}
    assert admin.get("/api/v1/workflows", headers=viewer).status_code == 200
    assert admin.post("/api/v1/templates/churn/install", headers=viewer).status_code == 403


def test_another_users_token_is_not_found(served: Served, admin: httpx.Client) -> None:
    mine = admin.post("/api/v1/tokens", json={"name": "mine"}).json()
    served.web.create_user("bob", "another long password", Role.VIEWER)
    with httpx.Client(base_url=served.base_url) as other:
        csrf = signed_in(other, "bob", "another long password")
        assert other.get("/api/v1/tokens").json() == []
        answer = other.delete(f"/api/v1/tokens/{mine['id']}", headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 404
    assert admin.delete(f"/api/v1/tokens/{mine['id']}").status_code == 204


def test_lockout_after_repeated_failures(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        client.post("/setup", data={"username": ADMIN, "password": PASSWORD})
        codes = [client.post("/signin", data={"username": ADMIN, "password": "wrong password!"}).status_code
                 for _ in range(5)]
        assert codes == [401] * 5
        locked = client.post("/signin", data={"username": ADMIN, "password": PASSWORD})
        assert locked.status_code == 423 and "locked" in locked.text


def test_connections_are_tested_stored_and_never_returned(sandboxes: Sandboxes, admin: httpx.Client) -> None:
    bad = admin.post("/api/v1/connections", json={"app": "gumroad", "credential": "not-a-token"})
    assert bad.status_code == 422 and "refused the credential" in bad.json()["error"]
    unknown = admin.post("/api/v1/connections", json={"app": "snapshots", "credential": "pit-" + "0" * 36})
    assert unknown.status_code == 422 and "refused the credential" in unknown.json()["error"], unknown.text
    token = sandboxes.gumroad.access_token
    made = admin.post("/api/v1/connections", json={"app": "gumroad", "credential": token})
    assert made.status_code == 201, made.text
    key = next(k for k in sandboxes.snapshots.keys() if "saas/location.write" in k.scopes)  # noqa: SIM118
    snap = admin.post("/api/v1/connections", json={"app": "snapshots", "credential": key.key,
                                                    "webhook_public_key": sandboxes.snapshots.webhook_public_key})
    assert snap.status_code == 201, snap.text
    listed = admin.get("/api/v1/connections")
    assert [c["name"] for c in listed.json()] == ["gumroad", "snapshots"]
    assert token not in listed.text and key.key not in listed.text
    tested = admin.post("/api/v1/connections/snapshots/test").json()
    assert tested["ok"] and tested["message"].startswith("Reached the Snapshots API")
    assert admin.delete("/api/v1/connections/gumroad").status_code == 204
    assert admin.delete("/api/v1/connections/gumroad").status_code == 404


def test_workflow_validation_errors_come_back_with_paths(admin: httpx.Client) -> None:
    answer = admin.post("/api/v1/workflows", json={"yaml": "name: x\ntrigger: {app: gumroad, event: [nope]}\n"})
    assert answer.status_code == 422
    paths = {p["path"] for p in answer.json()["problems"]}
    assert any(p.startswith("trigger") for p in paths) and "steps" in paths


def test_templates_install_enable_and_dry_run(admin: httpx.Client) -> None:
    names = [t["name"] for t in admin.get("/api/v1/templates").json()]
    assert "purchase-event" in names
    installed = admin.post("/api/v1/templates/purchase-event/install").json()
    name = installed["name"]
    assert admin.post(f"/api/v1/workflows/{name}/disable").json()["enabled"] is False
    again = admin.get(f"/api/v1/workflows/{name}").json()
    assert again["enabled"] is False and "enabled: false" in again["source_yaml"]
    run = admin.post("/api/v1/workflows/dry-run", json={"yaml": again["source_yaml"]})
    assert run.status_code == 200, run.text
    body = run.json()
    assert body["matched"] and body["plans"][0]["steps"][0]["method"] == "POST"
    assert "Bearer ****" in body["text"]
    assert admin.get("/api/v1/workflows/nope").status_code == 404
    assert admin.post("/api/v1/templates/nope/install").status_code == 404


@pytest.mark.parametrize(("path", "status"), [
    ("/api/v1/runs?status=bogus", 422), ("/api/v1/runs?limit=0", 422), ("/api/v1/runs?limit=x", 422),
    ("/api/v1/runs/999", 404), ("/api/v1/usage?minutes=-1", 422), ("/api/v1/runs?limit=500", 200),
    ("/api/v1/dead-letters", 200), ("/api/v1/usage", 200), ("/api/v1/counts", 200),
])
def test_bad_query_input_is_4xx_json(admin: httpx.Client, path: str, status: int) -> None:
    answer = admin.get(path)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"yaml": 5}', b'{"yaml": "x", "extra": 1}', b"\xff"])
def test_bad_bodies_are_4xx(admin: httpx.Client, body: bytes) -> None:
    answer = admin.post("/api/v1/workflows", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code in (400, 422) and "error" in answer.json()


def test_replaying_an_unknown_dead_letter_is_404(admin: httpx.Client) -> None:
    assert admin.post("/api/v1/dead-letters/12345/replay").status_code == 404
    assert admin.post("/api/v1/dead-letters/replay-all").json() == {"replayed": 0, "superseded": []}


def test_the_openapi_document_matches_the_routes(served: Served) -> None:
    document = httpx.get(served.base_url + "/api/v1/openapi.json").json()
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    served_routes = {(e.method, e.openapi_path) for e in endpoints(served.web)}
    assert documented == served_routes
    for path, item in document["paths"].items():
        for operation in item.values():
            for response in operation["responses"].values():
                for media in response.get("content", {}).values():
                    ref = media["schema"].get("$ref") or media["schema"].get("items", {}).get("$ref")
                    assert ref.split("/")[-1] in document["components"]["schemas"], path


@pytest.fixture
def viewer(served: Served, admin: httpx.Client) -> Iterator[httpx.Client]:
    made = admin.post("/api/v1/tokens", json={"name": "reader", "role": "viewer"})
    with httpx.Client(base_url=served.base_url, headers={"Authorization": f"Bearer {made.json()['token']}"}) as c:
        yield c


def test_runs_filter_by_a_time_window(served: Served, admin: httpx.Client) -> None:
    early, middle, late = (make_run(served.store, "welcome", at=T0 + timedelta(minutes=m)) for m in (0, 1, 2))

    def ids(query: str) -> list[int]:
        answer = admin.get(f"/api/v1/runs?{query}")
        assert answer.status_code == 200, answer.text
        return [r["id"] for r in answer.json()]

    assert ids("since=2025-03-01T12:01:00Z&until=2025-03-01T12:02:00Z") == [middle]  # until is exclusive
    assert ids("since=2025-03-01T13:01:00%2B01:00") == [late, middle]  # the same instant, written in +01:00
    assert ids("until=2025-03-01T12:01:00") == [early]  # no offset: UTC
    assert ids("since=2025-03-01&workflow=welcome") == [late, middle, early]  # a date is its midnight
    assert ids("since=2025-03-02") == []


@pytest.mark.parametrize(("query", "words"), [
    ("since=yesterday", "since is not an ISO 8601 date-time"),
    ("until=2025-13-01T00:00:00Z", "until is not an ISO 8601 date-time"),
    ("since=0001-01-01T00:00:00%2B05:00", "since is not an ISO 8601 date-time"),  # before year 1 in UTC
    ("since=2025-03-01T12:00:00Z&until=2025-03-01T11:00:00Z", "until must be after since"),
])
def test_a_bad_time_window_is_400_with_the_reason(admin: httpx.Client, query: str, words: str) -> None:
    for path in ("/api/v1/runs", "/api/v1/dead-letters"):
        answer = admin.get(f"{path}?{query}")
        assert answer.status_code == 400, answer.text
        assert words in answer.json()["error"] and answer.json()["problems"]


def test_dead_letters_filter_and_replay_by_filter(served: Served, admin: httpx.Client) -> None:
    invalid = make_dead_letter(served.store, "welcome", "HTTP 422: email is invalid", at=T0)
    missing = make_dead_letter(served.store, "welcome", "HTTP 404: sale not found", at=T0 + timedelta(minutes=1),
                               connection="gumroad")
    other = make_dead_letter(served.store, "upsell", "HTTP 422: email is invalid", at=T0 + timedelta(minutes=2))

    def listed(query: str) -> list[int]:
        return [d["run_id"] for d in admin.get(f"/api/v1/dead-letters?{query}").json()]

    assert listed("") == [other, missing, invalid]
    assert listed("connection=gumroad") == [missing]
    assert listed("reason=EMAIL&workflow=welcome") == [invalid]
    assert listed("since=2025-03-01T12:01:00Z&until=2025-03-01T12:02:00Z") == [missing]
    assert listed("limit=1") == [other]

    replayed = admin.post("/api/v1/dead-letters/replay", json={"reason": "email is invalid", "workflow": "welcome"})
    assert replayed.status_code == 200 and replayed.json() == {"replayed": 1, "superseded": []}
    assert listed("") == [other, missing]
    assert admin.post("/api/v1/dead-letters/replay", json={"connection": "nope"}).json() == {
        "replayed": 0, "superseded": []}
    assert admin.post("/api/v1/dead-letters/replay", json={"since": "2025-03-01T12:01:00+00:00"}).json() == {
        "replayed": 2, "superseded": []}
    assert listed("") == []


@pytest.mark.parametrize("body", [
    {}, {"reason": "   "}, {"from": "trigger"}, {"workflow": "w", "from": "middle"}, {"since": "soon"},
    {"since": "2025-03-01T12:00:00Z", "until": "2025-03-01T12:00:00Z"}, {"workflow": ""}, {"workflow": "w", "x": 1},
    {"from_": "trigger", "workflow": "w"},
])
def test_a_replay_filter_must_say_what_and_be_valid(admin: httpx.Client, body: dict[str, object]) -> None:
    answer = admin.post("/api/v1/dead-letters/replay", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["problems"]


def test_replay_from_the_trigger_runs_every_step_again_with_the_same_keys(served: Served,
                                                                          admin: httpx.Client) -> None:
    run_id = make_dead_letter(served.store, "welcome", "HTTP 422: bad plan", at=T0, steps=3, succeed_first=True)
    before = served.store.run_detail(run_id)
    assert before is not None
    assert [s.status for s in before.steps] == [JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED]
    dead_job = before.steps[1].job_id
    assert admin.post(f"/api/v1/dead-letters/{dead_job}/replay?from=sideways").status_code == 422
    answer = admin.post(f"/api/v1/dead-letters/{dead_job}/replay?from=trigger")
    assert answer.status_code == 200 and answer.json() == {"replayed": 1, "superseded": []}
    after = served.store.run_detail(run_id)
    assert after is not None and after.run.status is RunStatus.RUNNING
    assert [s.status for s in after.steps] == [JobStatus.QUEUED] * 3
    assert [s.idempotency_key for s in after.steps] == [s.idempotency_key for s in before.steps]
    assert admin.post(f"/api/v1/dead-letters/{dead_job}/replay").status_code == 404  # no longer dead


def test_replay_from_the_failed_step_leaves_the_steps_before_it(served: Served, admin: httpx.Client) -> None:
    run_id = make_dead_letter(served.store, "welcome", "HTTP 422: bad plan", at=T0, steps=3, succeed_first=True)
    answer = admin.post("/api/v1/dead-letters/replay", json={"workflow": "welcome", "from": "failed_step"})
    assert answer.json() == {"replayed": 1, "superseded": []}
    after = served.store.run_detail(run_id)
    assert after is not None
    assert [s.status for s in after.steps] == [JobStatus.SUCCEEDED, JobStatus.QUEUED, JobStatus.QUEUED]


def test_viewers_and_sessions_without_csrf_cannot_replay_or_rotate(served: Served, viewer: httpx.Client) -> None:
    make_dead_letter(served.store, "welcome", "HTTP 422: email is invalid", at=T0)
    writes = [("/api/v1/dead-letters/replay", {"workflow": "welcome"}),
              ("/api/v1/connections/snapshots/rotate", {"credential": "pit-new"})]
    for path, body in writes:
        answer = viewer.post(path, json=body)
        assert answer.status_code == 403 and "admin" in answer.json()["error"], path
    with httpx.Client(base_url=served.base_url) as session:
        signed_in(session)
        for path, body in writes:
            answer = session.post(path, json=body)
            assert answer.status_code == 403 and "CSRF" in answer.json()["error"], path
    assert len(served.store.dead_letters()) == 1


def _stored_credential(served: Served, name: str) -> str:
    record = served.web.connections.get(name) if served.web.connections else None
    assert record is not None and served.web.vault is not None
    return served.web.vault.decrypt(record.credential, bound_to=f"{name}:credential").reveal()


def test_rotating_a_credential_tests_it_first_and_never_returns_it(served: Served, sandboxes: Sandboxes,
                                                                   admin: httpx.Client) -> None:
    old, new = (sandboxes.snapshots.create_key(ALL_SNAPSHOTS_SCOPES).key for _ in range(2))
    made = admin.post("/api/v1/connections", json={"app": "snapshots", "credential": old})
    assert made.status_code == 201, made.text

    for bad, words in (("pit-not-a-key", "refused the credential"),
                       (sandboxes.snapshots.create_key(["saas/location.read"]).key, "Missing scopes")):
        refused = admin.post("/api/v1/connections/snapshots/rotate", json={"credential": bad})
        assert refused.status_code == 422 and words in refused.json()["error"], refused.text
        assert bad not in refused.text
    assert _stored_credential(served, "snapshots") == old  # a failed test changes nothing

    rotated = admin.post("/api/v1/connections/snapshots/rotate", json={"credential": new})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["name"] == "snapshots" and new not in rotated.text and old not in rotated.text
    assert _stored_credential(served, "snapshots") == new
    assert admin.post("/api/v1/connections/snapshots/test").json()["ok"]

    assert admin.post("/api/v1/connections/nope/rotate", json={"credential": new}).status_code == 404
    gumroad = admin.post("/api/v1/connections", json={"app": "gumroad", "credential": sandboxes.gumroad.access_token})
    assert gumroad.status_code == 201
    keyed = admin.post("/api/v1/connections/gumroad/rotate", json={"credential": sandboxes.gumroad.access_token,
                                                                   "webhook_public_key":
                                                                       sandboxes.snapshots.webhook_public_key})
    assert keyed.status_code == 422 and "only a Snapshots API connection" in keyed.json()["error"]


def test_a_credential_of_another_account_does_not_replace_the_stored_one(served: Served, sandboxes: Sandboxes,
                                                                        admin: httpx.Client) -> None:
    mine = sandboxes.snapshots.create_key(ALL_SNAPSHOTS_SCOPES).key
    assert admin.post("/api/v1/connections", json={"app": "snapshots", "credential": mine}).status_code == 201
    # Another company in the sandbox, with a location, so its key names the company it reaches.
    theirs = sandboxes.snapshots.create_key(ALL_SNAPSHOTS_SCOPES, company_id=f"co_{uuid.uuid4().hex[:10]}").key
    created = httpx.post(f"{sandboxes.snapshots_url}/locations", json={"name": "Elsewhere"}, timeout=10,
                         headers={"Authorization": f"Bearer {theirs}", "Version": "2021-07-28"})
    assert created.status_code == 201, created.text
    answer = admin.post("/api/v1/connections/snapshots/rotate", json={"credential": theirs})
    assert answer.status_code == 422 and "not this connection's account" in answer.json()["error"]
    assert theirs not in answer.text
    assert _stored_credential(served, "snapshots") == mine


def test_a_test_run_sends_through_the_workspaces_connections(sandboxes: Sandboxes, admin: httpx.Client) -> None:
    gallery = admin.get("/api/v1/templates").json()  # the gallery answers before anything is connected
    assert any(t["name"] == "purchase-event" for t in gallery)
    # Its own workflow name (test keys derive from it) and event ids: the Snapshots sandbox is shared.
    text = template_text("purchase-event").replace("name: purchase-event", "name: api-test-run")
    body = {"yaml": text.replace('event_id: "gumroad-', 'event_id: "api-test-run-')}  # its own event ids too
    alone = admin.post("/api/v1/workflows/test-run", json=body)
    assert alone.status_code == 200, alone.text
    first = alone.json()["steps"][0]
    assert first["status"] == "failed" and "no snapshots connection" in first["detail"]

    key = next(k for k in sandboxes.snapshots.keys() if "events.write" in k.scopes)  # noqa: SIM118
    made = admin.post("/api/v1/connections", json={"app": "snapshots", "name": "snap-test", "credential": key.key})
    assert made.status_code == 201, made.text
    sent = admin.post("/api/v1/workflows/test-run", json=body).json()
    assert sent["matched"] and [s["status"] for s in sent["steps"]][:1] == ["sent"], sent
    assert sent["steps"][0]["http_status"] in (200, 201)
    again = admin.post("/api/v1/workflows/test-run", json=body).json()
    assert again["steps"][0]["status"] == "replayed", again  # same test- key: the API did not write twice
    assert admin.get("/api/v1/runs").json() == []  # a test run keeps no history
    bad = admin.post("/api/v1/workflows/test-run", json={"yaml": "name: x\nsteps: 3"})
    assert bad.status_code == 422 and bad.json()["problems"]


@pytest.mark.parametrize(("content", "status", "message"), [
    (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    (b'{"yaml": 1' + b"0" * 5000 + b"}", 400, "not JSON"),
    (b'{"yaml": "' + b"[" * 10_000 + b"]" * 10_000 + b'"}', 422, "nested too deeply"),
])
def test_bodies_too_deep_or_too_long_to_read_are_4xx_not_500(admin: httpx.Client, content: bytes, status: int,
                                                            message: str) -> None:
    answer = admin.post("/api/v1/workflows/dry-run", content=content, headers={"Content-Type": "application/json"})
    assert answer.status_code == status and message in answer.text, answer.text


def test_an_unusable_webhook_key_is_422_and_one_stored_before_does_not_stop_the_other_hooks(
        sandboxes: Sandboxes, served: Served, admin: httpx.Client) -> None:
    key = next(k for k in sandboxes.snapshots.keys() if "saas/location.write" in k.scopes)  # noqa: SIM118
    refused = admin.post("/api/v1/connections", json={"app": "snapshots", "credential": key.key,
                                                       "webhook_public_key": "not-a-key"})
    assert refused.status_code == 422 and "webhook_public_key" in refused.text and "not-a-key" not in refused.text
    assert admin.post("/api/v1/connections", json={"app": "gumroad", "credential": sandboxes.gumroad.access_token,
                                                    }).status_code == 201
    # A bad key stored before keys were checked: the receiver loads every other hook without it.
    vault, connections = served.web.vault, served.web.connections
    assert vault is not None and connections is not None
    connections.save(ConnectionRecord(name="old-snap", app="snapshots", base_url=sandboxes.snapshots_url,
                                      credential=vault.encrypt(Secret(key.key), bound_to="old-snap:credential"),
                                      webhook_key=vault.encrypt(Secret("not-a-key"), bound_to="old-snap:webhook_key")))
    config = receiver_config(connections, vault)
    assert [hook.connection for hook in config.gumroad] == ["gumroad"] and config.snapshots == ()
