"""Builds the ASGI app: webhook endpoints and a health check (management API and dashboard come later)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from snapbridge.config import Settings
from snapbridge.runtime import GroupCommitter, ReceiverConfig
from snapbridge.store import Store
from snapbridge.web.hooks import HookEndpoints, not_found

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def _healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _http_error(_request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return not_found()  # the same body a wrong webhook secret gets
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else None
    return JSONResponse({"error": exc.detail if isinstance(exc, HTTPException) else "error"},
                        status_code=status, headers=headers)


async def _unexpected(_request: Request, exc: Exception) -> Response:
    # The endpoints catch their own errors; this is the last line, and it never shows a traceback.
    log.error("action=unhandled_error error=%s", type(exc).__name__)
    return JSONResponse({"error": "internal error"}, status_code=500)


def create_app(
    settings: Settings,
    store: Store,
    receiver_config: ReceiverConfig,
    *,
    on_commit: Callable[[], object] | None = None,
    clock: Callable[[], datetime] = _utc_now,
) -> Starlette:
    """The service's ASGI app. `on_commit` runs on the event loop after each commit that stored a new event
    (for example an asyncio.Event's `set`), so the deriver starts without polling.

    `app.state.committer` (GroupCommitter) and `app.state.hooks` (HookEndpoints, for `reconfigure`) are
    exposed for the service wiring, the tests and the benchmark.
    """
    committer = GroupCommitter(store.insert_events, receiver_config.limits, on_commit)
    hooks = HookEndpoints(receiver_config, committer, max_body_bytes=settings.max_body_bytes, clock=clock)
    routes: list[BaseRoute] = [
        Route("/healthz", _healthz, methods=["GET"]),
        *hooks.routes(),
    ]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await committer.start()
        try:
            yield
        finally:
            await committer.stop()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.committer = committer
    app.state.hooks = hooks
    return app
