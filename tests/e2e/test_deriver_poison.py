"""An inbound event the deriver cannot process, on SQLite and PostgreSQL. Stored between good events straight
through the store (as if the receiver had let it in), it is rejected with the reason, the events around it are
derived with their jobs, in order, and `run_forever` goes on; a store outage during the pass rejects nothing and
leaves every event pending until the store is back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from test_deriver import event_row, install_templates
from test_receiver_support import write_lock

from snapbridge.config import Settings
from snapbridge.connectors.gumroad import GumroadClient, GumroadConnectionOptions
from snapbridge.errors import SnapbridgeError, StoreUnavailable
from snapbridge.http import create_client
from snapbridge.runtime import Deriver, DeriverConfig, GumroadLink, ServiceOptions, run_service
from snapbridge.security import Secret, Vault
from snapbridge.store import (
    ConnectionRecord,
    ConnectionStore,
    EventSource,
    EventStatus,
    InsertResult,
    NewInboundEvent,
    Store,
    Tx,
    is_sqlite,
    open_engine,
)

SHOP = "shop"
BROKEN = "broken-shop"  # a connection whose lookup raises: a bug in verifying, not a store outage
SALE = Path(__file__).parents[1] / "data" / "gumroad_webhooks" / "sale_minimal.txt"
POISON_EMAIL = "poison\udc00@example.com"  # a lone surrogate: stored as JSON's escape, no driver can send it back


@dataclass
class Access:
    """Gumroad connections that do not verify by fetching; looking up BROKEN fails with a bug."""

    client: GumroadClient

    async def gumroad(self, connection: str) -> GumroadLink | None:
        if connection == BROKEN:
            raise RuntimeError("a bug while looking up the connection")
        return GumroadLink(self.client, GumroadConnectionOptions(verify_by_fetch=False))


@pytest.fixture
async def access() -> AsyncIterator[Access]:
    # Never called: the connections do not verify by fetching.
    async with create_client("http://127.0.0.1:9", allowed_hosts=("127.0.0.1",), timeout=2) as dead:
        yield Access(GumroadClient(dead, Secret("x" * 20), base_url="http://127.0.0.1:9"))


def sale(sale_id: str, email: str, *, connection: str = SHOP) -> NewInboundEvent:
    """A stored Gumroad sale ping, as the receiver stores one."""
    fields = dict(parse_qsl(SALE.read_text().strip(), keep_blank_values=True))
    return NewInboundEvent(source=EventSource.GUMROAD, connection=connection, dedupe_key=f"gumroad:sale:{sale_id}",
                           kind="sale", payload={**fields, "sale_id": sale_id, "email": email},
                           received_at=datetime.now(UTC))


def insert_in_order(store: Store, *events: NewInboundEvent) -> list[InsertResult]:
    """One insert each, so ids follow the order given (a batch is inserted in key order)."""
    return [found for event in events for found in store.insert_events([event])]


def jobs_of(store: Store, event_id: int) -> int:
    """The jobs queued for the runs of one inbound event."""
    return sum(r.steps for r in store.runs(limit=500) if r.inbound_event_id == event_id)


async def eventually(condition: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def impatient(engine: Engine) -> Engine:
    """The same database, whose writes give up after 0.2 s of waiting for a lock: an outage, quickly."""
    if engine.dialect.name == "sqlite":
        return open_engine(str(engine.url), busy_timeout=0.2)
    with engine.connect() as conn:
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    return sa.create_engine(engine.url, pool_pre_ping=True,
                            connect_args={"options": f"-csearch_path={schema} -clock_timeout=200"})


class BlipStore(Store):
    """A store whose next `blips` write transactions meet another connection holding the write lock (a short
    outage, over by the transaction after)."""

    blips = 0

    @contextmanager
    def transaction(self, *, relaxed: bool = False) -> Iterator[Tx]:
        blip, self.blips = self.blips > 0, max(0, self.blips - 1)
        with write_lock(self.engine) if blip else nullcontext(), super().transaction(relaxed=relaxed) as tx:
            yield tx


@contextmanager
def impatient_store(engine: Engine) -> Iterator[BlipStore]:
    made = impatient(engine)
    store = BlipStore(made, write_wait=0.2)
    try:
        yield store
    finally:
        store.close()
        made.dispose()


def task_alive(task: asyncio.Task[None]) -> bool:
    if task.done():
        raise AssertionError(f"run_forever ended: {task.exception()!r}")
    return True


async def test_a_poison_event_is_rejected_and_the_events_around_it_are_derived(
        store: Store, access: Access, caplog: pytest.LogCaptureFixture) -> None:
    install_templates(store)
    first, poison, again, broken, other = insert_in_order(
        store,
        sale("ada-1", "ada@example.com"),
        sale("poison", POISON_EMAIL),
        sale("ada-2", "ada@example.com"),  # the same customer after the poison: derived after her first sale
        sale("broken", "bob@example.com", connection=BROKEN),
        sale("cy-1", "cy@example.com"),
    )
    with caplog.at_level(logging.INFO, logger="snapbridge.runtime.deriver"):
        report = await Deriver(store, access).run_once()
    assert (report.derived, report.rejected, report.waiting) == (3, 2, 0)
    assert report.jobs == sum(jobs_of(store, e.id) for e in (first, again, other)) > 0
    row = event_row(store, poison.id)
    assert row.status is EventStatus.REJECTED
    assert row.note.startswith("cannot derive: UnicodeEncodeError") and "\\udc00" in row.note
    row = event_row(store, broken.id)
    assert row.status is EventStatus.REJECTED and row.note.startswith("cannot derive: RuntimeError")
    assert jobs_of(store, poison.id) == jobs_of(store, broken.id) == 0
    for good in (first, again, other):
        assert event_row(store, good.id).status is EventStatus.DERIVED and jobs_of(store, good.id) > 0
    assert event_row(store, first.id).note.startswith("customer.created")
    assert not event_row(store, again.id).note.startswith("customer.created")  # in order, after the first
    ada = store.get_profile(SHOP, "ada@example.com")
    assert ada is not None and ada.purchases == 2
    lines = [r.getMessage() for r in caplog.records]
    assert f"action=derive_event_rejected event={poison.id} connection={SHOP} error=UnicodeEncodeError" in lines
    assert not any("poison" in line or "ada@" in line for line in lines)  # no payload in the log


async def test_run_forever_goes_on_past_a_poison_event(store: Store, access: Access) -> None:
    install_templates(store)
    before, poison, after = insert_in_order(
        store, sale("before", "before@example.com"), sale("poison", POISON_EMAIL), sale("after", "after@example.com"))
    deriver = Deriver(store, access, config=DeriverConfig(idle_seconds=30))
    stop = asyncio.Event()
    task = asyncio.create_task(deriver.run_forever(stop))
    try:
        await eventually(lambda: task_alive(task) and all(event_row(store, e.id).status is not EventStatus.RECEIVED
                                                          for e in (before, poison, after)),
                         "the first three events to be handled")
        assert event_row(store, poison.id).status is EventStatus.REJECTED
        assert [event_row(store, e.id).status for e in (before, after)] == [EventStatus.DERIVED] * 2
        assert jobs_of(store, before.id) > 0 and jobs_of(store, after.id) > 0
        assert not task.done()
        # Still running: a later event is derived as soon as the deriver is woken.
        [later] = store.insert_events([sale("later", "later@example.com")])
        deriver.wake()
        await eventually(lambda: task_alive(task) and event_row(store, later.id).status is EventStatus.DERIVED,
                         "the later event")
        assert jobs_of(store, later.id) > 0 and not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert task.exception() is None


async def test_a_store_outage_during_the_pass_rejects_nothing(
        store: Store, migrated: Engine, access: Access) -> None:
    install_templates(store)
    events = insert_in_order(
        store, sale("poison", POISON_EMAIL), sale("dee-1", "dee@example.com"), sale("eve-1", "eve@example.com"))
    poison, *good = events
    with impatient_store(migrated) as shaky:
        deriver = Deriver(shaky, access)
        # Another connection holds the write lock: the deriver cannot commit.
        with write_lock(migrated), pytest.raises(StoreUnavailable):
            await deriver.run_once()
        for stored in events:
            row = event_row(store, stored.id)
            assert (row.status, row.note) == (EventStatus.RECEIVED, "")  # pending, to be tried again
        assert store.runs() == []
        report = await deriver.run_once()  # the store is back
    assert (report.derived, report.rejected) == (2, 1)
    assert event_row(store, poison.id).status is EventStatus.REJECTED
    assert all(event_row(store, e.id).status is EventStatus.DERIVED and jobs_of(store, e.id) > 0 for e in good)


async def test_run_forever_waits_out_a_store_outage(
        store: Store, migrated: Engine, access: Access, caplog: pytest.LogCaptureFixture) -> None:
    install_templates(store)
    poison, good = insert_in_order(store, sale("poison", POISON_EMAIL), sale("fay-1", "fay@example.com"))
    stop = asyncio.Event()
    with impatient_store(migrated) as shaky, caplog.at_level(logging.WARNING):
        task = asyncio.create_task(Deriver(shaky, access, config=DeriverConfig(idle_seconds=0.05)).run_forever(stop))
        try:
            with write_lock(migrated):
                await eventually(lambda: task_alive(task) and sum(
                    "action=derive_failed error=StoreUnavailable" in r.getMessage() for r in caplog.records) >= 2,
                    "two passes to fail on the outage")
                assert not task.done()
                assert [event_row(store, e.id).status for e in (poison, good)] == [EventStatus.RECEIVED] * 2
            await eventually(lambda: task_alive(task) and event_row(store, good.id).status is EventStatus.DERIVED,
                             "the good event")
            assert event_row(store, poison.id).status is EventStatus.REJECTED and not task.done()
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert task.exception() is None


async def test_an_outage_while_deriving_one_at_a_time_rejects_nothing(
        store: Store, migrated: Engine, access: Access) -> None:
    """The pass fails on the poison event; deriving one at a time, the first event's transaction meets an outage
    that is over a moment later: it stops there, rejecting neither that event nor the poison."""
    install_templates(store)
    events = insert_in_order(
        store, sale("gus-1", "gus@example.com"), sale("poison", POISON_EMAIL), sale("hal-1", "hal@example.com"))
    first, poison, last = events
    with impatient_store(migrated) as shaky:
        deriver = Deriver(shaky, access)
        shaky.blips = 1
        with pytest.raises(StoreUnavailable):
            await deriver.run_once()
        assert [(event_row(store, e.id).status, event_row(store, e.id).note) for e in events] == [
            (EventStatus.RECEIVED, "")] * 3
        # A pass with nothing to isolate (the first event alone) meets the outage in its one transaction: the same.
        shaky.blips = 1
        with pytest.raises(StoreUnavailable):
            await Deriver(shaky, access, config=DeriverConfig(batch_size=1)).run_once()
        assert (event_row(store, first.id).status, store.runs()) == (EventStatus.RECEIVED, [])
        report = await deriver.run_once()
    assert (report.derived, report.rejected) == (2, 1)
    assert event_row(store, poison.id).status is EventStatus.REJECTED
    assert all(event_row(store, e.id).status is EventStatus.DERIVED for e in (first, last))


async def test_the_service_stops_non_zero_naming_a_part_that_failed(
        migrated: Engine, store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A part that fails stops the whole service, which then raises (the CLI exits 1) instead of returning as
    after Ctrl+C (exit 0). Here the pollers refuse their interval at once, while the deriver runs."""
    vault, records = Vault.open(tmp_path / "key"), ConnectionStore(migrated)
    records.save(ConnectionRecord(name=SHOP, app="gumroad", base_url="http://127.0.0.1:9",
                                  credential=vault.encrypt(Secret("x" * 20), bound_to=f"{SHOP}:credential")))
    settings = Settings(home=tmp_path, database_url="unused://", allowed_hosts=("127.0.0.1",))
    options = ServiceOptions(receiver=False, deriver=True, workers=0, pollers=True, poll_interval_seconds=0)

    def no_app(*_: object) -> None:
        raise AssertionError("no receiver in this service")

    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="snapbridge.runtime.service"), \
            pytest.raises(SnapbridgeError, match="its pollers failed with InvalidInput"):
        await asyncio.wait_for(run_service(settings, store, vault, records, options, stop, make_app=no_app), 20)
    assert stop.is_set()  # every other part was told to stop, and has
    assert [r.getMessage() for r in caplog.records] == [
        "action=service_part_failed part=pollers error=InvalidInput"]


async def test_a_nul_in_an_email_rejects_that_event_and_not_the_next(store: Store, access: Access) -> None:
    # A NUL is kept by the receiver (JSON holds it); PostgreSQL's text columns refuse it when the deriver reads the
    # profile: bad data, so that event is rejected, not an outage that would hold back every later event.
    install_templates(store)
    nul, good = insert_in_order(store, sale("nul", "nu\x00l@example.com"), sale("ivy-1", "ivy@example.com"))
    report = await Deriver(store, access).run_once()
    assert event_row(store, good.id).status is EventStatus.DERIVED and jobs_of(store, good.id) > 0
    if is_sqlite(store.engine):  # SQLite's text holds a NUL: nothing to refuse
        assert event_row(store, nul.id).status is EventStatus.DERIVED
        return
    assert (report.derived, report.rejected) == (1, 1)
    row = event_row(store, nul.id)
    assert row.status is EventStatus.REJECTED and row.note.startswith("cannot derive: InvalidInput")
