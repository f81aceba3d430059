"""The webhook endpoints: read the body within limits, authenticate, parse, and answer after the commit.

Answers (DESIGN.md "External contract → Webhooks"):

| case                                   | /hooks/gumroad/{secret}  | /hooks/snapshots          |
|----------------------------------------|--------------------------|---------------------------|
| stored, or a recognised duplicate      | 200                      | 200                       |
| unknown secret                         | 404, same body as any unknown path | —               |
| Content-Type not accepted              | 415                      | 415                       |
| body over Settings.max_body_bytes      | 413                      | 413                       |
| body not all sent within body_timeout_seconds | 408               | 408                       |
| bad or missing signature; stale/future | —                        | 401                       |
| malformed body (after a valid signature) | 400                    | 400                       |
| sale for another seller than the connection's | 400               | —                         |
| store cannot commit, backlog full, or anything unexpected | 503   | 429 + Retry-After         |

Gumroad retries only 499/500/502-504, the Snapshots API only 429: each outage answer is the one its sender
retries, and every 4xx above is one it does not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from snapbridge.errors import InvalidInput, StoreUnavailable, WebhookRejected
from snapbridge.runtime import (
    GroupCommitter,
    ReceiverConfig,
    find_gumroad_hook,
    gumroad_inbound,
    snapshots_inbound,
)
from snapbridge.security import redact_text
from snapbridge.store import InsertResult
from snapbridge.web.rereads import Rereads

__all__ = ["HookEndpoints", "is_json", "media_type", "not_found", "read_body"]

log = logging.getLogger(__name__)

_GUMROAD_PREFIX = "/hooks/gumroad/"
_SNAPSHOTS_PATH = "/hooks/snapshots"
_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"
T = TypeVar("T")
_MAX_MESSAGE = 300  # an error message echoes at most this much of what went wrong


def not_found() -> Response:
    """The one 404 body: a wrong secret must look exactly like a path that does not exist."""
    return JSONResponse({"error": "not found"}, status_code=404)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    text = message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"
    return JSONResponse({"error": text}, status_code=status, headers=headers)


async def _send_stored(send: Send, result: InsertResult) -> None:
    # The bytes JSONResponse would render for {"status", "id", "duplicate"}, sent as the two ASGI messages
    # directly: every accepted webhook gets this answer, and building a Response cost more than the rest.
    body = b'{"status":"stored","id":%d,"duplicate":%s}' % (result.id, b"true" if result.duplicate else b"false")
    headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _answer(answer: InsertResult | Response, scope: Scope, receive: Receive, send: Send) -> None:
    if isinstance(answer, Response):
        await answer(scope, receive, send)
    else:
        await _send_stored(send, answer)


def media_type(headers: Headers) -> str | None:
    value = headers.get("content-type")
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def is_json(media: str | None) -> bool:
    if media is None:
        return False
    return media == _JSON or (media.startswith("application/") and media.endswith("+json"))


class _BodyTimeout(Exception):
    """The sender stopped sending the body."""


async def read_body(receive: Receive, headers: Headers, limit: int) -> bytes | None:
    """The raw body, or None once it is known to exceed `limit` (read no further than limit + 1 bytes)."""
    declared = headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError as exc:
            raise InvalidInput("Content-Length is not a number") from exc
        if size > limit:
            return None
    # The ASGI messages are read directly: Request.stream() is an async generator, and setting one up and
    # closing it cost more per webhook than reading a typical body.
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class _Deadlines:
    """Body reads that may not outlast their deadline. One timer, a few times per timeout, cancels those overdue:
    an asyncio.timeout per webhook sets and cancels a timer each time (6-11 µs), and nearly every body has
    arrived whole before it is read. A read is cut off between its timeout and a quarter more."""

    def __init__(self) -> None:
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._overdue: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def within(self, read: Coroutine[Any, Any, T], seconds: float) -> T:
        """`read`'s result, or _BodyTimeout once it has taken `seconds`."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # the app served again on a new loop (tests): the old timer died with its loop
            self._loop, self._timer = loop, None
            self._reading.clear()
            self._overdue.clear()
        self._reading[task] = loop.time() + seconds
        if self._timer is None:
            self._timer = loop.call_later(seconds / 4, self._sweep, seconds / 4)
        try:
            return await read
        except asyncio.CancelledError:
            if task not in self._overdue:
                raise  # cancelled by someone else (shutdown)
            task.uncancel()
            raise _BodyTimeout() from None
        finally:
            del self._reading[task]
            self._overdue.discard(task)

    def _sweep(self, every: float) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, deadline in self._reading.items():
            if deadline <= now and task not in self._overdue:
                self._overdue.add(task)
                task.cancel()
        self._timer = loop.call_later(every, self._sweep, every) if self._reading else None


