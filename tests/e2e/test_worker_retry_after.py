"""A worker against a server's far or absurd Retry-After, answers slower than the lease, and huge error texts.

On SQLite and PostgreSQL, against the Snapshots sandbox. Where the sandbox cannot produce the answer (a
Retry-After of ten days or a date in year 9999), a small ASGI front on 127.0.0.1 answers it for one path and
passes everything else through to the sandbox.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from test_worker_support import (
    ALL_SCOPES,
    WORKER_SETTINGS,
    Job,
    event_job,
    first_step,
    make_worker,
    queue_single_steps,
    run_workers,
    save_connection,
    upsert_job,
)

from snapbridge.errors import Permanent, Retryable
from snapbridge.runtime import ActionRunner, Connections, Worker, WorkerConfig, limiter_for
from snapbridge.runtime.actions import Outcome, Prepared
from snapbridge.sandbox import Sandboxes, ServerThread
from snapbridge.sandbox.snapshots import SandboxKey
from snapbridge.security import Vault
from snapbridge.store import (
    AttemptOutcome,
    ClaimedJob,
    ConnectionStore,
    JobOutcome,
    JobStatus,
    StepDetail,
    Store,
)

ERROR_CHARS = 1_000  # the worker's bound on a stored or logged error
HUGE = "99999999999999"  # digits only, so it parses: about 3.2 million years


# ---- a front that answers one path itself ----------------------------------------------------------------


@dataclass
class Canned:
    method: str
    path: str
    status: int
    headers: tuple[tuple[str, str], ...]
    times: int | None  # None: every time
    used: int = 0


class Front:
    """ASGI: a canned answer for a matching request, the sandbox's own answer for everything else."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.base_url = ""
        self.canned: list[Canned] = []
        self.answered: list[str] = []  # "METHOD path" of every canned answer given
        self._client: httpx.AsyncClient | None = None

    def answer(self, method: str, path: str, status: int, retry_after: str, *, times: int | None = 1) -> None:
        self.canned.append(Canned(method, path, status, (("Retry-After", retry_after),), times))

    def _match(self, method: str, path: str) -> Canned | None:
        for rule in self.canned:
            if rule.method == method and rule.path == path and (rule.times is None or rule.used < rule.times):
                rule.used += 1
                return rule
        return None

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]
                       ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self._client is not None:
                        await self._client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        rule = self._match(method, path)
        if rule is not None:
            self.answered.append(f"{method} {path}")
            content = f'{{"statusCode": {rule.status}, "message": "Too many requests"}}'.encode()
            headers = [(b"content-type", b"application/json"),
                       *((k.lower().encode(), v.encode()) for k, v in rule.headers)]
            await send({"type": "http.response.start", "status": rule.status, "headers": headers})
            await send({"type": "http.response.body", "body": content})
            return
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.upstream, timeout=30)
        skip = {b"host", b"content-length", b"connection"}
        forwarded = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in skip]
        target = path + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
        up = await self._client.request(method, target, headers=forwarded, content=body)
        drop = {"content-length", "connection", "transfer-encoding", "content-encoding"}
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in up.headers.items()
                   if k.lower() not in drop]
        await send({"type": "http.response.start", "status": up.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": up.content})


@pytest.fixture(scope="module")
def front_server(sandboxes: Sandboxes) -> Iterator[Front]:
    app = Front(sandboxes.snapshots_url)
    server = ServerThread(app).start()
    app.base_url = server.base_url
    try:
        yield app
    finally:
        server.stop()


@pytest.fixture
def front(front_server: Front) -> Iterator[Front]:
    """The front with no canned answers (one server for the module)."""
    front_server.canned.clear()
    front_server.answered.clear()
    yield front_server
    front_server.canned.clear()


# ---- the rig -------------------------------------------------------------------------------------------


@dataclass
class Rig:
    store: Store
    sandboxes: Sandboxes
    vault: Vault
    key: SandboxKey
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    def connect(self, base_url: str) -> None:
        save_connection(self.store, self.vault, base_url, self.key.key)

    def runner(self, kind: type[ActionRunner] = ActionRunner) -> ActionRunner:
        connections = Connections(ConnectionStore(self.store.engine), self.vault, allowed_hosts=("127.0.0.1",),
                                  cache_seconds=0.0)
        return kind(connections, self.store)

    def worker(self, *, runner: ActionRunner | None = None, store: Store | None = None,
               rand: Callable[[], float] = lambda: 0.0, **overrides: object) -> Worker:
        settings: dict[str, object] = {"name": f"w-{self.tag}", "grace_seconds": 2.0,
                                       "base_delay": timedelta(seconds=0.05), "max_delay": timedelta(seconds=0.2),
                                       **overrides}
        name = str(settings.pop("name"))
        return make_worker(store or self.store, self.vault, name, runner=runner or self.runner(),
                           limiter=limiter_for(self.store), rand=rand, **settings)

    def enqueue(self, jobs: Sequence[Job]) -> list[int]:
        """One single-step run per job, in order; returns the run ids."""
        return [q.run_id for q in queue_single_steps(self.store, jobs, key_prefix=f"test-{self.tag}")]

    def customer(self, suffix: str) -> str:
        return f"c-{self.tag}-{suffix}"

    def upsert(self, customer: str, **values: object) -> Job:
        return upsert_job(customer, **values)

    def event(self, suffix: str) -> Job:
        return event_job(f"e-{self.tag}-{suffix}")

    def step(self, run_id: int) -> StepDetail:
        return first_step(self.store, run_id)

    def requests(self, path: str) -> int:
        return sum(1 for e in self.sandboxes.snapshots.requests(path=path) if e.api_key == self.key.fingerprint)


@pytest.fixture
def rig(migrated: Engine, sandboxes: Sandboxes, tmp_path: Path) -> Iterator[Rig]:
    store = Store(migrated)
    made = Rig(store, sandboxes, Vault.open(tmp_path / "secret.key"), sandboxes.snapshots.create_key(ALL_SCOPES))
    made.connect(sandboxes.snapshots_url)
    try:
        yield made
    finally:
        sandboxes.snapshots.clear_faults()
        store.close()


def statuses(rig: Rig, runs: Sequence[int], *wanted: JobStatus) -> Callable[[], bool]:
    return lambda: [rig.step(r).status for r in runs] == list(wanted)


# ---- a far or absurd Retry-After -------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["864000", "Fri, 31 Dec 9999 23:59:59 GMT"])
async def test_a_far_retry_after_holds_the_connection_back_for_max_throttle_only(
        rig: Rig, front: Front, retry_after: str) -> None:
    rig.connect(front.base_url)
    target = rig.customer("target")
    front.answer("PUT", f"/customers/{target}", 429, retry_after)
    others = [rig.customer(f"other{i}") for i in range(3)]
    runs = rig.enqueue([rig.upsert(target, plan="pro")] + [rig.upsert(c, plan="pro") for c in others])
    worker = rig.worker(batch_size=1, concurrency=1, max_throttle=timedelta(seconds=0.3))
    await run_workers([worker], statuses(rig, runs, JobStatus.DEAD, *[JobStatus.SUCCEEDED] * 3))
    # Every other customer's job went out once the (capped) block was over, nobody parked for days.
    assert [rig.sandboxes.snapshots.writes_to(c) for c in others] == [1, 1, 1]
    (dead,) = rig.store.dead_letters()
    assert "after 1 attempt: the API asked to wait" in dead.reason
    assert "past the retry horizon of 3 days" in dead.reason and "has passed" not in dead.reason
    assert ("10 days (until " if retry_after == "864000" else "365 days or more") in dead.reason
    assert front.answered.count(f"PUT /customers/{target}") == 1


@pytest.mark.parametrize("mode", ["503", "429", "batch"])
async def test_a_retry_after_too_big_for_a_datetime_ends_the_job_with_its_reason(
        rig: Rig, front: Front, mode: str) -> None:
    rig.connect(front.base_url)
    if mode == "batch":
        front.answer("POST", "/events/batch", 429, HUGE, times=None)
        runs = rig.enqueue([rig.event(str(i)) for i in range(3)])
        worker = rig.worker(batch_size=10, max_throttle=timedelta(seconds=0.2))
        await run_workers([worker], statuses(rig, runs, *[JobStatus.DEAD] * 3))
        path = "POST /events/batch"
    else:
        target = rig.customer("target")
        path = f"PUT /customers/{target}"
        front.answer("PUT", f"/customers/{target}", int(mode), HUGE, times=None)  # every time
        runs = rig.enqueue([rig.upsert(target, plan="pro"), rig.upsert(rig.customer("other"), plan="pro")])
        # A 3 s lease: before the fix a job stuck leased was sent again after it, every time.
        worker = rig.worker(lease_seconds=3.0, max_throttle=timedelta(seconds=0.2))
        await run_workers([worker], statuses(rig, runs, JobStatus.DEAD, JobStatus.SUCCEEDED))
    for dead in rig.store.dead_letters():
        assert "the API asked to wait 365 days or more, past the retry horizon" in dead.reason
        assert "internal error" not in dead.reason
    assert front.answered.count(path) == 1


async def test_a_rate_limit_wait_past_the_horizon_makes_a_dead_letter_that_says_so(rig: Rig, front: Front) -> None:
    rig.connect(front.base_url)
    target = rig.customer("target")
    front.answer("PUT", f"/customers/{target}", 429, "600")
    other = rig.customer("other")
    runs = rig.enqueue([rig.upsert(target, plan="pro"), rig.upsert(other, plan="pro")])
    # The whole connection is held back 10 minutes: past a one-minute horizon for the job still to go.
    worker = rig.worker(batch_size=1, concurrency=1, horizon=timedelta(minutes=1))
    await run_workers([worker], statuses(rig, runs, JobStatus.DEAD, JobStatus.DEAD))
    first, second = (rig.step(r) for r in runs)
    assert first.last_error is not None and "the API asked to wait 600 s (until " in first.last_error
    assert second.last_error is not None
    assert "the rate limit of 'snap' holds every request until " in second.last_error
    assert "past the retry horizon of 60 s" in second.last_error
    assert rig.sandboxes.snapshots.writes_to(other) == 0
    assert [a.outcome for a in second.attempt_log] == [AttemptOutcome.DEAD]


async def test_a_bug_in_the_retry_decision_ends_the_job_instead_of_resending_it(rig: Rig) -> None:
    rig.sandboxes.snapshots.set_faults(error_rate=1.0, error_statuses=[503])
    customer = rig.customer("bug")
    runs = rig.enqueue([rig.upsert(customer, plan="pro")])

    def broken() -> float:
        raise RuntimeError("the random source broke")

    # A 2 s lease: before the fix the job stayed leased and was sent again after each.
    worker = rig.worker(rand=broken, lease_seconds=2.0, lease_reserve_seconds=0.2)
    await run_workers([worker], statuses(rig, runs, JobStatus.DEAD))
    (dead,) = rig.store.dead_letters()
    assert dead.reason.startswith("internal error in the worker: RuntimeError: the random source broke")
    assert rig.requests(f"/customers/{customer}") == 1


# ---- answers slower than the lease ------------------------------------------------------------------------


class Counting(ActionRunner):
    """Counts requests under way at once."""

    under_way = 0
    most = 0

    async def execute(self, prepared: Prepared) -> Outcome:
        Counting.under_way += 1
        Counting.most = max(Counting.most, Counting.under_way)
        try:
            return await super().execute(prepared)
        finally:
            Counting.under_way -= 1


async def test_an_answer_slower_than_the_lease_is_given_up_in_time_and_never_doubled(rig: Rig) -> None:
    Counting.under_way = Counting.most = 0
    customer = rig.customer("slow")
    runs = rig.enqueue([rig.upsert(customer, plan="pro")])
    # Every read is quick (a byte each 40 ms), the whole answer takes seconds: longer than the 1.5 s lease.
    rig.sandboxes.snapshots.set_faults(slow_body_chunk_bytes=1, slow_body_delay_ms=40)
    worker = rig.worker(runner=rig.runner(Counting), lease_seconds=1.5, lease_reserve_seconds=0.2)
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 15
    while len(await asyncio.to_thread(lambda: rig.step(runs[0]).attempt_log)) < 2:
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.02)
    rig.sandboxes.snapshots.clear_faults()
    while (await asyncio.to_thread(rig.step, runs[0])).status is not JobStatus.SUCCEEDED:
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.02)
    worker.stop()
    await task
    await worker.runner.aclose()
    step = rig.step(runs[0])
    given_up = [a for a in step.attempt_log if a.outcome is AttemptOutcome.RETRY]
    # Each gives up before the lease runs out; how long it waited depends on when it was claimed (a busy host
    # can start a later attempt with less of its lease left), so the message is checked, not the figure.
    assert len(given_up) >= 2 and all("stopped waiting before the job's lease runs out" in a.error
                                      for a in given_up)
    assert AttemptOutcome.FENCED not in {a.outcome for a in step.attempt_log}
    assert Counting.most == 1 and worker.stats.fenced == 0
    assert rig.sandboxes.snapshots.writes_to(customer) == 1


