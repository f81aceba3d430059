"""Sends the Snapshots sandbox's signed webhooks to subscribers, retrying only on 429 as HighLevel does."""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from snapbridge.sandbox.snapshots.bodies import WebhookEvent, encode_json, format_time
from snapbridge.sandbox.snapshots.signing import WebhookSigner

__all__ = ["MAX_RETRIES", "WebhookDelivery", "WebhookSender"]

MAX_RETRIES = 6  # re-sends after the first try, only when the receiver answered 429 (snapshots-api.md §8.1)
DEFAULT_RETRY_INTERVAL_SECONDS = 600.0
TIMEOUT_SECONDS = 10.0  # HighLevel's own timeout is UNCONFIRMED; a timeout is final, like any non-429

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookDelivery:
    """One attempt to deliver one webhook to one subscriber."""

    webhook_id: str
    type: str
    url: str
    attempt: int  # 1 for the first try
    body: bytes
    headers: Mapping[str, str]
    status: int | None  # None when no answer came (connection error, timeout)
    error: str | None
    sent_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "type": self.type,
            "url": self.url,
            "attempt": self.attempt,
            "body": self.body.decode("utf-8"),
            "body_base64": base64.b64encode(self.body).decode("ascii"),
            "headers": dict(self.headers),
            "status": self.status,
            "error": self.error,
            "sent_at": format_time(self.sent_at),
        }


class WebhookSender:
    """Subscribers, the delivery log, and the tasks that deliver, on the server's own event loop."""

    def __init__(self, seed: int, time_factor: float, now: Callable[[], datetime]) -> None:
        self.signer = WebhookSigner(seed)
        self._time_factor = time_factor
        self._now = now
        self._ids = random.Random(f"snapshots-webhook-ids:{seed}")
        self._lock = threading.Lock()
        self._subscribers: list[str] = []
        self._deliveries: list[WebhookDelivery] = []
        self.retry_interval_seconds = DEFAULT_RETRY_INTERVAL_SECONDS
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- settings, from any thread -------------------------------------------------------------

    def subscribe(self, url: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http(s), got {url!r}")
        with self._lock:
            if url not in self._subscribers:
                self._subscribers.append(url)

    def unsubscribe_all(self) -> None:
        with self._lock:
            self._subscribers.clear()

    def subscribers(self) -> list[str]:
        with self._lock:
            return list(self._subscribers)

    def deliveries(self) -> list[WebhookDelivery]:
        with self._lock:
            return list(self._deliveries)

    def pending(self) -> int:
        """Deliveries still in flight or waiting to retry."""
        return len(self._tasks)

    def set_retry_interval(self, seconds: float) -> None:
        """Seconds between tries before the time factor is applied (HighLevel: about 10 minutes)."""
        if seconds < 0:
            raise ValueError("retry interval must not be negative")
        self.retry_interval_seconds = seconds

    # ---- lifecycle, on the server's loop -----------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._client = httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def emit(self, event: WebhookEvent) -> None:
        """Schedule one signed delivery per subscriber; called on the loop, after the change is stored."""
        targets = self.subscribers()
        if not targets:
            return
        webhook_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        envelope = {
            "type": event.type,
            "webhookId": webhook_id,
            "timestamp": format_time(self._now()),
            "companyId": event.company_id,
        }
        body = encode_json({**envelope, **event.fields})
        loop = self._loop or asyncio.get_running_loop()
        for url in targets:
            task = loop.create_task(self._deliver(url, webhook_id, event.type, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, webhook_id: str, kind: str, body: bytes) -> None:
        # The same bytes and signature on every try: a retry is a re-send of the same payload.
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "snapbridge-snapshots-sandbox",
            "X-GHL-Signature": self.signer.sign(body),
        }
        for attempt in range(1, MAX_RETRIES + 2):
            status, error = await self._post(url, body, headers)
            record = WebhookDelivery(webhook_id, kind, url, attempt, body, dict(headers), status, error,
                                     self._now())
            with self._lock:
                self._deliveries.append(record)
            log.info("action=webhook_attempt webhook=%s type=%s attempt=%d status=%s", webhook_id, kind,
                     attempt, status)
            if status != 429 or attempt > MAX_RETRIES:
                return
            await asyncio.sleep(self.retry_interval_seconds * self._time_factor)

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int | None, str | None]:
        client = self._client
        if client is None:  # served without a lifespan (e.g. an in-process transport)
            async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, trust_env=False) as once:
                return await self._post_with(once, url, body, headers)
        return await self._post_with(client, url, body, headers)

    @staticmethod
    async def _post_with(client: httpx.AsyncClient, url: str, body: bytes, headers: Mapping[str, str]
                         ) -> tuple[int | None, str | None]:
        try:
            response = await client.post(url, content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return response.status_code, None
