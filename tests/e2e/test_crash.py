"""Crash test: `snapbridge serve` SIGKILLed every 0.5-3 s while a retrying sender posts thousands of unique
Gumroad pings. Nothing acknowledged is lost, nothing is written twice, each customer's writes keep their order,
and the database is intact. On SQLite and on a fresh PostgreSQL database.

The pings are forged (built with the Gumroad sandbox's form encoder for the connected seller), so the Gumroad
connection is made with `--no-verify-by-fetch`; verify-by-fetch itself is covered by the deriver tests.
`SNAPBRIDGE_CRASH_EVENTS` changes the number of pings (default 2,000).
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from test_pipeline_support import FORM, Service, Setup, connect_all, fresh_database, sale_ping, wait_for

from snapbridge.sandbox import Sandboxes, start_sandboxes
from snapbridge.store import JobStatus, Store, open_engine
from snapbridge.store.schema import inbound_events

EVENTS = int(os.environ.get("SNAPBRIDGE_CRASH_EVENTS", "2000"))
CUSTOMERS = max(1, EVENTS // 10)  # ten sales each, so order per customer means something
LANES = 16  # concurrent sender connections; one customer always goes through the same lane
KILL_EVERY = (0.5, 3.0)
DRAIN_SECONDS = 150.0


@pytest.fixture
def boxes() -> Iterator[Sandboxes]:
    """Private sandboxes: this test reads the Snapshots sandbox's whole state."""
    started = start_sandboxes(seed=7, time_factor=0.01)
    try:
        yield started
    finally:
        started.stop()


@dataclass(frozen=True)
class Sale:
    number: int  # the order this customer's sales happened in (global, increasing)
    sale_id: str
    email: str


@dataclass
class Sender:
    """Posts every sale until it is answered 2xx; a customer's next sale only after the previous one's 2xx."""

    url: str
    seller_id: str
    sales: list[Sale]
    acked: list[str] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    done: threading.Event = field(default_factory=threading.Event)

    async def _lane(self, client: httpx.AsyncClient, mine: list[Sale], deadline: float) -> None:
        for sale in mine:
            body = sale_ping(self.seller_id, sale.sale_id, sale.email, sale.number)
            while True:
                assert time.monotonic() < deadline, "the sender could not deliver every ping in time"
                try:
                    answer = await client.post(self.url, content=body, headers={"Content-Type": FORM})
                except httpx.HTTPError as exc:
                    self.failures[type(exc).__name__] += 1
                else:
                    if 200 <= answer.status_code < 300:
                        self.acked.append(sale.sale_id)
                        break
                    self.failures[str(answer.status_code)] += 1
                await asyncio.sleep(0.05)  # the service is down or restarting: ask again shortly

    async def run(self, seconds: float) -> None:
        lanes: list[list[Sale]] = [[] for _ in range(LANES)]
        emails = sorted({s.email for s in self.sales})
        lane_of = {email: index % LANES for index, email in enumerate(emails)}
        for sale in self.sales:
            lanes[lane_of[sale.email]].append(sale)
        deadline = time.monotonic() + seconds
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                await asyncio.gather(*(self._lane(client, mine, deadline) for mine in lanes))
        finally:
            self.done.set()


def kill_repeatedly(service: Service, sender: Sender, rng: random.Random, errors: list[BaseException]) -> None:
    """SIGKILL the service 0.5-3 s after each start while the sender runs (and once more after), restart it."""
    try:
        extra_kill = True
        while True:
            finished = sender.done.wait(rng.uniform(*KILL_EVERY))
            if finished and not extra_kill:
                return
            if finished:
                extra_kill = False  # one more kill while the queue drains, with workers mid-flight
            service.kill()
            service.start()
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def sandbox_events(boxes: Sandboxes, company_id: str) -> list[str]:
    """Event ids the Snapshots sandbox accepted, in the order it accepted them."""
    state = boxes.snapshots._state
    with state.lock:
        return [event_id for (company, event_id) in state.events if company == company_id]


def sandbox_locations(boxes: Sandboxes) -> dict[str, list[str]]:
    """Location ids by external id."""
    state = boxes.snapshots._state
    found: dict[str, list[str]] = defaultdict(list)
    with state.lock:
        for location in state.locations.values():
            if location.external_id:
                found[location.external_id].append(location.location_id)
    return found


