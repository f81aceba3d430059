"""What an answer of the Snapshots sandbox is, and the exact error bodies of the contract (NestJS style)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "AUTH_CLASS_MESSAGE",
    "FORBIDDEN_LOCATION_MESSAGE",
    "SCOPE_MESSAGE",
    "ApiResult",
    "WebhookEvent",
    "bad_request",
    "conflict",
    "encode_json",
    "forbidden_location",
    "format_time",
    "injected_error",
    "not_found",
    "ok",
    "payload_too_large",
    "route_not_found",
    "scope_missing",
    "too_many_requests",
    "unauthorized",
    "unprocessable",
    "wrong_auth_class",
]

SCOPE_MESSAGE = "The token is not authorized for this scope."
FORBIDDEN_LOCATION_MESSAGE = "The token does not have access to this location."
AUTH_CLASS_MESSAGE = "E-102. This AuthClass is not yet supported!"
_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass(frozen=True)
class WebhookEvent:
    """A change the sandbox reports to webhook subscribers once the request that made it is answered."""

    type: str  # LocationCreate | LocationUpdate | CustomerUpdate
    company_id: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class ApiResult:
    """One answer before it is encoded: status, JSON body, extra headers, and what it wrote."""

    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()
    entity: str | None = None  # the id of the object this request wrote (journal)
    replayed: bool = False
    webhooks: tuple[WebhookEvent, ...] = ()

    def with_headers(self, *headers: tuple[str, str]) -> ApiResult:
        return replace(self, headers=self.headers + headers)


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, non-ASCII kept as is, the way the sandbox sends every body."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, like JavaScript's toISOString (HighLevel's format)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def ok(status: int, body: Any, *, entity: str | None = None, webhooks: Sequence[WebhookEvent] = ()
       ) -> ApiResult:
    return ApiResult(status, body, entity=entity, webhooks=tuple(webhooks))


def unauthorized(message: str) -> ApiResult:
    return ApiResult(401, {"statusCode": 401, "message": message, "error": "Unauthorized"})


def scope_missing() -> ApiResult:
    # The body observed from HighLevel for a missing scope has no "error" member (snapshots-api.md §1.7).
    return ApiResult(401, {"statusCode": 401, "message": SCOPE_MESSAGE})


def wrong_auth_class() -> ApiResult:
    """A location-bound (sub-account) key on an agency-only route (snapshots-api.md §1.6, §10)."""
    return unauthorized(AUTH_CLASS_MESSAGE)


def forbidden_location() -> ApiResult:
    return ApiResult(403, {"statusCode": 403, "message": FORBIDDEN_LOCATION_MESSAGE, "error": "Forbidden"})


def not_found(message: str) -> ApiResult:
    return ApiResult(404, {"statusCode": 404, "message": message})


def route_not_found(method: str, path: str) -> ApiResult:
    """NestJS's answer for a path or method no route serves."""
    return ApiResult(404, {"statusCode": 404, "message": f"Cannot {method} {path}", "error": "Not Found"})


def conflict(message: str, meta: dict[str, Any]) -> ApiResult:
    return ApiResult(409, {"statusCode": 409, "message": message, "meta": meta})


def unprocessable(messages: Sequence[str]) -> ApiResult:
    return ApiResult(422, {"statusCode": 422, "message": list(messages), "error": "Unprocessable Entity"})


def bad_request(message: str) -> ApiResult:
    return ApiResult(400, {"statusCode": 400, "message": message, "error": "Bad Request"})


def payload_too_large(limit: int) -> ApiResult:
    return ApiResult(
        413,
        {"statusCode": 413, "message": f"request entity larger than {limit} bytes",
         "error": "Payload Too Large"},
        headers=(("Connection", "close"),),
    )


def too_many_requests(retry_after: str) -> ApiResult:
    body = {"statusCode": 429, "message": "Too many requests"}
    return ApiResult(429, body, headers=(("Retry-After", retry_after),))


def injected_error(status: int) -> ApiResult:
    return ApiResult(status, {"statusCode": status, "message": _REASONS.get(status, "Internal Server Error")})
