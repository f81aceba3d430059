"""The dashboard over real HTTP: first run, sign-in, CSRF on every form, pages render, charts and actions work."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from test_api_support import Served, serve_app, signed_in

from snapbridge.sandbox import Sandboxes
from snapbridge.store import UsageSample

PAGES = ["/", "/connections", "/templates", "/workflows", "/workflows/builder", "/runs", "/dead-letters",
         "/runs?status=dead&workflow=churn&customer=a%40b.c"]


@pytest.fixture
def served(tmp_path: Path, sandboxes: Sandboxes) -> Iterator[Served]:
    with serve_app(tmp_path, sandboxes) as s:
        yield s


def test_first_visit_goes_to_setup_then_sign_in(served: Served) -> None:
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        assert client.get("/").url.path == "/setup"
        weak = client.post("/setup", data={"username": "ada", "password": "short"})
        assert weak.status_code == 422 and "at least 10" in weak.text
        signed_in(client)
        assert client.get("/setup").url.path == "/signin"  # only once


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_and_every_form_carries_csrf(served: Served, path: str) -> None:
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
        client.post("/templates/churn/install", data={"csrf": _csrf(client)})
        page = client.get(path)
        assert page.status_code == 200 and "<main>" in page.text
        forms = re.findall(r"<form method=\"post\"[^>]*>(.*?)</form>", page.text, re.S)
        assert all('name="csrf"' in form for form in forms), path


def _csrf(client: httpx.Client) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/templates").text)
    assert found
    return found.group(1)


def test_a_form_without_the_right_csrf_token_is_refused(served: Served) -> None:
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
        refused = client.post("/templates/churn/install", data={"csrf": "0" * 64})
        assert refused.status_code == 403 and "CSRF" in refused.text
        assert served.store.get_workflow("churn") is None
        client.post("/templates/churn/install", data={"csrf": _csrf(client)})
        assert served.store.get_workflow("churn") is not None


def test_connection_test_shows_plain_words(served: Served, sandboxes: Sandboxes) -> None:
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
        page = client.post("/connections", data={"csrf": _csrf(client), "app": "gumroad",
                                                  "credential": sandboxes.gumroad.access_token})
        assert page.status_code == 200 and "Reached Gumroad" in page.text
        assert sandboxes.gumroad.access_token not in page.text
        tested = client.post("/connections/gumroad/test", data={"csrf": _csrf(client)})
        assert "All required scopes are granted" in tested.text


def test_overview_charts_usage_against_the_quota(served: Served) -> None:
    now = datetime.now(UTC)
    served.store.record_usage_batch([UsageSample("snapshots", now, 200, 12.0),
                                     UsageSample("snapshots", now, 500, 30.0)])
    served.store.take_token("snapshots", capacity=100, refill_per_second=10)
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
        page = client.get("/").text
        assert "<svg class=\"chart\"" in page and "2 requests · 1 failed" in page and "quota 600.0/min" in page


def test_signed_out_sessions_stop_working(served: Served) -> None:
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
        client.post("/signout", data={"csrf": _csrf(client)})
        assert client.get("/runs").url.path == "/signin"
