"""Builds the ASGI app: webhook endpoints, a health check, the management API (/api/v1) and the dashboard (/)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from snapbridge.config import Settings
from snapbridge.errors import SnapbridgeError
from snapbridge.runtime import GroupCommitter, ReceiverConfig
from snapbridge.runtime import receiver_config as stored_receiver_config
from snapbridge.security import Passwords, Vault
from snapbridge.store import ConnectionStore, Store, UserStore
from snapbridge.web.api import WebContext, api_routes
from snapbridge.web.dashboard import dashboard_routes
from snapbridge.web.guard import WebGuard
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
    # The API's error shape (an empty list of problems), which dashboard clients ignore.
    return JSONResponse({"error": exc.detail if isinstance(exc, HTTPException) else "error", "problems": []},
                        status_code=status, headers=headers)


async def _unexpected(_request: Request, exc: Exception) -> Response:
    # The endpoints catch their own errors; this is the last line, and it never shows a traceback.
    log.error("action=unhandled_error error=%s", type(exc).__name__)
    return JSONResponse({"error": "internal error"}, status_code=500)


class _App(Starlette):
    """Starlette with the webhook lane in front: a webhook POST goes straight to its endpoint."""

    def __init__(self, hooks: HookEndpoints, **options: Any) -> None:
        super().__init__(**options)
        self._hooks = hooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (endpoint := self._hooks.lane(scope)) is not None:
            await endpoint(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    store: Store,
    receiver_config: ReceiverConfig,
    *,
    on_commit: Callable[[], object] | None = None,
    clock: Callable[[], datetime] = _utc_now,
    vault: Vault | None = None,
    connections: ConnectionStore | None = None,
    passwords: Passwords | None = None,
) -> Starlette:
    """The service's ASGI app. `on_commit` runs on the event loop after each commit that stored a new event
    (for example an asyncio.Event's `set`), so the deriver starts without polling.

    `app.state.committer` (GroupCommitter) and `app.state.hooks` (HookEndpoints, for `reconfigure`) are
    exposed for the service wiring, the tests and the benchmark; `app.state.web` (WebContext) for the tests.
    Without `vault` and `connections` the API lists no connections and refuses to add one (503).
    """
    committer = GroupCommitter(store.insert_events, receiver_config.limits, on_commit)
    load = None
    if vault is not None and connections is not None:
        load = partial(stored_receiver_config, connections, vault)
    hooks = HookEndpoints(receiver_config, committer, max_body_bytes=settings.max_body_bytes, clock=clock,
                          load=load)

    def connections_changed() -> None:
        # A new or removed connection changes the hook secrets and keys: the receiver takes them at once.
        if vault is not None and connections is not None:
            try:
                hooks.reconfigure(stored_receiver_config(connections, vault))
            except SnapbridgeError as exc:
                log.warning("action=hooks_reconfigure_failed error=%s", type(exc).__name__)

    # From the vault's key when there is one, so a form served by one process is accepted by another.
    csrf_key = vault.derive_key("dashboard-csrf") if vault is not None else secrets.token_bytes(32)
    web = WebContext(settings, store, UserStore(store.engine), connections=connections, vault=vault,
                     passwords=passwords or Passwords(), csrf_key=csrf_key, clock=clock,
                     on_connections_changed=connections_changed)
    routes: list[BaseRoute] = [
        Route("/healthz", _healthz, methods=["GET"]),
        *hooks.routes(),
        *api_routes(web),
        *dashboard_routes(web),
    ]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await committer.start()
        try:
            yield
        finally:
            await committer.stop()

    app = _App(
        hooks,
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(WebGuard, max_body_bytes=settings.max_body_bytes)],
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.committer = committer
    app.state.hooks = hooks
    app.state.web = web
    return app
