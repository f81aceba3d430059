"""Workers delivering real jobs to the Snapshots sandbox over HTTP, on SQLite and PostgreSQL.

Each test has its own API key (the journal is filtered by its fingerprint) and its own entity ids, so the
session-wide sandbox serves every test without cross-talk. Faults are cleared after each test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from test_worker_support import (
    ALL_SCOPES,
    CONNECTION,
    Job,
    event_job,
    make_worker,
    queue_single_steps,
    run_workers,
    save_connection,
    upsert_job,
)

from snapbridge.runtime import (
    PLAN_KEY,
    ActionRunner,
    Connections,
    Limiter,
    Worker,
    batch_idempotency_key,
)
from snapbridge.runtime.actions import SegmentChangedHook
from snapbridge.runtime.jobplan import pack_plan
from snapbridge.sandbox import Sandboxes
from snapbridge.sandbox.journal import JournalEntry
from snapbridge.sandbox.snapshots import SandboxKey
from snapbridge.security import Vault
from snapbridge.store import (
    AttemptOutcome,
    ConnectionStore,
    JobStatus,
    NewJob,
    NewRun,
    RunDetail,
    RunStatus,
    StepDetail,
    Store,
)
from snapbridge.workflows import (
    App,
    CustomerCreatedEvent,
    SegmentChangedEvent,
    event_spec,
    load_template,
    plan_event,
)

PROFILES = "gumroad"  # the connection local steps (the customer profile) run on


@dataclass
class Rig:
    """One store with a Snapshots connection on a fresh sandbox key, and what makes workers for it."""

    store: Store
    sandboxes: Sandboxes
    vault: Vault
    key: SandboxKey
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    def connect(self, key: SandboxKey) -> None:
        """(Re)connect the connection with this key, as `snapbridge connect` would store it."""
        save_connection(self.store, self.vault, self.sandboxes.snapshots_url, key.key)
        self.key = key

    def worker(self, name: str, *, limiter: Limiter | None = None, rand: Callable[[], float] = lambda: 0.0,
               on_segment_changed: SegmentChangedHook | None = None, **overrides: object) -> Worker:
        connections = Connections(ConnectionStore(self.store.engine), self.vault,
                                  allowed_hosts=("127.0.0.1",), cache_seconds=0.0)
        runner = ActionRunner(connections, self.store, on_segment_changed=on_segment_changed)
        return make_worker(self.store, self.vault, name, runner=runner, limiter=limiter, rand=rand, **overrides)

    def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        """One single-step run per (action, input, ordering key), in order; returns their idempotency keys."""
        return [q.idempotency_key for q in queue_single_steps(self.store, jobs, key_prefix=f"test-{self.tag}")]

    def journal(self, *, path: str | None = None, key: SandboxKey | None = None) -> list[JournalEntry]:
        fingerprints = {(key or self.key).fingerprint}
        return [e for e in self.sandboxes.snapshots.requests(path=path) if e.api_key in fingerprints]

    def customer(self, suffix: str) -> str:
        return f"c-{self.tag}-{suffix}"

    def upsert(self, customer: str, **values: object) -> Job:
        return upsert_job(customer, **values)

    def event(self, suffix: str, order: str | None = None) -> Job:
        return event_job(f"e-{self.tag}-{suffix}", order, n=suffix)


@contextmanager
def worker_rig(engine: Engine, sandboxes: Sandboxes, home: Path) -> Iterator[Rig]:
    """A Rig over `engine`, connected to the Snapshots sandbox with every scope; faults cleared after."""
    store = Store(engine)
    key = sandboxes.snapshots.create_key(ALL_SCOPES)
    made = Rig(store, sandboxes, Vault.open(home / "secret.key"), key)
    made.connect(key)
    try:
        yield made
    finally:
        sandboxes.snapshots.clear_faults()
        store.close()


@pytest.fixture
def rig(migrated: Engine, sandboxes: Sandboxes, tmp_path: Path) -> Iterator[Rig]:
    with worker_rig(migrated, sandboxes, tmp_path) as made:
        yield made


def settled(store: Store, count: int, *, dead: int = 0) -> Callable[[], bool]:
    def check() -> bool:
        counts = store.counts()
        return counts[JobStatus.SUCCEEDED.value] == count and counts[JobStatus.DEAD.value] == dead

    return check


def detail(rig: Rig, run_id: int) -> RunDetail:
    found = rig.store.run_detail(run_id)
    assert found is not None
    return found


def last_step(rig: Rig) -> StepDetail:
    """The first step of the newest run."""
    return detail(rig, rig.store.runs(limit=1)[0].id).steps[0]


def writes(rig: Rig, path: str) -> list[JournalEntry]:
    return [e for e in rig.journal(path=path) if e.status < 400 and not e.replayed]


# ---- delivery ------------------------------------------------------------------------------------------


async def test_queued_jobs_are_delivered_exactly_once(rig: Rig) -> None:
    customers = [rig.customer(str(i)) for i in range(12)]
    rig.enqueue([rig.upsert(c, email=f"{c}@example.com", plan="pro") for c in customers])
    worker = rig.worker("w1")
    await run_workers([worker], settled(rig.store, 12))
    for customer in customers:
        assert rig.sandboxes.snapshots.writes_to(customer) == 1
    assert worker.stats.succeeded == 12 and worker.stats.retried == 0
    step = last_step(rig)
    assert step.status is JobStatus.SUCCEEDED
    assert isinstance(step.output, dict) and step.output["customer_id"] in customers
    (attempt,) = step.attempt_log
    assert attempt.outcome is AttemptOutcome.SUCCEEDED and attempt.http_status in (200, 201)
    assert attempt.request_excerpt.startswith("PUT /customers/")
    assert "Idempotency-Key" in attempt.request_excerpt
    assert rig.key.key not in attempt.request_excerpt + attempt.response_excerpt
    usage = rig.store.usage(CONNECTION, datetime.now(UTC) - timedelta(minutes=5))
    assert sum(w.requests for w in usage) == 12


async def test_several_due_events_go_out_as_one_batch(rig: Rig) -> None:
    events = [rig.event(str(i)) for i in range(7)]
    keys = rig.enqueue(events)
    worker = rig.worker("w1", batch_size=50)
    await run_workers([worker], settled(rig.store, 7))
    (batch,) = rig.journal(path="/events/batch")
    assert batch.status == 200 and batch.idempotency_key == batch_idempotency_key(keys)
    assert rig.journal(path="/events") == []
    assert worker.stats.batches == 1 and worker.stats.requests == 1 and worker.stats.succeeded == 7
    output = last_step(rig).output
    assert isinstance(output, dict) and output["event_id"].startswith(f"e-{rig.tag}-")


async def test_a_customers_queued_events_go_out_together_in_their_order(rig: Rig) -> None:
    a, b = f"customer:{rig.tag}-a", f"customer:{rig.tag}-b"
    names = ["a1", "b1", "a2", "a3", "b2"]
    rig.enqueue([rig.event(name, order=a if name.startswith("a") else b) for name in names])
    worker = rig.worker("w1", batch_size=50)
    await run_workers([worker], settled(rig.store, 5))
    # One claim, one request: no round (claim, request, settle) per event of a customer.
    (batch,) = rig.journal(path="/events/batch")
    assert batch.status == 200 and worker.stats.claims == 1 and worker.stats.requests == 1
    state = rig.sandboxes.snapshots._state
    with state.lock:
        accepted = [event_id for (_, event_id) in state.events if event_id.startswith(f"e-{rig.tag}-")]
    assert accepted == [f"e-{rig.tag}-{name}" for name in names]


def steps_of(rig: Rig, run_ids: Sequence[int]) -> list[StepDetail]:
    return [step for run_id in run_ids for step in detail(rig, run_id).steps]


async def test_events_behind_a_failing_event_of_their_customer_wait_for_it_untried(rig: Rig) -> None:
    """They ride along in its batch, but when the batch fails they are given back uncounted: only the first
    retries (on its own clock), and the rest go out behind it once it succeeds, in order."""
    customer = f"customer:{rig.tag}-a"
    names = ["a1", "a2", "a3"]
    queued = queue_single_steps(rig.store, [rig.event(name, order=customer) for name in names],
                                key_prefix=f"chain-{rig.tag}")
    runs = [q.run_id for q in queued]
    rig.sandboxes.snapshots.set_faults(error_rate=1.0, error_statuses=[503])
    worker = rig.worker("w1", batch_size=50)
    await run_workers([worker], lambda: steps_of(rig, runs)[0].attempts >= 3)
    first, *behind = steps_of(rig, runs)
    assert first.status is JobStatus.QUEUED and len(first.attempt_log) == first.attempts >= 3
    assert [(s.status, s.attempts, s.attempt_log) for s in behind] == [(JobStatus.QUEUED, 0, ())] * 2
    # They did ride along: every attempt was one batch, none a single event.
    assert len(rig.journal(path="/events/batch")) == first.attempts and rig.journal(path="/events") == []
    assert worker.stats.released >= 2 * (first.attempts - 1) and worker.stats.dead == 0

    rig.sandboxes.snapshots.clear_faults()
    await run_workers([rig.worker("w2", batch_size=50)], settled(rig.store, 3))
    assert [s.attempts for s in steps_of(rig, runs)][1:] == [1, 1]
    state = rig.sandboxes.snapshots._state
    with state.lock:
        accepted = [event_id for (_, event_id) in state.events if event_id.startswith(f"e-{rig.tag}-")]
    assert accepted == [f"e-{rig.tag}-{name}" for name in names]


async def test_an_event_with_bad_input_holds_back_its_customers_later_events_not_others(rig: Rig) -> None:
    """Checked before sending: the bad one dies with its reason; the events behind it leave the batch and go
    after it, each in its turn; another customer's event in the claim is sent at once."""
    customer, other = f"customer:{rig.tag}-x", f"customer:{rig.tag}-y"
    bad = ("snapshots.events.create", {"event_id": f"e-{rig.tag}-x1", "timestamp": "2025-03-01T12:00:00Z"},
           customer)
    rig.enqueue([bad, rig.event("x2", order=customer), rig.event("y1", order=other), rig.event("x3", order=customer)])
    worker = rig.worker("w1", batch_size=50)
    await run_workers([worker], settled(rig.store, 3, dead=1))
    (dead,) = rig.store.dead_letters()
    assert dead.idempotency_key.endswith("-0") and "type" in dead.reason
    state = rig.sandboxes.snapshots._state
    with state.lock:
        accepted = [event_id for (_, event_id) in state.events if event_id.startswith(f"e-{rig.tag}-")]
    assert accepted[0] == f"e-{rig.tag}-y1" and accepted[1:] == [f"e-{rig.tag}-x2", f"e-{rig.tag}-x3"]
    assert worker.stats.released == 2


