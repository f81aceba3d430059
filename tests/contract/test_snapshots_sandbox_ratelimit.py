"""Snapshots sandbox: per-key burst window and daily quota, the five headers, 429 with Retry-After."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from test_snapshots_sandbox_support import RATE_HEADERS, Served, assert_rate_headers, auth, serving, wait_for

from snapbridge.sandbox.snapshots.ratelimit import Limits, RateLimiter, format_retry_after

TOO_MANY = {"statusCode": 429, "message": "Too many requests"}


@pytest.fixture(scope="module")
def box() -> Iterator[Served]:
    with serving() as served:
        yield served


@pytest.fixture(scope="module")
def fast_box() -> Iterator[Served]:
    with serving(time_factor=0.001) as served:
        yield served


@pytest.fixture
def client(box: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=box.url, timeout=10) as c:
        yield c


def test_the_101st_request_inside_10_seconds_is_429_with_default_limits(box: Served, client: httpx.Client
                                                                       ) -> None:
    key = box.sandbox.create_key(["saas/location.read"])  # the default plan: 100 per 10 s
    started = time.monotonic()
    remaining = []
    for _ in range(100):
        r = client.get("/locations", headers=auth(key), params={"limit": 1})
        assert r.status_code == 200
        remaining.append(int(r.headers["X-RateLimit-Remaining"]))
    refused = client.get("/locations", headers=auth(key))
    assert time.monotonic() - started < 10, "too slow to test a 10 s window"
    assert remaining == list(range(99, -1, -1))
    assert refused.status_code == 429 and refused.json() == TOO_MANY
    assert_rate_headers(refused)
    assert refused.headers["X-RateLimit-Max"] == "100"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["X-RateLimit-Interval-Milliseconds"] == "10000"
    assert refused.headers["X-RateLimit-Limit-Daily"] == "200000"
    assert refused.headers["X-RateLimit-Daily-Remaining"] == "199900"
    assert 1 <= int(refused.headers["Retry-After"]) <= 10


def test_a_small_limit_refuses_the_next_request_and_recovers_after_the_window(box: Served,
                                                                             client: httpx.Client) -> None:
    key = box.sandbox.create_key(["customers.readonly"], burst_limit=3, burst_window_ms=600)
    for _ in range(3):
        assert client.get("/customers", headers=auth(key)).status_code == 200
    refused = client.get("/customers", headers=auth(key))
    assert refused.status_code == 429 and refused.json() == TOO_MANY
    assert refused.headers["Retry-After"] == "1"  # under 0.6 s left, rounded up to whole seconds
    assert refused.headers["X-RateLimit-Max"] == "3" and refused.headers["X-RateLimit-Remaining"] == "0"
    # Refused requests do not count: polling through the 429s does not push the window further out.
    started = time.monotonic()
    wait_for(lambda: client.get("/customers", headers=auth(key)).status_code == 200, timeout=5, what="window")
    assert time.monotonic() - started < 1.5
    assert refused.headers["X-RateLimit-Daily-Remaining"] == str(200_000 - 3)


def test_the_daily_quota_is_429_until_the_day_turns(box: Served, client: httpx.Client) -> None:
    key = box.sandbox.create_key(["events.readonly"], daily_limit=3)
    answers = [client.get("/events", headers=auth(key)) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["X-RateLimit-Daily-Remaining"] for r in answers] == ["2", "1", "0", "0"]
    refused = answers[-1]
    assert refused.json() == TOO_MANY and refused.headers["X-RateLimit-Limit-Daily"] == "3"
    until_midnight = 86_400 - (time.time() % 86_400)
    assert abs(int(refused.headers["Retry-After"]) - until_midnight) <= 2
    assert refused.headers["X-RateLimit-Remaining"] == "97"  # the burst window still has room


def test_limits_are_per_key(box: Served, client: httpx.Client) -> None:
    one = box.sandbox.create_key(["events.readonly"], burst_limit=1)
    two = box.sandbox.create_key(["events.readonly"], burst_limit=1)
    assert client.get("/events", headers=auth(one)).status_code == 200
    assert client.get("/events", headers=auth(one)).status_code == 429
    assert client.get("/events", headers=auth(two)).status_code == 200


def test_every_kind_of_answer_counts_except_429(box: Served, client: httpx.Client) -> None:
    key = box.sandbox.create_key(["events.readonly"], burst_limit=5)
    statuses = [
        client.get("/events", headers=auth(key)).status_code,
        client.get("/events", headers=auth(key), params={"limit": "0"}).status_code,
        client.get("/customers", headers=auth(key)).status_code,
        client.get("/events", headers={"Authorization": f"Bearer {key.key}"}).status_code,
    ]
    assert statuses == [200, 422, 401, 400]
    last = client.get("/events", headers=auth(key))
    assert last.headers["X-RateLimit-Remaining"] == "0"
    assert client.get("/events", headers=auth(key)).status_code == 429
    # Unknown routes and unknown keys are not counted against anyone.
    assert client.get("/nowhere", headers=auth(key)).headers["X-RateLimit-Remaining"] == "0"


def test_headers_with_a_time_factor_report_the_scaled_window(fast_box: Served) -> None:
    key = fast_box.sandbox.create_key(["events.readonly"], burst_limit=2, burst_window_ms=200_000)
    with httpx.Client(base_url=fast_box.url) as c:
        answers = [c.get("/events", headers=auth(key)) for _ in range(3)]
        assert answers[0].headers["X-RateLimit-Interval-Milliseconds"] == "200"
        refused = answers[2]
        assert refused.status_code == 429
        assert 0 < float(refused.headers["Retry-After"]) <= 0.2
        wait_for(lambda: c.get("/events", headers=auth(key)).status_code == 200, timeout=5, what="window")


@pytest.mark.parametrize(("seconds", "factor", "expected"), [
    (0.2, 1.0, "1"), (1.0, 1.0, "1"), (1.01, 1.0, "2"), (9.5, 1.0, "10"), (0.0, 1.0, "1"),
    (0.0084, 0.001, "0.008"), (0.0, 0.001, "0.001"), (5.0, 0.5, "5.000"),
])
def test_retry_after_is_whole_seconds_unless_time_is_scaled(seconds: float, factor: float, expected: str
                                                            ) -> None:
    assert format_retry_after(seconds, factor) == expected


# (times of accepted requests, now) → (allowed, remaining, retry_after) for a plan of 3 per 10 s.
# The row at 10.0 shows the window slides: a fixed window would have flipped and left 2.
@pytest.mark.parametrize(("earlier", "now", "allowed", "remaining", "wait"), [
    ([], 0.0, True, 2, 0.0),
    ([0.0, 1.0], 2.0, True, 0, 8.0),
    ([0.0, 1.0, 2.0], 3.0, False, 0, 7.0),
    ([0.0, 1.0, 2.0], 10.0, True, 0, 1.0),
    ([0.0, 1.0, 2.0], 12.5, True, 2, 0.0),
])
def test_the_limiter_as_a_table(earlier: list[float], now: float, allowed: bool, remaining: int,
                                wait: float) -> None:
    limits = Limits(burst_limit=3, window_seconds=10.0, daily_limit=1000, day_seconds=86_400.0)
    limiter = RateLimiter()
    for t in earlier:
        assert limiter.take("k", limits, t, 1_000.0 + t).allowed
    decision = limiter.take("k", limits, now, 1_000.0 + now)
    assert (decision.allowed, decision.remaining) == (allowed, remaining)
    assert decision.retry_after == pytest.approx(wait)
    assert [h for h, _ in decision.headers()] == list(RATE_HEADERS)


def test_the_daily_count_starts_again_on_a_new_day() -> None:
    limits = Limits(burst_limit=100, window_seconds=10.0, daily_limit=2, day_seconds=100.0)
    limiter = RateLimiter()
    assert limiter.take("k", limits, 0.0, 150.0).allowed and limiter.take("k", limits, 20.0, 170.0).allowed
    refused = limiter.take("k", limits, 40.0, 190.0)
    assert not refused.allowed and refused.retry_after == pytest.approx(10.0)
    assert limiter.take("k", limits, 60.0, 200.0).daily_remaining == 1
