"""Each API request's path through the sandbox: faults, key, rate limit, Version, scope, idempotency, journal.

Order, and why: injected faults sit in front of the API (like a load balancer) and count nothing; then the key
(401), the rate limit (429; only accepted requests count), the Version header (400), the route's scope (401),
the Idempotency-Key (replay or 422), and the handler. Whatever the outcome, the journal records it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from starlette.datastructures import URL, Headers, QueryParams
from starlette.types import Message, Receive, Scope, Send

from snapbridge.sandbox.journal import Journal
from snapbridge.sandbox.snapshots.api import OPERATIONS, Call, Operation
from snapbridge.sandbox.snapshots.bodies import (
    ApiResult,
    bad_request,
    encode_json,
    injected_error,
    payload_too_large,
    route_not_found,
    scope_missing,
    too_many_requests,
    unauthorized,
    unprocessable,
)
from snapbridge.sandbox.snapshots.faults import FaultState
from snapbridge.sandbox.snapshots.ratelimit import Decision, Limits, RateLimiter, format_retry_after
from snapbridge.sandbox.snapshots.state import (
    DEFAULT_BURST_LIMIT,
    DEFAULT_BURST_WINDOW_MS,
    DEFAULT_DAILY_LIMIT,
    SandboxKey,
    SandboxState,
    StoredAnswer,
    fingerprint,
)
from snapbridge.sandbox.snapshots.validation import BodyError, canonical, parse_body
from snapbridge.sandbox.snapshots.webhooks import WebhookSender

__all__ = ["RAW_SEND", "SUPPORTED_VERSION", "ApiEndpoint", "Parts"]

SUPPORTED_VERSION = "2021-07-28"
MAX_IDEMPOTENCY_KEY = 255
RAW_SEND = "snapbridge.raw_send"  # scope entry holding the server's own `send`, to reach its transport
REPLAYED = ("Idempotent-Replayed", "true")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parts:
    state: SandboxState
    limiter: RateLimiter
    faults: FaultState
    sender: WebhookSender
    journal: Journal
    time_factor: float
    now: Callable[[], datetime]
    max_body_bytes: int = 4 * 1024 * 1024  # 100 events of 16 KiB data fit with room to spare


@dataclass
class _Trace:
    """What the journal will say about this request, filled in as it goes."""

    key_fingerprint: str | None
    idempotency_key: str | None


def _route(method: str, raw_path: str) -> tuple[Operation | None, dict[str, str]]:
    # An existing path with another method is "Cannot METHOD /path" too, as NestJS answers.
    for op in OPERATIONS:
        match = op.pattern.fullmatch(raw_path)
        if match is not None and op.method == method:
            return op, {k: unquote(v) for k, v in match.groupdict().items()}
    return None, {}


def _bearer(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class ApiEndpoint:
    """The one ASGI app behind every API path; it routes by itself so unknown routes answer like NestJS."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def _limits(self, key: SandboxKey | None) -> Limits:
        if key is None:
            return Limits.scaled(DEFAULT_BURST_LIMIT, DEFAULT_BURST_WINDOW_MS, DEFAULT_DAILY_LIMIT,
                                 self.parts.time_factor)
        return Limits.scaled(key.burst_limit, key.burst_window_ms, key.daily_limit, self.parts.time_factor)

    def _peek(self, key: SandboxKey | None) -> Decision:
        limits = self._limits(key)
        if key is None:  # nothing to count against: a full, untouched window
            return Decision(True, limits.burst_limit, limits.daily_limit, 0.0, limits)
        return self.parts.limiter.peek(key.key, limits, time.monotonic(), time.time())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        p = self.parts
        arrived = p.now()
        headers = Headers(scope=scope)
        method: str = scope["method"]
        path: str = scope["path"]
        token = _bearer(headers)
        trace = _Trace(fingerprint(token) if token else None, headers.get("idempotency-key"))
        if p.faults.latency_seconds() > 0:
            await asyncio.sleep(p.faults.latency_seconds())
        try:
            result, decision = await self._answer(scope, receive, headers, token, trace)
        except _ClientGone:
            # The client went away before its body was complete (a crashed sender): like a real server, the
            # request is dropped unprocessed, so nothing is written and no answer is kept under its key.
            return
        except Exception:  # a bug in the sandbox still answers in the contract's shape
            log.exception("action=sandbox_error method=%s path=%s", method, path)
            result, decision = injected_error(500), self._peek(None)
        p.journal.record(
            method=method, path=path, status=result.status, arrived_at=arrived,
            idempotency_key=trace.idempotency_key, replayed=result.replayed, entity=result.entity,
            api_key=trace.key_fingerprint,
        )
        for event in () if result.replayed else result.webhooks:
            p.sender.emit(event)
        reset = 200 <= result.status < 300 and p.faults.take_reset(method, path)
        await self._send(scope, send, result, decision, reset)

    async def _answer(self, scope: Scope, receive: Receive, headers: Headers, token: str | None,
                      trace: _Trace) -> tuple[ApiResult, Decision]:
        p = self.parts
        key = p.state.keys.get(token) if token else None
        storm = p.faults.take_storm(time.monotonic(), p.time_factor)
        if storm is not None:
            return too_many_requests(format_retry_after(storm, p.time_factor)), self._peek(key).exhausted()
        status = p.faults.take_error()
        if status is not None:
            return injected_error(status), self._peek(key)
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
        op, params = _route(scope["method"], raw_path)
        if op is None:
            return route_not_found(scope["method"], scope["path"]), self._peek(key)
        if key is None:
            why = "no Bearer token was sent" if token is None else "access token is invalid"
            return unauthorized(f"Invalid token: {why}"), self._peek(None)
        decision = p.limiter.take(key.key, self._limits(key), time.monotonic(), time.time())
        if not decision.allowed:
            return too_many_requests(format_retry_after(decision.retry_after, p.time_factor)), decision
        if headers.get("version") != SUPPORTED_VERSION:
            # HighLevel's answer to a missing Version is UNCONFIRMED; failing loudly keeps clients honest.
            return bad_request(f"Version header must be {SUPPORTED_VERSION}"), decision
        if op.scope.value not in key.scopes:
            return scope_missing(), decision
        body = await self._read_body(receive)
        if body is None:
            return payload_too_large(p.max_body_bytes), decision
        query = QueryParams(scope.get("query_string", b"").decode("latin-1")).multi_items()
        call = Call(p.state, key, params, query, body, URL(scope=scope), p.now())
        return self._run(op, call, trace), decision

    def _run(self, op: Operation, call: Call, trace: _Trace) -> ApiResult:
        """The handler, behind the Idempotency-Key check when the operation writes."""
        state = self.parts.state
        idem = trace.idempotency_key
        if not op.writes or idem is None:
            with state.lock:
                return op.handler(call)
        if not idem or len(idem) > MAX_IDEMPOTENCY_KEY:
            return unprocessable([f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters long"])
        request_id = _request_fingerprint(op, call)
        slot = (call.company, idem)
        with state.lock:
            stored = state.answers.get(slot)
            if stored is not None:
                if stored.request_fingerprint != request_id:
                    return unprocessable(
                        ["Idempotency-Key has already been used with a different request"]
                    )
                first = stored.result
                return replace(first, replayed=True, headers=(*_without_replayed(first.headers), REPLAYED))
            result = op.handler(call)
            if result.status not in (401, 403):
                # UNCONFIRMED: an authorization refusal is not kept as the key's answer (as the key and scope
                # checks before this one are not), so the same request with a key that may call it goes through.
                state.answers[slot] = StoredAnswer(request_id, result)
            return result

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.parts.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _send(self, scope: Scope, send: Send, result: ApiResult, decision: Decision, reset: bool
                    ) -> None:
        body = encode_json(result.body)
        header_list: list[tuple[str, str]] = [
            ("content-type", "application/json; charset=utf-8"),
            ("content-length", str(len(body))),
            *decision.headers(),
            *result.headers,
        ]
        raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in header_list]
        if reset and await _reset_connection(scope):
            return
        start: Message = {"type": "http.response.start", "status": result.status, "headers": raw_headers}
        if reset:  # no transport to abort (not uvicorn): start the answer and never finish it
            await send(start)
            return
        await send(start)
        slow = self.parts.faults.slow_body()
        if slow is None:
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        size, pause = slow
        for offset in range(0, len(body), size):
            if offset:
                await asyncio.sleep(pause)
            more = offset + size < len(body)
            await send({"type": "http.response.body", "body": body[offset:offset + size], "more_body": more})


class _ClientGone(Exception):  # a signal between two methods, not an error the caller sees
    """The connection closed before the request body was complete."""


def _without_replayed(headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(h for h in headers if h[0].lower() != "idempotent-replayed")


def _request_fingerprint(op: Operation, call: Call) -> str:
    """Method, path and body; a JSON body is compared by meaning, anything else byte for byte."""
    try:
        body: Any = canonical(parse_body(call.body))
    except BodyError:
        body = call.body.hex()
    text = f"{op.method} {call.url.path}\n{body}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def _reset_connection(scope: Scope) -> bool:
    """Abort the TCP connection with a RST, before any byte of the answer; False if the server hides it."""
    raw_send = scope.get(RAW_SEND)
    cycle = getattr(raw_send, "__self__", None)  # uvicorn's RequestResponseCycle owns the transport
    transport: Any = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 turns the close into a reset, so the client sees ECONNRESET rather than a clean EOF.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Let uvicorn notice the lost connection, so it does not try to answer 500 on a dead socket.
    for _ in range(10):
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0)
    return True