class Gated(ActionRunner):
    """Prepares a job only once the gate opens (a slow profile read, a slow connection lookup)."""

    gate: asyncio.Event
    preparing = 0

    async def prepare(self, job: ClaimedJob) -> Prepared | Outcome:
        Gated.preparing += 1
        await Gated.gate.wait()
        return await super().prepare(job)


async def test_a_job_claimed_again_while_under_way_here_is_kept_by_that_delivery(rig: Rig) -> None:
    Gated.gate, Gated.preparing = asyncio.Event(), 0
    customer = rig.customer("again")
    runs = rig.enqueue([rig.upsert(customer, plan="pro")])
    worker = rig.worker(runner=rig.runner(Gated), lease_seconds=1.0, lease_reserve_seconds=0.1)
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 10
    # The lease runs out while the job is still being prepared; the worker's next claim takes it again.
    while (await asyncio.to_thread(rig.step, runs[0])).attempts < 2:
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.02)
    Gated.gate.set()
    while (await asyncio.to_thread(rig.step, runs[0])).status is not JobStatus.SUCCEEDED:
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.02)
    worker.stop()
    await task
    await worker.runner.aclose()
    assert Gated.preparing == 1 and worker.stats.renewed >= 1
    assert rig.requests(f"/customers/{customer}") == 1
    assert [a.outcome for a in rig.step(runs[0]).attempt_log] == [AttemptOutcome.SUCCEEDED]


