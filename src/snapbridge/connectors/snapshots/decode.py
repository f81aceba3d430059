"""Snapshots API responses, pure: a body → the JSON we expect, a failed status + body → one of our errors.

What an error carries of the answer (its message, an excerpt of its body) is redacted with the caller's known
secrets before it is cut to a bounded length: an API that echoes the key, or answers with a megabyte of
message, must not put either into attempt rows, job errors or log lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TypedDict

from snapbridge.errors import (
    AuthFailed,
    Conflict,
    DeliveryError,
    NotFound,
    Permanent,
    Retryable,
    ScopeMissing,
)
from snapbridge.http import MAX_RETRY_AFTER_SECONDS, bounded, excerpt, is_retryable_status, parse_retry_after
from snapbridge.security import Secret

__all__ = [
    "AUTH_CLASS_MARK",
    "EXCERPT_CHARS",
    "MESSAGE_CHARS",
    "SCOPE_MESSAGE",
    "decode_error",
    "error_message",
    "parse_body",
    "request_id",
    "unwrap",
]

# The 401 that means "valid key, missing scope" (HighLevel's wording, kept by the contract).
SCOPE_MESSAGE = "not authorized for this scope"
# HighLevel's 401 for a sub-account key on an agency-only route ("E-102. This AuthClass is not yet …").
AUTH_CLASS_MARK = "AuthClass"
_REQUEST_ID_HEADERS = ("x-request-id", "x-trace-id", "traceid")
# Where a 409 names the object it clashes with: a location (duplicate external_id), an event (reused id).
_CONFLICT_ID_FIELDS = ("location_id", "event_id", "customer_id")
# The most of the API's message an error repeats, and of the body its excerpt shows (then "…").
MESSAGE_CHARS = 300
EXCERPT_CHARS = 500


class _Common(TypedDict):
    operation: str
    status: int
    request_id: str | None
    excerpt: str


def parse_body(content: bytes) -> object | None:
    """The decoded JSON, or None when the body is empty or not JSON (error pages, proxies)."""
    if not content.strip():
        return None
    try:
        body: object = json.loads(content)
    except (UnicodeDecodeError, ValueError):
        return None
    return body


def error_message(body: object) -> str:
    """The API's message: `message` as a string or a list (joined with "; "), else `error`, else `detail`."""
    if not isinstance(body, Mapping):
        return ""
    for key in ("message", "error", "detail"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, list):
            parts = [str(item).strip() for item in value if str(item).strip()]
            if parts:
                return "; ".join(parts)
    return ""


def request_id(headers: Mapping[str, str], body: object) -> str | None:
    """A trace id to quote to support: a request-id header, else the body's `traceId`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in _REQUEST_ID_HEADERS:
        if lowered.get(name):
            return lowered[name]
    trace = body.get("traceId") if isinstance(body, Mapping) else None
    return trace if isinstance(trace, str) and trace else None


def _retry_after(status: int, headers: Mapping[str, str], now: datetime) -> float | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get("retry-after")
    after = parse_retry_after(value, now) if value else None
    if after is not None or status != 429:
        return after
    # A 429 without Retry-After (its presence on real 429s is UNCONFIRMED): wait out the burst window instead.
    interval = (lowered.get("x-ratelimit-interval-milliseconds") or "").strip()
    if not interval.isdigit() or len(interval) > 15:  # digits only: not "inf", "nan", "-5" or "1e308"
        return None
    return min(int(interval) / 1000.0, MAX_RETRY_AFTER_SECONDS)


def decode_error(
    status: int,
    content: bytes,
    headers: Mapping[str, str],
    *,
    operation: str,
    scope: str | None,
    now: datetime,
    secrets: Iterable[Secret | str] = (),
) -> DeliveryError:
    """The error for a response that is not a success. `scope` is what `operation` needs, to name it."""
    body = parse_body(content)
    known = list(secrets)
    said_whole = error_message(body)  # what the API said decides the error; a bounded part of it is shown
    message = bounded(said_whole, MESSAGE_CHARS, known)
    common = _Common(
        operation=operation,
        status=status,
        request_id=request_id(headers, body),
        excerpt=excerpt(content, EXCERPT_CHARS, known),
    )
    said = f": {message}" if message else ""
    if status == 401 and SCOPE_MESSAGE in said_whole.lower():
        needed = (scope,) if scope else ()
        what = f"the scope {scope!r}" if scope else "a scope"
        return ScopeMissing(f"the API key lacks {what}, which {operation} needs{said}", scopes=needed,
                            **common)
    if status == 401 and AUTH_CLASS_MARK in said_whole:
        # A valid key of the wrong kind (bound to one location) on a company-level route: not a bad key.
        return Permanent(f"the API key is bound to one location and cannot call {operation}{said}", **common)
    if status == 401:
        return AuthFailed(f"the API key was refused{said}", **common)
    if status == 403:
        return Permanent(f"the API key has no access to this location{said}", **common)
    if status == 404:
        return NotFound(f"not found{said}", **common)
    if status == 409:
        meta = body.get("meta") if isinstance(body, Mapping) else None
        ids = [meta.get(name) for name in _CONFLICT_ID_FIELDS] if isinstance(meta, Mapping) else []
        existing = next((i for i in ids if isinstance(i, str) and i), None)
        return Conflict(
            f"conflicts with an existing object{said}",
            existing_id=existing,
            **common,
        )
    if status == 422:
        return Permanent(f"the API refused the input{said}", **common)
    if is_retryable_status(status):
        return Retryable(f"temporary failure{said}", retry_after=_retry_after(status, headers, now), **common)
    if 300 <= status < 400:
        return Permanent(f"unexpected redirect{said}", **common)
    return Permanent(f"request failed{said}", **common)


def unwrap(content: bytes, key: str | None, *, operation: str, status: int,
           secrets: Iterable[Secret | str] = ()) -> object:
    """The JSON of a success body (or its `key` member); a body of another shape is a Permanent error, its
    excerpt redacted with `secrets` (a 2xx can echo the key as well as an error can)."""
    body = parse_body(content)
    if not isinstance(body, Mapping):
        raise Permanent("the API answered with a body that is not a JSON object", operation=operation,
                        status=status, excerpt=excerpt(content, EXCERPT_CHARS, list(secrets)))
    if key is None:
        return body
    if key not in body:
        raise Permanent(f"the API's answer has no {key!r}", operation=operation, status=status,
                        excerpt=excerpt(content, EXCERPT_CHARS, list(secrets)))
    return body[key]
