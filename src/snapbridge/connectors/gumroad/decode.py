"""Gumroad's envelope and its three error shapes (200 success:false, 400 {status,error}, bare 401/403)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TypedDict

from snapbridge.errors import AuthFailed, DeliveryError, NotFound, Permanent, Retryable, ScopeMissing
from snapbridge.http import excerpt, is_retryable_status, parse_retry_after, request_id
from snapbridge.security import Secret, redact_text

__all__ = ["decode_response", "error_for_response", "payload", "payload_list"]


class _Context(TypedDict):
    operation: str
    status: int
    request_id: str | None
    excerpt: str


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # httpx.Headers is case-insensitive already; a plain dict (as in the tests) is not.
    value = headers.get(name)
    if value is not None:
        return value
    lowered = {key.lower(): item for key, item in headers.items()}
    return lowered.get(name)


def _json_object(content: bytes) -> dict[str, object] | None:
    try:
        parsed = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _message(body: Mapping[str, object] | None) -> str | None:
    """The human text of any error shape: `message` (envelope) or `error` (400 and license 404s)."""
    if body is None:
        return None
    for key in ("message", "error"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _bearer_error(headers: Mapping[str, str]) -> str | None:
    """The `error="…"` of a Doorkeeper `WWW-Authenticate: Bearer …` header, e.g. invalid_token."""
    value = _header(headers, "www-authenticate") or ""
    marker = 'error="'
    start = value.find(marker)
    if start < 0:
        return None
    end = value.find('"', start + len(marker))
    return value[start + len(marker) : end] if end > 0 else None


def error_for_response(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    operation: str,
    scopes: tuple[str, ...],
    now: datetime,
    secrets: Iterable[Secret | str] = (),
) -> DeliveryError | None:
    """The error this answer means, or None when it is a success envelope."""
    return _error_for(status, headers, content, _json_object(content), operation=operation, scopes=scopes,
                      now=now, secrets=secrets)


def _error_for(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    body: dict[str, object] | None,
    *,
    operation: str,
    scopes: tuple[str, ...],
    now: datetime,
    secrets: Iterable[Secret | str],
) -> DeliveryError | None:
    if 200 <= status < 300 and body is not None and body.get("success") is True:
        return None  # the common case: no message to read, no excerpt to redact
    known = list(secrets)
    said = _message(body)
    message = redact_text(said, known) if said else None
    common = _Context(
        operation=operation,
        status=status,
        request_id=request_id(headers),
        excerpt=excerpt(content, secrets=known),
    )
    if 200 <= status < 300:
        if body is None:
            return Permanent("Gumroad answered with something other than a JSON object", **common)
        success = body.get("success")
        if success is True:
            return None
        if success is not False:
            return Permanent("Gumroad's answer has no boolean `success`", **common)
        # Gumroad reports not-found and validation failures as HTTP 200 with success:false.
        if message and "not found" in message.lower():
            return NotFound(message, **common)
        return Permanent(message or "Gumroad answered success:false with no message", **common)
    if 300 <= status < 400:
        return Permanent("Gumroad answered with a redirect, which is not followed", **common)
    if status == 401:
        reason = _bearer_error(headers)
        detail = f" ({reason})" if reason else ""
        return AuthFailed(f"Gumroad refused the access token{detail}", **common)
    if status == 403:
        needed = " or ".join(scopes) if scopes else "a scope it does not have"
        return ScopeMissing(
            f"the access token lacks the scope {operation} needs: {needed}",
            scopes=scopes,
            **common,
        )
    if status == 404:
        return NotFound(message or "Gumroad has no such object or route", **common)
    if is_retryable_status(status):
        retry_after = parse_retry_after(_header(headers, "retry-after"), now)
        text = message or ("Gumroad is rate limiting" if status == 429 else "Gumroad could not answer now")
        return Retryable(text, retry_after=retry_after, **common)
    # 400 {status, error} for bad list parameters, and any other client error.
    return Permanent(message or f"Gumroad refused the request (HTTP {status})", **common)


def decode_response(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    operation: str,
    scopes: tuple[str, ...],
    now: datetime,
    secrets: Iterable[Secret | str] = (),
) -> dict[str, object]:
    """The success envelope as a dict; raises the matching DeliveryError for every other answer."""
    body = _json_object(content)  # parsed once, for the verdict and the result
    error = _error_for(status, headers, content, body, operation=operation, scopes=scopes, now=now,
                       secrets=secrets)
    if error is not None:
        raise error
    if body is None:  # unreachable: no error means a JSON object with success:true
        raise Permanent("Gumroad's answer is not a JSON object", operation=operation, status=status)
    return body


def payload(body: Mapping[str, object], key: str, *, operation: str) -> Mapping[str, object]:
    """The envelope's one object, e.g. body["sale"]; its absence is a broken answer, not a missing sale."""
    value = body.get(key)
    if not isinstance(value, Mapping):
        raise Permanent(f"Gumroad's answer lacks the object {key!r}", operation=operation)
    return value


def payload_list(body: Mapping[str, object], key: str, *, operation: str) -> list[Mapping[str, object]]:
    """The envelope's list, e.g. body["sales"]; every item must be an object."""
    value = body.get(key)
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise Permanent(f"Gumroad's answer lacks the list {key!r}", operation=operation)
    return list(value)