class _Endpoint:
    """An ASGI callable Starlette's Route serves as it is (a bound method it would wrap as a Request handler)."""

    def __init__(self, handle: ASGIApp) -> None:
        self._handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handle(scope, receive, send)


class HookEndpoints:
    """The two webhook routes, bound to one receiver configuration and one group committer.

    They are plain ASGI: `lane` hands a webhook POST to its endpoint before the app's middleware and router
    (the guard skips /hooks/ anyway, and the endpoints answer every error themselves), which was a third of
    the CPU an accepted webhook cost. The same endpoints are also routes, for any other method (405) and for a
    path the lane does not take (a root_path).
    """

    def __init__(
        self,
        config: ReceiverConfig,
        committer: GroupCommitter,
        *,
        max_body_bytes: int,
        clock: Callable[[], datetime],
        load: Callable[[], ReceiverConfig] | None = None,
    ) -> None:
        """`load` reads the stored connections' secrets and keys again (rereads.py); None: never reread."""
        self.config = config
        self._committer = committer
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        self._rereads = None if load is None else Rereads(load, self._take)
        self._deadlines = _Deadlines()

    def reconfigure(self, config: ReceiverConfig) -> None:
        """Swap in new secrets and keys (a connection was added or rotated) without a restart."""
        self._take(config)
        if self._rereads is not None:
            self._rereads.changed()

    def _take(self, config: ReceiverConfig) -> None:
        self.config = replace(config, limits=self.config.limits)

    async def _reread(self, arrived: float) -> bool:
        """For an unknown secret or key: True once the connections were read again since `arrived`."""
        return self._rereads is not None and await self._rereads.fresh(arrived)

    def _refresh_if_stale(self) -> None:
        if self._rereads is not None:
            self._rereads.refresh_if_stale()

    def routes(self) -> list[BaseRoute]:
        return [
            Route(_GUMROAD_PREFIX + "{secret}", _Endpoint(self.gumroad), methods=["POST"]),
            Route(_SNAPSHOTS_PATH, _Endpoint(self.snapshots), methods=["POST"]),
        ]

    def lane(self, scope: Scope) -> ASGIApp | None:
        """The endpoint for a webhook POST, with its path parameters set as the router would; else None."""
        if scope["method"] != "POST" or scope.get("root_path"):
            return None
        path: str = scope["path"]
        if path == _SNAPSHOTS_PATH:
            return self.snapshots
        if path.startswith(_GUMROAD_PREFIX):
            secret = path[len(_GUMROAD_PREFIX):]
            if secret and "/" not in secret:
                scope["path_params"] = {"secret": secret}
                return self.gumroad
        return None

    async def _body(self, receive: Receive, headers: Headers) -> bytes | None:
        return await self._deadlines.within(read_body(receive, headers, self._max_body_bytes),
                                            self.config.limits.body_timeout_seconds)

    async def gumroad(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _answer(await self._gumroad(scope, receive), scope, receive, send)

    async def snapshots(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _answer(await self._snapshots(scope, receive), scope, receive, send)

    async def _gumroad(self, scope: Scope, receive: Receive) -> InsertResult | Response:
        arrived = time.monotonic()
        self._refresh_if_stale()
        secret = scope["path_params"]["secret"]
        hook = find_gumroad_hook(self.config, secret)
        if hook is None and await self._reread(arrived):
            hook = find_gumroad_hook(self.config, secret)
        if hook is None:
            log.warning("action=hook_rejected source=gumroad status=404 reason=unknown_secret")
            return not_found()
        try:
            headers = Headers(scope=scope)
            media = media_type(headers)
            if media is not None and media != _FORM and not is_json(media):
                return self._rejected("gumroad", 415, f"Content-Type must be {_FORM} or {_JSON}")
            body = await self._body(receive, headers)
            if body is None:
                return self._too_large("gumroad")
            _event, row = gumroad_inbound(
                hook, body, media, now=self._clock(), max_body_bytes=self._max_body_bytes
            )
            result = await self._committer.submit(row)
        except (InvalidInput, WebhookRejected) as exc:
            # A sale for another seller is refused with 400 rather than 404: the secret already proved the
            # sender knows this URL, so there is nothing to hide, and a 4xx stops Gumroad's retries.
            return self._rejected("gumroad", 400, str(exc))
        except StoreUnavailable as exc:
            log.warning("action=hook_unstored source=gumroad connection=%s status=503 reason=%s",
                        hook.connection, redact_text(str(exc)))
            return self._gumroad_outage()
        except ClientDisconnect:
            return self._gumroad_outage()  # nobody reads this answer; nothing was stored
        except _BodyTimeout:
            return self._body_timeout("gumroad")
        except Exception as exc:
            log.error("action=hook_error source=gumroad connection=%s status=503 error=%s",
                      hook.connection, type(exc).__name__)
            return self._gumroad_outage()
        log.info("action=hook_stored source=gumroad connection=%s kind=%s event_id=%d duplicate=%s",
                 hook.connection, row.kind, result.id, result.duplicate)
        return result

    async def _snapshots(self, scope: Scope, receive: Receive) -> InsertResult | Response:
        arrived = time.monotonic()
        self._refresh_if_stale()
        try:
            headers = Headers(scope=scope)
            if not is_json(media_type(headers)):
                return self._rejected("snapshots", 415, f"Content-Type must be {_JSON}")
            body = await self._body(receive, headers)
            if body is None:
                return self._too_large("snapshots")
            try:
                _event, row = snapshots_inbound(self.config, body, headers, now=self._clock())
            except WebhookRejected:
                if not await self._reread(arrived):
                    raise
                _event, row = snapshots_inbound(self.config, body, headers, now=self._clock())
            result = await self._committer.submit(row)
        except WebhookRejected as exc:
            return self._rejected("snapshots", 401, str(exc))
        except InvalidInput as exc:
            return self._rejected("snapshots", 400, str(exc))
        except StoreUnavailable as exc:
            log.warning("action=hook_unstored source=snapshots status=429 reason=%s", redact_text(str(exc)))
            return self._snapshots_outage()
        except ClientDisconnect:
            return self._snapshots_outage()
        except _BodyTimeout:
            return self._body_timeout("snapshots")
        except Exception as exc:
            log.error("action=hook_error source=snapshots status=429 error=%s", type(exc).__name__)
            return self._snapshots_outage()
        # A webhook id already stored is a replay, and it is answered 200 like any duplicate: the event IS
        # stored (once), and a 2xx is what stops the sender from sending it again.
        log.info("action=hook_stored source=snapshots connection=%s kind=%s event_id=%d duplicate=%s",
                 row.connection, row.kind, result.id, result.duplicate)
        return result

    # The outage answers are each sender's "retry later": 503 for Gumroad, 429 with Retry-After for Snapshots.
    def _gumroad_outage(self) -> Response:
        return _error(503, "the event could not be stored; retry later")

    def _snapshots_outage(self) -> Response:
        retry_after = str(self.config.limits.retry_after_seconds)
        return _error(429, "the event could not be stored; retry later", {"Retry-After": retry_after})

    def _rejected(self, source: str, status: int, message: str) -> Response:
        log.warning("action=hook_rejected source=%s status=%d reason=%s", source, status,
                    redact_text(message[:_MAX_MESSAGE]))
        return _error(status, message)

    def _body_timeout(self, source: str) -> Response:
        seconds = self.config.limits.body_timeout_seconds
        return self._rejected(source, 408, f"the body did not arrive within {seconds:g} seconds")

    def _too_large(self, source: str) -> Response:
        return self._rejected(source, 413, f"the body is larger than {self._max_body_bytes} bytes")