class GatedHead(ActionRunner):
    """Prepares the job whose event id ends in "-head" only once the gate opens; every other job at once."""

    gate: asyncio.Event

    async def prepare(self, job: ClaimedJob) -> Prepared | Outcome:
        if str(job.input.get("event_id", "")).endswith("-head"):
            await GatedHead.gate.wait()
        return await super().prepare(job)


async def test_events_behind_a_job_claimed_again_while_under_way_wait_for_it(rig: Rig) -> None:
    """The claim that takes a job back while its delivery is under way here also brings the customer's next
    event along (a chain); that event is given back, not sent ahead of the job still under way."""
    GatedHead.gate = asyncio.Event()
    order = f"customer:{rig.customer('chain')}"
    head_id, next_id = f"e-{rig.tag}-head", f"e-{rig.tag}-next"
    runs = rig.enqueue([event_job(head_id, order)])
    worker = rig.worker(runner=rig.runner(GatedHead), lease_seconds=1.0, lease_reserve_seconds=0.1)
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 15
    while (await asyncio.to_thread(rig.step, runs[0])).attempts < 1:
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.02)
    queue_single_steps(rig.store, [event_job(next_id, order)], key_prefix=f"next-{rig.tag}")
    # The head's lease runs out while it is being prepared; the next claim takes it again, and its follower.
    while (await asyncio.to_thread(rig.step, runs[0])).attempts < 2:
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.02)
    GatedHead.gate.set()
    while await asyncio.to_thread(lambda: rig.store.counts()[JobStatus.SUCCEEDED.value]) < 2:
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.02)
    worker.stop()
    await task
    await worker.runner.aclose()
    assert worker.stats.renewed >= 1 and worker.stats.released >= 1
    state = rig.sandboxes.snapshots._state
    with state.lock:
        accepted = [event_id for (_, event_id) in state.events if event_id in (head_id, next_id)]
    assert accepted == [head_id, next_id]


