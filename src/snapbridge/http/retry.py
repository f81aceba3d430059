"""Retry classification: which statuses are worth repeating, Retry-After parsing, and status → our error."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from snapbridge.errors import AuthFailed, DeliveryError, NotFound, Permanent, Retryable
from snapbridge.http.ratelimit import RateLimitState, header
from snapbridge.security import redact_text

__all__ = ["MAX_RETRY_AFTER_SECONDS", "error_for_status", "is_retryable_status", "parse_retry_after", "request_id"]

# The longest Retry-After taken at its word. A year is past any retry horizon (3 days by default), so the job
# gives up either way; a bound keeps "now + Retry-After" a datetime (99999999999999 s, or a date in year 9999
# plus a clock, overflowed it) and a float ("9" * 400 is inf).
MAX_RETRY_AFTER_SECONDS = 365 * 86_400.0

_RETRYABLE = frozenset({408, 425, 429})
_SECONDS = re.compile(r"^\d+(\.\d+)?$")
_REQUEST_ID_HEADERS = ("X-Request-Id", "X-Correlation-Id", "X-Amzn-RequestId", "CF-Ray")


def is_retryable_status(status: int) -> bool:
    """408 Request Timeout, 425 Too Early, 429 Too Many Requests and every 5xx."""
    return status in _RETRYABLE or 500 <= status <= 599


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or HTTP-date, 0 to MAX_RETRY_AFTER_SECONDS);
    None if unreadable.

    A negative number is not valid delay-seconds, so it reads as None, like any other garbage.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if value is None:
        return None
    value = value.strip()
    if _SECONDS.match(value):
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no claim about the local zone
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_SECONDS)


def request_id(headers: Mapping[str, str]) -> str | None:
    """The server's id for this request, from the first of the usual headers present."""
    return next((v for name in _REQUEST_ID_HEADERS if (v := header(headers, name))), None)


def error_for_status(status: int, message: str, *, operation: str, headers: Mapping[str, str], excerpt: str,
                     now: datetime) -> DeliveryError:
    """The generic error for a non-success status; connectors' decode.py refine it (403 → ScopeMissing, …).

    401 → AuthFailed; 403 and other 4xx → Permanent; 404 → NotFound; 408/425/429/5xx → Retryable with the
    server's Retry-After (for a 429 without one, the burst window from X-RateLimit-Interval-Milliseconds when
    the window is exhausted); anything else (an unfollowed 3xx, a 1xx) → Permanent.
    """
    rid = request_id(headers)
    message, excerpt = redact_text(message), redact_text(excerpt)
    if is_retryable_status(status):
        retry_after = parse_retry_after(header(headers, "Retry-After"), now)
        if retry_after is None and status == 429:
            state = RateLimitState.from_headers(headers)
            if state is not None and state.remaining == 0 and state.interval_ms is not None:
                retry_after = min(state.interval_ms, MAX_RETRY_AFTER_SECONDS * 1000) / 1000  # a huge int: no float
        return Retryable(message, retry_after=retry_after, operation=operation, status=status, request_id=rid,
                         excerpt=excerpt)
    kind: type[Permanent] = {401: AuthFailed, 404: NotFound}.get(status, Permanent)
    return kind(message, operation=operation, status=status, request_id=rid, excerpt=excerpt)