async def test_a_dead_event_step_takes_its_runs_later_event_step_with_it(rig: Rig) -> None:
    """Two event steps of one run go out in one batch; the API fails until the horizon: one dead letter, and
    the later step is cancelled with its run, never attempted on its own."""
    customer = f"customer:{rig.tag}-d"
    now = datetime.now(UTC)
    with rig.store.transaction() as tx:
        run_id = tx.create_run(NewRun("test", None, "purchase", customer, now))
        tx.enqueue([NewJob(run_id=run_id, step_index=i, step_id=f"s{i}", action=action, connection=CONNECTION,
                           ordering_key=customer, idempotency_key=f"two-{rig.tag}-{i}", input=values)
                    for i, (action, values, _) in enumerate([rig.event("d1"), rig.event("d2")])], now=now)
    rig.sandboxes.snapshots.set_faults(error_rate=1.0, error_statuses=[503])
    worker = rig.worker("w1", batch_size=50, horizon=timedelta(seconds=0.3))
    await run_workers([worker], lambda: rig.store.counts()[JobStatus.DEAD.value] >= 1)
    dead, later = detail(rig, run_id).steps
    assert detail(rig, run_id).run.status is RunStatus.DEAD
    assert dead.status is JobStatus.DEAD and dead.attempts > 1
    assert (later.status, later.attempts, later.attempt_log) == (JobStatus.CANCELLED, 0, ())
    assert [d.job_id for d in rig.store.dead_letters()] == [dead.job_id]
    assert worker.stats.dead == 1


