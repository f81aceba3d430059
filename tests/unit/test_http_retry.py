"""Retry classification tables: retryable statuses, Retry-After, status → error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from snapbridge.errors import AuthFailed, DeliveryError, NotFound, Permanent, Retryable
from snapbridge.http import error_for_status, is_retryable_status, parse_retry_after, request_id

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(200, False), (204, False), (301, False), (302, False), (400, False), (401, False), (403, False),
     (404, False), (407, False), (408, True), (409, False), (422, False), (424, False), (425, True),
     (426, False), (429, True), (499, False), (500, True), (502, True), (503, True), (504, True),
     (599, True), (600, False)],
)
def test_is_retryable_status(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("Sat, 01 Mar 2025 12:00:30 GMT", 30.0),
        ("Sat, 01 Mar 2025 13:00:00 GMT", 3600.0),
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),
        ("Saturday, 01-Mar-25 12:00:10 GMT", 10.0),
        ("Sat Mar  1 12:00:05 2025", 5.0),
        ("Sat, 01 Mar 2025 12:00:20 -0000", 20.0),
        ("Sat, 01 Mar 2025 14:00:20 +0200", 20.0),
        ("-5", None),
        ("-1.0", None),
        ("", None),
        ("soon", None),
        ("1e3", None),
        ("inf", None),
        ("nan", None),
        ("Sat, 99 Foo 2025", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_uses_the_clock_given() -> None:
    later = NOW.astimezone(timezone(timedelta(hours=-5))) + timedelta(seconds=10)
    assert parse_retry_after("Sat, 01 Mar 2025 12:00:30 GMT", later) == 20.0


def test_parse_retry_after_needs_an_aware_clock() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_retry_after("5", datetime(2025, 1, 1))  # a naive clock, on purpose


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry_after"),
    [
        (401, {}, AuthFailed, None),
        (403, {}, Permanent, None),
        (404, {}, NotFound, None),
        (400, {}, Permanent, None),
        (422, {}, Permanent, None),
        (302, {"Location": "http://169.254.169.254/"}, Permanent, None),
        (408, {}, Retryable, None),
        (425, {}, Retryable, None),
        (429, {"Retry-After": "3"}, Retryable, 3.0),
        (429, {"retry-after": "Sat, 01 Mar 2025 12:01:00 GMT"}, Retryable, 60.0),
        (429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Interval-Milliseconds": "10000"}, Retryable, 10.0),
        (429, {"X-RateLimit-Remaining": "5", "X-RateLimit-Interval-Milliseconds": "10000"}, Retryable, None),
        (429, {"Retry-After": "2", "X-RateLimit-Remaining": "0", "X-RateLimit-Interval-Milliseconds": "9000"},
         Retryable, 2.0),
        (500, {}, Retryable, None),
        (503, {"Retry-After": "garbage"}, Retryable, None),
    ],
)
def test_error_for_status(status: int, headers: dict[str, str], kind: type[DeliveryError],
                          retry_after: float | None) -> None:
    error = error_for_status(status, "failed", operation="sales.list", headers=headers, excerpt="{}", now=NOW)
    assert type(error) is kind
    assert error.status == status
    assert error.operation == "sales.list"
    assert str(error) == f"sales.list: failed (HTTP {status})"
    if isinstance(error, Retryable):
        assert error.retry_after == retry_after


def test_error_for_status_redacts_and_keeps_the_request_id() -> None:
    error = error_for_status(
        400, "bad access_token=abc123", operation="op", headers={"x-request-id": "req-1"},
        excerpt='{"error": "x", "token": "abc123"}', now=NOW,
    )
    assert "abc123" not in str(error)
    assert "abc123" not in error.excerpt
    assert error.request_id == "req-1"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({}, None), ({"X-Request-Id": "a"}, "a"), ({"cf-ray": "r"}, "r"),
     ({"X-Request-Id": "", "CF-Ray": "r"}, "r")],
)
def test_request_id(headers: dict[str, str], expected: str | None) -> None:
    assert request_id(headers) == expected
