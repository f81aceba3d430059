"""The dashboard over real HTTP: first run, sign-in, CSRF on every form, pages render, charts and actions work
(runs in a time window, dead-letter filters and replay, credential rotation); and the usage charts' pure maths."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from test_api_support import Served, make_dead_letter, make_run, placeholder_connection, serve_app, signed_in

from snapbridge.sandbox import Sandboxes
from snapbridge.security import Role
from snapbridge.store import JobStatus, UsageSample
from snapbridge.web.api.models import UsageWindowOut
from snapbridge.web.dashboard import history as dashboard_history
from snapbridge.web.dashboard import latency_chart, nice_ceiling, outcome_chart, slots, usage_chart

PAGES = ["/", "/connections", "/templates", "/workflows", "/workflows/builder", "/runs", "/dead-letters",
         "/customers", "/usage", "/usage?minutes=10080&connection=snapshots",
         "/runs?status=dead&workflow=churn&customer=a%40b.c&since=2025-03-01T12%3A00&until=2025-03-02T00%3A00",
         "/dead-letters?workflow=churn&connection=snapshots&reason=422&since=2025-03-01T12%3A00"]
ALL_SNAPSHOTS_SCOPES = ["customers.readonly", "customers.write", "events.readonly", "events.write",
                        "saas/location.read", "saas/location.write"]
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
VIEWER, VIEWER_PASSWORD = "bob", "another long password"


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
    placeholder_connection(served, "snapshots")
    served.store.record_usage_batch([UsageSample("snapshots", now, 200, 12.0),
                                     UsageSample("snapshots", now, 500, 30.0)])
    served.store.take_token("snapshots", capacity=100, refill_per_second=10)
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
        page = client.get("/").text
        assert page.count('<svg class="chart"') == 3 and page.count('role="img"') == 3
        legend = re.sub(r"<[^>]+>", "", page)
        assert "2 requests · 1 failed" in legend and "quota 600.0/min" in legend
        assert "Successes and failures per minute" in page and "1 succeeded · 1 failed" in page
        assert "Mean latency per minute (ms; percentiles are not stored)" in page and "mean 21.0 ms" in page


def test_the_usage_page_charts_a_chosen_window_and_connection(served: Served) -> None:
    now = datetime.now(UTC)
    placeholder_connection(served, "snapshots")
    placeholder_connection(served, "gumroad", "gumroad")
    served.store.record_usage_batch([UsageSample("snapshots", now - timedelta(hours=5), 200, 10.0),
                                     UsageSample("gumroad", now, 429, 50.0, throttled=True)])
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
        hour = re.sub(r">\s+<", "><", client.get("/usage").text)
        assert "<td>gumroad</td><td>1</td><td>1</td><td>1</td><td>100.0%</td>" in hour
        assert "<td>snapshots</td>" not in hour
        day = re.sub(r">\s+<", "><", client.get("/usage?minutes=1440&connection=snapshots").text)
        assert "Requests per minute against the quota (17-minute averages)" in day
        assert "<td>snapshots</td><td>1</td>" in day and "<td>gumroad</td>" not in day
        assert client.get("/usage?minutes=5").status_code == 422
        assert client.get("/usage?minutes=x").status_code == 422


def test_the_runs_page_filters_by_a_time_window(served: Served) -> None:
    make_run(served.store, "welcome", at=T0)
    late = make_run(served.store, "welcome", at=T0 + timedelta(hours=1))
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
        # What a datetime-local field sends: no offset, read as UTC as the labels say.
        page = client.get("/runs", params={"since": "2025-03-01T12:30", "until": "2025-03-01T13:30:00"}).text
        assert re.findall(r'href="/runs/(\d+)"', page) == [str(late)]
        assert 'value="2025-03-01T12:30"' in page  # the form keeps what was asked
        bad = client.get("/runs", params={"since": "noon"})
        assert bad.status_code == 400 and "since is not an ISO 8601 date-time" in bad.text
        assert 'action="/runs"' in bad.text and 'value="noon"' in bad.text  # the form, again, to fix it


def _viewer(served: Served, client: httpx.Client) -> str:
    served.web.create_user(VIEWER, VIEWER_PASSWORD, Role.VIEWER)
    return signed_in(client, VIEWER, VIEWER_PASSWORD)


def test_dead_letters_filter_and_replay_the_matching_ones(served: Served) -> None:
    mine = make_dead_letter(served.store, "welcome", "HTTP 422: email is invalid", at=T0)
    other = make_dead_letter(served.store, "welcome", "HTTP 404: sale not found", at=T0, connection="gumroad")
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        csrf = signed_in(client)
        page = client.get("/dead-letters", params={"reason": "invalid"}).text
        assert f'href="/runs/{mine}"' in page and f'href="/runs/{other}"' not in page
        form = re.search(r'<form method="post" action="/dead-letters/replay".*?</form>', page, re.S)
        assert form and 'name="reason" value="invalid"' in form.group(0) and "Replay matching (1)" in form.group(0)
        bad_window = client.get("/dead-letters", params={"since": "later"})
        assert bad_window.status_code == 400 and "since is not an ISO 8601 date-time" in bad_window.text

        refused = client.post("/dead-letters/replay", data={"csrf": "0" * 64, "reason": "invalid"})
        assert refused.status_code == 403 and len(served.store.dead_letters()) == 2
        everything = client.post("/dead-letters/replay", data={"csrf": csrf, "from": "failed_step"})
        assert everything.status_code == 422 and "say which dead letters" in everything.text
        done = client.post("/dead-letters/replay", data={"csrf": csrf, "reason": "invalid", "since": "",
                                                          "from": "trigger"})
        assert "Replayed 1 matching dead letter from the trigger." in done.text
        assert [d.run_id for d in served.store.dead_letters()] == [other]


def test_dead_letters_come_in_pages_that_keep_the_filter(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard_history, "DEAD_PAGE", 2)
    runs = [make_dead_letter(served.store, "welcome", f"HTTP 422: bad {n}", at=T0 + timedelta(seconds=n))
            for n in range(5)]
    make_dead_letter(served.store, "welcome", "HTTP 404: gone", at=T0 + timedelta(seconds=9))
    seen: list[int] = []
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
        url: str | None = "/dead-letters?reason=422"
        while url:
            page = client.get(url).text
            seen += [int(r) for r in re.findall(r'<td><a href="/runs/(\d+)">', page)]
            found = re.search(r'<a href="([^"]+)" id="next-page">', page)
            url = found.group(1).replace("&amp;", "&") if found else None
            assert url is None or "reason=422" in url
    assert seen == runs[::-1]  # newest first, each once, the 404 never


def test_one_dead_letter_replays_from_the_trigger(served: Served) -> None:
    run_id = make_dead_letter(served.store, "welcome", "HTTP 422: bad plan", at=T0, steps=2, succeed_first=True)
    (dead,) = served.store.dead_letters()
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        csrf = signed_in(client)
        page = client.get("/dead-letters").text
        assert '<option value="trigger">from the trigger</option>' in page
        assert client.post(f"/dead-letters/{dead.job_id}/replay", data={"csrf": csrf, "from": "x"}).status_code == 422
        done = client.post(f"/dead-letters/{dead.job_id}/replay", data={"csrf": csrf, "from": "trigger"})
        assert "Replayed 1 dead letter from the trigger." in done.text
    detail = served.store.run_detail(run_id)
    assert detail is not None and [s.status for s in detail.steps] == [JobStatus.QUEUED, JobStatus.QUEUED]


def test_a_viewer_cannot_replay_or_rotate_from_the_dashboard(served: Served) -> None:
    make_dead_letter(served.store, "welcome", "HTTP 422: email is invalid", at=T0)
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as admin:
        signed_in(admin)  # the admin exists first; the viewer is the second user
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        csrf = _viewer(served, client)
        for path, data in (("/dead-letters/replay", {"workflow": "welcome"}), ("/dead-letters/replay-all", {}),
                           ("/connections/rotate", {"name": "snapshots", "credential": "pit-x"})):
            answer = client.post(path, data={"csrf": csrf, **data})
            assert answer.status_code == 403 and "admin role" in answer.text, path
    assert len(served.store.dead_letters()) == 1


def test_rotating_a_credential_from_the_connections_page(served: Served, sandboxes: Sandboxes) -> None:
    old, new = (sandboxes.snapshots.create_key(ALL_SNAPSHOTS_SCOPES).key for _ in range(2))
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
        client.post("/connections", data={"csrf": _csrf(client), "app": "snapshots", "credential": old})
        page = client.get("/connections").text
        assert 'action="/connections/rotate"' in page and '<option value="snapshots">' in page
        missing = client.post("/connections/rotate", data={"csrf": _csrf(client), "name": "snapshots"})
        assert missing.status_code == 422 and "credential" in missing.text
        failed = client.post("/connections/rotate", data={"csrf": _csrf(client), "name": "snapshots",
                                                          "credential": "pit-wrong"})
        assert failed.status_code == 422 and "refused the credential" in failed.text and "pit-wrong" not in failed.text
        done = client.post("/connections/rotate", data={"csrf": _csrf(client), "name": "snapshots",
                                                        "credential": f"{new}\n"})  # a pasted newline is dropped
        assert done.status_code == 200 and "The new credential replaced the old one" in done.text
        assert new not in done.text and old not in done.text
    record = served.web.connections.get("snapshots") if served.web.connections else None
    assert record is not None and served.web.vault is not None
    assert served.web.vault.decrypt(record.credential, bound_to="snapshots:credential").reveal() == new


# the charts' pure maths: no server


def _window(at: datetime, requests: int, errors: int = 0, throttled: int = 0, latency: float = 10.0,
            connection: str = "snapshots") -> UsageWindowOut:
    return UsageWindowOut(connection=connection, window_start=at, requests=requests, errors=errors,
                          throttled=throttled, mean_latency_ms=latency)


NOW = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (1.5, 2), (3, 5), (7, 10), (10, 10), (11, 20),
                                            (260, 500), (999, 1000)])
def test_a_scale_tops_at_one_two_or_five_times_a_power_of_ten(value: float, top: float) -> None:
    assert nice_ceiling(value) == top


@pytest.mark.parametrize(("minutes", "size", "count"), [(60, 1, 61), (89, 1, 90), (90, 2, 46), (180, 3, 61),
                                                        (1440, 17, 85), (10080, 113, 90)])
def test_long_windows_are_drawn_in_wider_slots(minutes: int, size: int, count: int) -> None:
    cells = slots([], now=NOW, minutes=minutes)
    assert (cells[0].minutes, len(cells)) == (size, count)
    assert cells[-1].start <= NOW.replace(second=0) < cells[-1].start + timedelta(minutes=size)


def test_slots_add_up_minutes_and_connections() -> None:
    minute = NOW.replace(second=0)
    windows = [_window(minute, 4, errors=1, latency=10.0), _window(minute, 1, latency=60.0, connection="gumroad"),
               _window(minute - timedelta(minutes=2), 2, errors=2, throttled=1),
               _window(minute - timedelta(hours=3), 50)]  # before the window: left out
    cells = slots(windows, now=NOW, minutes=60)
    last = cells[-1]
    assert (last.requests, last.errors, last.succeeded, last.mean_latency_ms) == (5, 1, 4, 20.0)
    assert (cells[-3].requests, cells[-3].throttled) == (2, 1) and cells[-2].mean_latency_ms is None
    assert sum(c.requests for c in cells) == 7


def test_the_outcome_chart_draws_succeeded_failed_and_throttled_lines() -> None:
    minute = NOW.replace(second=0)
    chart = outcome_chart([_window(minute, 8, errors=3, throttled=2)], now=NOW, minutes=60)
    assert [line.label for line in chart.lines] == ["succeeded", "failed", "throttled (429)"]
    assert chart.top == 10 and chart.summary == "5 succeeded · 3 failed, 2 of them throttled (429)"
    last_points = [line.paths[0].split()[-1] for line in chart.lines]
    # y runs down from the top: 5 of 10 is halfway, 3 and 2 lower down.
    assert [float(p.split(",")[1]) for p in last_points] == [100.0, 137.6, 156.4]
    assert chart.hits[-1].title == "12:00 5 succeeded, 3 failed (2 throttled)" and len(chart.hits) == 61


def test_the_latency_chart_leaves_gaps_where_nothing_was_sent() -> None:
    minute = NOW.replace(second=0)
    windows = [_window(minute - timedelta(minutes=4), 1, latency=40.0), _window(minute - timedelta(minutes=3), 1),
               _window(minute, 2, latency=80.0)]
    chart = latency_chart(windows, now=NOW, minutes=60)
    (line,) = chart.lines
    assert len(line.paths) == 1 and len(line.paths[0].split()) == 2  # the two neighbouring minutes
    assert len(line.dots) == 1  # the lone last minute
    assert "percentiles are not stored" in chart.title and chart.top == 100
    assert chart.summary == "mean 52.5 ms over 4 requests; slowest slot 80.0 ms"
    assert latency_chart([], now=NOW, minutes=60).summary == "no requests in this window"


def test_the_requests_chart_averages_wide_slots_per_minute() -> None:
    minute = NOW.replace(second=0)
    windows = [_window(minute - timedelta(minutes=2), 30), _window(minute - timedelta(minutes=1), 6)]
    chart = usage_chart(windows, {"snapshots": 20.0}, now=NOW, minutes=180)  # 3-minute slots from 09:00
    assert chart.slot_minutes == 3 and chart.peak == 30 and chart.total == 36 and chart.top == 20.0
    (bar,) = chart.bars
    assert bar.title == "11:57–11:59 36 requests (12.0/min), 0 failed"
    assert bar.height == 116.4 and chart.quota_y == 6.0  # 12/min of a 20/min scale; the quota at its top


def test_signed_out_sessions_stop_working(served: Served) -> None:
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        signed_in(client)
        client.post("/signout", data={"csrf": _csrf(client)})
        assert client.get("/runs").url.path == "/signin"