async def test_on_sqlite_a_worker_sees_jobs_another_connection_commits_without_being_woken(rig: Rig) -> None:
    """As `snapbridge worker` beside `serve`: no deriver in its process calls wake(); a commit by another
    connection does (PostgreSQL has NOTIFY for this)."""
    if rig.store.is_postgres:
        pytest.skip("PostgreSQL workers are woken by NOTIFY")
    worker = rig.worker("w1", idle_seconds=600.0)  # its own idle look would come far too late
    queue_single_steps(rig.store, [rig.event("first")], key_prefix=f"first-{rig.tag}")
    later: list[str] = []

    def second_done() -> bool:
        if rig.store.counts()[JobStatus.SUCCEEDED.value] < 1:
            return False
        if not later:  # the worker is idle now, or about to be: nothing in this process wakes it
            later.extend(q.idempotency_key for q in queue_single_steps(rig.store, [rig.event("second")],
                                                                       key_prefix=f"second-{rig.tag}"))
        return rig.store.counts()[JobStatus.SUCCEEDED.value] == 2

    await run_workers([worker], second_done, within=60)


async def test_a_retry_due_at_once_is_taken_again_even_before_its_task_has_ended(rig: Rig) -> None:
    """An ending committed a moment before its task resumes: the claim that takes the requeued job back is a new
    delivery, not the old one's lease renewed (which would leave the job leased to nobody until the lease ends)."""
    customers = [rig.customer(f"again{i}") for i in range(12)]
    for customer in customers:
        rig.sandboxes.snapshots.lose_next_response("PUT", f"/customers/{customer}", times=3)
    rig.enqueue([rig.upsert(c, plan="pro") for c in customers])
    worker = rig.worker("w1", lease_seconds=600.0)  # a job left leased would wait this long: far past `within`
    await run_workers([worker], settled(rig.store, len(customers)), within=60)
    assert worker.stats.renewed == 0
    for customer in customers:
        assert rig.sandboxes.snapshots.writes_to(customer) == 1


