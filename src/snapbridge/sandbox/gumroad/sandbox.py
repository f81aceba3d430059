"""GumroadSandbox: the seeded state, the webhook sender and the ASGI app, with a Python API for tests."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette

from snapbridge.errors import InvalidInput
from snapbridge.sandbox.gumroad.app import build_app
from snapbridge.sandbox.gumroad.models import WebhookEvent
from snapbridge.sandbox.gumroad.scenarios import ScenarioError, run_scenario
from snapbridge.sandbox.gumroad.seed import seed_state
from snapbridge.sandbox.gumroad.state import SandboxState, Settings, utc_now
from snapbridge.sandbox.gumroad.webhooks import Delivery, WebhookSender
from snapbridge.sandbox.journal import Journal

__all__ = ["GumroadSandbox"]


def _today(clock: Callable[[], datetime]) -> datetime:
    now = clock().astimezone(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


class GumroadSandbox:
    """A faithful fake of the Gumroad API v2 and its webhooks.

    `time_factor` scales every wait of the webhook sender (queue delays and retry backoff) but not the
    5 s per-attempt timeout. `anchor` fixes the instant the seeded timeline counts back from (default:
    today 00:00 UTC).
    """

    def __init__(
        self,
        seed: int = 1,
        time_factor: float = 1.0,
        *,
        anchor: datetime | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if time_factor <= 0:
            raise InvalidInput(f"time_factor must be greater than 0, got {time_factor}")
        self.seed = seed
        self.time_factor = time_factor
        self.state = SandboxState(seed, clock)
        with self.state.lock:
            seed_state(self.state, anchor or _today(clock))
        self.journal = Journal()
        self.sender = WebhookSender(self.state, time_factor)
        self.state.notify = self._notify
        self._scenario_rng = random.Random(f"gumroad-scenarios:{seed}")
        self._token_count = 0
        self.base_url = ""
        self.app: Starlette = build_app(self)

    # ---- identity -----------------------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        """The seeded token with every scope."""
        return self.state.ids.token("full")

    @property
    def seller_id(self) -> str:
        return self.state.seller.id

    def info(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "access_token": self.access_token,
            "seller_id": self.seller_id,
            "seed": self.seed,
            "time_factor": self.time_factor,
        }

    def create_token(self, scopes: Iterable[str], *, application_id: str | None = None) -> str:
        """An extra token; no scopes means Doorkeeper's default, `view_public`. Same app unless told."""
        wanted = frozenset(scopes) or frozenset({"view_public"})
        with self.state.lock:
            self._token_count += 1
            return self.state.add_token(f"extra-{self._token_count}", wanted, application_id).value

    def token_scopes(self, token: str) -> frozenset[str]:
        with self.state.lock:
            found = self.state.tokens.get(token)
            return found.scopes if found else frozenset()

    def revoke_token(self, token: str) -> bool:
        """Revoke a token: it gets 401, and its app's subscriptions stop unless another live token remains."""
        with self.state.lock:
            found = self.state.tokens.get(token)
            if found is None:
                return False
            found.revoked = True
            return True

    # ---- webhooks -----------------------------------------------------------------------------------

    @property
    def ping_url(self) -> str | None:
        with self.state.lock:
            return self.state.ping_url

    def set_ping_url(self, url: object) -> None:
        """The seller's Ping URL (Settings → Advanced); it gets `sale` posts only. None turns it off."""
        if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
            raise InvalidInput("'url' must be an http(s) URL or null")
        with self.state.lock:
            self.state.ping_url = url or None

    @property
    def settings(self) -> Settings:
        with self.state.lock:
            return replace(self.state.settings)

    def configure(self, **changes: Any) -> Settings:
        """Change switches (see Settings); unknown names or wrong types raise InvalidInput."""
        known = {f.name: f for f in fields(Settings)}
        current = self.settings
        for name, value in changes.items():
            if name not in known:
                raise InvalidInput(f"unknown setting {name!r}; known: {', '.join(sorted(known))}")
            default = getattr(current, name)
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise InvalidInput(f"setting {name!r} must be true or false")
            elif isinstance(default, tuple):
                if not isinstance(value, (list, tuple)) or not all(_number(v) and v >= 0 for v in value):
                    raise InvalidInput(f"setting {name!r} must be a list of non-negative numbers")
                value = tuple(float(v) for v in value)
            elif not _number(value) or value < 0:
                raise InvalidInput(f"setting {name!r} must be a non-negative number")
            else:
                value = float(value)
            setattr(current, name, value)
        with self.state.lock:
            self.state.settings = current
        return replace(current)

    def deliveries(self) -> list[Delivery]:
        """Every delivery attempt so far, in the order they finished."""
        return self.sender.deliveries()

    def clear_deliveries(self) -> None:
        self.sender.clear()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is queued, in flight or waiting for a retry; False once `timeout` passed."""
        return self.sender.wait_idle(timeout)

    async def wait_idle_async(self, limit: float = 10.0) -> bool:
        return await self.sender.wait_idle_async(limit)

    def _notify(self, events: list[WebhookEvent]) -> None:
        self.sender.submit(events)

    # ---- scenarios ----------------------------------------------------------------------------------

    def run_scenario(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run a scenario and queue its posts; raises ScenarioError (used by the HTTP control API)."""
        outcome = run_scenario(self.state, self._scenario_rng, name, params)
        ids = self.sender.submit(outcome.events)
        events = [
            {
                "event_id": event_id,
                "resource_name": event.resource_name,
                **({"sale_id": event.sale_id} if event.sale_id else {}),
                **({"subscription_id": event.subscription_id} if event.subscription_id else {}),
            }
            for event_id, event in zip(ids, outcome.events, strict=True)
        ]
        return {"scenario": name, **outcome.result, "events": events}

    def emit(self, scenario: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The same as POST /_sandbox/scenarios/{scenario}; posts go out on the server's loop."""
        try:
            return self.run_scenario(scenario, params or {})
        except ScenarioError as exc:
            raise InvalidInput(f"scenario {scenario}: {exc.message}") from exc


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
