"""The deriver under faults, from an adversarial review, on SQLite and PostgreSQL: a Gumroad connection whose
verify-by-fetch keeps failing (it must hold back only its own events, and not ask again before Retry-After), a
refund derived before its sale, two derivers on one customer at once (PostgreSQL), an event no workflow
handles, and segments stored in another order than the rules'."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from test_deriver import Gumroad, client, event_row, gumroad, install_templates  # noqa: F401 (fixtures)
from test_deriver_poison import insert_in_order, sale

from snapbridge.connectors.gumroad import GumroadClient, GumroadConnectionOptions
from snapbridge.http import create_client
from snapbridge.runtime import Deriver, DeriverConfig, GumroadLink
from snapbridge.sandbox.server import ServerThread
from snapbridge.security import Secret
from snapbridge.store import EventStatus, Store, Tx
from snapbridge.workflows import CustomerProfile, SegmentRule, refresh_segments

DOWN = "down-shop"  # a Gumroad connection whose API refuses every read
SHOP = "shop"  # a Gumroad connection that does not verify by fetching
RETRY_AFTER = 30


@dataclass
class Refusing:
    """A Gumroad API on loopback that answers every request 429 with Retry-After, counting them."""

    status: int = 429
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def answer(self, request: Request) -> Response:
        with self.lock:
            self.requests += 1
        return JSONResponse({"success": False, "message": "slow down"}, status_code=self.status,
                            headers={"Retry-After": str(RETRY_AFTER)})


@pytest.fixture(scope="module")
def refusing() -> Iterator[tuple[Refusing, str]]:
    api = Refusing()
    server = ServerThread(Starlette(routes=[Route("/{path:path}", api.answer, methods=["GET"])])).start()
    try:
        yield api, server.base_url
    finally:
        server.stop()


@dataclass
class Access:
    """DOWN verifies against the refusing API; every other connection does not verify."""

    down: GumroadClient

    async def gumroad(self, connection: str) -> GumroadLink | None:
        return GumroadLink(self.down, GumroadConnectionOptions(verify_by_fetch=connection == DOWN))


@pytest.fixture
async def access(refusing: tuple[Refusing, str]) -> AsyncIterator[Access]:
    api, base_url = refusing
    api.requests = 0
    async with create_client(base_url, allowed_hosts=("127.0.0.1",), timeout=5) as http:
        yield Access(GumroadClient(http, Secret("t" * 20), base_url=base_url))


async def test_a_connection_that_cannot_verify_does_not_starve_the_others(store: Store, access: Access) -> None:
    """More events of a refused connection than a pass takes: another connection's event behind them is still
    derived, and the refused ones wait, in order, not rejected."""
    down = insert_in_order(store, *(sale(f"d{i}", f"d{i}@example.com", connection=DOWN) for i in range(6)))
    [other] = insert_in_order(store, sale("s1", "s1@example.com", connection=SHOP))
    deriver = Deriver(store, access, config=DeriverConfig(batch_size=3))
    for _ in range(3):
        await deriver.run_once()
    assert event_row(store, other.id).status is EventStatus.DERIVED
    assert {event_row(store, r.id).status for r in down} == {EventStatus.RECEIVED}


async def test_a_throttled_connection_is_not_asked_again_before_retry_after(
        store: Store, access: Access, refusing: tuple[Refusing, str]) -> None:
    """One 429 holds the connection's events: the other reads of the pass are not sent, and the next pass
    (well within Retry-After) sends none."""
    api, _ = refusing
    insert_in_order(store, *(sale(f"t{i}", f"t{i}@example.com", connection=DOWN) for i in range(40)))
    deriver = Deriver(store, access, config=DeriverConfig(verify_concurrency=4))
    first = await deriver.run_once()
    assert first.waiting == 40 and api.requests <= 4
    asked = api.requests
    second = await deriver.run_once()
    assert second.waiting == 40 and api.requests == asked


async def test_a_refund_derived_before_its_sale_leaves_no_lifetime_value(
        store: Store, gumroad: Gumroad, client: GumroadClient) -> None:  # noqa: F811
    """Gumroad retried the sale's ping after the refund's went through: the refund is derived first (no profile
    yet), then the sale, which the API now reports refunded. The customer has spent nothing."""
    bought, sale_rows = gumroad.emit("first_purchase", product_id="brushes")  # paid: refundable
    _, refund_rows = gumroad.emit("refund", sale_id=bought["sale_id"])
    assert bought["price"] > 0
    insert_in_order(store, *refund_rows, *sale_rows)

    @dataclass
    class Verifying:
        async def gumroad(self, connection: str) -> GumroadLink | None:
            return GumroadLink(client)

    report = await Deriver(store, Verifying()).run_once()
    assert report.derived == 2
    profile = store.get_profile("gumroad", bought["email"])
    assert profile is not None and profile.purchases == 1
    assert profile.lifetime_value_cents == 0 and "paying" not in profile.segments
    # Its refund, derived again (a replay), takes nothing more off.
    _, again = gumroad.emit("repeat_purchase", email=bought["email"], product_id="brushes")
    insert_in_order(store, *again)
    await Deriver(store, Verifying()).run_once()
    profile = store.get_profile("gumroad", bought["email"])
    assert profile is not None and profile.purchases == 2 and profile.lifetime_value_cents > 0


class PausingStore(Store):
    """A store whose next write transaction, once its body has run, waits for `go` before it commits."""

    paused = threading.Event()
    go = threading.Event()
    armed = False

    @contextmanager
    def transaction(self, *, relaxed: bool = False) -> Iterator[Tx]:
        pause, self.armed = self.armed, False
        with super().transaction(relaxed=relaxed) as tx:
            yield tx
            if pause:
                self.paused.set()
                assert self.go.wait(20), "never told to commit"


def waiting_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )).scalar_one())


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
async def test_two_derivers_on_one_new_customer_take_turns(migrated: Engine) -> None:
    """Deriver A holds the customer's first sale, uncommitted; deriver B (another process, a larger batch)
    derives the second sale meanwhile. B must wait for A: one customer.created, both sales counted."""
    first_store, second_store = PausingStore(migrated), Store(migrated)
    try:
        insert_in_order(first_store, sale("c1", "ada@example.com", connection=SHOP),
                        sale("c2", "ada@example.com", connection=SHOP))
        async with create_client("http://127.0.0.1:9", allowed_hosts=("127.0.0.1",), timeout=2) as dead:
            access = Access(GumroadClient(dead, Secret("x" * 20), base_url="http://127.0.0.1:9"))
            a = Deriver(first_store, access, config=DeriverConfig(batch_size=1))
            b = Deriver(second_store, access, config=DeriverConfig(batch_size=10))
            first_store.armed = True
            first_store.paused.clear()
            first_store.go.clear()
            held = asyncio.ensure_future(a.run_once())
            assert await asyncio.to_thread(first_store.paused.wait, 20)
            second = asyncio.ensure_future(b.run_once())
            deadline = asyncio.get_running_loop().time() + 20
            while not await asyncio.to_thread(waiting_on_a_lock, migrated):
                assert not second.done() or (await second).derived == 0, "B derived without waiting for A"
                assert asyncio.get_running_loop().time() < deadline, "B never reached the customer's lock"
                await asyncio.sleep(0.02)
            first_store.go.set()
            assert (await held).derived == 1
            assert (await second).derived == 1
        profile = second_store.get_profile(SHOP, "ada@example.com")
        assert profile is not None and profile.purchases == 2
        created = [r for r in second_store.runs(limit=50) if r.event_type == "customer.created"]
        notes = [event_row(second_store, i).note for i in (1, 2)]
        assert sum("customer.created" in (n or "") for n in notes) == 1, notes
        assert len(created) <= 1
    finally:
        first_store.close()
        second_store.close()


async def test_two_derivers_at_once_derive_each_customer_once(store: Store, access: Access) -> None:
    """Two derivers (as two `serve` processes would) over the same events: each customer is created once and
    every sale counted once, whichever deriver took it."""
    customers = [f"c{i}@example.com" for i in range(8)]
    insert_in_order(store, *(sale(f"p{n}-{i}", email, connection=SHOP) for n in range(5)
                             for i, email in enumerate(customers)))
    config = DeriverConfig(batch_size=7)
    first, second = Deriver(store, access, config=config), Deriver(store, access, config=config)
    for _ in range(20):
        done = await asyncio.gather(first.run_once(), second.run_once())
        if not any(r.handled for r in done):
            break
    notes = [e.note or "" for e in (event_row(store, i) for i in range(1, 41))]
    assert sum("customer.created" in n for n in notes) == len(customers)
    for email in customers:
        profile = store.get_profile(SHOP, email)
        assert profile is not None and profile.purchases == 5


async def test_an_event_no_workflow_handles_is_marked_derived_once(store: Store, access: Access) -> None:
    [stored] = insert_in_order(store, sale("n1", "nobody@example.com", connection=SHOP))
    deriver = Deriver(store, access)
    assert (await deriver.run_once()).derived == 1
    assert event_row(store, stored.id).status is EventStatus.DERIVED
    assert (await deriver.run_once()).handled == 0  # not picked up again


def test_segments_stored_in_another_order_are_no_change() -> None:
    now = datetime(2024, 5, 1, tzinfo=UTC)
    rules = (SegmentRule(name="paying", min_lifetime_value_cents=1),
             SegmentRule(name="active", active_within_days=30))
    profile = CustomerProfile(email="ada@example.com", first_seen_at=now - timedelta(days=1),
                              lifetime_value_cents=500, purchase_count=1, segments=("active", "paying"))
    refreshed, event = refresh_segments(profile, rules, now, inbound_id="1")
    assert event is None and set(refreshed.segments) == {"active", "paying"}


async def test_a_workflow_disabled_while_its_events_are_verified_queues_nothing(
        store: Store, access: Access) -> None:
    """The seller turns a workflow off while the pass is reading Gumroad back: the pass must not queue it."""
    install_templates(store)
    [stored] = insert_in_order(store, sale("w1", "wendy@example.com", connection=SHOP))
    names = [w.name for w in store.list_workflows(enabled_only=True)]

    @dataclass
    class DisablingAccess:
        async def gumroad(self, connection: str) -> GumroadLink | None:
            for name in names:
                await asyncio.to_thread(store.set_workflow_enabled, name, enabled=False)
            return await access.gumroad(connection)

    report = await Deriver(store, DisablingAccess()).run_once()
    assert report.derived == 1 and report.runs == 0 and report.jobs == 0
    assert event_row(store, stored.id).status is EventStatus.DERIVED
