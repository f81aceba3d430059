"""The Starlette app of the Gumroad sandbox: the 42 /v2 endpoints, the /_sandbox control API, the journal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from snapbridge.sandbox.gumroad.api_account import ACCOUNT_ROUTES
from snapbridge.sandbox.gumroad.api_catalog import CATALOG_ROUTES
from snapbridge.sandbox.gumroad.api_licenses import LICENSE_ROUTES
from snapbridge.sandbox.gumroad.api_offers import OFFER_ROUTES
from snapbridge.sandbox.gumroad.api_sales import SALES_ROUTES
from snapbridge.sandbox.gumroad.control import control_routes
from snapbridge.sandbox.gumroad.protocol import endpoint
from snapbridge.sandbox.gumroad.state import utc_now
from snapbridge.sandbox.journal import Journal

if TYPE_CHECKING:
    from snapbridge.sandbox.gumroad.sandbox import GumroadSandbox

__all__ = ["API_ROUTES", "build_app"]

# (method, path, scopes, handler): scopes None means no token, an empty set any token.
API_ROUTES = [*CATALOG_ROUTES, *OFFER_ROUTES, *ACCOUNT_ROUTES, *SALES_ROUTES, *LICENSE_ROUTES]


class JournalMiddleware:
    """Records every /v2 request: method, path, status, arrival time and a fingerprint of the token."""

    def __init__(self, app: ASGIApp, journal: Journal) -> None:
        self.app = app
        self.journal = journal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v2"):
            await self.app(scope, receive, send)
            return
        arrived = utc_now()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            state = scope.get("state") or {}
            self.journal.record(
                method=scope["method"],
                path=scope["path"],
                status=status,
                arrived_at=arrived,
                entity=(scope.get("path_params") or {}).get("id") if scope["method"] != "GET" else None,
                api_key=state.get("api_key"),
            )


def build_app(sandbox: GumroadSandbox) -> Starlette:
    state = sandbox.state
    routes: list[BaseRoute] = [
        Route(path, endpoint(state, scopes)(handler), methods=[method])
        for method, path, scopes, handler in API_ROUTES
    ]
    routes.extend(control_routes(sandbox))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Deliveries run as tasks on the server's own loop, captured here.
        await sandbox.sender.start()
        try:
            yield
        finally:
            await sandbox.sender.stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(JournalMiddleware, journal=sandbox.journal)
    return app
