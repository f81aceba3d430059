"""Customers over real HTTP: the JSON listing and its filters, the CSV export (escaping, formula injection),
viewer access, 401 without credentials, and the dashboard page."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from test_api_support import Served, placeholder_connection, serve_app, signed_in

from snapbridge.sandbox import Sandboxes
from snapbridge.store import Profile

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def served(tmp_path: Path, sandboxes: Sandboxes) -> Iterator[Served]:
    with serve_app(tmp_path, sandboxes) as s:
        placeholder_connection(s, "gumroad", "gumroad")  # profiles are seen through their connection's workspace
        with s.store.transaction() as tx:
            tx.save_profile(Profile("gumroad", "ada@example.com", T0, T0, name="Ada Lovelace", plan="pro",
                                    location_id="loc_1", segments=("vip", "trial"), lifetime_value_cents=12345,
                                    purchases=3, last_activity_at=T0))
            tx.save_profile(Profile("gumroad", "bob@example.org", T0, T0, name='=HYPERLINK("http://x")',
                                    plan="+1", tags=("a,b",), segments=("trial",)))
            tx.save_profile(Profile("gumroad", "carol@example.org", T0, T0, name='Carol "C", Jr.\nline two',
                                    plan="-2", location_id="@loc"))
        yield s


def _token(served: Served, role: str) -> dict[str, str]:
    with httpx.Client(base_url=served.base_url) as browser:
        csrf = signed_in(browser)
        made = browser.post("/api/v1/tokens", json={"name": role, "role": role}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        return {"Authorization": f"Bearer {made.json()['token']}"}


@pytest.fixture
def viewer(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base_url, headers=_token(served, "viewer")) as client:
        yield client


@pytest.mark.parametrize(("query", "emails"), [
    ("", ["ada@example.com", "bob@example.org", "carol@example.org"]),
    ("?segment=trial", ["ada@example.com", "bob@example.org"]),
    ("?segment=vip", ["ada@example.com"]),
    ("?segment=nope", []),
    ("?search=EXAMPLE.ORG", ["bob@example.org", "carol@example.org"]),
    ("?search=lovelace", ["ada@example.com"]),
    ("?search=BOB&segment=trial", ["bob@example.org"]),
    ("?limit=1", ["ada@example.com"]),
    ("?segment=&search=", ["ada@example.com", "bob@example.org", "carol@example.org"]),
])
def test_listing_and_filters(viewer: httpx.Client, query: str, emails: list[str]) -> None:
    answer = viewer.get("/api/v1/customers" + query)
    assert answer.status_code == 200, answer.text
    assert [c["email"] for c in answer.json()] == emails


def test_a_listed_profile_is_whole_and_pages_follow_after_id(viewer: httpx.Client) -> None:
    first = viewer.get("/api/v1/customers?limit=1").json()
    ada = first[0]
    assert (ada["name"], ada["plan"], ada["location_id"], ada["segments"], ada["lifetime_value_cents"],
            ada["purchases"]) == ("Ada Lovelace", "pro", "loc_1", ["vip", "trial"], 12345, 3)
    assert ada["last_activity_at"].startswith("2025-03-01T12:00:00")
    rest = viewer.get(f"/api/v1/customers?after_id={ada['id']}").json()
    assert [c["email"] for c in rest] == ["bob@example.org", "carol@example.org"]


@pytest.mark.parametrize("query", ["?limit=0", "?limit=501", "?limit=x", "?after_id=-1"])
def test_bad_paging_is_422_json(viewer: httpx.Client, query: str) -> None:
    answer = viewer.get("/api/v1/customers" + query)
    assert answer.status_code == 422 and answer.headers["content-type"].startswith("application/json")


def test_csv_export_is_escaped_and_formula_safe(viewer: httpx.Client) -> None:
    answer = viewer.get("/api/v1/customers/export.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text, newline="")))
    assert list(rows[0]) == ["id", "connection", "email", "name", "plan", "location_id", "timezone", "region",
                             "tier", "tags", "segments", "lifetime_value_cents", "purchases", "first_seen_at",
                             "last_activity_at", "updated_at"]
    ada, bob, carol = rows
    assert (ada["email"], ada["segments"], ada["lifetime_value_cents"], ada["timezone"]) == (
        "ada@example.com", "vip;trial", "12345", "")
    assert ada["last_activity_at"].startswith("2025-03-01T12:00:00")
    assert bob["name"] == "'=HYPERLINK(\"http://x\")" and bob["plan"] == "'+1" and bob["tags"] == "a,b"
    assert carol["name"] == 'Carol "C", Jr.\nline two'  # quoted, not split into columns or rows
    assert carol["plan"] == "'-2" and carol["location_id"] == "'@loc"
    assert '"Carol ""C"", Jr.\nline two"' in answer.text


def test_csv_export_takes_the_filters(viewer: httpx.Client) -> None:
    rows = list(csv.DictReader(io.StringIO(viewer.get("/api/v1/customers/export.csv?segment=trial&search=bob")
                                           .text, newline="")))
    assert [r["email"] for r in rows] == ["bob@example.org"]
    empty = viewer.get("/api/v1/customers/export.csv?segment=nope").text
    assert empty.startswith("id,connection,email,") and empty.count("\r\n") == 1


def test_without_credentials_it_is_401(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        for path in ("/api/v1/customers", "/api/v1/customers/export.csv"):
            answer = client.get(path)
            assert answer.status_code == 401 and "error" in answer.json()
            assert client.get(path, headers={"Authorization": "Bearer sbt_wrong"}).status_code == 401


def test_the_openapi_document_describes_the_csv(served: Served) -> None:
    document = httpx.get(served.base_url + "/api/v1/openapi.json").json()
    export = document["paths"]["/api/v1/customers/export.csv"]["get"]
    assert list(export["responses"]["200"]["content"]) == ["text/csv"]
    assert {p["name"] for p in export["parameters"]} == {"segment", "search"}
    listing = document["paths"]["/api/v1/customers"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"segment", "search", "limit", "after_id"}


def test_the_dashboard_page_lists_filters_and_links_the_export(served: Served) -> None:
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
        page = client.get("/customers")
        assert page.status_code == 200 and "<main>" in page.text
        assert '<a href="/customers">Customers</a>' in page.text
        assert "ada@example.com" in page.text and "123.45" in page.text and "vip, trial" in page.text
        assert "2025-03-01 12:00" in page.text and "loc_1" in page.text
        assert "=HYPERLINK(&#34;http://x&#34;)" in page.text  # escaped as HTML
        assert 'href="/api/v1/customers/export.csv"' in page.text
        filtered = client.get("/customers", params={"segment": "trial", "search": "bob"})
        assert "bob@example.org" in filtered.text and "ada@example.com" not in filtered.text
        assert 'href="/api/v1/customers/export.csv?search=bob&amp;segment=trial"' in filtered.text
        csv_text = client.get("/api/v1/customers/export.csv?search=bob&segment=trial").text  # by the session
        assert "bob@example.org" in csv_text and "ada@" not in csv_text
        assert "No customers match." in client.get("/customers?segment=nope").text
        assert client.get("/customers?after_id=99999999999999999999").status_code == 200


def test_the_dashboard_page_needs_a_sign_in(served: Served) -> None:
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as stranger:
        assert stranger.get("/customers").url.path == "/signin"


def test_the_dashboard_page_pages_by_id(served: Served) -> None:
    with served.store.transaction() as tx:
        for i in range(100):
            tx.save_profile(Profile("gumroad", f"z{i:03}@example.net", T0, T0))
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
        first = client.get("/customers").text
        assert "z096@example.net" in first and "z097@example.net" not in first
        last = served.store.list_profiles(limit=100)[-1]
        assert f'href="/customers?after_id={last.id}"' in first
        second = client.get(f"/customers?after_id={last.id}").text
        assert "z097@example.net" in second and "z099@example.net" in second and "Next page" not in second
