"""The delivery worker: claim due jobs, wait for a rate-limit token, run each, record how it ended.

One loop claims jobs in batches (up to `concurrency` in flight) and runs each as a task:
limiter token → action (with the job's idempotency key) → complete, retry_later (the pure `decide`) or
dead_letter, with the attempt recorded (redacted excerpts, duration, status). The store fences every ending
with the lease token, so a worker that stalled past its lease changes nothing: its ending is logged and
dropped.

Several independent POST /events jobs of one Snapshots connection in one claim go out as one /events/batch
(one token, one idempotency key derived from the members' keys), each member settled from its own result.

Every request has a deadline: it is given up (a retryable "no answer within N s") a margin before the lease
ends, so the failure is recorded while the job is still this worker's. Were the lease to run out anyway (a
slow store, a stalled loop) and a claim of this worker take the job again, the delivery under way keeps it
under the new lease: no second request for it goes out.

A 429's Retry-After holds back every job of the connection for at most `max_throttle`; the job that got it
waits the whole Retry-After, or becomes a dead letter saying so when that is past its retry horizon.

Wake-ups: `wake()` in-process (the deriver after an enqueue), PostgreSQL LISTEN or (SQLite) a watch on other
connections' commits through a listener task, and otherwise a sleep until the store's next due time (at most
`idle_seconds`). `stop()` ends claiming; jobs in flight get `grace_seconds` to finish, the rest are released
untried.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import random
import signal
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from snapbridge.errors import Retryable, StoreUnavailable
from snapbridge.runtime.actions import (
    EVENT_ACTION,
    MAX_BATCH_EVENTS,
    ActionRunner,
    BatchMember,
    Outcome,
    is_batchable,
)
from snapbridge.runtime.limiter import Limiter
from snapbridge.runtime.retry import BASE_DELAY, DEFAULT_HORIZON, MAX_DELAY, GiveUp, decide, describe_span
from snapbridge.runtime.settler import Settler
from snapbridge.security import redact_text
from snapbridge.store import (
    MAX_BUCKET_BLOCK,
    AttemptRecord,
    ClaimedJob,
    JobDead,
    JobDone,
    JobOutcome,
    JobReleased,
    JobRetry,
    Store,
    UsageSample,
)

__all__ = ["Worker", "WorkerConfig", "WorkerStats", "default_worker_name"]

log = logging.getLogger("snapbridge.worker")

STORE_RETRY_DELAYS = (0.05, 0.25, 1.0)  # a busy SQLite file or a PostgreSQL failover: try the write again
MIN_IDLE_SECONDS = 0.01
THROTTLED_FALLBACK_SECONDS = 1.0  # a 429 without Retry-After (the limiter's interval is not known here)
STORE_RETRY_SECONDS = 1.0  # a job held back because the rate-limit bucket could not be read comes back then
# The longest one 429 holds back every job of its connection. An hour, our own longest backoff (MAX_DELAY): a
# server still refusing after it says so again on the next request, at the cost of one request an hour, while a
# Retry-After far off by mistake (a date in year 9999, ten days) no longer parks every customer's jobs. The
# shared buckets (PostgreSQL) hold a block no longer than this either.
MAX_THROTTLE = MAX_BUCKET_BLOCK
# Errors as stored in attempt rows and the job, and as logged: an API message of 1 MB was stored per attempt.
ERROR_CHARS = 1_000


T = TypeVar("T")


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WorkerConfig:
    """How one worker claims and runs jobs; every limit is a named setting with a default."""

    name: str = field(default_factory=default_worker_name)
    batch_size: int = 32  # jobs per claim
    concurrency: int = 32  # jobs in flight at once
    lease_seconds: float = 60.0
    idle_seconds: float = 5.0  # the longest sleep without a wake-up
    grace_seconds: float = 10.0  # on stop, how long jobs in flight may take to finish
    horizon: timedelta = DEFAULT_HORIZON
    base_delay: timedelta = BASE_DELAY  # the first retry's ceiling, doubled each time up to max_delay
    max_delay: timedelta = MAX_DELAY
    batch_events: bool = True
    max_batch_events: int = MAX_BATCH_EVENTS
    usage_flush_seconds: float = 1.0
    listen_seconds: float = 0.5  # one wait for a NOTIFY or a commit; stopping waits for the current one at most
    # Claim when the store signals (PostgreSQL NOTIFY; SQLite: a commit by another connection). Off on SQLite
    # where the deriver runs in this process and wakes the worker itself: there a receiver's every commit would
    # cost a claim that finds nothing.
    watch_store: bool = True
    # Leave this much of a lease for the request itself: a longer rate-limit wait gives the job back instead.
    lease_reserve_seconds: float = 15.0
    # Stop waiting for an answer this long before the lease ends (at most a tenth of the lease), so the request's
    # failure is settled while the job is still ours, instead of the job being claimed and sent again.
    settle_margin_seconds: float = 5.0
    max_throttle: timedelta = MAX_THROTTLE  # the longest a 429's Retry-After blocks the whole connection

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.concurrency < 1 or self.lease_seconds <= 0:
            raise ValueError("batch_size and concurrency must be at least 1, lease_seconds positive")
        if not 1 <= self.max_batch_events <= MAX_BATCH_EVENTS:
            raise ValueError(f"max_batch_events must be 1-{MAX_BATCH_EVENTS}")
        if self.settle_margin_seconds < 0 or self.max_throttle < timedelta(0):
            raise ValueError("settle_margin_seconds and max_throttle must not be negative")

    @property
    def settle_margin(self) -> float:
        """Seconds before the lease ends at which a request is given up."""
        return min(self.settle_margin_seconds, self.lease_seconds / 10)


@dataclass
class WorkerStats:
    """Counts since the worker started; read by tests, the bench and the service's status line."""

    claimed: int = 0
    claims: int = 0  # claim transactions that leased at least one job
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    fenced: int = 0
    deferred: int = 0  # given back to wait for the rate limit without a request
    released: int = 0
    requests: int = 0
    batches: int = 0
    throttled: int = 0
    timed_out: int = 0  # requests given up before the lease ran out
    renewed: int = 0  # claims of a job whose delivery was still under way here (kept by that delivery)


