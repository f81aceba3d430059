"""The whole pipeline (`snapbridge serve` as a child process) under faults: the store locked, a webhook never
delivered, a dead letter replayed twice. On SQLite and on a fresh PostgreSQL database; the sandboxes are private
to each test. (A PostgreSQL server that stops altogether: test_pg_outage.)"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_pipeline_support import FORM, Service, Setup, connect_all, fresh_database, run_cli, sale_ping, wait_for
from test_receiver_support import write_lock

from snapbridge.connectors.snapshots import parse_webhook
from snapbridge.runtime import snapshots_dedupe_key
from snapbridge.sandbox import Sandboxes, start_sandboxes
from snapbridge.store import Store, open_engine

TIME_FACTOR = 0.01


@pytest.fixture
def boxes() -> Iterator[Sandboxes]:
    started = start_sandboxes(seed=11, time_factor=TIME_FACTOR)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def setup(boxes: Sandboxes, database_url: str, tmp_path: Path) -> Setup:
    return connect_all(tmp_path, database_url, boxes, verify_by_fetch=False)


@pytest.fixture
def service(setup: Setup, tmp_path: Path) -> Iterator[Service]:
    served = Service(setup, "--no-pollers", log=tmp_path / "serve.log")
    served.start()
    try:
        yield served
    finally:
        assert served.stop() == 0, served.tail()


def accepted(boxes: Sandboxes, event_id: str) -> bool:
    state = boxes.snapshots._state
    with state.lock:
        return any(found == event_id for (_, found) in state.events)


def post(setup: Setup, body: bytes) -> int:
    return httpx.post(setup.hook_url, content=body, headers={"Content-Type": FORM}, timeout=15).status_code


@pytest.mark.timeout(120)
def test_a_locked_store_answers_503_and_429_never_200_and_delivery_resumes(
    boxes: Sandboxes, setup: Setup, service: Service
) -> None:
    """SQLite: another process holds the write lock, so a commit fails at once. PostgreSQL: another session
    locks inbound_events, so the commit waits; the receiver answers at its commit timeout, and the event that
    waited commits once the lock is gone, which makes the senders' retries duplicates, answered 200."""
    snapshots = boxes.snapshots
    hook = f"http://127.0.0.1:{setup.port}/hooks/snapshots"
    snapshots.subscribe(hook)
    snapshots.set_webhook_retry_interval(100)  # 1 s between the sender's tries at this time factor
    api = httpx.Client(base_url=boxes.snapshots_url, timeout=10,
                       headers={"Authorization": f"Bearer {setup.snapshots_key.key}", "Version": "2021-07-28"})
    body = sale_ping(setup.seller_id, "locked-sale-1", "locked.buyer@faults.example", 1)

    def ours() -> list[tuple[str, int | None]]:
        return [(d.webhook_id, d.status) for d in snapshots.webhook_deliveries() if d.url == hook]

    def key_of(webhook_id: str) -> str:
        body = next(d.body for d in snapshots.webhook_deliveries() if d.webhook_id == webhook_id)
        return snapshots_dedupe_key(parse_webhook(body))

    engine = open_engine(setup.env["SNAPBRIDGE_DATABASE_URL"])
    try:
        with write_lock(engine):
            assert post(setup, body) == 503
            made = api.post("/locations", json={"name": "Made while the store was locked"})
            assert made.status_code in (200, 201), made.text
            wait_for(ours, timeout=20, what="the Snapshots webhook to reach the locked receiver")
            assert post(setup, body) == 503
            while_locked = ours()
        assert while_locked and {status for _, status in while_locked} == {429}, while_locked
        webhook_id = while_locked[0][0]
        assert post(setup, body) == 200  # Gumroad's retry after the outage
        wait_for(lambda: (webhook_id, 200) in ours(), timeout=30, what="the Snapshots API's retry to be accepted")
        wait_for(lambda: accepted(boxes, "gumroad-sale-locked-sale-1"), timeout=30,
                 what="the sale to be delivered after the lock was released")
        tries = [status for found, status in ours() if found == webhook_id]
        assert tries[-1] == 200 and tries.count(200) == 1 and set(tries[:-1]) == {429}, tries
        with engine.connect() as conn:
            keys = Counter(row[0] for row in conn.exec_driver_sql("SELECT dedupe_key FROM inbound_events"))
    finally:
        engine.dispose()
        api.close()
    assert keys["gumroad:sale:locked-sale-1"] == 1 and keys[key_of(webhook_id)] == 1, keys


