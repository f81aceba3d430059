"""The shared HTTP layer: client factory and send, base-URL guard, retry classification, rate limits."""

from snapbridge.http.client import HttpResponse, bounded, create_client, excerpt, send
from snapbridge.http.guard import AllowList, check_base_url
from snapbridge.http.ratelimit import RateLimitState
from snapbridge.http.retry import (
    MAX_RETRY_AFTER_SECONDS,
    error_for_status,
    is_retryable_status,
    parse_retry_after,
    request_id,
)

__all__ = [
    "AllowList",
    "HttpResponse",
    "MAX_RETRY_AFTER_SECONDS",
    "RateLimitState",
    "bounded",
    "check_base_url",
    "create_client",
    "error_for_status",
    "excerpt",
    "is_retryable_status",
    "parse_retry_after",
    "request_id",
    "send",
]
