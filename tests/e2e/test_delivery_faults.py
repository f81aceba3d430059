"""Delivery under faults: workers against the Snapshots sandbox over real HTTP, on real databases, and
`snapbridge worker` as a child process stopped with signals. Our own database lost mid-delivery (a local action,
a connection lookup, a rate-limit token) is retried, never a dead letter; a credential rotated while jobs are
queued is used by the next try; a NOTIFY lost while LISTEN reconnects does not wait for the idle poll; signals
with a request in flight, a lost /events/batch answer and a removed connection end each job once.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from test_pipeline_support import ROOT, connect_all, fresh_database, wait_for
from test_worker_support import (
    ALL_SCOPES,
    CONNECTION,
    Job,
    event_job,
    make_worker,
    queue_single_steps,
    save_connection,
    upsert_job,
)

from snapbridge.runtime import Worker
from snapbridge.sandbox import Sandboxes, start_sandboxes
from snapbridge.sandbox.journal import JournalEntry
from snapbridge.sandbox.snapshots import SandboxKey
from snapbridge.security import Vault
from snapbridge.store import (
    ConnectionStore,
    JobStatus,
    NewJob,
    NewRun,
    Store,
    migrate,
    open_engine,
)

UNFINISHED = (JobStatus.QUEUED.value, JobStatus.LEASED.value)


@dataclass
class Rig:
    """One store with a Snapshots connection on a fresh sandbox key."""

    store: Store
    sandboxes: Sandboxes
    vault: Vault
    key: SandboxKey
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    def connect(self, key: SandboxKey) -> None:
        save_connection(self.store, self.vault, self.sandboxes.snapshots_url, key.key)
        self.key = key

    def worker(self, name: str, *, cache_seconds: float = 0.0, rand: Callable[[], float] = lambda: 0.0,
               store: Store | None = None, **overrides: object) -> Worker:
        return make_worker(store or self.store, self.vault, name, cache_seconds=cache_seconds, rand=rand,
                           **overrides)

    def enqueue(self, jobs: Sequence[Job], *, connection: str = CONNECTION) -> list[int]:
        """One single-step run per (action, input, ordering key), in order; the job ids."""
        prefix = f"review-{self.tag}-{uuid.uuid4().hex[:8]}"
        return [q.job_id for q in queue_single_steps(self.store, jobs, key_prefix=prefix, connection=connection,
                                                     workflow="review")]

    def upsert(self, suffix: str, **values: object) -> Job:
        return upsert_job(f"c-{self.tag}-{suffix}", **values)

    def event(self, suffix: str) -> Job:
        return event_job(f"e-{self.tag}-{suffix}", n=suffix)

    def journal(self, path: str | None = None) -> list[JournalEntry]:
        return [e for e in self.sandboxes.snapshots.requests(path=path) if e.api_key == self.key.fingerprint]

    def statuses(self, ids: Sequence[int]) -> dict[int, str]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, status FROM jobs")).all()
        return {int(r.id): str(r.status) for r in rows if int(r.id) in ids}


@pytest.fixture
def rig(migrated: Engine, sandboxes: Sandboxes, tmp_path: Path) -> Iterator[Rig]:
    store = Store(migrated)
    made = Rig(store, sandboxes, Vault.open(tmp_path / "secret.key"), sandboxes.snapshots.create_key(ALL_SCOPES))
    made.connect(made.key)
    try:
        yield made
    finally:
        sandboxes.snapshots.clear_faults()
        store.close()


async def until(condition: Callable[[], Any], within: float, what: str) -> Any:
    """Poll `condition` (in a thread: it may read the database) until it is truthy."""
    deadline = time.monotonic() + within
    while True:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)


async def stop(worker: Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    await task
    await worker.runner.aclose()


def ended(rig: Rig, ids: Sequence[int]) -> Callable[[], bool]:
    return lambda: all(s not in UNFINISHED for s in rig.statuses(ids).values())


def blocked_by(conn: Connection, locker: int) -> list[int]:
    """Backends waiting for a lock the session `locker` holds."""
    rows = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE :locker = ANY(pg_blocking_pids(pid))"),
                        {"locker": locker})
    found = [int(pid) for pid in rows.scalars()]
    conn.rollback()  # pg_stat_activity is read once per transaction: the next call must see it anew
    return found


async def terminate_the_first_waiter(engine: Engine, table: str, work: Callable[[], object]) -> None:
    """Lock `table` in another session, run `work` (it starts a worker), and cut the database connection of the
    first backend that waits for the lock, as a PostgreSQL restart, a failover or a proxy would; then unlock."""
    with engine.connect() as locker, engine.connect() as admin:
        locker.execute(sa.text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        pid = locker.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        work()
        (waiter, *_) = await until(lambda: blocked_by(admin, pid), 10, f"a worker waiting for {table}")
        admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": waiter})
        admin.commit()
        locker.rollback()


# ---- a database connection lost during one job ---------------------------------------------------------------


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
async def test_a_local_action_whose_database_connection_is_lost_is_retried_not_dead(rig: Rig) -> None:
    email = f"lost-{rig.tag}@example.com"
    ids = rig.enqueue([("snapbridge.profiles.update", {"email": email, "plan": "pro"}, f"customer:{email}")],
                      connection="gumroad")
    worker = rig.worker("w1")
    tasks: list[asyncio.Task[None]] = []
    await terminate_the_first_waiter(rig.store.engine, "customer_profiles",
                                     lambda: tasks.append(asyncio.create_task(worker.run())))
    try:
        await until(ended(rig, ids), 20, "the profile job to end")
    finally:
        await stop(worker, tasks[0])
    assert rig.store.dead_letters() == [], [d.reason for d in rig.store.dead_letters()]
    assert rig.statuses(ids) == {ids[0]: JobStatus.SUCCEEDED.value}


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
@pytest.mark.parametrize("shape", ["single", "batch"])
async def test_a_connection_lookup_that_loses_the_database_is_retried_not_dead(rig: Rig, shape: str) -> None:
    jobs = [rig.upsert("lookup", plan="pro")] if shape == "single" else [rig.event(str(i)) for i in range(3)]
    ids = rig.enqueue(jobs)
    worker = rig.worker("w1", batch_size=10)
    tasks: list[asyncio.Task[None]] = []
    await terminate_the_first_waiter(rig.store.engine, "connections",
                                     lambda: tasks.append(asyncio.create_task(worker.run())))
    try:
        await until(ended(rig, ids), 20, "the jobs to end")
    finally:
        await stop(worker, tasks[0])
    assert [d.reason for d in rig.store.dead_letters()] == []
    assert set(rig.statuses(ids).values()) == {JobStatus.SUCCEEDED.value}


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
@pytest.mark.parametrize("shape", ["single", "batch"])
async def test_a_rate_limit_token_that_loses_the_database_is_retried_not_dead(rig: Rig, shape: str) -> None:
    jobs = [rig.upsert("token", plan="pro")] if shape == "single" else [rig.event(str(i)) for i in range(3)]
    ids = rig.enqueue(jobs)
    worker = rig.worker("w1", batch_size=10)
    tasks: list[asyncio.Task[None]] = []
    await terminate_the_first_waiter(rig.store.engine, "rate_buckets",
                                     lambda: tasks.append(asyncio.create_task(worker.run())))
    try:
        await until(ended(rig, ids), 20, "the jobs to end")
    finally:
        await stop(worker, tasks[0])
    assert [d.reason for d in rig.store.dead_letters()] == []
    assert set(rig.statuses(ids).values()) == {JobStatus.SUCCEEDED.value}


# ---- connections changed while jobs wait ---------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
async def test_a_rotated_credential_is_used_by_the_next_job(rig: Rig) -> None:
    without = rig.sandboxes.snapshots.create_key([s for s in ALL_SCOPES if s != "customers.write"])
    rig.connect(without)
    worker = rig.worker("w1", cache_seconds=60.0)  # as run_service builds Connections (the default)
    task = asyncio.create_task(worker.run())
    try:
        first = rig.enqueue([rig.upsert("before", plan="pro")])
        await until(ended(rig, first), 10, "the job sent with the key missing the scope to end")
        assert rig.statuses(first) == {first[0]: JobStatus.DEAD.value}
        rig.connect(rig.sandboxes.snapshots.create_key(ALL_SCOPES))  # the fix: a key with the scope
        second = rig.enqueue([rig.upsert("after", plan="pro")])
        await until(ended(rig, second), 10, "the job queued after the rotation to end")
    finally:
        await stop(worker, task)
    assert rig.statuses(second) == {second[0]: JobStatus.SUCCEEDED.value}, rig.store.dead_letters()[0].reason


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
async def test_a_job_whose_connection_was_removed_while_queued_dies_saying_so_and_replays_once_reconnected(
        rig: Rig) -> None:
    ids = rig.enqueue([rig.upsert("removed", plan="pro")])
    assert ConnectionStore(rig.store.engine).remove(CONNECTION)
    worker = rig.worker("w1")
    task = asyncio.create_task(worker.run())
    try:
        await until(ended(rig, ids), 10, "the job to end")
        (dead,) = rig.store.dead_letters()
        assert f"no connection named {CONNECTION!r}" in dead.reason and "replay" in dead.reason
        assert rig.journal() == []
        rig.connect(rig.key)
        assert rig.store.replay(job_ids=ids).queued == 1
        await until(lambda: rig.statuses(ids)[ids[0]] == JobStatus.SUCCEEDED.value, 10, "the replay")
    finally:
        await stop(worker, task)
    assert len(rig.journal()) == 1


# ---- batches -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
async def test_a_batch_whose_answer_is_lost_is_retried_member_by_member_and_every_event_lands_once(
        rig: Rig) -> None:
    # Real jitter: the members' retries fall at different times, so they go out alone or in other batches
    # (other batch keys); the event ids make those duplicates, never a 409, a 422 or a dead letter.
    events = [rig.event(str(i)) for i in range(6)]
    ids = rig.enqueue(events)
    rig.sandboxes.snapshots.lose_next_response("POST", "/events/batch")
    worker = rig.worker("w1", batch_size=10, rand=random.Random(7).random, base_delay=timedelta(seconds=0.3))
    task = asyncio.create_task(worker.run())
    try:
        await until(ended(rig, ids), 20, "every event to be delivered")
    finally:
        await stop(worker, task)
    assert rig.store.dead_letters() == []
    assert set(rig.statuses(ids).values()) == {JobStatus.SUCCEEDED.value}
    first = rig.journal("/events/batch")[0]
    assert first.status == 200  # applied, then the connection was reset
    answered = [e for e in rig.journal() if e is not first]
    assert answered and all(e.status in (200, 201) for e in answered), [(e.path, e.status) for e in answered]
    state = rig.sandboxes.snapshots._state
    with state.lock:
        stored = [eid for (_, eid) in state.events if eid.startswith(f"e-{rig.tag}-")]
    assert sorted(stored) == sorted(str(values["event_id"]) for _, values, _ in events)


# ---- stopping with a request in flight -------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
async def test_a_stop_past_the_grace_period_releases_the_job_in_flight_and_it_is_written_once(rig: Rig) -> None:
    ids = rig.enqueue([rig.upsert("inflight", plan="pro")])
    customer = f"c-{rig.tag}-inflight"
    rig.sandboxes.snapshots.set_faults(latency_ms=1500)
    worker = rig.worker("w1", grace_seconds=0.2)
    task = asyncio.create_task(worker.run())
    await until(lambda: rig.statuses(ids)[ids[0]] == JobStatus.LEASED.value, 10, "the claim")
    started = time.monotonic()
    await stop(worker, task)
    assert time.monotonic() - started < 1.4, "the stop waited for the answer, not the grace period"
    assert worker.stats.released == 1
    with rig.store.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, leased_by, lease_expires_at, attempts FROM jobs WHERE id = :id"),
                           {"id": ids[0]}).one()
    assert (row.status, row.leased_by, row.lease_expires_at, row.attempts) == ("queued", None, None, 0)
    rig.sandboxes.snapshots.clear_faults()
    again = rig.worker("w2")
    task = asyncio.create_task(again.run())
    try:
        await until(ended(rig, ids), 10, "the released job to be delivered")
    finally:
        await stop(again, task)
    assert rig.statuses(ids) == {ids[0]: JobStatus.SUCCEEDED.value}
    # The abandoned request may still be applied by the server: the same key makes one of the two a replay.
    await until(lambda: len(rig.journal(f"/customers/{customer}")) >= 1, 5, "the requests to be journaled")
    assert rig.sandboxes.snapshots.writes_to(customer) == 1


@pytest.fixture
def boxes() -> Iterator[Sandboxes]:
    started = start_sandboxes(seed=23, time_factor=0.01)
    try:
        yield started
    finally:
        started.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signals", [("SIGTERM",), ("SIGTERM", "SIGTERM"), ("SIGINT",), ("SIGTERM", "SIGINT")])
def test_snapbridge_worker_signalled_with_a_request_in_flight_finishes_it_once_and_exits_0(
        boxes: Sandboxes, tmp_path: Path, signals: tuple[str, ...]) -> None:
    setup = connect_all(tmp_path, f"sqlite:///{tmp_path / 'snapbridge.db'}", boxes, verify_by_fetch=False)
    engine = open_engine(setup.env["SNAPBRIDGE_DATABASE_URL"])
    store = Store(engine)
    log = tmp_path / "worker.log"
    try:
        (connection,) = [r.name for r in ConnectionStore(engine).list() if r.app == "snapshots"]
        with log.open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "snapbridge", "worker"], env=setup.env, stdout=out,
                                    stderr=out, cwd=ROOT)
        try:
            wait_for(lambda: "Ctrl+C" in log.read_text(errors="replace") or proc.poll() is not None, 30,
                     "the worker to start")
            assert proc.poll() is None, log.read_text(errors="replace")
            boxes.snapshots.set_faults(latency_ms=1500)  # well inside the 10 s grace period
            customer = f"sig-{uuid.uuid4().hex[:8]}"
            now = datetime.now(UTC)
            with store.transaction() as tx:
                run_id = tx.create_run(NewRun("review", None, "purchase", customer, now))
                tx.enqueue([NewJob(run_id=run_id, step_index=0, step_id="s0", action="snapshots.customers.upsert",
                                   connection=connection, ordering_key=f"customer:{customer}",
                                   idempotency_key=customer, input={"customer_id": customer, "plan": "pro"})],
                           now=now)

            def status() -> tuple[str, str | None]:
                with engine.connect() as conn:
                    row = conn.execute(sa.text("SELECT status, leased_by FROM jobs")).one()
                return str(row.status), row.leased_by

            wait_for(lambda: status()[0] == JobStatus.LEASED.value, 30, "the worker to claim the job", every=0.01)
            for name in signals:
                proc.send_signal(getattr(signal, name))
                time.sleep(0.05)  # the second signal comes while the first one's drain is under way
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = log.read_text(errors="replace")
        assert code == 0, text[-2000:]
        assert "Traceback" not in text, text[-2000:]
        assert status() == (JobStatus.SUCCEEDED.value, None), text[-2000:]
        sent = [e for e in boxes.snapshots.requests(path=f"/customers/{customer}")]
        assert len(sent) == 1 and sent[0].status in (200, 201), [(e.status, e.replayed) for e in sent]
    finally:
        boxes.snapshots.clear_faults()
        store.close()
        engine.dispose()


# ---- PostgreSQL wake-ups -------------------------------------------------------------------------------------


WORKER_APP = "review-listen-worker"  # the worker's own engine names its backends, to watch them


def listeners(conn: Connection) -> set[int]:
    rows = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN snapbridge_jobs' "
                                "AND application_name = :app"), {"app": WORKER_APP})
    found = {int(pid) for pid in rows.scalars()}
    conn.rollback()  # pg_stat_activity is read once per transaction
    return found


def waiting_for_a_notify(conn: Connection) -> bool:
    """The worker's loop sleeps: its backends are idle and the newest statement ended a read (the pool's
    ROLLBACK after Worker._idle asked when a job falls due, the last thing it does before it waits), not a
    claim's COMMIT."""
    rows = conn.execute(sa.text(
        "SELECT state, query FROM pg_stat_activity WHERE application_name = :app "
        "AND query <> 'LISTEN snapbridge_jobs' ORDER BY query_start DESC"), {"app": WORKER_APP}).all()
    conn.rollback()
    return bool(rows) and all(r.state == "idle" for r in rows) and rows[0].query == "ROLLBACK"


