"""Reconciliation pollers and backfill against the sandboxes and a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from test_deriver import Access, Gumroad, gumroad, install_templates, runs_by_workflow

from snapbridge.connectors.gumroad import GumroadClient
from snapbridge.connectors.snapshots import LocationChanges, LocationCreate, SnapshotsClient
from snapbridge.errors import Retryable
from snapbridge.http import create_client
from snapbridge.runtime import (
    BackfillProgress,
    Deriver,
    GumroadSalesPoller,
    PollReport,
    SnapshotsLocationsPoller,
    backfill_gumroad,
    run_pollers,
)
from snapbridge.sandbox import Sandboxes
from snapbridge.security import Secret
from snapbridge.store import EventSource, EventStatus, InboundEvent, Store
from snapbridge.store.events import event_from_row
from snapbridge.store.schema import inbound_events

__all__ = ["gumroad"]  # the private-sandbox fixture, shared with test_deriver

CONNECTION = "gumroad"
LOOPBACK = ("127.0.0.1",)


@pytest.fixture
async def shared_gumroad(sandboxes: Sandboxes) -> AsyncIterator[GumroadClient]:
    async with create_client(sandboxes.gumroad_url, allowed_hosts=LOOPBACK) as http:
        yield GumroadClient(http, Secret(sandboxes.gumroad.access_token), base_url=sandboxes.gumroad_url)


@pytest.fixture
async def private_gumroad(gumroad: Gumroad) -> AsyncIterator[GumroadClient]:
    async with create_client(gumroad.sandbox.base_url, allowed_hosts=LOOPBACK) as http:
        yield GumroadClient(http, Secret(gumroad.sandbox.access_token), base_url=gumroad.sandbox.base_url)


@pytest.fixture
async def snapshots(sandboxes: Sandboxes) -> AsyncIterator[SnapshotsClient]:
    key = sandboxes.snapshots.create_key(["saas/location.read", "saas/location.write"], burst_limit=100_000)
    async with create_client(sandboxes.snapshots_url, allowed_hosts=LOOPBACK) as http:
        yield SnapshotsClient(http, Secret(key.key), base_url=sandboxes.snapshots_url)


def all_events(store: Store) -> list[InboundEvent]:
    """Every stored inbound event, by id (ids have gaps where a transaction rolled back on PostgreSQL)."""
    with store.engine.connect() as conn:
        return [event_from_row(row) for row in conn.execute(sa.select(inbound_events).order_by(inbound_events.c.id))]


def scenario(sandboxes: Sandboxes, name: str, **params: Any) -> dict[str, Any]:
    """Through the sandbox's scenario API, as a test script would drive it."""
    answer = httpx.post(f"{sandboxes.gumroad_url}/_sandbox/scenarios/{name}", json=params, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_poller_heals_a_sale_whose_webhook_never_came(store: Store, sandboxes: Sandboxes,
                                                            shared_gumroad: GumroadClient) -> None:
    install_templates(store)
    sale = scenario(sandboxes, "first_purchase")  # no webhook reaches this store
    report = await GumroadSalesPoller(store, shared_gumroad, connection=CONNECTION).poll_once()
    assert report.inserted >= 1
    [healed] = [e for e in all_events(store) if e.dedupe_key == f"gumroad:sale:{sale['sale_id']}"]
    assert healed.source is EventSource.POLLER and healed.kind == "sale"
    assert healed.payload["email"] == sale["email"]
    await Deriver(store, Access(shared_gumroad)).run_once()
    assert [e.status for e in all_events(store) if e.id == healed.id] == [EventStatus.DERIVED]
    runs = {r.workflow_name: r.steps for r in store.runs(limit=500) if r.inbound_event_id == healed.id}
    assert runs == {"new-customer-location": 5, "purchase-event": 2}


async def test_cursor_moves_with_the_events_and_repeats_store_nothing(store: Store, sandboxes: Sandboxes,
                                                                      shared_gumroad: GumroadClient) -> None:
    scenario(sandboxes, "first_purchase")
    poller = GumroadSalesPoller(store, shared_gumroad, connection=CONNECTION)
    first = await poller.poll_once()
    newest = max(datetime.fromisoformat(str(e.payload["sale_timestamp"]).replace("Z", "+00:00"))
                 for e in all_events(store))
    assert first.cursor == newest.isoformat() == store.get_cursor(poller.name)
    again = await poller.poll_once()
    assert (again.inserted, again.duplicates, again.cursor) == (0, first.read, first.cursor)


async def test_a_failed_poll_never_advances_the_cursor(store: Store) -> None:
    async with create_client("http://127.0.0.1:9", allowed_hosts=LOOPBACK, timeout=2) as dead:
        client = GumroadClient(dead, Secret("x" * 20), base_url="http://127.0.0.1:9")
        poller = GumroadSalesPoller(store, client, connection=CONNECTION)
        with pytest.raises(Retryable):
            await poller.poll_once()
    assert store.get_cursor(poller.name) is None and all_events(store) == []


class Crash(Exception):
    pass


async def test_a_crash_mid_poll_neither_skips_nor_doubles(store: Store, sandboxes: Sandboxes,
                                                          shared_gumroad: GumroadClient) -> None:
    for _ in range(3):
        scenario(sandboxes, "first_purchase")
    seen: list[tuple[int, int]] = []

    def crash_half_way(done: int, total: int) -> None:
        seen.append((done, total))
        if done * 2 >= total:
            raise Crash(f"killed after {done} of {total} events")

    # Ten days back so the window holds seeded sales too; two events per transaction batch.
    overlap = timedelta(days=10)
    crashing = GumroadSalesPoller(store, shared_gumroad, connection=CONNECTION, overlap=overlap, batch_size=2,
                                  on_progress=crash_half_way)
    with pytest.raises(Crash):
        await crashing.poll_once()
    done, total = seen[-1]
    assert total >= 6 and 0 < done < total  # it died with events half stored
    # Each batch is its own transaction, its cursor moved with it: what was stored stays, and the cursor is no
    # later than any sale not yet stored.
    stored = all_events(store)
    assert len(stored) == done
    cursor = store.get_cursor(crashing.name)
    assert cursor is not None
    window = (datetime.now(UTC) - overlap).date()
    created = {sale.id: sale.created_at async for sale in shared_gumroad.iter_sales(after=window)}
    stored_sales = {str(e.payload["sale_id"]) for e in stored if e.kind == "sale"}
    assert all(datetime.fromisoformat(cursor) <= created[sale] for sale in set(created) - stored_sales)
    poller = GumroadSalesPoller(store, shared_gumroad, connection=CONNECTION, overlap=overlap, batch_size=2)
    healed = await poller.poll_once()
    # Its window starts an overlap before that cursor, so it may read further back than the first poll did.
    assert healed.read >= total and (healed.inserted, healed.duplicates) == (healed.read - done, done)
    total = healed.read
    keys = [e.dedupe_key for e in all_events(store)]
    assert len(keys) == len(set(keys)) == total
    assert store.get_cursor(poller.name) == healed.cursor is not None
    again = await poller.poll_once()
    assert again.inserted == 0 and len(all_events(store)) == total


async def test_webhook_and_poller_make_one_event(store: Store, gumroad: Gumroad,
                                                 private_gumroad: GumroadClient) -> None:
    install_templates(store)
    sale, rows = gumroad.emit("first_purchase")
    [webhook] = store.insert_events(rows)
    report = await GumroadSalesPoller(store, private_gumroad, connection=CONNECTION).poll_once()
    assert report.duplicates >= 1
    same = [e for e in all_events(store) if e.dedupe_key == f"gumroad:sale:{sale['sale_id']}"]
    assert [e.id for e in same] == [webhook.id] and same[0].source is EventSource.GUMROAD
    await Deriver(store, Access(private_gumroad)).run_once()
    runs = runs_by_workflow(store)
    mine = {name: r.steps for name, r in runs.items() if r.inbound_event_id == webhook.id}
    assert mine == {"new-customer-location": 5, "purchase-event": 2}


async def test_poll_payload_derives_like_the_webhook(store: Store, gumroad: Gumroad,
                                                     private_gumroad: GumroadClient) -> None:
    """The same sale through either path: same customer, price, name and derived events."""
    from snapbridge.runtime import derive, parse_inbound, sale_payload

    sale, rows = gumroad.emit("first_purchase", full_name="Edsger Dijkstra")
    polled = sale_payload(await private_gumroad.get_sale(sale["sale_id"]))
    now = datetime.now(UTC)
    by_webhook = derive("1", parse_inbound("sale", rows[0].payload), None, now, segments=())
    by_poll = derive("1", parse_inbound("sale", polled), None, now, segments=())
    assert [e.type for e in by_poll.events] == [e.type for e in by_webhook.events]
    assert by_poll.state is not None and by_webhook.state is not None
    fields = ("email", "name", "lifetime_value_cents", "first_seen_at", "plan", "purchaser_id")
    assert {f: getattr(by_poll.state.profile, f) for f in fields} == \
        {f: getattr(by_webhook.state.profile, f) for f in fields}


async def test_refunds_seen_by_the_poller_are_keyed_as_their_webhooks(store: Store, gumroad: Gumroad,
                                                                      private_gumroad: GumroadClient) -> None:
    sale, _ = gumroad.emit("first_purchase", product_id="brushes")
    _, refund_rows = gumroad.emit("refund", sale_id=sale["sale_id"])
    await GumroadSalesPoller(store, private_gumroad, connection=CONNECTION).poll_once()
    keys = {e.dedupe_key for e in all_events(store)}
    assert {f"gumroad:sale:{sale['sale_id']}", refund_rows[0].dedupe_key} <= keys


async def test_partial_refunds_and_the_final_one_are_each_one_refund_by_webhook_or_poll(
    store: Store, gumroad: Gumroad, private_gumroad: GumroadClient
) -> None:
    """Two partial refunds ping identically; each is derived once (keyed by what is then refundable), a repeated
    delivery of one is a repeat, and a poll afterwards finds each refund already known."""
    sale, sale_rows = gumroad.emit("first_purchase", product_id="brushes")
    store.insert_events(sale_rows)
    deriver = Deriver(store, Access(private_gumroad))
    poller = GumroadSalesPoller(store, private_gumroad, connection=CONNECTION)

    def refunds() -> list[InboundEvent]:  # the window holds other sales' refunds too
        return [e for e in all_events(store) if e.kind == "refund" and e.payload["sale_id"] == sale["sale_id"]]

    _, first = gumroad.emit("refund", sale_id=sale["sale_id"], amount_cents=100)
    assert [r.duplicate for r in store.insert_events(first)] == [False]
    await deriver.run_once()
    # Gumroad sends the same ping again (a retry after a lost answer): kept, then seen to be a repeat.
    assert [r.duplicate for r in store.insert_events(_again(first))] == [False]
    await deriver.run_once()
    _, other = gumroad.emit("refund", sale_id=sale["sale_id"], amount_cents=200)  # a second partial refund
    assert [r.payload for r in other] == [r.payload for r in first]  # byte for byte the same ping
    store.insert_events(other)
    await deriver.run_once()
    await poller.poll_once()  # keys the refund by the same amount: nothing new of this sale
    assert len(refunds()) == 3, [e.dedupe_key for e in refunds()]
    _, final = gumroad.emit("refund", sale_id=sale["sale_id"])  # the rest: now refunded in full
    assert [r.duplicate for r in store.insert_events(final)] == [False]
    await deriver.run_once()
    await poller.poll_once()

    base = f"gumroad:refund:{sale['sale_id']}"
    left = int(refunds()[0].dedupe_key.rsplit(":", 1)[1])  # major units refundable after the first refund
    assert [(e.dedupe_key.split(":delivery:")[0], e.status) for e in refunds()] == [
        (f"{base}:partial:refundable:{left}", EventStatus.DERIVED),
        (f"{base}:partial", EventStatus.IGNORED),  # the repeated delivery keeps its own key
        (f"{base}:partial:refundable:{left - 2}", EventStatus.DERIVED),
        (base, EventStatus.DERIVED),
    ]
    assert "a repeat of a partial refund" in refunds()[1].note


def _again(rows: list[Any]) -> list[Any]:
    """The same ping delivered again: the receiver keeps each delivery of a partial refund under its own key."""
    return [replace(r, dedupe_key=f"{r.dedupe_key.split(':delivery:')[0]}:delivery:again") for r in rows]


async def test_snapshots_locations_poller(store: Store, snapshots: SnapshotsClient) -> None:
    poller = SnapshotsLocationsPoller(store, snapshots, connection="snapshots")
    await poller.poll_once()
    unique = uuid.uuid4().hex[:12]  # the Snapshots sandbox is shared by the whole session
    created = await snapshots.create_location(
        LocationCreate(name="Poll Shop", timezone="Europe/Paris", external_id=f"shop-{unique}@example.com"),
        idempotency_key=f"test-poll-create-{unique}")
    report = await poller.poll_once()
    assert report.inserted == 1
    [event] = [e for e in all_events(store) if e.payload.get("location_id") == created.location_id]
    assert event.kind == "LocationCreate" and event.source is EventSource.POLLER
    assert store.get_cursor(poller.name) == report.cursor
    assert (await poller.poll_once()).inserted == 0  # nothing changed since
    await snapshots.update_location(created.location_id, LocationChanges(tier="gold"),
                                    idempotency_key=f"test-poll-update-{unique}")
    changed = await poller.poll_once()
    assert changed.inserted == 1
    kinds = [e.kind for e in all_events(store) if e.payload.get("location_id") == created.location_id]
    assert kinds == ["LocationCreate", "LocationUpdate"]
    derived = await Deriver(store, Access(None)).run_once()
    assert derived.rejected == 0 and derived.derived == len(all_events(store))


async def test_backfill_stores_every_seeded_sale_once(store: Store, sandboxes: Sandboxes,
                                                      shared_gumroad: GumroadClient) -> None:
    listed = [s async for s in shared_gumroad.iter_sales()]
    since: date = min(s.created_at for s in listed).date()
    progress: list[BackfillProgress] = []
    report = await backfill_gumroad(store, shared_gumroad, connection=CONNECTION, since=since, batch_size=25,
                                    window_days=30, on_progress=progress.append)
    assert report.sales == len(listed) and report.batches > 1
    events = all_events(store)
    sales = [e for e in events if e.kind == "sale"]
    assert sorted(str(e.payload["sale_id"]) for e in sales) == sorted(s.id for s in listed)
    assert report.inserted == len(events) and report.duplicates == 0
    stamps = [str(e.payload["sale_timestamp"]) for e in sales]
    assert stamps == sorted(stamps)  # oldest first, so a customer's first purchase is derived first
    assert [p.reached for p in progress] == sorted(p.reached for p in progress)
    assert progress[-1].fraction == 1.0 and progress[-1].sales == len(listed)
    again = await backfill_gumroad(store, shared_gumroad, connection=CONNECTION, since=since)
    assert (again.inserted, again.duplicates) == (0, len(events))


async def test_backfill_refuses_an_empty_range(store: Store, shared_gumroad: GumroadClient) -> None:
    from snapbridge.errors import InvalidInput

    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    with pytest.raises(InvalidInput):
        await backfill_gumroad(store, shared_gumroad, connection=CONNECTION, since=tomorrow)


class BrokenPoller:
    """A poller whose every poll fails with `error` (its API is down; or an answer nothing expected)."""

    name = "broken"

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def poll_once(self) -> PollReport:
        raise self.error


@pytest.mark.parametrize("error", [Retryable("the API is down", operation="list_sales"),
                                   ValueError("an answer no parser expected")], ids=["outage", "unexpected"])
async def test_run_pollers_keeps_polling_past_a_failure(store: Store, sandboxes: Sandboxes,
                                                        shared_gumroad: GumroadClient, error: Exception) -> None:
    import asyncio

    scenario(sandboxes, "first_purchase")
    poller = GumroadSalesPoller(store, shared_gumroad, connection=CONNECTION)
    stop = asyncio.Event()
    woken: list[int] = []
    task = asyncio.create_task(run_pollers([BrokenPoller(error), poller], stop, interval_seconds=0.05,
                                           on_events=lambda: woken.append(1)))
    deadline = asyncio.get_running_loop().time() + 10
    while not woken:
        assert asyncio.get_running_loop().time() < deadline, "the working poller never stored anything"
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert store.get_cursor(poller.name) is not None and all_events(store)
