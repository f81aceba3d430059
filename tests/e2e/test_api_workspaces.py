"""Object-level authorization over real HTTP: every lookup is scoped to the caller's workspace, so another
workspace's connection, workflow, run, dead letter, customer or usage is "not found" (404) or absent from a
list, never shown, changed or replayed; and the users API adds people to the caller's own workspace only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from test_api_support import Served, make_dead_letter, make_run, placeholder_connection, serve_app, signed_in

from snapbridge.sandbox import Sandboxes
from snapbridge.security import Role
from snapbridge.store import JobStatus, Profile, UsageSample

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
OTHER, OTHER_PASSWORD = "bea", "another long passphrase"


@pytest.fixture
def served(tmp_path: Path, sandboxes: Sandboxes) -> Iterator[Served]:
    with serve_app(tmp_path, sandboxes) as s:
        yield s


def _token_client(served: Served, username: str | None = None, password: str | None = None) -> httpx.Client:
    with httpx.Client(base_url=served.base_url) as browser:
        csrf = signed_in(browser) if username is None else signed_in(browser, username, password or "")
        made = browser.post("/api/v1/tokens", json={"name": "t", "role": "admin"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
    return httpx.Client(base_url=served.base_url, headers={"Authorization": f"Bearer {made.json()['token']}"})


@pytest.fixture
def two_teams(served: Served) -> Iterator[tuple[httpx.Client, httpx.Client, dict[str, int]]]:
    """Team A (the first admin, workspace 1) with a connection, workflow, run, dead letter, customer and usage;
    team B (a second workspace) with nothing yet. Yields (A's client, B's client, A's ids)."""
    a = _token_client(served)  # creates the first admin, in the default workspace
    web = served.web
    space = web.users.create_workspace("acme", now=T0)
    web.create_user(OTHER, OTHER_PASSWORD, Role.ADMIN, workspace=space)
    b = _token_client(served, OTHER, OTHER_PASSWORD)
    placeholder_connection(served, "a-gumroad", "gumroad")
    placeholder_connection(served, "a-snapshots", "snapshots")
    assert a.post("/api/v1/templates/purchase-event/install").status_code == 200
    run = make_run(served.store, "purchase-event", at=T0, connection="a-snapshots")
    dead_run = make_dead_letter(served.store, "purchase-event", "HTTP 422 from the API", at=T0,
                                connection="a-snapshots")
    (dead,) = served.store.dead_letters()
    with served.store.transaction() as tx:
        tx.save_profile(Profile("a-gumroad", "ada@example.com", T0, T0, name="Ada"))
    served.store.record_usage_batch([UsageSample("a-snapshots", datetime.now(UTC), 200, 10.0)])
    try:
        yield a, b, {"run": run, "dead_run": dead_run, "dead_job": dead.job_id}
    finally:
        a.close()
        b.close()


def test_another_workspaces_objects_are_not_found(served: Served,
                                                  two_teams: tuple[httpx.Client, httpx.Client, dict[str, int]]
                                                  ) -> None:
    a, b, ids = two_teams
    # Team A sees its own.
    assert [c["name"] for c in a.get("/api/v1/connections").json()] == ["a-gumroad", "a-snapshots"]
    assert a.get(f"/api/v1/runs/{ids['run']}").status_code == 200
    assert len(a.get("/api/v1/dead-letters").json()) == 1
    assert [c["email"] for c in a.get("/api/v1/customers").json()] == ["ada@example.com"]
    assert {w["connection"] for w in a.get("/api/v1/usage").json()["windows"]} == {"a-snapshots"}

    # Team B: every lookup by A's id or name is 404, every list leaves A's out.
    not_found = [
        b.get(f"/api/v1/runs/{ids['run']}"),
        b.get(f"/api/v1/runs/{ids['dead_run']}"),
        b.get("/api/v1/workflows/purchase-event"),
        b.post("/api/v1/workflows/purchase-event/disable"),
        b.post("/api/v1/connections/a-snapshots/test"),
        b.post("/api/v1/connections/a-snapshots/rotate", json={"credential": "pit-whatever"}),
        b.delete("/api/v1/connections/a-gumroad"),
        b.post(f"/api/v1/dead-letters/{ids['dead_job']}/replay"),
        b.post(f"/api/v1/dead-letters/{ids['dead_job']}/replay?from=trigger"),
    ]
    assert [r.status_code for r in not_found] == [404] * len(not_found), [r.text for r in not_found]
    assert b.get("/api/v1/connections").json() == []
    assert b.get("/api/v1/workflows").json() == []
    assert b.get("/api/v1/runs").json() == []
    assert b.get("/api/v1/dead-letters").json() == []
    assert b.get("/api/v1/customers").json() == []
    assert b.get("/api/v1/customers/export.csv").text.strip().count("\n") == 0  # the header only
    assert b.get("/api/v1/usage").json()["windows"] == []
    counts = b.get("/api/v1/counts").json()
    assert counts["connections"] == 0 and counts["dead_letters"] == 0 and sum(counts["runs"].values()) == 0
    assert sum(counts["jobs"].values()) == 0
    # Replays by filter or all replay none of A's dead letters.
    nothing = {"replayed": 0, "superseded": []}
    assert b.post("/api/v1/dead-letters/replay", json={"workflow": "purchase-event"}).json() == nothing
    assert b.post("/api/v1/dead-letters/replay-all").json() == nothing

    # Nothing of A's changed: its workflow is still enabled, its connection still there, its dead letter dead.
    assert a.get("/api/v1/workflows/purchase-event").json()["enabled"] is True
    assert [c["name"] for c in a.get("/api/v1/connections").json()] == ["a-gumroad", "a-snapshots"]
    detail = served.store.run_detail(ids["dead_run"])
    assert detail is not None and detail.steps[0].status is JobStatus.DEAD


def test_names_are_per_workspace_for_workflows_and_taken_for_connections(
        sandboxes: Sandboxes, two_teams: tuple[httpx.Client, httpx.Client, dict[str, int]]) -> None:
    a, b, _ = two_teams
    # Both teams can install the same template: two workflows, one per workspace.
    assert b.post("/api/v1/templates/purchase-event/install").status_code == 200
    assert b.post("/api/v1/workflows/purchase-event/disable").json()["enabled"] is False
    assert a.get("/api/v1/workflows/purchase-event").json()["enabled"] is True
    assert [w["name"] for w in b.get("/api/v1/workflows").json()] == ["purchase-event"]
    # A connection name is unique across workspaces (the queue and rate limits are kept by name): 409, and
    # A's connection is untouched. The credential is checked first, so use one the sandbox accepts.
    taken = b.post("/api/v1/connections", json={"app": "gumroad", "name": "a-gumroad",
                                                 "credential": sandboxes.gumroad.access_token})
    assert taken.status_code == 409 and "taken" in taken.json()["error"], taken.text
    (kept,) = [c for c in a.get("/api/v1/connections").json() if c["name"] == "a-gumroad"]
    assert kept["base_url"] == "http://127.0.0.1:9"


def test_the_dashboard_pages_are_scoped_too(served: Served,
                                            two_teams: tuple[httpx.Client, httpx.Client, dict[str, int]]) -> None:
    _, _, ids = two_teams
    with httpx.Client(base_url=served.base_url) as browser:
        signed_in(browser, OTHER, OTHER_PASSWORD)
        assert browser.get(f"/runs/{ids['run']}").status_code == 404
        assert "purchase-event" not in browser.get("/runs").text
        assert "a-snapshots" not in browser.get("/dead-letters").text
        assert "ada@example.com" not in browser.get("/customers").text
        assert "a-gumroad" not in browser.get("/connections").text
        assert "a-snapshots" not in browser.get("/usage").text


def test_the_users_api_adds_people_to_the_callers_workspace(
        served: Served, two_teams: tuple[httpx.Client, httpx.Client, dict[str, int]]) -> None:
    a, b, _ = two_teams
    assert [u["username"] for u in b.get("/api/v1/users").json()] == [OTHER]
    made = b.post("/api/v1/users", json={"username": "cy", "password": "yet another passphrase",
                                         "role": "viewer"})
    assert made.status_code == 201 and made.json()["role"] == "viewer"
    assert "password" not in made.text
    assert [u["username"] for u in b.get("/api/v1/users").json()] == [OTHER, "cy"]
    assert "cy" not in [u["username"] for u in a.get("/api/v1/users").json()]
    assert b.post("/api/v1/users", json={"username": "cy", "password": "yet another passphrase"}).status_code == 409
    assert b.post("/api/v1/users", json={"username": "dd", "password": "short"}).status_code == 422
    cy = served.web.users.user_by_name("cy")
    assert cy is not None and cy.workspace_id == served.web.users.workspace_id("acme")
