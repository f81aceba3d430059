"""The delivery worker: claim due jobs, wait for a rate-limit token, run each, record how it ended.

One loop claims jobs in batches (up to `concurrency` in flight) and runs each as a task:
limiter token → action (with the job's idempotency key) → complete, retry_later (the pure `decide`) or
dead_letter, with the attempt recorded (redacted excerpts, duration, status). The store fences every ending
with the lease token, so a worker that stalled past its lease changes nothing: its ending is logged and
dropped.

Several independent POST /events jobs of one Snapshots connection in one claim go out as one /events/batch
(one token, one idempotency key derived from the members' keys), each member settled from its own result.

Wake-ups: `wake()` in-process (the deriver after an enqueue), PostgreSQL LISTEN through a listener task, and
otherwise a sleep until the store's next due time (at most `idle_seconds`). `stop()` ends claiming; jobs in
flight get `grace_seconds` to finish, the rest are released untried.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import signal
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from snapbridge.errors import Retryable, StoreUnavailable
from snapbridge.runtime.actions import MAX_BATCH_EVENTS, ActionRunner, Outcome, is_batchable
from snapbridge.runtime.limiter import Limiter
from snapbridge.runtime.retry import BASE_DELAY, DEFAULT_HORIZON, MAX_DELAY, GiveUp, decide
from snapbridge.runtime.settler import Settler
from snapbridge.security import redact_text
from snapbridge.store import (
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
    listen_seconds: float = 0.5  # PostgreSQL: one LISTEN wait; stopping waits for the current one at most
    # Leave this much of a lease for the request itself: a longer rate-limit wait gives the job back instead.
    lease_reserve_seconds: float = 15.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.concurrency < 1 or self.lease_seconds <= 0:
            raise ValueError("batch_size and concurrency must be at least 1, lease_seconds positive")
        if not 1 <= self.max_batch_events <= MAX_BATCH_EVENTS:
            raise ValueError(f"max_batch_events must be 1-{MAX_BATCH_EVENTS}")


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
        listener = asyncio.create_task(self._listen()) if self.store.is_postgres else None
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
        try:
            claimed = await self._call(self.store.claim, self.name, limit=min(self.config.batch_size, free),
                                       lease_seconds=self.config.lease_seconds, now=self._clock())
        except StoreUnavailable as exc:
            log.warning("action=worker.claim_failed worker=%s error=%s", self.name, exc)
            await self._sleep(1.0)
            return []
        self.stats.claimed += len(claimed)
        self.stats.claims += bool(claimed)
        return claimed

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
        """PostgreSQL: turn NOTIFYs (new jobs, a key freed in another process) into wake-ups."""
        while True:
            try:
                loop = asyncio.get_running_loop()
                got = await loop.run_in_executor(self._listen_executor, self.store.wait_for_jobs,
                                                 self.config.listen_seconds)
            except StoreUnavailable:
                await asyncio.sleep(1.0)
                continue
            if got:
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
        groups: dict[str, list[ClaimedJob]] = defaultdict(list)
        for job in claimed:
            if self.config.batch_events and is_batchable(job):
                groups[job.connection].append(job)
            else:
                self._spawn((job,), self._deliver(job))
        size = self.config.max_batch_events
        for members in groups.values():
            if len(members) == 1:
                self._spawn((members[0],), self._deliver(members[0]))
                continue
            for start in range(0, len(members), size):
                chunk = tuple(members[start:start + size])
                if len(chunk) == 1:
                    self._spawn(chunk, self._deliver(chunk[0]))
                else:
                    self._spawn(chunk, self._deliver_batch(chunk))

    def _spawn(self, jobs: tuple[ClaimedJob, ...], work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks[task] = jobs
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("action=worker.task_failed worker=%s error=%r", self.name, task.exception())
        self.wake()  # room for more, and the next job of this key may be claimable now

    async def _drain(self) -> None:
        if not self._tasks:
            return
        tasks = dict(self._tasks)
        _, pending = await asyncio.wait(tasks, timeout=self.config.grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in pending:
            for job in tasks[task]:
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
            why = f"{type(exc).__name__}: {redact_text(str(exc))}"
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
            wait_until = await self._acquire(job.connection, job.lease_expires_at)
            if wait_until is not None:
                await self._defer(job, started_at, wait_until, settled)
                return
        outcome = await self.runner.execute(prepared)
        if outcome.sent:
            await self._observe(job.connection, outcome)
        await self._settle(job, outcome, started_at, settled)

    async def _deliver_many(self, jobs: tuple[ClaimedJob, ...], settled: set[int]) -> None:
        started_at = self._clock()
        connection = jobs[0].connection
        batch, failed = await self.runner.prepare_batch(jobs)
        for member in failed:
            await self._settle(member.job, member.outcome, started_at, settled)
        if batch is None:
            return
        wait_until = await self._acquire(connection, min(job.lease_expires_at for job, _ in batch.members))
        if wait_until is not None:
            for job, _ in batch.members:
                await self._defer(job, started_at, wait_until, settled)
            return
        members = await self.runner.execute_batch(batch)
        sent = next((m.outcome for m in members if m.outcome.sent), None)
        if sent is not None:
            self.stats.batches += 1
            await self._observe(connection, sent)
        for member in members:
            await self._settle(member.job, member.outcome, started_at, settled)

    async def _acquire(self, connection: str, lease_expires_at: datetime) -> datetime | None:
        """Wait for a token: None once taken, or when to come back if the wait would outlast the lease."""
        budget = (lease_expires_at - self._clock()).total_seconds() - self.config.lease_reserve_seconds
        wait = await self.limiter.acquire(connection, budget=budget)
        return None if wait <= 0 else self._clock() + timedelta(seconds=wait)

    async def _defer(self, job: ClaimedJob, started_at: datetime, until: datetime, settled: set[int]) -> None:
        """Give the job back to wait for the rate limit; nothing was sent, so the attempt has no status."""
        settled.add(job.id)
        reason = f"waiting for the rate limit of {job.connection!r} until {until.isoformat()}"
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
                seconds = error.retry_after if error.retry_after is not None else THROTTLED_FALLBACK_SECONDS
                # Everyone using this connection waits, not just this job.
                await self.limiter.block(connection, self._clock() + timedelta(seconds=seconds))
        except StoreUnavailable as exc:
            log.warning("action=limiter.update_failed connection=%s error=%s", connection, exc)
        self._usage.append(UsageSample(connection, self._clock(), outcome.http_status, outcome.elapsed_ms,
                                       throttled))
        await self._flush_usage()

    async def _settle(self, job: ClaimedJob, outcome: Outcome, started_at: datetime,
                      settled: set[int]) -> None:
        settled.add(job.id)
        error = outcome.error
        attempt = AttemptRecord(
            started_at=started_at, duration_ms=outcome.elapsed_ms, http_status=outcome.http_status,
            request_excerpt=outcome.request_excerpt, response_excerpt=outcome.response_excerpt,
            error=str(error) if error is not None else "",
        )
        fields = f"job={job.id} action={job.action} attempt={job.attempt} status={outcome.http_status}"
        if error is None:
            answer = await self._settle_outcome(JobDone(job, outcome.output, attempt))
            if answer:
                self.stats.succeeded += 1
                log.info("action=job.succeeded %s replayed=%s ms=%.1f", fields, outcome.replayed,
                         outcome.elapsed_ms)
            else:
                self._fenced(job, answer)
            return
        now = self._clock()
        first = await self._first_attempt_at(job)
        decision = decide(error, job.attempt, now, self._rand, horizon=self.config.horizon,
                          first_attempt_at=first, base_delay=self.config.base_delay,
                          max_delay=self.config.max_delay)
        if isinstance(decision, GiveUp):
            answer = await self._settle_outcome(JobDead(job, attempt, decision.reason))
            if answer:
                self.stats.dead += 1
                log.warning("action=job.dead %s reason=%s", fields, decision.reason)
            else:
                self._fenced(job, answer)
            return
        answer = await self._settle_outcome(JobRetry(job, decision.at, attempt, str(error)))
        if answer:
            self.stats.retried += 1
            log.info("action=job.retry %s at=%s error=%s", fields, decision.at.isoformat(), error)
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

    async def _settle_outcome(self, outcome: JobOutcome) -> bool | None:
        """End a job through the settler (its answer: False when fenced, None when the store never answered)."""
        assert self._settler is not None
        return await self._settler.settle(outcome)

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
