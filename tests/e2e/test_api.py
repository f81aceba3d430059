"""The management API over real HTTP: auth, roles, CSRF, scoping, connections against the sandboxes, workflows,
dry runs, templates, runs, dead letters, usage, and an OpenAPI document that matches the routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_api_support import ADMIN, PASSWORD, Served, serve_app, signed_in

from snapbridge.sandbox import Sandboxes
from snapbridge.security import Role
from snapbridge.web.api import endpoints


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
    assert admin.post("/api/v1/dead-letters/replay-all").json() == {"replayed": 0}


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