class SlowSettle:
    """The store, but every job ending waits `seconds` first, like a worker that stalled before writing it."""

    def __init__(self, store: Store, seconds: float) -> None:
        self._store, self._seconds = store, seconds

    def settle(self, outcomes: Sequence[JobOutcome], *, now: datetime | None = None) -> list[bool]:
        time.sleep(self._seconds)  # in the worker's store thread, as a slow commit would be
        return self._store.settle(outcomes, now=now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_worker_stalled_past_its_lease_has_its_ending_fenced_and_the_write_happens_once(
        rig: Rig) -> None:
    # What tests/e2e/test_worker.py showed with a slow answer, which is now given up in time: a worker that
    # stalls past its lease (here, writing the ending) changes nothing once another worker took the job over.
    customer = rig.customer("stale")
    runs = rig.enqueue([rig.upsert(customer, plan="pro")])
    a = rig.worker(store=SlowSettle(rig.store, 1.2), name="A", lease_seconds=0.5,  # type: ignore[arg-type]
                   lease_reserve_seconds=0.0, concurrency=1)
    task_a = asyncio.create_task(a.run())
    deadline = time.monotonic() + 5
    while a.stats.claimed == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    await run_workers([rig.worker(name="B")], statuses(rig, runs, JobStatus.SUCCEEDED))
    while a.stats.fenced == 0:
        assert time.monotonic() < deadline + 5, "A's late ending was not fenced"
        await asyncio.sleep(0.01)
    a.stop()
    await task_a
    await a.runner.aclose()
    assert rig.sandboxes.snapshots.writes_to(customer) == 1
    outcomes = sorted(x.outcome for x in rig.step(runs[0]).attempt_log)
    assert outcomes == sorted([AttemptOutcome.FENCED, AttemptOutcome.SUCCEEDED])


class LateHeardEnding:
    """The store, but the first job ending is written once the worker's clock has moved past the job's lease,
    and its answer reaches the worker only after the worker has claimed the job again."""

    def __init__(self, store: Store, jump: timedelta) -> None:
        self._store, self._jump = store, jump
        self.offset = timedelta(0)
        self.worker: Worker | None = None
        self._first = True

    def clock(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def settle(self, outcomes: Sequence[JobOutcome], *, now: datetime | None = None) -> list[bool]:
        first, self._first = self._first, False
        if first:
            self.offset += self._jump
        answers = self._store.settle(outcomes, now=now)
        deadline = time.monotonic() + 10
        while first and self.worker is not None and self.worker.stats.renewed == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # in the worker's store thread: the claim runs meanwhile
        return answers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_job_claimed_again_after_its_ending_committed_is_delivered_not_left_leased(rig: Rig) -> None:
    """The lease ran out while the ending (a retry due at once) was written; the worker's next claim takes the job
    again before the ending's answer is heard, and so takes it for its own delivery renewed. Once the answer shows
    that the ending committed first, that new lease is given back and the job goes out again at once, instead of
    staying leased to nobody for a whole lease."""
    customer = rig.customer("late-heard")
    rig.sandboxes.snapshots.lose_next_response("PUT", f"/customers/{customer}")
    runs = rig.enqueue([rig.upsert(customer, plan="pro")])
    lease = 600.0  # far past the wait below: a job left leased would not come back within it
    slow = LateHeardEnding(rig.store, timedelta(seconds=lease + 5))
    config = WorkerConfig(**{**WORKER_SETTINGS, "name": f"w-{rig.tag}", "lease_seconds": lease})
    worker = Worker(slow, rig.runner(), limiter_for(rig.store), config, clock=slow.clock,  # type: ignore[arg-type]
                    rand=lambda: 0.0)
    slow.worker = worker
    await run_workers([worker], statuses(rig, runs, JobStatus.SUCCEEDED), within=30)
    assert worker.stats.renewed == 1 and worker.stats.released >= 1
    assert rig.sandboxes.snapshots.writes_to(customer) == 1


# ---- huge error texts ----------------------------------------------------------------------------------


class Wordy(ActionRunner):
    """Answers without a request: first a retryable error of 1 MB, then a permanent one of 1 MB."""

    calls = 0

    async def execute(self, prepared: Prepared) -> Outcome:
        Wordy.calls += 1
        if Wordy.calls == 1:
            busy = Retryable("busy " + "x" * 1_000_000, status=503, operation=prepared.job.action)
            return Outcome(error=busy, http_status=503, sent=True)
        return Outcome(error=Permanent("refused " + "y" * 1_000_000, status=422), http_status=422, sent=True)


async def test_a_huge_error_is_cut_in_attempts_the_dead_letter_and_the_log(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    Wordy.calls = 0
    runs = rig.enqueue([rig.upsert(rig.customer("wordy"), plan="pro")])
    caplog.set_level(logging.INFO, logger="snapbridge.worker")
    await run_workers([rig.worker(runner=rig.runner(Wordy))], statuses(rig, runs, JobStatus.DEAD))
    step = rig.step(runs[0])
    assert [a.outcome for a in step.attempt_log] == [AttemptOutcome.RETRY, AttemptOutcome.DEAD]
    for attempt in step.attempt_log:
        assert len(attempt.error) == ERROR_CHARS and attempt.error.endswith("…")
    (dead,) = rig.store.dead_letters()
    assert len(dead.reason) == ERROR_CHARS and dead.reason.startswith("refused yyy")
    lines = [r.getMessage() for r in caplog.records if "action=job." in r.getMessage()]
    assert any("action=job.retry" in line for line in lines) and any("action=job.dead" in line for line in lines)
    assert max(len(line) for line in lines) < ERROR_CHARS + 300