@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine_name", ["sqlite", "postgresql"])
def test_serve_killed_repeatedly_loses_nothing_and_doubles_nothing(
    engine_name: str, boxes: Sandboxes, tmp_path: Path
) -> None:
    started = time.monotonic()
    rng = random.Random(f"crash:{engine_name}")
    tag = engine_name[:2]
    emails = [f"buyer{i:04d}.{tag}@crash.example" for i in range(CUSTOMERS)]
    sales = [Sale(n, f"crash-{tag}-{n:05d}", emails[rng.randrange(CUSTOMERS)]) for n in range(EVENTS)]
    with fresh_database(engine_name, tmp_path) as database_url:
        setup: Setup = connect_all(tmp_path, database_url, boxes, verify_by_fetch=False)
        service = Service(setup, "--no-pollers", "--lease-seconds", "5", log=tmp_path / "serve.log")
        service.start()
        sender = Sender(setup.hook_url, setup.seller_id, sales)
        errors: list[BaseException] = []
        killer = threading.Thread(target=kill_repeatedly, args=(service, sender, rng, errors), daemon=True)
        killer.start()
        try:
            asyncio.run(sender.run(seconds=150))
            killer.join(timeout=60)
            assert not errors, errors
            assert not killer.is_alive()
            sent_at = time.monotonic()
            company = setup.snapshots_key.company_id
            expected = {f"gumroad-{kind}-{s.sale_id}" for s in sales for kind in ("sale", "activity")}

            def drained() -> bool:
                return expected <= set(sandbox_events(boxes, company))

            wait_for(drained, timeout=DRAIN_SECONDS, what="every sale's events in the Snapshots sandbox",
                     every=0.2)
            engine = open_engine(database_url)
            store = Store(engine)
            try:
                wait_for(lambda: store.counts()[JobStatus.QUEUED.value] + store.counts()[JobStatus.LEASED.value]
                         == 0, timeout=90, what="the queue to empty", every=0.2)
                counts = store.counts()
                with engine.connect() as conn:
                    stored = set(conn.execute(sa.select(inbound_events.c.dedupe_key)).scalars())
            finally:
                store.close()
                engine.dispose()
            drained_at = time.monotonic()
            assert service.stop() == 0, service.tail()
        finally:
            if service.proc is not None and service.proc.poll() is None:
                service.proc.kill()
                service.proc.wait()

    # Every acknowledged event is stored, exactly the sales sent; every one was delivered.
    assert len(sender.acked) == EVENTS == len(set(sender.acked))
    assert {f"gumroad:sale:{sale_id}" for sale_id in sender.acked} <= stored
    assert counts[JobStatus.DEAD.value] == 0 and counts["events_received"] == 0, counts
    accepted = [e for e in sandbox_events(boxes, company) if e.startswith("gumroad-")]
    assert len(accepted) == len(set(accepted)) == len(expected)

    # Zero duplicate writes: each idempotency key applied once, each customer's location created once.
    ours = [e for e in boxes.snapshots.journal.entries()
            if e.api_key == setup.snapshots_key.fingerprint and e.method != "GET"]
    applied = Counter(e.idempotency_key for e in ours if e.status < 300 and not e.replayed and e.idempotency_key)
    assert [k for k, n in applied.items() if n > 1] == []
    locations = sandbox_locations(boxes)
    buyers = {s.email for s in sales}
    assert {email: len(locations[email]) for email in buyers} == dict.fromkeys(buyers, 1)
    assert all(boxes.snapshots.writes_to(loc) == 1 for email in buyers for loc in locations[email])

    # Per customer, the sandbox accepted their events in the order their sales happened.
    by_id = {s.sale_id: s for s in sales}
    seen: dict[str, list[int]] = defaultdict(list)
    for event_id in accepted:
        sale = by_id[event_id.split("-", 2)[2]]
        seen[sale.email].append(sale.number)
    violations = {email: numbers for email, numbers in seen.items() if numbers != sorted(numbers)}
    assert violations == {}

    if engine_name == "sqlite":
        with sqlite3.connect(tmp_path / "snapbridge.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    print(f"\ncrash test ({engine_name}): {EVENTS} pings, {len(buyers)} customers, {service.kills} SIGKILLs, "
          f"sender retries {dict(sender.failures)}; sent in {sent_at - started:.1f} s, "
          f"drained {drained_at - sent_at:.1f} s later")
