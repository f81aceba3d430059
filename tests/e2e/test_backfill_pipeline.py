"""Backfill's pipeline against a private Gumroad sandbox and a real store (SQLite and PostgreSQL): windows read
while the one before is stored, the next page asked for while a page is handed on, keys made without the parser."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from test_pipeline_support import wait_for
from test_pollers import all_events

from snapbridge.connectors.gumroad import (
    GumroadClient,
    ResourceName,
    Sale,
    SaleEvent,
    event_from_fields,
    refund_state_key,
)
from snapbridge.errors import AuthFailed, StoreUnavailable
from snapbridge.http import create_client
from snapbridge.runtime import BackfillProgress, backfill_gumroad, sale_inbound_events
from snapbridge.sandbox.gumroad import GumroadSandbox
from snapbridge.sandbox.server import ServerThread
from snapbridge.security import Secret
from snapbridge.store import Store

CONNECTION = "gumroad"
LOOPBACK = ("127.0.0.1",)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[GumroadSandbox]:
    """Seeded history over about six months, plus a sale in every refund and dispute state."""
    box = GumroadSandbox(seed=23, time_factor=0.001)
    server = ServerThread(box.app).start()
    box.base_url = server.base_url
    box.run_scenario("refund", {"amount_cents": 100})  # partial
    box.run_scenario("refund", {})  # in full
    box.run_scenario("dispute", {})
    box.run_scenario("dispute_won", {})
    try:
        yield box
    finally:
        server.stop()


@pytest.fixture
async def client(sandbox: GumroadSandbox) -> AsyncIterator[GumroadClient]:
    async with create_client(sandbox.base_url, allowed_hosts=LOOPBACK) as http:
        yield GumroadClient(http, Secret(sandbox.access_token), base_url=sandbox.base_url)


def sales_requests(sandbox: GumroadSandbox) -> int:
    return sum(1 for entry in sandbox.journal.entries() if entry.path == "/v2/sales")


def parser_key(sale: Sale, resource: ResourceName) -> str:
    """The key as the receiver makes it: the ping body through the webhook parser (the deriver re-keys a partial
    refund by what is still refundable)."""
    payload = next(e.payload for e in sale_inbound_events(sale, connection=CONNECTION, now=sale.created_at)
                   if e.kind == resource.value)
    event = event_from_fields(payload)
    assert isinstance(event, SaleEvent)
    return refund_state_key(event.dedupe_key, sale) if event.partial_refund else event.dedupe_key


async def test_poll_keys_are_the_keys_the_webhook_parser_gives(client: GumroadClient) -> None:
    sales = [sale async for sale in client.iter_sales()]
    seen: set[str] = set()
    for sale in sales:
        for event in sale_inbound_events(sale, connection=CONNECTION, now=sale.created_at):
            assert event.dedupe_key == parser_key(sale, ResourceName(event.kind)), (sale.id, event.kind)
            seen.add(event.kind + (":partial" if ":partial" in event.dedupe_key else ""))
    assert seen == {"sale", "refund", "refund:partial", "dispute", "dispute_won"}  # every kind of key was compared


async def test_windows_stored_while_the_next_is_read_keep_the_order_and_store_nothing_twice(
        store: Store, client: GumroadClient) -> None:
    listed = [sale async for sale in client.iter_sales()]
    since = min(s.created_at for s in listed).date()
    progress: list[BackfillProgress] = []
    report = await backfill_gumroad(store, client, connection=CONNECTION, since=since, batch_size=4,
                                    window_days=3, on_progress=progress.append)
    events = all_events(store)
    expected = [e.dedupe_key for s in sorted(listed, key=lambda s: (s.created_at, s.id))
                for e in sale_inbound_events(s, connection=CONNECTION, now=s.created_at)]
    assert [e.dedupe_key for e in events] == expected  # ids oldest sale first across every window
    assert (report.sales, report.inserted, report.duplicates) == (len(listed), len(expected), 0)
    assert len({p.reached for p in progress}) > 20  # many windows
    assert [p.reached for p in progress] == sorted(p.reached for p in progress)
    assert [p.inserted for p in progress] == sorted(p.inserted for p in progress)
    assert progress[-1] == BackfillProgress(since, report.until, report.until, len(listed), len(expected), 0)
    again = await backfill_gumroad(store, client, connection=CONNECTION, since=since, window_days=3)
    assert (again.sales, again.inserted, again.duplicates) == (len(listed), 0, len(expected))
    assert [e.id for e in all_events(store)] == [e.id for e in events]


async def test_a_failed_read_stores_the_windows_read_before_it(store: Store, sandbox: GumroadSandbox) -> None:
    token = sandbox.create_token(["view_sales"])
    listed = sandbox.state.listed_sales()
    since = min(s.created_at for s in listed).date()
    days = {s.created_at.date() for s in listed}

    def revoke_once_storing(_: BackfillProgress) -> None:
        sandbox.revoke_token(token)  # the window being read now, or the one after it, fails

    async with create_client(sandbox.base_url, allowed_hosts=LOOPBACK) as http:
        revoked = GumroadClient(http, Secret(token), base_url=sandbox.base_url)
        with pytest.raises(AuthFailed):
            await backfill_gumroad(store, revoked, connection=CONNECTION, since=since, window_days=2,
                                   on_progress=revoke_once_storing)
    stored = {str(e.payload["sale_id"]) for e in all_events(store) if e.kind == "sale"}
    # Whole windows, the oldest ones: every sale before some day, none after it.
    cut = max(s.created_at.date() for s in listed if s.id in stored) + timedelta(days=1)
    assert stored == {s.id for s in listed if s.created_at.date() < cut}
    assert any(day >= cut for day in days)  # the read did fail before the end


async def test_a_failed_store_stops_the_read(store: Store, sandbox: GumroadSandbox, client: GumroadClient) -> None:
    since = min(s.created_at for s in sandbox.state.listed_sales()).date()

    taken: list[bool] = []

    def take_the_table_away(_: BackfillProgress) -> None:
        if not taken:
            with store.engine.begin() as conn:
                conn.execute(sa.text("ALTER TABLE inbound_events RENAME TO inbound_events_gone"))
            taken.append(True)

    window_days = 2
    windows = -(-(date.today() + timedelta(days=1) - since).days // window_days)
    before = sales_requests(sandbox)
    with pytest.raises(StoreUnavailable):
        await backfill_gumroad(store, client, connection=CONNECTION, since=since, batch_size=1,
                               window_days=window_days, on_progress=take_the_table_away)
    # The first window's second batch failed: at most the window after it was read, not the other windows.
    assert sales_requests(sandbox) - before < windows // 2


async def test_the_next_page_is_on_its_way_before_a_page_is_handed_on(client: GumroadClient,
                                                                      sandbox: GumroadSandbox) -> None:
    before = sales_requests(sandbox)
    pages = client.iter_sales()
    try:
        await anext(pages)
        # A blocking wait, so the event loop does not run meanwhile: only a request already sent can arrive.
        wait_for(lambda: sales_requests(sandbox) - before == 2, timeout=10, what="the second page's request")
    finally:
        await pages.aclose()


async def test_a_listing_left_early_cancels_the_page_asked_for_ahead(client: GumroadClient,
                                                                     sandbox: GumroadSandbox) -> None:
    everything = [sale async for sale in client.iter_sales()]
    assert len(everything) > 20
    before = sales_requests(sandbox)
    pages = client.iter_sales()
    first = await anext(pages)
    await pages.aclose()
    assert first == everything[0]
    assert sales_requests(sandbox) - before <= 2  # the first page, and at most the one asked for ahead
    assert [sale async for sale in client.iter_sales()] == everything  # the pool is still good
