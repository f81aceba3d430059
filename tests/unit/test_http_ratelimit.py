"""RateLimitState from the five X-RateLimit-* headers: all, some, none, garbage."""

from __future__ import annotations

import httpx
import pytest

from snapbridge.http import RateLimitState

ALL = {
    "X-RateLimit-Max": "100",
    "X-RateLimit-Remaining": "99",
    "X-RateLimit-Interval-Milliseconds": "10000",
    "X-RateLimit-Limit-Daily": "200000",
    "X-RateLimit-Daily-Remaining": "199999",
}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (ALL, RateLimitState(100, 99, 10000, 200000, 199999)),
        ({k.lower(): v for k, v in ALL.items()}, RateLimitState(100, 99, 10000, 200000, 199999)),
        ({"X-RateLimit-Remaining": "0"}, RateLimitState(None, 0, None, None, None)),
        ({"X-RateLimit-Max": "100", "X-RateLimit-Daily-Remaining": "5"},
         RateLimitState(100, None, None, None, 5)),
        ({**ALL, "X-RateLimit-Remaining": "lots"}, RateLimitState(100, None, 10000, 200000, 199999)),
        ({**ALL, "X-RateLimit-Max": "-1", "X-RateLimit-Limit-Daily": "2e5"},
         RateLimitState(None, 99, 10000, None, 199999)),
        ({"X-RateLimit-Max": " 100 "}, RateLimitState(100, None, None, None, None)),
        ({"X-RateLimit-Max": "１００"}, None),
        ({"X-RateLimit-Max": "", "X-RateLimit-Remaining": "x"}, None),
        ({"Content-Type": "application/json"}, None),
        ({}, None),
    ],
)
def test_from_headers(headers: dict[str, str], expected: RateLimitState | None) -> None:
    assert RateLimitState.from_headers(headers) == expected


def test_from_httpx_headers() -> None:
    state = RateLimitState.from_headers(httpx.Headers(ALL))
    assert state == RateLimitState(100, 99, 10000, 200000, 199999)


@pytest.mark.parametrize(
    ("state", "exhausted"),
    [(RateLimitState(100, 0, 10000, None, None), True), (RateLimitState(100, 1, None, 5, 0), True),
     (RateLimitState(100, 1, None, 5, 1), False), (RateLimitState(None, None, None, None, None), False)],
)
def test_exhausted(state: RateLimitState, exhausted: bool) -> None:
    assert state.exhausted is exhausted