async def test_a_batch_member_the_api_refuses_dies_alone(rig: Rig) -> None:
    good = [rig.event(str(i)) for i in range(3)]
    bad = ("snapshots.events.create", {"event_id": f"e-{rig.tag}-bad", "type": "purchase",
                                       "timestamp": "2025-03-01T12:00:00Z", "location_id": "loc-nowhere"},
           f"customer:{rig.tag}-bad")
    rig.enqueue([*good, bad])
    await run_workers([rig.worker("w1")], settled(rig.store, 3, dead=1))
    (dead,) = rig.store.dead_letters()
    assert dead.idempotency_key.endswith("-3")
    assert "loc-nowhere is not a location of this company" in dead.reason
    assert len(rig.journal(path="/events/batch")) == 1


async def test_an_ambiguous_outcome_is_retried_with_the_same_key_and_written_once(rig: Rig) -> None:
    customer = rig.customer("lost")
    path = f"/customers/{customer}"
    rig.sandboxes.snapshots.lose_next_response("PUT", path)  # applied, then the connection is reset
    rig.enqueue([rig.upsert(customer, name="Ada", plan="pro")])
    worker = rig.worker("w1")
    await run_workers([worker], settled(rig.store, 1))
    first, second = rig.journal(path=path)
    assert first.status == 200 or first.status == 201
    assert second.idempotency_key == first.idempotency_key and second.replayed
    assert rig.sandboxes.snapshots.writes_to(customer) == 1
    assert worker.stats.retried == 1 and worker.stats.succeeded == 1
    step = last_step(rig)
    outcomes = [a.outcome for a in step.attempt_log]
    assert outcomes == [AttemptOutcome.RETRY, AttemptOutcome.SUCCEEDED]
    assert step.attempt_log[0].http_status is None and "failed" in step.attempt_log[0].error


async def test_a_429_storm_is_waited_out_and_nothing_is_sent_before_retry_after(rig: Rig) -> None:
    # 5 requests per 250 ms: the limiter spaces requests about 55 ms apart once it knows the plan.
    key = rig.sandboxes.snapshots.create_key(ALL_SCOPES, burst_limit=5, burst_window_ms=250_000)
    rig.connect(key)
    customers = [rig.customer(f"storm{i}") for i in range(8)]
    rig.enqueue([rig.upsert(c, plan="pro") for c in customers])
    storm = 0.6
    started = datetime.now(UTC)
    rig.sandboxes.snapshots.set_faults(storm_seconds=storm)
    worker = rig.worker("w1")
    await run_workers([worker], settled(rig.store, 8))
    deadline = started + timedelta(seconds=storm)
    entries = sorted(rig.journal(), key=lambda e: e.arrived_at)
    throttled = [e for e in entries if e.status == 429]
    assert throttled, "the storm was not seen"
    first_429 = throttled[0].arrived_at
    # Requests already on their way when the first 429 came back are allowed; nothing new until the deadline.
    early = [e for e in entries if first_429 + timedelta(milliseconds=25) < e.arrived_at < deadline]
    assert early == [], f"{len(early)} requests before Retry-After had passed"
    assert len(throttled) <= 2
    assert rig.store.dead_letters() == []
    for customer in customers:
        assert rig.sandboxes.snapshots.writes_to(customer) == 1