async def test_a_job_enqueued_while_the_listen_connection_is_lost_is_claimed_without_waiting_for_the_idle_poll(
        sandboxes: Sandboxes, tmp_path: Path) -> None:
    # A database of its own: NOTIFY channels are per database, and other stores' NOTIFYs would wake the worker.
    with fresh_database("postgresql", tmp_path) as url:
        engine = open_engine(url)
        own = sa.create_engine(engine.url, pool_pre_ping=True, connect_args={"application_name": WORKER_APP})
        migrate(engine)
        rig = Rig(Store(engine), sandboxes, Vault.open(tmp_path / "secret.key"),
                  sandboxes.snapshots.create_key(ALL_SCOPES))
        rig.connect(rig.key)
        store = Store(own)
        worker = rig.worker("w1", idle_seconds=30.0, store=store)
        task = asyncio.create_task(worker.run())
        try:
            with engine.connect() as admin:
                (pid,) = await until(lambda: listeners(admin), 10, "the worker to LISTEN")
                await until(lambda: waiting_for_a_notify(admin), 10, "the worker to wait for a NOTIFY")
                admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                admin.commit()
                # Terminating is asynchronous: until the backend is gone it may still take a NOTIFY.
                await until(lambda: pid not in listeners(admin), 10, "the LISTEN backend to end")
                ids = rig.enqueue([rig.upsert("woken")])  # as a receiver process would (its commit NOTIFYs)
                assert listeners(admin) == set(), "LISTEN came back before the NOTIFY: nothing to show"
                await until(ended(rig, ids), 5, "the job to be delivered long before the 30 s idle poll")
        finally:
            await stop(worker, task)
            store.close()
            rig.store.close()
            own.dispose()
            engine.dispose()
