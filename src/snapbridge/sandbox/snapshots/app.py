"""SnapshotsSandbox: the Snapshots API fake as one object, with its ASGI app and its Python test controls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from snapbridge.sandbox.journal import Journal, JournalEntry
from snapbridge.sandbox.snapshots.control import control_routes, http_error
from snapbridge.sandbox.snapshots.faults import FaultSettings, FaultState
from snapbridge.sandbox.snapshots.pipeline import RAW_SEND, ApiEndpoint, Parts
from snapbridge.sandbox.snapshots.ratelimit import RateLimiter
from snapbridge.sandbox.snapshots.seed import seed_state
from snapbridge.sandbox.snapshots.state import (
    DEFAULT_BURST_LIMIT,
    DEFAULT_BURST_WINDOW_MS,
    DEFAULT_DAILY_LIMIT,
    SandboxKey,
    SandboxState,
)
from snapbridge.sandbox.snapshots.webhooks import WebhookDelivery, WebhookSender

__all__ = ["SnapshotsSandbox"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _SandboxApp(Starlette):
    """Starlette, plus the server's own `send` kept in the scope: the reset fault needs its transport."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND] = send
        await super().__call__(scope, receive, send)


class SnapshotsSandbox:
    """A faithful local fake of the Snapshots API (snapshots-contract.md), deterministic for a given seed."""

    def __init__(self, seed: int = 1, time_factor: float = 1.0) -> None:
        if time_factor <= 0:
            raise ValueError("time_factor must be greater than 0")
        self.seed = seed
        self.time_factor = time_factor
        self.base_url = ""  # set by whoever serves the app
        self.journal = Journal()
        self._state = SandboxState(seed)
        seed_state(self._state, seed)
        self._seeded_keys = list(self._state.keys.values())
        self._faults = FaultState(seed)
        self._sender = WebhookSender(seed, time_factor, _utc_now)
        self._limiter = RateLimiter()
        parts = Parts(self._state, self._limiter, self._faults, self._sender, self.journal, time_factor,
                      _utc_now)
        self.app = self._build_app(parts)

    def _build_app(self, parts: Parts) -> Starlette:
        sender = self._sender

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            # Webhooks go out as tasks on the server's own loop, captured here.
            await sender.start()
            try:
                yield
            finally:
                await sender.stop()

        api = ApiEndpoint(parts)
        return _SandboxApp(
            routes=[Mount("/_sandbox", routes=control_routes(parts)), Route("/{path:path}", api)],
            exception_handlers={HTTPException: http_error},
            lifespan=lifespan,
        )

    # ---- identity ------------------------------------------------------------------------------------

    @property
    def company_id(self) -> str:
        return self._state.company_id

    @property
    def webhook_public_key(self) -> str:
        """The Ed25519 public key (raw 32 bytes, base64) that verifies X-GHL-Signature."""
        return self._sender.signer.public_key_b64

    def keys(self) -> list[SandboxKey]:
        """Seeded keys: all scopes; read-only; all but saas/location.read; all scopes bound to a location."""
        return list(self._seeded_keys)

    def create_key(
        self,
        scopes: Iterable[str],
        company_id: str | None = None,
        location_id: str | None = None,
        burst_limit: int = DEFAULT_BURST_LIMIT,
        burst_window_ms: int = DEFAULT_BURST_WINDOW_MS,
        daily_limit: int = DEFAULT_DAILY_LIMIT,
    ) -> SandboxKey:
        return self._state.add_key(frozenset(scopes), company_id or self.company_id, location_id,
                                   burst_limit, burst_window_ms, daily_limit)

    # ---- faults ---------------------------------------------------------------------------------------

    def set_faults(self, **faults: Any) -> FaultSettings:
        """Merge fault settings (see FaultSettings); raises pydantic's ValidationError on a bad value."""
        return self._faults.set(**faults)

    def clear_faults(self) -> None:
        self._faults.clear()

    def lose_next_response(self, method: str, path: str, times: int = 1) -> None:
        """Apply the next matching write(s), then reset the connection instead of answering."""
        self._faults.set(reset_writes=times, reset_method=method.upper(), reset_path=path)

    # ---- webhooks -------------------------------------------------------------------------------------

    def subscribe(self, url: str) -> None:
        self._sender.subscribe(url)

    def unsubscribe_all(self) -> None:
        self._sender.unsubscribe_all()

    def set_webhook_retry_interval(self, seconds: float) -> None:
        """Seconds between tries on a 429 before the time factor applies (default 600)."""
        self._sender.set_retry_interval(seconds)

    def webhook_deliveries(self) -> list[WebhookDelivery]:
        return self._sender.deliveries()

    def pending_webhooks(self) -> int:
        """Deliveries not finished yet (in flight or waiting for a retry); 0 once every one is settled."""
        return self._sender.pending()

    # ---- journal --------------------------------------------------------------------------------------

    def writes_to(self, entity_id: str) -> int:
        return self.journal.writes_to(entity_id)

    def requests(self, *, method: str | None = None, path: str | None = None,
                 entity: str | None = None) -> list[JournalEntry]:
        return self.journal.entries(method=method, path=path, entity=entity)
