"""Real webhooks from the sandboxes reach the store: Gumroad pings and subscriptions, signed Snapshots
webhooks, and each sender's own retries after an outage (503 for Gumroad, 429 for the Snapshots API)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from test_receiver_support import Served, serve, wait_for, write_lock

from snapbridge.connectors.snapshots import LocationChanges, LocationCreate, SnapshotsClient
from snapbridge.http import create_client
from snapbridge.runtime import ReceiverLimits, SnapshotsLocationsPoller
from snapbridge.sandbox import Sandboxes
from snapbridge.sandbox.gumroad import Delivery
from snapbridge.security import Secret
from snapbridge.store import EventSource, Store

SECRET = "sandbox-ping-token-0123456789_abcdefghijk"
QUICK_COMMIT = ReceiverLimits(commit_timeout_seconds=0.3)  # answer 503/429 fast while a lock holds the store
LOOPBACK = ("127.0.0.1",)


@pytest.fixture
def gumroad_api(sandboxes: Sandboxes) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {sandboxes.gumroad.access_token}"}
    with httpx.Client(base_url=sandboxes.gumroad_url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def snapshots_api(sandboxes: Sandboxes) -> Iterator[httpx.Client]:
    key = sandboxes.snapshots.keys()[0].key  # the seeded key with every scope
    headers = {"Authorization": f"Bearer {key}", "Version": "2021-07-28"}
    with httpx.Client(base_url=sandboxes.snapshots_url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def gumroad_hooks(sandboxes: Sandboxes, gumroad_api: httpx.Client) -> Iterator[list[str]]:
    """Leaves the shared Gumroad sandbox as it was: no Ping URL, none of our subscriptions, its settings."""
    assert sandboxes.gumroad.wait_idle(10)
    subscriptions: list[str] = []
    before = sandboxes.gumroad.settings
    ping_url = sandboxes.gumroad.ping_url
    try:
        yield subscriptions
    finally:
        assert sandboxes.gumroad.wait_idle(10)
        sandboxes.gumroad.set_ping_url(ping_url)
        for sub_id in subscriptions:
            gumroad_api.delete(f"/v2/resource_subscriptions/{sub_id}")
        sandboxes.gumroad.configure(duplicate_deliveries=before.duplicate_deliveries,
                                    retry_delays_seconds=list(before.retry_delays_seconds))


@pytest.fixture
def snapshots_hooks(sandboxes: Sandboxes) -> Iterator[None]:
    sandboxes.snapshots.unsubscribe_all()
    try:
        yield
    finally:
        wait_for(lambda: sandboxes.snapshots.pending_webhooks() == 0, what="Snapshots webhooks to settle")
        sandboxes.snapshots.unsubscribe_all()
        sandboxes.snapshots.set_webhook_retry_interval(600)


def serve_for(sandboxes: Sandboxes, migrated: Engine, tmp_path: Path, limits: ReceiverLimits | None = None
              ) -> AbstractContextManager[Served]:
    return serve(
        migrated, tmp_path,
        gumroad={SECRET: ("gumroad-sandbox", sandboxes.gumroad.seller_id)},
        snapshots={"snapshots-sandbox": sandboxes.snapshots.webhook_public_key},
        limits=limits,
    )


def subscribe(api: httpx.Client, resource: str, url: str, made: list[str]) -> None:
    answer = api.put("/v2/resource_subscriptions", data={"resource_name": resource, "post_url": url}).json()
    assert answer["success"] is True, answer
    made.append(answer["resource_subscription"]["id"])


def to(served: Served, deliveries: list[Delivery]) -> list[Delivery]:
    return [d for d in deliveries if d.url.startswith(served.url)]


def test_gumroad_pings_and_subscription_posts_land_once_each(
    sandboxes: Sandboxes, gumroad_api: httpx.Client, gumroad_hooks: list[str], migrated: Engine,
    tmp_path: Path,
) -> None:
    gumroad = sandboxes.gumroad
    with serve_for(sandboxes, migrated, tmp_path) as served:
        url = served.gumroad_url(SECRET)
        gumroad.set_ping_url(url)
        for resource in ("sale", "refund", "cancellation"):
            subscribe(gumroad_api, resource, url, gumroad_hooks)
        gumroad.clear_deliveries()
        bought = gumroad.emit("first_purchase", {"product_id": "brushes"})  # a paid product, so refundable
        member = gumroad.emit("subscription_start")
        assert gumroad.wait_idle(10)
        gumroad.emit("refund", {"sale_id": bought["sale_id"]})
        gumroad.emit("cancellation", {"subscription_id": member["subscription_id"]})
        assert gumroad.wait_idle(10)
        sent = to(served, gumroad.deliveries())
        # Two sales, each to the Ping URL and to the sale subscription; a refund; a cancellation.
        assert len(sent) == 6
        assert all(d.status == 200 for d in sent), [(d.resource_name, d.status) for d in sent]
        keys = served.keys()
    assert f"gumroad:sale:{bought['sale_id']}" in keys
    assert f"gumroad:sale:{member['sale_id']}" in keys
    assert f"gumroad:refund:{bought['sale_id']}" in keys
    assert any(k.startswith(f"gumroad:cancellation:{member['subscription_id']}:") for k in keys)
    assert len(keys) == 4  # the sales posted twice are stored once


def test_gumroad_duplicate_deliveries_are_stored_once(
    sandboxes: Sandboxes, gumroad_hooks: list[str], migrated: Engine, tmp_path: Path
) -> None:
    gumroad = sandboxes.gumroad
    with serve_for(sandboxes, migrated, tmp_path) as served:
        gumroad.set_ping_url(served.gumroad_url(SECRET))
        gumroad.configure(duplicate_deliveries=True)
        gumroad.clear_deliveries()
        made = [gumroad.emit("first_purchase")["sale_id"] for _ in range(3)]
        assert gumroad.wait_idle(10)
        sent = to(served, gumroad.deliveries())
        assert len(sent) == 6 and all(d.status == 200 for d in sent)
        assert sorted(served.keys()) == sorted(f"gumroad:sale:{sale_id}" for sale_id in made)


def test_gumroad_retries_after_a_503_and_the_event_lands_once(
    sandboxes: Sandboxes, gumroad_hooks: list[str], migrated: Engine, tmp_path: Path
) -> None:
    gumroad = sandboxes.gumroad
    with serve_for(sandboxes, migrated, tmp_path, QUICK_COMMIT) as served:
        gumroad.set_ping_url(served.gumroad_url(SECRET))
        gumroad.configure(retry_delays_seconds=[300, 300, 300])  # 0.3 s apart at the test time factor
        gumroad.clear_deliveries()
        with write_lock(migrated):
            sale_id = gumroad.emit("first_purchase")["sale_id"]
            wait_for(lambda: to(served, gumroad.deliveries()), what="the first delivery")
        assert gumroad.wait_idle(10)
        sent = to(served, gumroad.deliveries())
        assert sent[0].status == 503 and sent[-1].status == 200, [d.status for d in sent]
        assert sent[-1].retry_count >= 1
        assert served.keys() == [f"gumroad:sale:{sale_id}"]


def test_snapshots_webhooks_land_in_the_store(
    sandboxes: Sandboxes, snapshots_api: httpx.Client, snapshots_hooks: None, migrated: Engine, tmp_path: Path
) -> None:
    snapshots = sandboxes.snapshots
    with serve_for(sandboxes, migrated, tmp_path) as served:
        snapshots.subscribe(served.snapshots_url)
        made = snapshots_api.post("/locations", json={"name": "Receiver — Tromsø", "timezone": "Europe/Oslo"})
        assert made.status_code in (200, 201), made.text
        location_id = made.json()["location"]["location_id"]
        changed = snapshots_api.put(f"/locations/{location_id}", json={"name": "Receiver — Bodø"})
        assert changed.status_code == 200, changed.text
        wait_for(lambda: snapshots.pending_webhooks() == 0, what="webhooks to settle")
        sent = [d for d in snapshots.webhook_deliveries() if d.url == served.snapshots_url]
        assert [d.status for d in sent] == [200, 200]
        # Each delivery is its own task in the sender, so the two may arrive in either order.
        rows = {r.kind: r for r in served.rows()}
    assert sorted(rows) == ["LocationCreate", "LocationUpdate"]
    # Keyed by the location state each shows (its id and updated_at), as the locations poller keys it.
    assert {r.dedupe_key for r in rows.values()} == {location_key(d.body) for d in sent}
    updated = rows["LocationUpdate"]
    assert updated.payload["name"] == "Receiver — Bodø" and updated.connection == "snapshots-sandbox"


def location_key(body: bytes) -> str:
    fields = json.loads(body)
    version = datetime.fromisoformat(fields["updated_at"].replace("Z", "+00:00")).isoformat()
    return f"snapshots:location:{fields['location_id']}:{version}"


async def test_a_location_change_seen_by_webhook_and_by_poll_is_one_event(
    sandboxes: Sandboxes, snapshots_hooks: None, migrated: Engine, tmp_path: Path
) -> None:
    snapshots = sandboxes.snapshots
    store = Store(migrated)
    unique = uuid.uuid4().hex[:12]  # the Snapshots sandbox is shared by the whole session
    async with create_client(sandboxes.snapshots_url, allowed_hosts=LOOPBACK) as api, \
            httpx.AsyncClient(timeout=10) as poster:
        client = SnapshotsClient(api, Secret(snapshots.keys()[0].key), base_url=sandboxes.snapshots_url)
        poller = SnapshotsLocationsPoller(store, client, connection="snapshots-sandbox")
        with serve_for(sandboxes, migrated, tmp_path) as served:
            # The sandbox signs and sends each webhook to a path that answers 404 (so it is not retried); the
            # test hands that exact signed body to the receiver when it wants, before or after the poll.
            snapshots.subscribe(f"{served.url}/not-a-hook-{unique}")

            async def deliver(kind: str) -> tuple[bytes, bool]:
                sent = wait_for(lambda: [d for d in snapshots.webhook_deliveries()
                                         if d.type == kind and json.loads(d.body)["location_id"] == location_id],
                                what=f"the {kind} webhook")
                answer = await poster.post(served.snapshots_url, content=sent[0].body,
                                           headers=dict(sent[0].headers))
                assert answer.status_code == 200, answer.text
                return sent[0].body, bool(answer.json()["duplicate"])

            created = await client.create_location(
                LocationCreate(name="Both ways — Narvik", timezone="Europe/Oslo"),
                idempotency_key=f"test-both-ways-create-{unique}")
            location_id = created.location_id
            create_body, duplicate = await deliver("LocationCreate")  # the webhook first, then the poll
            assert not duplicate
            await poller.poll_once()
            await client.update_location(location_id, LocationChanges(tier="gold"),
                                         idempotency_key=f"test-both-ways-update-{unique}")
            await poller.poll_once()  # the poll first, then the webhook
            update_body, duplicate = await deliver("LocationUpdate")
            assert duplicate
            _, replayed = await deliver("LocationUpdate")  # a replay of the same webhook is a duplicate too
            assert replayed
    rows = [r for r in Store(migrated).pending_events(100_000) if r.payload.get("location_id") == location_id]
    assert [(r.kind, r.source) for r in rows] == [("LocationCreate", EventSource.SNAPSHOTS),
                                                  ("LocationUpdate", EventSource.POLLER)]
    assert [r.dedupe_key for r in rows] == [location_key(create_body), location_key(update_body)]


def test_snapshots_retries_after_a_429_and_the_event_lands_once(
    sandboxes: Sandboxes, snapshots_api: httpx.Client, snapshots_hooks: None, migrated: Engine, tmp_path: Path
) -> None:
    snapshots = sandboxes.snapshots
    snapshots.set_webhook_retry_interval(300)  # 0.3 s at the test time factor
    with serve_for(sandboxes, migrated, tmp_path, QUICK_COMMIT) as served:
        snapshots.subscribe(served.snapshots_url)

        def ours() -> list[int | None]:
            return [d.status for d in snapshots.webhook_deliveries() if d.url == served.snapshots_url]

        with write_lock(migrated):
            made = snapshots_api.post("/locations", json={"name": "Retried after 429"})
            assert made.status_code in (200, 201), made.text
            wait_for(ours, what="the first delivery")
        wait_for(lambda: snapshots.pending_webhooks() == 0, what="webhooks to settle")
        statuses = ours()
        assert statuses[0] == 429 and statuses[-1] == 200, statuses
        (row,) = served.rows()
    assert row.kind == "LocationCreate" and row.payload["name"] == "Retried after 429"
