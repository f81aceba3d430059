"""The webhook sender: posts pings and resource-subscription events the way Gumroad's workers do.

Semantics (gumroad-api.md §5.1, §7): each event waits its queue delay (sale 10 s, others 5 s, times the
time factor), then its payload is built from the state *at that moment* and posted to every target;
bodies are form-encoded (JSON only for zapier.com hosts); any 2xx is success; 499/500/502/503/504 are
retried after 60/180/600 s (times the time factor) with `retry_count` appended; anything else,
connection errors and timeouts are dropped. The per-attempt timeout is 5 real seconds: scaling it would
make every receiver miss a 5 ms deadline under test time factors.

The events of one batch (one scenario call) go out in order of due time, then of occurrence; with the
`out_of_order` switch in reverse order of occurrence; with `duplicate_deliveries` every post is sent
twice. Retries run independently and may interleave, as on Gumroad. Redirects are followed (httparty's
default; UNCONFIRMED for Gumroad, avoid them).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from snapbridge.sandbox.gumroad.formencode import FormValue, encode_form
from snapbridge.sandbox.gumroad.models import WebhookEvent
from snapbridge.sandbox.gumroad.payloads import sale_ping_payload, subscription_payload
from snapbridge.sandbox.gumroad.state import PingTarget, SandboxState, utc_now

__all__ = ["RETRY_STATUSES", "Delivery", "WebhookSender"]

RETRY_STATUSES = frozenset({499, 500, 502, 503, 504})
_SALE_FAMILY = frozenset({"sale", "refund", "dispute", "dispute_won"})


@dataclass(frozen=True)
class Delivery:
    """One attempt to post one event to one URL."""

    seq: int
    event_id: str
    url: str
    resource_name: str
    content_type: str
    body: bytes
    attempt: int  # 1 for the first try, 2-4 for the retries
    retry_count: int  # the `retry_count` field in the body (0 when absent)
    sent_at: datetime
    status: int | None  # HTTP status, or None when no answer came
    error: str | None  # "timeout", "connection error: ...", or None
    resource_subscription_id: str | None  # None for the seller's Ping URL
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "url": self.url,
            "resource_name": self.resource_name,
            "content_type": self.content_type,
            "body": self.body.decode("utf-8", "replace"),
            "attempt": self.attempt,
            "retry_count": self.retry_count,
            "sent_at": self.sent_at.isoformat(),
            "status": self.status,
            "error": self.error,
            "resource_subscription_id": self.resource_subscription_id,
            "duplicate": self.duplicate,
        }


@dataclass
class _Post:
    event_id: str
    resource_name: str
    target: PingTarget
    params: dict[str, FormValue]
    duplicate: bool = False
    retry_count: int = 0


@dataclass
class _Scheduled:
    event_id: str
    event: WebhookEvent
    due: float  # loop time
    index: int
    extra: dict[str, Any] = field(default_factory=dict)


class WebhookSender:
    def __init__(self, state: SandboxState, time_factor: float) -> None:
        self._state = state
        self.time_factor = time_factor
        self._cond = threading.Condition()
        self._outstanding = 0
        self._log: list[Delivery] = []
        self._event_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._client: httpx.AsyncClient | None = None
        self._pending: list[tuple[list[WebhookEvent], list[str]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle (called from the app's lifespan, on the server loop) ------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._client = httpx.AsyncClient(follow_redirects=True, trust_env=False)
        with self._cond:
            pending, self._pending = self._pending, []
        for batch, ids in pending:
            self._spawn(self._run_batch(batch, ids))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        self._loop = None

    # ---- public API -----------------------------------------------------------------------------------

    def submit(self, events: list[WebhookEvent]) -> list[str]:
        """Queue one batch of events from any thread; returns their event ids."""
        if not events:
            return []
        with self._cond:
            ids = [f"evt_{next(self._event_ids)}" for _ in events]
            self._outstanding += 1
            loop = self._loop
            tagged = list(events)
            if loop is None:  # not serving yet: start with the server
                self._pending.append((tagged, ids))
        if loop is not None:
            if threading.get_ident() == self._thread:
                self._spawn(self._run_batch(tagged, ids))
            else:
                loop.call_soon_threadsafe(lambda: self._spawn(self._run_batch(tagged, ids)))
        return ids

    def deliveries(self) -> list[Delivery]:
        with self._cond:
            return list(self._log)

    def clear(self) -> None:
        with self._cond:
            self._log.clear()

    @property
    def outstanding(self) -> int:
        with self._cond:
            return self._outstanding

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no post is queued, in flight or scheduled for retry; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._outstanding == 0, timeout)

    async def wait_idle_async(self, limit: float = 10.0) -> bool:
        return await asyncio.to_thread(self.wait_idle, limit)

    # ---- internals --------------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _done(self) -> None:
        with self._cond:
            self._outstanding -= 1
            self._cond.notify_all()

    def _delay(self, resource_name: str) -> float:
        settings = self._state.settings
        base = settings.sale_delay_seconds if resource_name == "sale" else settings.event_delay_seconds
        return base * self.time_factor

    async def _run_batch(self, events: list[WebhookEvent], ids: list[str]) -> None:
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            plan = [
                _Scheduled(ids[i], event, start + self._delay(event.resource_name), i)
                for i, event in enumerate(events)
            ]
            if self._state.settings.out_of_order:
                plan.sort(key=lambda s: -s.index)
            else:
                plan.sort(key=lambda s: (s.due, s.index))
            for item in plan:
                wait = item.due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._fan_out(item)
        finally:
            self._done()

    def _payload(self, event: WebhookEvent, resource_name: str) -> dict[str, FormValue] | None:
        state = self._state
        with state.lock:
            if resource_name in _SALE_FAMILY:
                sale = state.sales.get(event.sale_id or "")
                if sale is None:
                    return None
                url_params = event.url_params if resource_name == "sale" else None
                return sale_ping_payload(state, sale, resource_name=resource_name, url_params=url_params)
            sub = state.subscriptions.get(event.subscription_id or "")
            if sub is None:
                return None
            if resource_name == "subscription_ended" and sub.deactivated_at is None:
                return None  # skipped when the subscription turns out not to be deactivated
            if resource_name == "subscription_restarted" and state.subscription_over(sub, state.now()):
                return None  # skipped when it has a termination date again
            return subscription_payload(state, sub, resource_name=resource_name, additional=event.additional)

    async def _fan_out(self, item: _Scheduled) -> None:
        name = item.event.resource_name
        with self._state.lock:
            targets = self._state.ping_targets(name)
        if not targets:
            return  # nobody listens: skip building the payload (bulk seeding emits thousands of events)
        params = self._payload(item.event, name)
        if params is None:
            return
        copies = 2 if self._state.settings.duplicate_deliveries else 1
        for target in targets:
            for copy in range(copies):
                post = _Post(item.event_id, name, target, dict(params), duplicate=copy > 0)
                await self._attempt(post)

    async def _attempt(self, post: _Post) -> None:
        sent_at = utc_now()
        body, status, error = await self._send(post)
        retries = self._state.settings.retry_delays_seconds
        with self._cond:
            self._log.append(
                Delivery(
                    seq=len(self._log) + 1,
                    event_id=post.event_id,
                    url=post.target.url,
                    resource_name=post.resource_name,
                    content_type=post.target.content_type,
                    body=body,
                    attempt=post.retry_count + 1,
                    retry_count=post.retry_count,
                    sent_at=sent_at,
                    status=status,
                    error=error,
                    resource_subscription_id=post.target.resource_subscription_id,
                    duplicate=post.duplicate,
                )
            )
            if status in RETRY_STATUSES and post.retry_count < len(retries):
                self._outstanding += 1  # counted before the current attempt finishes, so idle never flickers
                retry = _Post(
                    post.event_id,
                    post.resource_name,
                    post.target,
                    {**post.params, "retry_count": post.retry_count + 1},
                    post.duplicate,
                    post.retry_count + 1,
                )
                delay = retries[post.retry_count] * self.time_factor
                self._spawn(self._retry_later(retry, delay))

    async def _retry_later(self, post: _Post, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            await self._attempt(post)
        finally:
            self._done()

    async def _send(self, post: _Post) -> tuple[bytes, int | None, str | None]:
        if post.target.content_type == "application/json":
            body = json.dumps(post.params, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        else:
            body = encode_form(post.params)
        headers = {"Content-Type": post.target.content_type, "Accept": "*/*", "User-Agent": "Ruby"}
        assert self._client is not None
        try:
            response = await self._client.post(
                post.target.url,
                content=body,
                headers=headers,
                timeout=self._state.settings.delivery_timeout_seconds,
            )
        except httpx.TimeoutException:
            return body, None, "timeout"
        except (httpx.HTTPError, ValueError, OSError) as exc:
            return body, None, f"connection error: {type(exc).__name__}"
        return body, response.status_code, None