@pytest.mark.timeout(120)
def test_the_poller_heals_a_webhook_that_was_never_delivered(
    boxes: Sandboxes, database_url: str, tmp_path: Path
) -> None:
    # Real sales, so verify-by-fetch stays on; no Ping URL and no subscription: only the poller can see them.
    setup = connect_all(tmp_path, database_url, boxes, verify_by_fetch=True)
    assert boxes.gumroad.ping_url is None
    interval = 2.0
    served = Service(setup, "--poll-interval", str(interval), log=tmp_path / "serve.log")
    served.start()
    try:
        engine = open_engine(setup.env["SNAPBRIDGE_DATABASE_URL"])
        store = Store(engine)
        try:
            # The first poll reads the overlap window's seeded sales and moves the cursor; then a sale happens.
            wait_for(lambda: store.get_cursor("gumroad:sales:gumroad"), timeout=30, what="the first Gumroad poll",
                     every=0.1)
        finally:
            store.close()
            engine.dispose()
        sale = boxes.gumroad.emit("first_purchase")
        assert boxes.gumroad.wait_idle(10)
        assert all(d.status is None or not d.url for d in boxes.gumroad.deliveries())  # nowhere to post
        sold = time.monotonic()
        wait_for(lambda: accepted(boxes, f"gumroad-sale-{sale['sale_id']}"), timeout=3 * interval + 20,
                 what="the poller to heal the missed webhook")
        healed = time.monotonic() - sold
    finally:
        assert served.stop() == 0, served.tail()
    print(f"\nmissed webhook healed {healed:.1f} s after the sale (poll interval {interval} s)")


@pytest.mark.timeout(120)
def test_replaying_a_dead_letter_twice_delivers_it_once(
    boxes: Sandboxes, setup: Setup, tmp_path: Path
) -> None:
    state = boxes.snapshots._state
    key = setup.snapshots_key
    with state.lock:
        del state.keys[key.key]  # the seller revoked the key: every write is a 401, a permanent failure
    served = Service(setup, "--no-pollers", log=tmp_path / "serve.log")
    served.start()
    try:
        assert post(setup, sale_ping(setup.seller_id, "replayed-sale-1", "replay.buyer@faults.example", 1)) == 200
        dead = wait_for(lambda: run_cli(setup.env, "dead-letters").stdout.count("\n") >= 2, timeout=60,
                        what="the revoked key's writes to become dead letters", every=0.5)
        assert dead
    finally:
        assert served.stop() == 0, served.tail()
    with state.lock:
        state.keys[key.key] = key  # fixed: the key works again
    first = run_cli(setup.env, "replay", "--all")
    second = run_cli(setup.env, "replay", "--all")
    assert first.returncode == 0 and "queued" in first.stdout, first.stdout + first.stderr
    assert second.returncode == 1 and "there are no dead letters to replay" in second.stderr, \
        second.stdout + second.stderr
    served.start()
    try:
        def both() -> bool:
            return all(accepted(boxes, f"gumroad-{kind}-replayed-sale-1") for kind in ("sale", "activity"))

        wait_for(both, timeout=60, what="the replayed sale and activity events")
        third = run_cli(setup.env, "replay", "--all")
        assert third.returncode == 1, third.stdout
    finally:
        assert served.stop() == 0, served.tail()
    writes = [e for e in boxes.snapshots.journal.entries()
              if e.api_key == key.fingerprint and e.method != "GET" and e.status < 300 and not e.replayed]
    applied = Counter(e.idempotency_key for e in writes)
    assert applied and max(applied.values()) == 1, applied
