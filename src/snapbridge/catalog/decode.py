"""HighLevel answers, pure: a failed status and body → one of our errors (snapshots-api.md §7)."""

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
    ScopeMissing,
)
from snapbridge.http import error_for_status, excerpt, is_retryable_status, request_id
from snapbridge.security import Secret, redact_text

__all__ = ["SCOPE_MESSAGE", "highlevel_error", "highlevel_message"]

# The 401 that means "valid token, missing scope": refreshing the token will not help.
SCOPE_MESSAGE = "not authorized for this scope"


class _Common(TypedDict):
    operation: str
    status: int
    request_id: str | None
    excerpt: str


def _body(content: bytes) -> object:
    try:
        return json.loads(content) if content.strip() else None
    except (ValueError, UnicodeDecodeError):
        return None


def highlevel_message(body: object) -> str:
    """`message` (a string, or a list of validation messages joined by ", "), else `error`, else `detail`."""
    if not isinstance(body, Mapping):
        return ""
    for key in ("message", "error", "detail"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, list):
            parts = [str(item).strip() for item in value if str(item).strip()]
            if parts:
                return ", ".join(parts)
    return ""


def _meta_id(body: object, *keys: str) -> str | None:
    meta = body.get("meta") if isinstance(body, Mapping) else None
    for key in keys:
        value = meta.get(key) if isinstance(meta, Mapping) else None
        if isinstance(value, str) and value:
            return value
    return None


def highlevel_error(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    operation: str,
    scopes: tuple[str, ...],
    now: datetime,
    secrets: Iterable[Secret | str] = (),
) -> DeliveryError:
    """The error a non-2xx HighLevel answer means."""
    body = _body(content)
    known = list(secrets)
    message = redact_text(highlevel_message(body), known)
    cut = excerpt(content, secrets=known)  # redacted before the cut: a key it splits is still found
    said = f": {message}" if message else ""
    common = _Common(operation=operation, status=status, request_id=request_id(headers), excerpt=cut)
    if status == 401 and SCOPE_MESSAGE in message.lower():
        needed = " or ".join(scopes) if scopes else "a scope"
        text = f"the token lacks {needed}, which {operation} needs{said}"
        return ScopeMissing(text, scopes=scopes, **common)
    if status == 401:
        return AuthFailed(f"HighLevel refused the token{said}", **common)
    if status == 403:
        return Permanent(f"the token has no access to this location or company{said}", **common)
    # HighLevel answers some unknown ids with 400 "… not found" (observed), others with 404.
    if status == 404 or (status == 400 and "not found" in message.lower()):
        return NotFound(f"not found{said}", **common)
    duplicate = _meta_id(body, "contactId", "location_id", "id")
    if status == 409 or (status == 400 and duplicate is not None):
        return Conflict(f"conflicts with an existing object{said}", existing_id=duplicate, **common)
    if status == 422:
        return Permanent(f"HighLevel refused the input{said}", **common)
    if is_retryable_status(status):
        return error_for_status(status, f"HighLevel could not answer now{said}", operation=operation,
                                headers=headers, excerpt=cut, now=now)
    return Permanent(f"HighLevel refused the request{said}", **common)
