"""Webhooks really delivered by the Snapshots sandbox verify with its public key and parse into events."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from snapbridge.connectors.snapshots import (
    CustomerChanges,
    CustomerUpdateEvent,
    InMemorySeenIds,
    LocationChanges,
    LocationCreate,
    LocationCreateEvent,
    LocationUpdateEvent,
    OnboardingStatus,
    SnapshotsClient,
    parse_webhook,
    verify_webhook,
)
from snapbridge.errors import WebhookRejected
from snapbridge.http import create_client
from snapbridge.sandbox import Sandboxes, ServerThread
from snapbridge.security import Secret

ALL_SCOPES = (
    "saas/location.read", "saas/location.write", "events.write", "events.readonly", "customers.write",
    "customers.readonly",
)


@dataclass(frozen=True)
class Delivery:
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """A tiny webhook endpoint that keeps every raw body and its headers, and answers 200."""

    received: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.received.append(Delivery(body, dict(request.headers)))
        return Response(status_code=200)

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.received)

    async def wait_for(self, count: int, within: float = 5.0) -> list[Delivery]:
        deadline = time.monotonic() + within
        while len(self.snapshot()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} webhooks, got {len(self.snapshot())}")
            await asyncio.sleep(0.01)
        return self.snapshot()


@pytest.fixture
def receiver(sandboxes: Sandboxes) -> Iterator[Receiver]:
    receiver = Receiver()
    server = ServerThread(Starlette(routes=[Route("/hooks/snapshots", receiver.hook, methods=["POST"])]))
    server.start()
    sandboxes.snapshots.subscribe(f"{server.base_url}/hooks/snapshots")
    try:
        yield receiver
    finally:
        sandboxes.snapshots.unsubscribe_all()
        server.stop()


@pytest.fixture
async def client(sandboxes: Sandboxes) -> AsyncIterator[SnapshotsClient]:
    http = create_client(sandboxes.snapshots_url, allowed_hosts=("127.0.0.1",))
    key = sandboxes.snapshots.create_key(ALL_SCOPES)
    try:
        yield SnapshotsClient(http, Secret(key.key), base_url=sandboxes.snapshots_url)
    finally:
        await http.aclose()


async def test_delivered_webhooks_verify_and_parse(sandboxes: Sandboxes, receiver: Receiver,
                                                   client: SnapshotsClient) -> None:
    stamp = f"{datetime.now(UTC):%H%M%S%f}"
    made = await client.create_location(
        LocationCreate(name="Webhook Café ☕", timezone="Europe/Paris", external_id=f"wh-{stamp}"),
        idempotency_key=f"wh-{stamp}:create",
    )
    await client.update_location(made.location_id, LocationChanges(onboarding_status=OnboardingStatus.ACTIVE),
                                 idempotency_key=f"wh-{stamp}:update")
    customer_id = f"cus-wh-{stamp}"
    await client.upsert_customer(customer_id, CustomerChanges(name="Jürgen"), idempotency_key=f"{stamp}:c0")
    await client.upsert_customer(customer_id, CustomerChanges(plan="pro"), idempotency_key=f"{stamp}:c1")
    deliveries = await receiver.wait_for(3)

    seen = InMemorySeenIds()
    key = sandboxes.snapshots.webhook_public_key
    events = [verify_webhook(d.body, d.headers, key, datetime.now(UTC), seen) for d in deliveries]
    by_type = {type(e): e for e in events}
    created, updated = by_type[LocationCreateEvent], by_type[LocationUpdateEvent]
    customer = by_type[CustomerUpdateEvent]
    assert isinstance(created, LocationCreateEvent) and isinstance(updated, LocationUpdateEvent)
    assert isinstance(customer, CustomerUpdateEvent)
    assert created.location.location_id == updated.location.location_id == made.location_id
    assert created.location.name == "Webhook Café ☕"
    assert updated.location.onboarding_status is OnboardingStatus.ACTIVE
    assert customer.customer.customer_id == customer_id and customer.customer.plan == "pro"
    assert {e.company_id for e in events} == {sandboxes.snapshots.company_id}
    assert len({e.webhook_id for e in events}) == 3

    # The same delivery again is a replay; altered bytes, another key or a late arrival are refused.
    first = deliveries[0]
    with pytest.raises(WebhookRejected, match="replay"):
        verify_webhook(first.body, first.headers, key, datetime.now(UTC), seen)
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_webhook(first.body.replace(b"{", b"{ ", 1), first.headers, key, datetime.now(UTC),
                       InMemorySeenIds())
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_webhook(first.body, first.headers, base64.b64encode(other).decode(), datetime.now(UTC),
                       InMemorySeenIds())
    late = parse_webhook(first.body).timestamp + timedelta(minutes=5, seconds=1)
    with pytest.raises(WebhookRejected, match="old"):
        verify_webhook(first.body, first.headers, key, late, InMemorySeenIds())
    unsigned = {k: v for k, v in first.headers.items() if k.lower() != "x-ghl-signature"}
    with pytest.raises(WebhookRejected, match="missing"):
        verify_webhook(first.body, unsigned, key, datetime.now(UTC), InMemorySeenIds())