async def test_a_422_becomes_a_dead_letter_with_the_reason_after_one_request(rig: Rig) -> None:
    customer = rig.customer("bad-email")
    rig.enqueue([rig.upsert(customer, email="not-an-email")])
    worker = rig.worker("w1")
    await run_workers([worker], settled(rig.store, 0, dead=1))
    (dead,) = rig.store.dead_letters()
    assert "HTTP 422" in dead.reason and "email" in dead.reason
    assert dead.attempts == 1
    assert len(rig.journal(path=f"/customers/{customer}")) == 1
    assert worker.stats.dead == 1 and worker.stats.retried == 0


async def test_a_dead_letter_replayed_after_the_fix_is_delivered_once_even_replayed_twice(rig: Rig) -> None:
    customer = rig.customer("scoped")
    path = f"/customers/{customer}"
    without = rig.sandboxes.snapshots.create_key([s for s in ALL_SCOPES if s != "customers.write"])
    rig.connect(without)
    rig.sandboxes.snapshots.lose_next_response("PUT", path)
    rig.enqueue([rig.upsert(customer, plan="pro")])
    await run_workers([rig.worker("w1")], settled(rig.store, 0, dead=1))
    (dead,) = rig.store.dead_letters()
    assert "scope" in dead.reason.lower()
    assert writes(rig, path) == []

    rig.connect(rig.sandboxes.snapshots.create_key(ALL_SCOPES))  # the fix: a key with the scope
    assert rig.store.replay(job_ids=[dead.job_id]).queued == 1
    assert rig.store.replay(job_ids=[dead.job_id]).queued == 0  # queued already: a second replay adds nothing
    await run_workers([rig.worker("w2")], settled(rig.store, 1))
    assert rig.store.replay(all_dead=True).queued == 0
    assert rig.sandboxes.snapshots.writes_to(customer) == 1


async def test_a_write_that_happened_before_dying_is_not_doubled_by_replays(rig: Rig) -> None:
    customer = rig.customer("applied")
    path = f"/customers/{customer}"
    rig.sandboxes.snapshots.lose_next_response("PUT", path)  # attempt 1 writes, the answer is lost
    rig.enqueue([rig.upsert(customer, plan="gold")])
    first_key = rig.key
    # The retry waits 0.5 s; meanwhile the credential loses its scope, so the retry dies with a 401.
    worker = rig.worker("w1", rand=lambda: 1.0, base_delay=timedelta(seconds=0.5))
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 5
    while worker.stats.retried == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    rig.connect(rig.sandboxes.snapshots.create_key(["saas/location.read"]))
    while worker.stats.dead == 0:
        assert time.monotonic() < deadline + 5
        await asyncio.sleep(0.01)
    worker.stop()
    await task
    await worker.runner.aclose()
    assert rig.sandboxes.snapshots.writes_to(customer) == 1

    rig.connect(first_key)
    for _ in range(2):
        rig.store.replay(all_dead=True)
        await run_workers([rig.worker("w2")], settled(rig.store, 1))
    replays = [e for e in rig.journal(path=path) if e.replayed]
    assert len(replays) == 1 and rig.sandboxes.snapshots.writes_to(customer) == 1


# ---- leases and order ----------------------------------------------------------------------------------


async def test_each_customers_jobs_arrive_in_enqueue_order_with_several_workers(rig: Rig) -> None:
    customers = [rig.customer(f"o{i}") for i in range(6)]
    jobs = [rig.upsert(c, plan=f"p{n}") for n in range(5) for c in customers]  # interleaved customers
    keys = rig.enqueue(jobs)
    expected = {c: [k for k, job in zip(keys, jobs, strict=True) if job[1]["customer_id"] == c]
                for c in customers}
    workers = [rig.worker(f"w{i}", batch_size=3, concurrency=4) for i in range(3)]
    await run_workers(workers, settled(rig.store, len(jobs)))
    for customer in customers:
        arrived = [e.idempotency_key for e in rig.journal(path=f"/customers/{customer}")]
        assert arrived == expected[customer]
    assert sum(w.stats.succeeded for w in workers) == len(jobs)
    assert sum(1 for w in workers if w.stats.succeeded) >= 2, "the work was not shared"


async def test_a_graceful_stop_releases_jobs_still_waiting(rig: Rig) -> None:
    # A 1-per-2 s plan: the first job goes out, the others wait for tokens when the worker is stopped.
    key = rig.sandboxes.snapshots.create_key(ALL_SCOPES, burst_limit=1, burst_window_ms=2_000_000)
    rig.connect(key)
    customers = [rig.customer(f"g{i}") for i in range(3)]
    rig.enqueue([rig.upsert(c, plan="pro") for c in customers])
    worker = rig.worker("w1", grace_seconds=0.3)
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 5
    while worker.stats.succeeded < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    worker.stop()
    await task
    await worker.runner.aclose()
    assert worker.stats.released == 2
    counts = rig.store.counts()
    assert counts[JobStatus.QUEUED.value] == 2 and counts[JobStatus.LEASED.value] == 0
    assert sum(rig.sandboxes.snapshots.writes_to(c) for c in customers) == 1