class Worker:
    """Delivers queued jobs until stopped. Several may share a store, in one process or many."""

    def __init__(self, store: Store, runner: ActionRunner, limiter: Limiter,
                 config: WorkerConfig | None = None, *, clock: Callable[[], datetime] = _utc_now,
                 rand: Callable[[], float] = random.random) -> None:
        self.store = store
        self.runner = runner
        self.limiter = limiter
        self.config = config or WorkerConfig()
        self.stats = WorkerStats()
        self._clock = clock
        self._rand = rand
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: dict[asyncio.Task[None], tuple[ClaimedJob, ...]] = {}
        self._in_flight: dict[int, _Flight] = {}  # job id → its delivery under way, until settled
        self._usage: list[UsageSample] = []
        self._usage_flushed = 0.0
        # Store calls block a thread each; the worker's own pool keeps them from queueing behind other users
        # of the loop's default pool (and the LISTEN wait has a thread to itself).
        self._executor: ThreadPoolExecutor | None = None
        self._stop_requested = False
        self._listen_executor: ThreadPoolExecutor | None = None
        self._settler: Settler | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def wake(self) -> None:
        """Claim now: jobs were enqueued in this process."""
        if self._wake is not None:
            self._wake.set()

    def stop(self) -> None:
        """Stop claiming; `run` returns once jobs in flight finished or the grace period ended."""
        self._stop_requested = True
        if self._stopping is not None:
            self._stopping.set()
        self.wake()

    def handle_signals(self) -> None:
        """SIGTERM and SIGINT stop the worker gracefully (call from inside the running loop)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    async def run(self) -> None:
        """Claim and deliver until `stop()`; then drain within the grace period and release the rest."""
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        if self._stop_requested:
            self._stopping.set()
        self._executor = ThreadPoolExecutor(self.config.concurrency + 4, thread_name_prefix=f"sb-{self.name}")
        self._listen_executor = ThreadPoolExecutor(1, thread_name_prefix=f"sb-listen-{self.name}")
        self._settler = Settler(lambda outcomes: self._call(self.store.settle, outcomes),
                                retry_delays=STORE_RETRY_DELAYS)
        self._settler.start()
        listener = asyncio.create_task(self._listen()) if self.config.watch_store else None
        log.info("action=worker.start worker=%s", self.name)
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                claimed = await self._claim()
                if claimed:
                    self._dispatch(claimed)
                    continue
                await self._idle()
        finally:
            await self._drain()
            await self._settler.stop()
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
            await self._flush_usage(force=True)
            self._executor.shutdown(wait=False)
            self._listen_executor.shutdown(wait=False)
            log.info("action=worker.stop worker=%s succeeded=%d retried=%d dead=%d fenced=%d released=%d "
                     "claims=%d requests=%d", self.name, self.stats.succeeded, self.stats.retried, self.stats.dead,
                     self.stats.fenced, self.stats.released, self.stats.claims, self.stats.requests)

    # ---- the loop ----------------------------------------------------------------------------------------

    def _claimable(self) -> int:
        """How many jobs to claim now (0: wait). All free slots when idle; with jobs in flight, only once a quarter
        of the slots is free. Each claim is a write transaction, and claiming one job every time one finished cost
        more than the jobs' own settling; a finishing job wakes the loop, so the wait is for the next few to
        finish, not a timer."""
        free = self.config.concurrency - len(self._tasks)
        return free if free > 0 and (not self._tasks or free >= max(1, self.config.concurrency // 4)) else 0

    async def _claim(self) -> list[ClaimedJob]:
        free = self._claimable()
        if not free:
            return []
        now = self._clock()
        try:
            claimed = await self._call(self.store.claim, self.name, limit=min(self.config.batch_size, free),
                                       lease_seconds=self.config.lease_seconds, now=now, **self._follow())
        except StoreUnavailable as exc:
            log.warning("action=worker.claim_failed worker=%s error=%s", self.name, exc)
            await self._sleep(1.0)
            return []
        self.stats.claimed += len(claimed)
        self.stats.claims += bool(claimed)
        fresh = []
        renewed: set[str] = set()
        for job in claimed:
            flight = self._in_flight.get(job.id)
            if flight is None or flight.current.lease_expires_at > now:
                # Not under way here, or its ending was committed before this claim and its task has not yet
                # heard (a retry due at once, taken again): a claim takes a leased job only once its lease ran out.
                fresh.append(job)
                continue
            # Our lease ran out while the job's delivery is still under way here, and this claim took it again:
            # that delivery ends it under the new lease; a second request would race the first.
            flight.current = job
            renewed.add(job.ordering_key)
            self.stats.renewed += 1
            log.warning("action=job.lease_renewed job=%d worker=%s lease_token=%d: the lease ran out while its "
                        "delivery was under way; that delivery keeps the job", job.id, self.name, job.lease_token)
        if renewed:
            # Events brought along behind a renewed job must wait for it, as they would have without the claim.
            behind = [job for job in fresh if job.ordering_key in renewed]
            fresh = [job for job in fresh if job.ordering_key not in renewed]
            for job in behind:
                self._spawn((job,), self._give_back(job))
        return fresh

    async def _give_back(self, job: ClaimedJob) -> None:
        await self._release((job,), set())

    def _follow(self) -> dict[str, Any]:
        """A claim also takes the events queued right behind a claimed event of the same customer: they go out in
        one /events/batch, in order, instead of one round (claim, request, settle) each."""
        if not self.config.batch_events:
            return {}
        room = min(self.config.batch_size, self.config.max_batch_events - 1)
        return {"follow": (EVENT_ACTION,), "follow_limit": room}

    async def _idle(self) -> None:
        """Sleep until woken, a job finishes, or the next job falls due (at most `idle_seconds`)."""
        assert self._wake is not None
        timeout = self.config.idle_seconds
        if self._claimable():  # it claimed and found nothing due: sleep until the next job falls due
            try:
                due = await self._call(self.store.next_due_at)
            except StoreUnavailable:
                due = None
            if due is not None:
                timeout = min(timeout, max(MIN_IDLE_SECONDS, (due - self._clock()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _listen(self) -> None:
        """Turn the store's signals (new jobs, a key freed in another process) into wake-ups."""
        lost = False
        while True:
            try:
                loop = asyncio.get_running_loop()
                got = await loop.run_in_executor(self._listen_executor, self.store.wait_for_jobs,
                                                 self.config.listen_seconds)
            except StoreUnavailable:
                # Signals sent while not listening are gone: claim once now, and once listening again.
                lost = True
                await asyncio.sleep(1.0)
                self.wake()
                continue
            if got or lost:
                lost = False
                self.wake()

    async def _call(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking store call on the worker's thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(call, *args, **kwargs))

    async def _sleep(self, seconds: float) -> None:
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _dispatch(self, claimed: Sequence[ClaimedJob]) -> None:
        # connection → ordering key → that key's events in this claim, in order
        groups: dict[str, dict[str, list[ClaimedJob]]] = defaultdict(lambda: defaultdict(list))
        for job in claimed:
            if self.config.batch_events and is_batchable(job):
                groups[job.connection][job.ordering_key].append(job)
            else:
                self._spawn((job,), self._deliver(job))
        for chains in groups.values():
            for chunk in _packed(list(chains.values()), self.config.max_batch_events):
                if len(chunk) == 1:
                    self._spawn(chunk, self._deliver(chunk[0]))
                else:
                    self._spawn(chunk, self._deliver_batch(chunk))

    def _spawn(self, jobs: tuple[ClaimedJob, ...], work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks[task] = jobs
        for job in jobs:
            self._in_flight[job.id] = _Flight(job, job)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        for job in self._tasks.pop(task, ()):
            flight = self._in_flight.get(job.id)
            # Not settled (a bug, a cancel): not under way any more either.
            if flight is not None and flight.origin.lease_token == job.lease_token:
                del self._in_flight[job.id]
        if not task.cancelled() and task.exception() is not None:
            log.error("action=worker.task_failed worker=%s error=%r", self.name, task.exception())
        self.wake()  # room for more, and the next job of this key may be claimable now

    async def _drain(self) -> None:
        if not self._tasks:
            return
        tasks = dict(self._tasks)
        _, pending = await asyncio.wait(tasks, timeout=self.config.grace_seconds)
        # Each job under its newest lease (claimed again while under way): the one a release must name.
        leases = {job.id: flight.current for jobs in tasks.values() for job in jobs
                  if (flight := self._in_flight.get(job.id)) and flight.origin.lease_token == job.lease_token}
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in pending:
            for job in (leases.get(job.id, job) for job in tasks[task]):
                # Fenced like every ending: a job that did finish (or was taken over) is left alone.
                if await self._settle_outcome(JobReleased(job)):
                    self.stats.released += 1
                    log.info("action=job.released job=%d worker=%s", job.id, self.name)

    # ---- one job -----------------------------------------------------------------------------------------

    async def _deliver(self, job: ClaimedJob) -> None:
        await self._guarded((job,), lambda settled: self._deliver_one(job, settled))

    async def _deliver_batch(self, jobs: tuple[ClaimedJob, ...]) -> None:
        await self._guarded(jobs, lambda settled: self._deliver_many(jobs, settled))

    async def _guarded(self, jobs: tuple[ClaimedJob, ...],
                       work: Callable[[set[int]], Coroutine[Any, Any, None]]) -> None:
        """Run `work`; if it breaks on a bug, the jobs it had not settled become dead letters with the reason
        (replayable once fixed), instead of staying leased and being retried forever, one lease at a time."""
        settled: set[int] = set()
        started_at = self._clock()
        try:
            await work(settled)
        except Exception as exc:
            log.exception("action=worker.bug worker=%s jobs=%s", self.name, [job.id for job in jobs])
            why = _cut(f"{type(exc).__name__}: {redact_text(str(exc))}")
            error = RuntimeError(f"internal error in the worker: {why}")
            for job in jobs:
                if job.id not in settled:
                    await self._settle(job, Outcome(error=error), started_at, settled)

    async def _deliver_one(self, job: ClaimedJob, settled: set[int]) -> None:
        started_at = self._clock()
        prepared = await self.runner.prepare(job)
        if isinstance(prepared, Outcome):  # skipped, or its input cannot be completed: no token spent
            await self._settle(job, prepared, started_at, settled)
            return
        if prepared.op is not None:
            wait_until = await self._acquire(job.connection, self._lease_ends(job))
            if wait_until is not None:
                await self._defer(job, started_at, wait_until, settled)
                return
        if prepared.op is None:  # a local action: a thread and a transaction, which a timeout cannot stop
            outcome = await self.runner.execute(prepared)
        else:
            budget = self._answer_budget(self._lease_ends(job))
            answered = await self._within(budget, self.runner.execute(prepared))
            outcome = answered if answered is not None else self._no_answer(job.action, budget,
                                                                             prepared.request_excerpt)
        if outcome.sent:
            await self._observe(job.connection, outcome)
        await self._settle(job, outcome, started_at, settled)

    async def _deliver_many(self, jobs: tuple[ClaimedJob, ...], settled: set[int]) -> None:
        started_at = self._clock()
        connection = jobs[0].connection
        batch, failed, held = await self.runner.prepare_batch(jobs)
        await self._ends(failed, started_at, settled, held=held)
        if batch is None:
            return
        wait_until = await self._acquire(connection, min(self._lease_ends(job) for job, _ in batch.members))
        if wait_until is not None:
            heads, behind = _chain_heads([job for job, _ in batch.members])
            await self._release(behind, settled)
            for job in heads:
                await self._defer(job, started_at, wait_until, settled)
            return
        budget = self._answer_budget(min(self._lease_ends(job) for job, _ in batch.members))
        answered = await self._within(budget, self.runner.execute_batch(batch))
        if answered is None:
            late = self._no_answer(batch.op.name, budget, batch.request_excerpt)
            answered = [BatchMember(job, late) for job, _ in batch.members]
        sent = next((m.outcome for m in answered if m.outcome.sent), None)
        if sent is not None:
            self.stats.batches += 1
            await self._observe(connection, sent)
        await self._ends(answered, started_at, settled)

    async def _ends(self, members: Sequence[BatchMember], started_at: datetime, settled: set[int], *,
                    held: Sequence[ClaimedJob] = ()) -> None:
        """Settle a batch's members, except those behind a failed member of their ordering key: they are given
        back untried, to go after it, as they would have without the batch. Otherwise each would retry on its
        own clock and die on its own, and a later step of a dead run would not be cancelled with the run."""
        stopped: set[str] = set()
        ending: list[BatchMember] = []
        behind = list(held)
        for member in members:
            key = member.job.ordering_key
            if key in stopped and member.outcome.error is not None:
                behind.append(member.job)
                continue
            if member.outcome.error is not None:
                stopped.add(key)
            ending.append(member)
        await self._release(behind, settled)  # first: a dead letter cancels its run's queued later steps
        for member in ending:
            await self._settle(member.job, member.outcome, started_at, settled)

    async def _release(self, jobs: Sequence[ClaimedJob], settled: set[int]) -> None:
        """Give jobs back untried (their attempt uncounted), to go after an earlier job of their ordering key."""
        for job in jobs:
            settled.add(job.id)
            answer = await self._settle_outcome(JobReleased(job))
            if answer:
                self.stats.released += 1
                log.info("action=job.released job=%d worker=%s: behind an earlier job of its key", job.id, self.name)
            else:
                self._fenced(job, answer)

    async def _acquire(self, connection: str, lease_expires_at: datetime) -> datetime | None:
        """Wait for a token: None once taken, or when to come back if the wait would outlast the lease."""
        budget = ((lease_expires_at - self._clock()).total_seconds() - self.config.lease_reserve_seconds
                  - self.config.settle_margin)
        try:
            wait = await self.limiter.acquire(connection, budget=budget)
        except StoreUnavailable as exc:
            # The shared bucket cannot be read: nothing was sent, so the job comes back soon (not a dead letter).
            log.warning("action=limiter.unavailable connection=%s error=%s", connection, type(exc).__name__)
            return self._clock() + timedelta(seconds=STORE_RETRY_SECONDS)
        if wait <= 0:
            return None
        # A block longer than max_throttle (one stored before the cap, an endless bucket) is looked at again then.
        return self._clock() + timedelta(seconds=_bounded(wait, self.config.max_throttle.total_seconds()))

    def _lease_ends(self, job: ClaimedJob) -> datetime:
        """When the job's newest lease held here ends (a claim may have renewed it while under way)."""
        flight = self._in_flight.get(job.id)
        if flight is not None and flight.origin.lease_token == job.lease_token:
            return flight.current.lease_expires_at
        return job.lease_expires_at

    def _answer_budget(self, lease_expires_at: datetime) -> float:
        """Seconds a request may take: up to the settle margin before the (earliest) lease ends."""
        return max(0.0, (lease_expires_at - self._clock()).total_seconds() - self.config.settle_margin)

    async def _within(self, budget: float, call: Coroutine[Any, Any, T]) -> T | None:
        """`call`'s result, or None when it took longer than `budget` seconds (it is cancelled then)."""
        deadline = asyncio.timeout(budget)
        try:
            async with deadline:
                return await call
        except TimeoutError:
            if not deadline.expired():
                raise
            self.stats.timed_out += 1
            return None

    @staticmethod
    def _no_answer(operation: str, budget: float, request_excerpt: str) -> Outcome:
        """A request given up before the lease ends: it may have been applied, so it is retried (same key)."""
        error = Retryable(f"no answer within {budget:.1f} s; stopped waiting before the job's lease runs out",
                          operation=operation)
        return Outcome(error=error, request_excerpt=request_excerpt, elapsed_ms=budget * 1000, sent=True)

    async def _defer(self, job: ClaimedJob, started_at: datetime, until: datetime, settled: set[int]) -> None:
        """Give the job back to wait for the rate limit; nothing was sent, so the attempt has no status.

        A wait that ends past the job's retry horizon makes it a dead letter now, instead of a job that is never
        due before the horizon and so neither sent nor dead."""
        reason = f"waiting for the rate limit of {job.connection!r} until {until.isoformat()}"
        first = await self._first_attempt_at(job) or started_at
        if until - first > self.config.horizon:
            dead = (f"gave up after {job.attempt} attempt{'s' if job.attempt != 1 else ''}: the rate limit of "
                    f"{job.connection!r} holds every request until {until.isoformat()}, past the retry horizon of "
                    f"{describe_span(self.config.horizon)}")
            settled.add(job.id)
            attempt = AttemptRecord(started_at=started_at, duration_ms=0.0, error=dead)
            await self._dead_letter(job, attempt, dead, f"job={job.id} action={job.action} attempt={job.attempt}")
            return
        settled.add(job.id)
        attempt = AttemptRecord(started_at=started_at, duration_ms=0.0, error=reason)
        answer = await self._settle_outcome(JobRetry(job, until, attempt, reason))
        if answer:
            self.stats.deferred += 1
            log.info("action=job.deferred job=%d connection=%s until=%s", job.id, job.connection,
                     until.isoformat())
        else:
            self._fenced(job, answer)

    async def _observe(self, connection: str, outcome: Outcome) -> None:
        """Feed the limiter (headers, a 429's Retry-After) and the usage counters from one request."""
        self.stats.requests += 1
        error = outcome.error
        throttled = isinstance(error, Retryable) and error.status == 429
        try:
            if outcome.rate_limit is not None:
                await self.limiter.observe(connection, outcome.rate_limit)
            if throttled:
                assert isinstance(error, Retryable)
                self.stats.throttled += 1
                asked = error.retry_after
                if asked is None or math.isnan(asked):
                    asked = THROTTLED_FALLBACK_SECONDS
                seconds = _bounded(asked, self.config.max_throttle.total_seconds())
                if seconds != asked:
                    log.warning("action=limiter.block_capped connection=%s retry_after=%g seconds=%g", connection,
                                asked, seconds)
                # Everyone using this connection waits, not just this job (the job itself waits all it was told).
                await self.limiter.block(connection, self._clock() + timedelta(seconds=seconds))
        except StoreUnavailable as exc:
            log.warning("action=limiter.update_failed connection=%s error=%s", connection, exc)
        self._usage.append(UsageSample(connection, self._clock(), outcome.http_status, outcome.elapsed_ms,
                                       throttled))
        await self._flush_usage()

    async def _settle(self, job: ClaimedJob, outcome: Outcome, started_at: datetime,
                      settled: set[int]) -> None:
        """Record how the job ended. It counts as settled only once the decision is made: an error before that
        (a bug) leaves it to `_guarded`, which makes it a dead letter, instead of leased and re-sent forever."""
        error = outcome.error
        text = _cut(str(error)) if error is not None else ""
        attempt = AttemptRecord(
            started_at=started_at, duration_ms=outcome.elapsed_ms, http_status=outcome.http_status,
            request_excerpt=outcome.request_excerpt, response_excerpt=outcome.response_excerpt, error=text,
        )
        fields = f"job={job.id} action={job.action} attempt={job.attempt} status={outcome.http_status}"
        if error is None:
            settled.add(job.id)
            answer = await self._settle_outcome(JobDone(job, outcome.output, attempt))
            if answer:
                self.stats.succeeded += 1
                log.info("action=job.succeeded %s replayed=%s ms=%.1f", fields, outcome.replayed,
                         outcome.elapsed_ms)
            else:
                self._fenced(job, answer)
            return
        now = self._clock()
        # Only a retry counts from the first attempt; the guarded path (a bug) must not need the store here.
        first = await self._first_attempt_at(job) if isinstance(error, Retryable | StoreUnavailable) else None
        decision = decide(error, job.attempt, now, self._rand, horizon=self.config.horizon,
                          first_attempt_at=first, base_delay=self.config.base_delay,
                          max_delay=self.config.max_delay)
        settled.add(job.id)
        if isinstance(decision, GiveUp):
            await self._dead_letter(job, attempt, _cut(decision.reason), fields)
            return
        answer = await self._settle_outcome(JobRetry(job, decision.at, attempt, text))
        if answer:
            self.stats.retried += 1
            log.info("action=job.retry %s at=%s error=%s", fields, decision.at.isoformat(), text)
        else:
            self._fenced(job, answer)

    async def _first_attempt_at(self, job: ClaimedJob) -> datetime | None:
        """When this job's current series of attempts began (a replay starts anew); None: this attempt."""
        if job.attempt <= 1:
            return None
        try:
            detail = await self._call(self.store.run_detail, job.run_id)
        except StoreUnavailable:
            return None
        step = next((s for s in detail.steps if s.job_id == job.id), None) if detail else None
        firsts = [a.started_at for a in step.attempt_log if a.attempt == 1] if step else []
        return max(firsts) if firsts else None

    def _fenced(self, job: ClaimedJob, answer: bool | None = False) -> None:
        if answer is None:
            return  # the store did not answer; already logged
        self.stats.fenced += 1
        log.warning("action=job.fenced job=%d worker=%s lease_token=%d: another worker holds the job now; "
                    "this ending was dropped", job.id, self.name, job.lease_token)

    async def _dead_letter(self, job: ClaimedJob, attempt: AttemptRecord, reason: str, fields: str) -> None:
        answer = await self._settle_outcome(JobDead(job, attempt, reason))
        if answer:
            self.stats.dead += 1
            log.warning("action=job.dead %s reason=%s", fields, reason)
        else:
            self._fenced(job, answer)

    async def _settle_outcome(self, outcome: JobOutcome) -> bool | None:
        """End a job through the settler (its answer: False when fenced, None when the store never answered).

        A job this worker claimed again while its delivery was under way ends under the newest lease."""
        assert self._settler is not None
        flight = self._in_flight.get(outcome.job.id)
        if flight is None or flight.origin.lease_token != outcome.job.lease_token:
            return await self._settler.settle(outcome)
        while True:
            held = flight.current
            answer = await self._settler.settle(replace(outcome, job=held))
            if answer is False and flight.current is not held:
                continue  # claimed again while this ending was being written: end it under that lease
            if self._in_flight.get(outcome.job.id) is flight:
                del self._in_flight[outcome.job.id]
            newer = flight.current
            # This ending committed under the old lease, so the claim that renewed it came after: a new delivery
            # that no task runs. Given back, it is claimed again at once instead of waiting out its lease.
            if answer and newer is not held and await self._settler.settle(JobReleased(newer)):
                self.stats.released += 1
            return answer

    async def _flush_usage(self, *, force: bool = False) -> None:
        loop = asyncio.get_running_loop()
        recent = loop.time() - self._usage_flushed < self.config.usage_flush_seconds
        if not self._usage or (recent and not force):
            return
        samples, self._usage = self._usage, []
        self._usage_flushed = loop.time()
        try:
            await self._call(self.store.record_usage_batch, samples)
        except StoreUnavailable as exc:
            log.warning("action=usage.flush_failed samples=%d error=%s", len(samples), exc)


@dataclass
class _Flight:
    """A job's delivery under way: the lease it started with, and the newest (a claim may renew it meanwhile)."""

    origin: ClaimedJob
    current: ClaimedJob


def _bounded(seconds: float, cap: float) -> float:
    """A wait within [0, cap]; NaN (unreadable) counts as the cap."""
    return cap if math.isnan(seconds) else min(max(seconds, 0.0), cap)


def _cut(text: str, limit: int = ERROR_CHARS) -> str:
    """At most `limit` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _chain_heads(jobs: Sequence[ClaimedJob]) -> tuple[list[ClaimedJob], list[ClaimedJob]]:
    """The first job of each ordering key (in the order given), and the jobs behind them."""
    heads: dict[str, ClaimedJob] = {}
    behind = []
    for job in jobs:
        if heads.setdefault(job.ordering_key, job) is not job:
            behind.append(job)
    return list(heads.values()), behind


def _packed(chains: list[list[ClaimedJob]], size: int) -> list[tuple[ClaimedJob, ...]]:
    """Batches of at most `size` jobs, each key's chain whole in one of them: two batches in flight at once would
    race, and a customer's events must arrive in order."""
    batches: list[tuple[ClaimedJob, ...]] = []
    current: list[ClaimedJob] = []
    for chain in chains:
        if current and len(current) + len(chain) > size:
            batches.append(tuple(current))
            current = []
        current.extend(chain)
    if current:
        batches.append(tuple(current))
    return batches
