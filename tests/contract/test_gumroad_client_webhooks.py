"""The sandbox's real webhook posts read by the connector: every resource, the Ping URL, duplicates."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from itertools import count

import pytest

from snapbridge.connectors.gumroad import (
    CancellationEvent,
    GumroadClient,
    GumroadEvent,
    Product,
    ResourceName,
    Sale,
    SaleEvent,
    Subscriber,
    SubscriptionEndedEvent,
    SubscriptionRestartedEvent,
    SubscriptionUpdatedEvent,
    check_seller,
    dedupe_key,
    parse_webhook,
    verify_by_fetch,
)
from snapbridge.http import create_client
from snapbridge.sandbox import GumroadSandbox, ServerThread
from snapbridge.security import Secret

LOCAL = ("127.0.0.1",)
_keys = count(1)


@dataclass
class Private:
    sandbox: GumroadSandbox
    base_url: str
    post_url: str  # a loopback port nobody listens on: each post fails fast and is never retried


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def private() -> Iterator[Private]:
    """A sandbox of our own, so our subscriptions and emitted events never reach other tests' deliveries."""
    sandbox = GumroadSandbox(seed=23, time_factor=0.001)
    server = ServerThread(sandbox.app, "127.0.0.1", 0).start()
    sandbox.base_url = server.base_url
    try:
        yield Private(sandbox, server.base_url, f"http://127.0.0.1:{closed_port()}/hooks/gumroad/s3cret")
    finally:
        server.stop()


@pytest.fixture
async def gumroad(private: Private) -> AsyncIterator[GumroadClient]:
    async with create_client(private.base_url, allowed_hosts=LOCAL) as http:
        yield GumroadClient(http, Secret(private.sandbox.access_token), base_url=private.base_url)


async def received(private: Private) -> list[tuple[GumroadEvent, int]]:
    """Every post the sandbox made so far, parsed, with its attempt number."""
    assert await private.sandbox.wait_idle_async(20)
    return [
        (parse_webhook(d.body, d.content_type), d.attempt)
        for d in private.sandbox.deliveries()
        if d.url == private.post_url
    ]


async def test_every_resource_posted_by_the_sandbox_parses(private: Private, gumroad: GumroadClient) -> None:
    box = private.sandbox
    subscriptions = [
        await gumroad.create_resource_subscription(
            name, private.post_url, idempotency_key=f"hook:{next(_keys)}"
        )
        for name in ResourceName
    ]
    box.clear_deliveries()
    try:
        sale = box.emit("first_purchase", {"custom_fields": {"Company": "Ünïcødé [GmbH]"}})
        box.emit("refund", {"sale_id": sale["sale_id"], "amount_cents": 100})
        box.emit("dispute", {"sale_id": sale["sale_id"]})
        box.emit("dispute_won", {"sale_id": sale["sale_id"]})
        box.emit("gift_purchase", {})
        box.emit("test_purchase", {})
        start = box.emit("subscription_start", {"product_id": (await _course(gumroad)).id, "tier": "Basic"})
        sub_id = str(start["subscription_id"])
        # Subscription posts are rendered when sent, so each step waits for the last one's post: otherwise
        # (as on Gumroad) a restart before the end post goes out cancels that post.
        for scenario, params in [
            ("renewal", {}), ("plan_change", {"direction": "upgrade"}), ("cancellation", {"by": "seller"}),
            ("subscription_end", {}), ("subscription_restart", {}),
        ]:
            box.emit(scenario, {"subscription_id": sub_id, **params})
            assert await box.wait_idle_async(20)
        events = await received(private)
    finally:
        for subscription in subscriptions:
            await gumroad.delete_resource_subscription(
                subscription.id, idempotency_key=f"unhook:{next(_keys)}"
            )

    assert {e.resource_name for e, _ in events} == set(ResourceName)
    for event, attempt in events:
        assert attempt == 1  # connection errors are never retried
        if isinstance(event, SaleEvent):
            check_seller(event, box.seller_id)
            assert event.sale_timestamp.tzinfo is not None and event.price.currency == "usd"
    by_type = {type(e) for e, _ in events}
    assert by_type == {
        SaleEvent, CancellationEvent, SubscriptionUpdatedEvent, SubscriptionEndedEvent,
        SubscriptionRestartedEvent,
    }
    first = next(e for e, _ in events if isinstance(e, SaleEvent) and e.sale_id == sale["sale_id"]
                 and e.resource_name is ResourceName.SALE)
    assert first.custom_fields.get("Company") == "Ünïcødé [GmbH]"
    assert any(isinstance(e, SaleEvent) and e.test for e, _ in events)
    assert any(isinstance(e, SaleEvent) and e.is_gift_receiver_purchase for e, _ in events)
    assert any(isinstance(e, SaleEvent) and e.is_recurring_charge for e, _ in events)
    assert len({dedupe_key(e) for e, _ in events}) == len(events)

    # Each posted event is confirmed by reading it back with the seller's token.
    for event, _ in events:
        truth = await verify_by_fetch(gumroad, event, expected_seller_id=box.seller_id)
        assert isinstance(truth, Sale if isinstance(event, SaleEvent) else Subscriber)


async def test_duplicate_deliveries_share_one_dedupe_key(private: Private, gumroad: GumroadClient) -> None:
    box = private.sandbox
    box.set_ping_url(private.post_url)  # the seller's Ping URL gets sale posts only
    box.configure(duplicate_deliveries=True)
    box.clear_deliveries()
    try:
        box.emit("first_purchase", {})
        events = await received(private)
    finally:
        box.configure(duplicate_deliveries=False)
        box.set_ping_url(None)
    assert len(events) == 2
    (one, _), (two, _) = events
    assert one == two and dedupe_key(one) == dedupe_key(two)


async def _course(gumroad: GumroadClient) -> Product:
    return next(p for p in await gumroad.list_products() if p.name == "Ultimate Course")