# ---- workflows: outputs, conditions and local actions ----------------------------------------------------


def _planned_jobs(rig: Rig, email: str) -> tuple[list[NewJob], str]:
    """The starter template new-customer-location planned for a new customer, as the deriver enqueues it."""
    sample = event_spec(App.GUMROAD, "customer.created").sample_event()
    assert isinstance(sample, CustomerCreatedEvent)
    inbound = f"in-{rig.tag}"
    event = sample.model_copy(update={"inbound_id": inbound, "id": f"{inbound}:customer.created",
                                      "customer": sample.customer.model_copy(update={"email": email})})
    (plan,) = plan_event(event, None, [load_template("new-customer-location")])
    assert plan.error is None and [s.step_id for s in plan.steps] == ["find", "create", "update", "link",
                                                                       "segments"]
    jobs = [NewJob(run_id=0, step_index=step.position, step_id=step.step_id, action=step.action,
                   connection=PROFILES if step.action.startswith("snapbridge.") else CONNECTION,
                   ordering_key=step.ordering_key, idempotency_key=step.idempotency_key,
                   input=dict(step.input),
                   deferred=pack_plan(step, event, profile_connection=PROFILES, email=email))
            for step in plan.steps]
    assert PLAN_KEY in jobs[1].deferred and PLAN_KEY not in jobs[0].deferred
    return jobs, event.type


async def test_a_workflow_runs_step_by_step_with_outputs_conditions_and_local_actions(rig: Rig) -> None:
    email = f"ada-{rig.tag}@example.com"
    jobs, event_type = _planned_jobs(rig, email)
    with rig.store.transaction() as tx:
        run_id = tx.create_run(NewRun("new-customer-location", None, event_type, email, datetime.now(UTC)))
        tx.enqueue([replace(job, run_id=run_id) for job in jobs])
    changed: list[SegmentChangedEvent] = []
    worker = rig.worker("w1", on_segment_changed=lambda _tx, event, _job: changed.append(event))
    await run_workers([worker], settled(rig.store, len(jobs)))

    detail = rig.store.run_detail(run_id)
    assert detail is not None and detail.run.status is RunStatus.SUCCEEDED
    steps = {s.step_id: s for s in detail.steps}
    assert steps["find"].output == []
    location = steps["create"].output
    assert isinstance(location, dict) and location["external_id"] == email
    assert steps["update"].output is None  # its condition was false: skipped, nothing sent
    assert rig.sandboxes.snapshots.writes_to(location["location_id"]) == 1
    assert rig.journal(path=f"/locations/{location['location_id']}") == []
    profile = rig.store.get_profile(PROFILES, email)
    assert profile is not None
    assert profile.location_id == location["location_id"] and profile.timezone == location["timezone"]
    assert profile.attributes["location_name"] == location["name"]
    assert profile.tags == ("new-customer",) and "active" in profile.segments
    assert [e.entered for e in changed] == [["active"]]
    assert worker.stats.requests == 2  # find and create; update skipped, link and segments are local


async def test_local_actions_are_idempotent(rig: Rig) -> None:
    email = f"Grace-{rig.tag}@Example.com"
    update = {"email": email, "name": "Grace", "plan": "pro", "add_tags": ["vip"], "customer_id": "c-1",
              "last_activity_at": "2025-03-01T12:00:00Z"}
    rig.enqueue([("snapbridge.profiles.update", update, "customer:g"),
                 ("snapbridge.profiles.update", update, "customer:g")])
    await run_workers([rig.worker("w1")], settled(rig.store, 2))
    profile = rig.store.get_profile(CONNECTION, email.lower())
    assert profile is not None and profile.name == "Grace" and profile.plan == "pro"
    assert profile.tags == ("vip",) and profile.attributes["customer_id"] == "c-1"
    assert profile.last_activity_at == datetime(2025, 3, 1, 12, tzinfo=UTC)
    outputs = [detail(rig, r.id).steps[0].output for r in rig.store.runs()]
    assert sorted(o["changed"] for o in outputs if isinstance(o, dict)) == [False, True]
