"""An adversarial review of the management API over real HTTP: what an integrator hits at the edges. The
OpenAPI document against behaviour, request content types and odd JSON, odd query values, NUL bytes on both
engines, the answers for unknown paths and methods, and CSV cells that are numbers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from test_api_support import (
    Served,
    make_dead_letter,
    make_run,
    placeholder_connection,
    serve_app,
    signed_in,
)

from snapbridge.sandbox import Sandboxes
from snapbridge.security import MIN_PASSWORD_LENGTH
from snapbridge.store import Profile, RunStatus

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def served(tmp_path: Path, sandboxes: Sandboxes) -> Iterator[Served]:
    with serve_app(tmp_path, sandboxes) as s:
        yield s


def _admin_client(base_url: str) -> httpx.Client:
    with httpx.Client(base_url=base_url) as browser:
        csrf = signed_in(browser)
        made = browser.post("/api/v1/tokens", json={"name": "review", "role": "admin"},
                            headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {made.json()['token']}"})


@pytest.fixture
def admin(served: Served) -> Iterator[httpx.Client]:
    with _admin_client(served.base_url) as client:
        yield client


def _is_error(answer: httpx.Response, status: int) -> dict[str, Any]:
    """The one error shape: JSON with `error` (a line) and `problems` (a list)."""
    assert answer.status_code == status, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    body = answer.json()
    assert isinstance(body, dict) and set(body) == {"error", "problems"}, body
    assert isinstance(body["error"], str) and isinstance(body["problems"], list)
    return body


# authentication


def test_a_401_names_the_scheme_in_www_authenticate(served: Served) -> None:
    # RFC 9110 §15.5.2: a 401 carries WWW-Authenticate; clients and proxies key on it.
    for headers in ({}, {"Authorization": "Bearer sbt_wrong"}):
        answer = httpx.get(served.base_url + "/api/v1/runs", headers=headers)
        _is_error(answer, 401)
        assert answer.headers.get("www-authenticate", "").startswith("Bearer"), answer.headers


def test_a_deleted_token_stops_at_once_and_a_viewer_token_cannot_write(served: Served, admin: httpx.Client) -> None:
    made = admin.post("/api/v1/tokens", json={"name": "short-lived", "role": "viewer"}).json()
    with httpx.Client(base_url=served.base_url, headers={"Authorization": f"Bearer {made['token']}"}) as viewer:
        assert viewer.get("/api/v1/runs").status_code == 200
        _is_error(viewer.get("/api/v1/users"), 403)
        _is_error(viewer.post("/api/v1/tokens", json={"name": "up", "role": "admin"}), 403)
        assert admin.delete(f"/api/v1/tokens/{made['id']}").status_code == 204
        _is_error(viewer.get("/api/v1/runs"), 401)


# request bodies


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_a_body_that_is_not_declared_json_is_415(admin: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    answer = admin.post("/api/v1/tokens", content=b'{"name": "t"}', headers=headers)
    assert "application/json" in str(_is_error(answer, 415)["error"])
    assert [t["name"] for t in admin.get("/api/v1/tokens").json()] == ["review"]  # nothing was made


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/merge-patch+json"])
def test_json_content_types_are_read(admin: httpx.Client, content_type: str) -> None:
    answer = admin.post("/api/v1/tokens", content=b'{"name": "t"}', headers={"Content-Type": content_type})
    assert answer.status_code == 201, answer.text


def test_415_is_in_the_document_for_endpoints_with_a_body(served: Served) -> None:
    document = httpx.get(served.base_url + "/api/v1/openapi.json").json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert ("415" in operation["responses"]) == ("requestBody" in operation), (method, path)


def test_duplicate_keys_in_a_json_body_are_refused(admin: httpx.Client) -> None:
    # Which of two values wins differs between parsers (and between a proxy and us): refuse, never guess.
    answer = admin.post("/api/v1/tokens", content=b'{"name": "a", "role": "viewer", "name": "b"}', headers=JSON)
    assert "name" in str(_is_error(answer, 400)["error"])


def test_a_byte_order_mark_and_huge_numbers_are_handled(admin: httpx.Client) -> None:
    assert admin.post("/api/v1/tokens", content=b'\xef\xbb\xbf{"name": "bom"}', headers=JSON).status_code == 201
    _is_error(admin.post("/api/v1/tokens", content=b'{"name": ' + b"9" * 5000 + b"}", headers=JSON), 400)
    _is_error(admin.post("/api/v1/tokens", content=b'{"name": 1e400}', headers=JSON), 422)


@pytest.mark.parametrize("since", [1740830400, 1740830400000, True, 1.5])
def test_replay_filter_times_are_date_time_strings_as_documented(admin: httpx.Client, since: object) -> None:
    answer = admin.post("/api/v1/dead-letters/replay", json={"workflow": "w", "since": since})
    assert _is_error(answer, 422)["problems"] == [{"path": "since", "message": answer.json()["problems"][0]
                                                   ["message"]}]


def test_the_documented_password_length_is_the_enforced_one(served: Served, admin: httpx.Client) -> None:
    document = httpx.get(served.base_url + "/api/v1/openapi.json").json()
    assert document["components"]["schemas"]["UserIn"]["properties"]["password"]["minLength"] == MIN_PASSWORD_LENGTH
    short = admin.post("/api/v1/users", json={"username": "bob", "password": "x" * (MIN_PASSWORD_LENGTH - 1)})
    assert _is_error(short, 422)["problems"][0]["path"] == "password"
    assert admin.post("/api/v1/users", json={"username": "bob", "password": "x" * MIN_PASSWORD_LENGTH}
                      ).status_code == 201


def test_a_user_name_differing_only_in_case_is_taken(admin: httpx.Client) -> None:
    assert admin.post("/api/v1/users", json={"username": "cleo", "password": "x" * MIN_PASSWORD_LENGTH}
                      ).status_code == 201
    twin = admin.post("/api/v1/users", json={"username": "Cleo", "password": "x" * MIN_PASSWORD_LENGTH})
    assert _is_error(twin, 409)["error"] == "the user name 'Cleo' is taken (as 'cleo')"


# query parameters


@pytest.mark.parametrize("query", ["limit=1_0", "limit=%D9%A3", "limit=%201", "limit=1.0", "before_id=0x10"])
def test_an_integer_is_ascii_digits_only(served: Served, admin: httpx.Client, query: str) -> None:
    for m in range(12):
        make_run(served.store, "w", at=T0 + timedelta(minutes=m))
    assert _is_error(admin.get(f"/api/v1/runs?{query}"), 422)["problems"][0]["path"] == query.split("=")[0]


def test_runs_status_is_an_enum_in_the_document(served: Served) -> None:
    document = httpx.get(served.base_url + "/api/v1/openapi.json").json()
    (status,) = [p for p in document["paths"]["/api/v1/runs"]["get"]["parameters"] if p["name"] == "status"]
    assert status["schema"]["enum"] == [s.value for s in RunStatus]


def test_an_unknown_status_is_not_echoed_at_length(admin: httpx.Client) -> None:
    body = _is_error(admin.get("/api/v1/runs?status=" + "x" * 5000), 422)
    assert len(str(body["error"])) < 300


@pytest.mark.parametrize("since", [
    "2025-03-01T13:01:00+01:00",  # '+' sent unencoded arrives as a space
    "2025-03-01t12:01:00z",  # RFC 3339 §5.6 allows lower-case t and z
    "2025-03-01 12:01:00Z",  # and a space for T
])
def test_instants_as_integrators_write_them(served: Served, admin: httpx.Client, since: str) -> None:
    early, late = (make_run(served.store, "w", at=T0 + timedelta(minutes=m)) for m in (0, 2))
    answer = admin.get(f"/api/v1/runs?since={since}")  # httpx leaves '+' as it is, as a hand-written URL would
    assert answer.status_code == 200, answer.text
    assert [r["id"] for r in answer.json()] == [late]
    assert early not in [r["id"] for r in answer.json()]


def test_like_wildcards_in_filters_are_literal(served: Served, admin: httpx.Client) -> None:
    make_dead_letter(served.store, "w", "HTTP 422: 100% bad_value", at=T0)
    make_dead_letter(served.store, "w", "HTTP 500: other", at=T0 + timedelta(minutes=1))
    for reason, count in (("%", 1), ("_", 1), ("%%", 0), ("d_v", 1), ("0%", 1), ("x_y", 0)):
        answer = admin.get("/api/v1/dead-letters", params={"reason": reason})
        assert len(answer.json()) == count, reason
    with served.store.transaction() as tx:
        tx.save_profile(Profile("c", "a_b@example.com", T0, T0, name="100%"))
        tx.save_profile(Profile("c", "axb@example.com", T0, T0, name="plain"))
    placeholder_connection(served, "c")
    assert [c["email"] for c in admin.get("/api/v1/customers", params={"search": "a_b"}).json()] == [
        "a_b@example.com"]
    assert [c["email"] for c in admin.get("/api/v1/customers", params={"search": "%"}).json()] == [
        "a_b@example.com"]


def test_paging_runs_while_runs_are_added_neither_skips_nor_repeats(served: Served, admin: httpx.Client) -> None:
    first = [make_run(served.store, "w", at=T0 + timedelta(minutes=m)) for m in range(5)]
    page = admin.get("/api/v1/runs?limit=2").json()
    seen = [r["id"] for r in page]
    make_run(served.store, "w", at=T0 + timedelta(minutes=10))  # a newer run arrives between pages
    while page:
        page = admin.get(f"/api/v1/runs?limit=2&before_id={seen[-1]}").json()
        seen += [r["id"] for r in page]
    assert seen == sorted(first, reverse=True)


# NUL bytes, on both engines: PostgreSQL refuses them in text, SQLite stores them


@pytest.fixture
def served_on(migrated: Engine, tmp_path: Path, sandboxes: Sandboxes) -> Iterator[Served]:
    with serve_app(tmp_path, sandboxes, migrated) as s:
        yield s


@pytest.mark.parametrize(("method", "path", "field"), [
    ("GET", "/api/v1/runs?workflow=a%00b", "workflow"),
    ("GET", "/api/v1/runs?customer=a%00b", "customer"),
    ("GET", "/api/v1/dead-letters?reason=a%00b", "reason"),
    ("GET", "/api/v1/dead-letters?connection=a%00b", "connection"),
    ("GET", "/api/v1/customers?search=a%00b", "search"),
    ("GET", "/api/v1/customers/export.csv?segment=a%00b", "segment"),
    ("GET", "/api/v1/usage?connection=a%00b", "connection"),
])
def test_a_nul_in_a_filter_is_the_same_422_on_both_engines(served_on: Served, method: str, path: str,
                                                          field: str) -> None:
    with _admin_client(served_on.base_url) as admin:
        body = _is_error(admin.request(method, path), 422)
    assert body["problems"] == [{"path": field, "message": "holds a NUL character"}]
    assert "database" not in str(body["error"]).lower() and "postgres" not in str(body["error"]).lower()


def test_a_nul_in_a_body_or_a_path_is_refused_on_both_engines(served_on: Served) -> None:
    with _admin_client(served_on.base_url) as admin:
        token = _is_error(admin.post("/api/v1/tokens", json={"name": "a\x00b"}), 422)
        assert token["problems"][0]["path"] == "name"
        replay = _is_error(admin.post("/api/v1/dead-letters/replay", json={"workflow": "a\x00b"}), 422)
        assert replay["problems"][0]["path"] == "workflow"
        _is_error(admin.get("/api/v1/workflows/a%00b"), 404)
        assert [t["name"] for t in admin.get("/api/v1/tokens").json()] == ["review"]


# unknown paths, methods and trailing slashes


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/v1/nope", 404),
    ("GET", "/api/v1/runs/abc", 404),
    ("GET", "/api/v1", 404),
    ("GET", "/api/v1/", 404),
    ("GET", "/api/v1/runs/", 404),  # not a redirect to an absolute http:// URL that drops the token
    ("POST", "/api/v1/tokens/", 404),
    ("PUT", "/api/v1/runs", 405),
    ("OPTIONS", "/api/v1/runs", 405),
    ("GET", "/api/v1/tokens/1", 405),
    ("PATCH", "/api/v1/openapi.json", 405),
])
def test_unknown_paths_and_methods_answer_in_the_api_error_shape(admin: httpx.Client, method: str, path: str,
                                                                 status: int) -> None:
    answer = admin.request(method, path, follow_redirects=False)
    _is_error(answer, status)
    if status == 405:
        assert answer.headers["allow"]


def test_a_trailing_slash_gets_a_hint(admin: httpx.Client) -> None:
    assert "/api/v1/runs" in str(_is_error(admin.get("/api/v1/runs/"), 404)["error"])


def test_head_answers_like_get_without_a_body(admin: httpx.Client) -> None:
    answer = admin.head("/api/v1/runs")
    assert answer.status_code == 200 and answer.content == b""
    assert httpx.head(str(admin.base_url) + "/api/v1/runs").status_code == 401


def test_head_with_a_session_needs_no_csrf_token_as_get_does_not(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as browser:
        signed_in(browser)
        assert browser.get("/api/v1/runs").status_code == 200
        assert browser.head("/api/v1/runs").status_code == 200


# CSV


def test_csv_numbers_stay_numbers_while_text_is_defused(served: Served, admin: httpx.Client) -> None:
    placeholder_connection(served, "c")
    with served.store.transaction() as tx:
        tx.save_profile(Profile("c", "refund@example.com", T0, T0, name="-1+2", plan="=1+1", tier="@x",
                                lifetime_value_cents=-500, tags=("=cmd", "ok")))
    rows = list(csv.DictReader(io.StringIO(admin.get("/api/v1/customers/export.csv").text, newline="")))
    (row,) = rows
    assert row["lifetime_value_cents"] == "-500"  # a number, not the text "'-500"
    assert (row["name"], row["plan"], row["tier"]) == ("'-1+2", "'=1+1", "'@x")
    assert row["tags"] == "'=cmd;ok"


# paging dead letters


def test_dead_letters_page_by_a_cursor_without_skipping_or_repeating_ties(served_on: Served) -> None:
    at = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    placeholder_connection(served_on, "snapshots")
    runs = {make_dead_letter(served_on.store, "w", "HTTP 422: bad", at=at + timedelta(seconds=i // 3))
            for i in range(7)}  # three die at each of the first two instants
    with _admin_client(served_on.base_url) as admin:
        seen: list[int] = []
        params: dict[str, Any] = {"limit": 2}
        for _ in range(10):  # 7 in pages of 2: a cursor that is ignored would go round
            page = admin.get("/api/v1/dead-letters", params=params)
            assert page.status_code == 200, page.text
            rows = page.json()
            if not rows:
                break
            seen.extend(row["run_id"] for row in rows)
            params = {"limit": 2, "before_died_at": rows[-1]["died_at"], "before_job_id": rows[-1]["job_id"]}
        assert sorted(seen) == sorted(runs) and len(seen) == 7
        half = admin.get("/api/v1/dead-letters", params={"before_job_id": 3})
        assert half.status_code == 422 and half.json()["problems"][0]["path"] == "before_died_at"
        document = admin.get("/api/v1/openapi.json").json()
        names = {p["name"] for p in document["paths"]["/api/v1/dead-letters"]["get"]["parameters"]}
        assert {"before_died_at", "before_job_id"} <= names
