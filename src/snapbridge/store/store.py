"""The store's one front door: `Store` runs each call in its own transaction, `Tx` composes calls in one.

Every database failure (locked, refused, lost, constraint) leaves as StoreUnavailable, so callers tell their
sender to retry. Write transactions begin IMMEDIATE on SQLite; claims and buckets lock rows on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from snapbridge.errors import StoreUnavailable
from snapbridge.store import buckets, events, jobs, profiles, retention, usage
from snapbridge.store import outcomes as outcomes_
from snapbridge.store import runs as history
from snapbridge.store.connections import ConnectionRoute, list_routes
from snapbridge.store.engine import IMMEDIATE, RELAXED, busy_timeout, take_over_sqlite_transactions
from snapbridge.store.models import (
    DEFAULT_WORKSPACE,
    AttemptRecord,
    BucketState,
    ClaimedJob,
    DeadLetter,
    EventMark,
    EventStatus,
    InboundEvent,
    InsertResult,
    JobDead,
    JobDone,
    JobOutcome,
    JobReleased,
    JobRetry,
    NewInboundEvent,
    NewJob,
    NewRun,
    Profile,
    RunDetail,
    RunStatus,
    RunSummary,
    UsageSample,
    UsageWindow,
    WorkflowRecord,
)
from snapbridge.store.notify import CommitWatch, JobListener, notify_jobs
from snapbridge.store.rows import chunks, refused, unavailable
from snapbridge.store.schema import inbound_events
from snapbridge.store.writers import sqlite_writers

__all__ = ["Store", "Tx"]

Clock = Callable[[], datetime]


def _system_clock() -> datetime:
    return datetime.now(UTC)


class Tx:
    """One open transaction. The receiver, deriver and pollers put their writes in it together."""

    def __init__(self, conn: Connection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock

    def insert_events(self, new: Sequence[NewInboundEvent], *, in_order: bool = False) -> list[InsertResult]:
        """`in_order`: ids follow the order given (a poller's events, oldest first), in one statement."""
        return events.insert_events(self._conn, new, in_order=in_order)

    def pending_events(self, limit: int) -> list[InboundEvent]:
        """Events to derive, oldest first; on PostgreSQL locked, skipping those another deriver holds."""
        return events.pending_events(self._conn, limit, lock=True)

    def get_event(self, event_id: int) -> InboundEvent | None:
        return events.get_event(self._conn, event_id)

    def mark_event(
        self, event_id: int, status: EventStatus, note: str = "", *, now: datetime | None = None
    ) -> bool:
        """Record what derivation made of the event; False if there is no such event."""
        return self.mark_events([EventMark(event_id, status, note)], now=now) == 1

    def mark_events(self, marks: Sequence[EventMark], *, now: datetime | None = None) -> int:
        """Many marks in one statement; returns how many events were found."""
        return events.mark_events(self._conn, marks, now or self._clock())

    def rekey_event(self, event_id: int, dedupe_key: str) -> bool:
        """Give the event this dedupe key; False (nothing changed) when another event already has it: the event
        is then a repeat of that one."""
        other = inbound_events.alias("other")  # aliased, so the check is not correlated to the updated row
        taken = sa.exists().where(other.c.dedupe_key == dedupe_key)
        result = self._conn.execute(inbound_events.update().where(inbound_events.c.id == event_id, ~taken)
                                    .values(dedupe_key=dedupe_key))
        return result.rowcount > 0

    def get_profile(self, connection: str, email: str) -> Profile | None:
        """The profile, locked until commit on PostgreSQL so two derivers cannot both update it."""
        return profiles.get_profile(self._conn, connection, email, lock=True)

    def get_profiles(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Profile | None]:
        """get_profile for many (connection, email) keys at once, locked in key order (PostgreSQL)."""
        return profiles.get_profiles(self._conn, keys, lock=True)

    def save_profile(self, profile: Profile) -> int:
        return profiles.save_profile(self._conn, profile)

    def save_profiles(self, many: Sequence[Profile]) -> None:
        """save_profile for many distinct customers at once (no ids read back)."""
        profiles.save_profiles(self._conn, many)

    def list_workflows(self, *, enabled_only: bool = False) -> list[WorkflowRecord]:
        """Every workspace's (the caller routes them by `workspace_id`)."""
        return profiles.list_workflows(self._conn, enabled_only=enabled_only)

    def connection_routes(self) -> list[ConnectionRoute]:
        return list_routes(self._conn)

    def lock_key(self, ordering_key: str) -> None:
        """Take turns with other processes' derivers on this key (PostgreSQL); call before get_profile."""
        jobs.lock_key(self._conn, ordering_key)

    def create_run(self, run: NewRun) -> int:
        """A new run, or the one this workflow already has for this inbound event (re-derivation)."""
        return jobs.create_runs(self._conn, [run])[0]

    def create_runs(self, new_runs: Sequence[NewRun]) -> list[int]:
        """create_run for many in one statement; ids in the order given."""
        return jobs.create_runs(self._conn, new_runs)

    def enqueue(self, new_jobs: Sequence[NewJob], *, now: datetime | None = None) -> list[InsertResult]:
        """Queue jobs (a run's steps in step order); a known idempotency key is reported, not added again.

        `deferred` maps an input field to "steps.<step id>.output[.<path>]" to have the store fill it in when
        that step completes; any other value is left for the worker (ClaimedJob.deferred and step_outputs).
        """
        results = jobs.enqueue(self._conn, new_jobs, now or self._clock())
        if any(not r.duplicate for r in results):
            notify_jobs(self._conn)
        return results

    def get_cursor(self, name: str) -> str | None:
        return events.get_cursor(self._conn, name)

    def set_cursor(self, name: str, cursor: str, *, now: datetime | None = None) -> None:
        events.set_cursor(self._conn, name, cursor, now or self._clock())

    def notify_jobs(self) -> None:
        notify_jobs(self._conn)


class Store:
    """The durable store and queue over one engine (SQLite file or PostgreSQL)."""

    def __init__(self, engine: Engine, *, clock: Clock = _system_clock, write_wait: float = 30.0) -> None:
        """`write_wait`: how long a SQLite write waits for this process's other writers before giving up."""
        take_over_sqlite_transactions(engine)
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._writer = engine.execution_options(**{IMMEDIATE: True})
        self._relaxed_writer = engine.execution_options(**{IMMEDIATE: True, RELAXED: True})
        self._clock = clock
        self._listener = JobListener(engine) if self.is_postgres else CommitWatch(engine)
        # SQLite has one writer at a time: writers take turns (writers.py) rather than poll its busy handler.
        self._writing_pg = threading.local()
        self._write_wait = write_wait
        self._busy_timeout = busy_timeout(engine)

    @contextmanager
    def _write(self, what: str, *, relaxed: bool = False) -> Iterator[Connection]:
        # Looked up per write on SQLite (a Store may cross a fork); `writing` is this thread's "inside a write".
        lock = None if self.is_postgres else sqlite_writers(self.engine)
        writing = self._writing_pg if lock is None else lock.writing
        if getattr(writing, "active", False):
            # A second write transaction on this thread would wait for the first forever (SQLite) or commit
            # apart from it (PostgreSQL): a bug in the caller, who should use the Tx it holds.
            raise RuntimeError(f"cannot {what} inside Store.transaction() on the same thread; use the Tx")
        if lock is not None and not lock.acquire(self._write_wait, self._busy_timeout):
            raise StoreUnavailable(f"cannot {what}: other writers held the database too long")
        writing.active = True
        try:
            with (self._relaxed_writer if relaxed else self._writer).begin() as conn:
                if relaxed and self.is_postgres:
                    # PostgreSQL's form of the same bargain: the commit returns before its WAL is flushed;
                    # a server crash may lose the last moments of such commits, never a later FULL one.
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                yield conn
        except SQLAlchemyError as exc:
            # Bad data is not an outage: callers retry an outage, and would retry bad data forever.
            raise (refused(what, exc) or unavailable(what, exc)) from exc
        finally:
            writing.active = False
            if lock is not None:
                lock.release()

    @contextmanager
    def _read(self, what: str) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise (refused(what, exc) or unavailable(what, exc)) from exc

    @contextmanager
    def transaction(self, *, relaxed: bool = False) -> Iterator[Tx]:
        """One write transaction: committed when the block ends, rolled back if it raises.

        `relaxed`: what it writes may be lost in a power cut (never in a process crash) because it is redone
        under the same keys: SQLite then skips the fsync (engine.RELAXED). Inbound events are never relaxed.
        """
        with self._write("commit the transaction", relaxed=relaxed) as conn:
            yield Tx(conn, self._clock)

    def close(self) -> None:
        """Close the LISTEN connection or the commit watch's, if open; the engine belongs to the caller."""
        self._listener.close()

    # inbound

    def insert_events(self, new: Sequence[NewInboundEvent]) -> list[InsertResult]:
        """Store a batch in ONE transaction (group commit); a known dedupe key is reported, never an error."""
        with self._write("store inbound events") as conn:
            return events.insert_events(conn, new)

    def pending_events(self, limit: int) -> list[InboundEvent]:
        with self._read("read pending events") as conn:
            return events.pending_events(conn, limit)

    def get_event(self, event_id: int) -> InboundEvent | None:
        with self._read(f"read inbound event {event_id}") as conn:
            return events.get_event(conn, event_id)

    def get_cursor(self, name: str) -> str | None:
        with self._read(f"read cursor {name!r}") as conn:
            return events.get_cursor(conn, name)

    def get_profile(self, connection: str, email: str) -> Profile | None:
        with self._read("read a customer profile") as conn:
            return profiles.get_profile(conn, connection, email)

    def get_profiles(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Profile | None]:
        """Many profiles in one read: each (connection, email) key → its profile, or None."""
        with self._read("read customer profiles") as conn:
            return profiles.get_profiles(conn, keys)

    def list_profiles(self, *, segment: str | None = None, search: str | None = None, limit: int = 100,
                      after_id: int | None = None, workspace: int | None = None) -> list[Profile]:
        """A page of customer profiles in id order; pass the last id as `after_id` for the next page."""
        with self._read("list customer profiles") as conn:
            return profiles.list_profiles(conn, segment=segment, search=search, limit=limit, after_id=after_id,
                                          workspace=workspace)

    # workflows

    # A workflow is named within its workspace; the CLI works in the default one.

    def save_workflow(self, name: str, source_yaml: str, *, enabled: bool = True, now: datetime | None = None,
                      workspace: int = DEFAULT_WORKSPACE) -> WorkflowRecord:
        with self._write(f"save workflow {name!r}") as conn:
            return profiles.save_workflow(conn, name, source_yaml, enabled=enabled, now=now or self._clock(),
                                          workspace=workspace)

    def get_workflow(self, name: str, *, workspace: int = DEFAULT_WORKSPACE) -> WorkflowRecord | None:
        with self._read(f"read workflow {name!r}") as conn:
            return profiles.get_workflow(conn, name, workspace=workspace)

    def connection_routes(self) -> list[ConnectionRoute]:
        """Every connection's name, app and workspace (no secrets): what the deriver routes events by."""
        with self._read("list connections") as conn:
            return list_routes(conn)

    def list_workflows(self, *, enabled_only: bool = False, workspace: int | None = None) -> list[WorkflowRecord]:
        """One workspace's workflows, or with None every workspace's."""
        with self._read("list workflows") as conn:
            return profiles.list_workflows(conn, enabled_only=enabled_only, workspace=workspace)

    def set_workflow_enabled(self, name: str, *, enabled: bool, now: datetime | None = None,
                             workspace: int = DEFAULT_WORKSPACE) -> bool:
        with self._write(f"update workflow {name!r}") as conn:
            return profiles.set_workflow_enabled(conn, name, enabled=enabled, now=now or self._clock(),
                                                 workspace=workspace)

    def delete_workflow(self, name: str, *, workspace: int = DEFAULT_WORKSPACE) -> bool:
        with self._write(f"delete workflow {name!r}") as conn:
            return profiles.delete_workflow(conn, name, workspace=workspace)

    # queue

    def claim(self, worker: str, *, limit: int, lease_seconds: float, now: datetime | None = None,
              follow: Collection[str] = (), follow_limit: int = 0) -> list[ClaimedJob]:
        """Lease due jobs (see jobs.claim: `follow` brings a head's run of events in its key along)."""
        with self._write("claim jobs", relaxed=True) as conn:  # a lost claim: the job is simply claimable
            return jobs.claim(conn, worker, limit=limit, lease_seconds=lease_seconds, now=now or self._clock(),
                              follow=follow, follow_limit=follow_limit)

    def settle(self, outcomes: Sequence[JobOutcome], *, now: datetime | None = None) -> list[bool]:
        """End many leased jobs in ONE transaction (one commit); each False where its lease was taken over."""
        with self._write("record job outcomes", relaxed=True) as conn:  # lost: redone under its key
            return outcomes_.settle(conn, outcomes, now or self._clock())

    def complete(self, job: ClaimedJob, *, output: object, attempt: AttemptRecord,
                 now: datetime | None = None) -> bool:
        """Done: later steps' "steps.<id>.output…" inputs are filled, the run succeeds with its last step."""
        return self.settle([JobDone(job, output, attempt)], now=now)[0]

    def retry_later(self, job: ClaimedJob, *, at: datetime, attempt: AttemptRecord, error: str,
                    now: datetime | None = None) -> bool:
        """Queued again, due at `at`; the run shows failed until the retry."""
        return self.settle([JobRetry(job, at, attempt, error)], now=now)[0]

    def dead_letter(self, job: ClaimedJob, *, attempt: AttemptRecord, reason: str,
                    now: datetime | None = None) -> bool:
        """A dead letter: the run is dead and its later steps cancelled, until a replay."""
        return self.settle([JobDead(job, attempt, reason)], now=now)[0]

    def release(self, job: ClaimedJob, *, now: datetime | None = None) -> bool:
        """Back to the queue untried (shutdown); the claim does not count as an attempt."""
        return self.settle([JobReleased(job)], now=now)[0]

    # History and replay take `workspace` to see only that workspace's runs (None: every workspace's).

    def replay(self, *, job_ids: Sequence[int] | None = None, run_ids: Sequence[int] | None = None,
               workflow: str | None = None, all_dead: bool = False, from_start: bool = False, force: bool = False,
               now: datetime | None = None, workspace: int | None = None,
               appends: Collection[str] = frozenset()) -> outcomes_.ReplayOutcome:
        """Queue dead letters again, leaving out superseded ones unless `force` (see `outcomes.replay`; callers
        pass `catalog.appending_actions()` as `appends`)."""
        with self._write("replay dead letters") as conn:
            return outcomes_.replay(conn, job_ids=job_ids, run_ids=run_ids, workflow=workflow,
                                   all_dead=all_dead, from_start=from_start, now=now or self._clock(),
                                   workspace=workspace, force=force, appends=appends)

    def replay_matching(self, *, workflow: str | None = None, connection: str | None = None,
                        reason: str | None = None, since: datetime | None = None, until: datetime | None = None,
                        from_start: bool = False, force: bool = False, now: datetime | None = None,
                        workspace: int | None = None,
                        appends: Collection[str] = frozenset()) -> outcomes_.ReplayOutcome:
        """Replay every dead letter the filters match (as `dead_letters` filters), in one transaction."""
        at = now or self._clock()
        with self._write("replay dead letters") as conn:
            ids = history.dead_letter_ids(conn, workflow=workflow, connection=connection, reason=reason,
                                          since=since, until=until, workspace=workspace)
            parts = [outcomes_.replay(conn, job_ids=part, run_ids=None, workflow=None, all_dead=False,
                                      from_start=from_start, now=at, force=force, appends=appends)
                     for part in chunks(ids)]
        return outcomes_.ReplayOutcome(sum(p.queued for p in parts),
                                       tuple(s for p in parts for s in p.superseded))

    def supersessions(self, job_ids: Sequence[int], appends: Collection[str] = frozenset()
                      ) -> dict[int, outcomes_.Superseded]:
        """Which of these dead letters a replay would leave out as superseded, by job id."""
        with self._read("check dead letters for later deliveries") as conn:
            return outcomes_.supersessions(conn, job_ids, appends)

    def next_due_at(self) -> datetime | None:
        with self._read("read the queue") as conn:
            return jobs.next_due_at(conn)

    def counts(self, *, workspace: int | None = None) -> dict[str, int]:
        with self._read("count jobs") as conn:
            return jobs.counts(conn, workspace)

    # history

    def runs(self, *, status: RunStatus | Collection[RunStatus] | None = None, workflow: str | None = None,
             customer: str | None = None, since: datetime | None = None, until: datetime | None = None,
             before_id: int | None = None, limit: int = 50, workspace: int | None = None) -> list[RunSummary]:
        """Newest first; created in [since, until)."""
        with self._read("list runs") as conn:
            return history.list_runs(conn, status=status, workflow=workflow, customer=customer, since=since,
                                     until=until, before_id=before_id, limit=limit, workspace=workspace)

    def run_detail(self, run_id: int, *, workspace: int | None = None) -> RunDetail | None:
        with self._read(f"read run {run_id}") as conn:
            return history.run_detail(conn, run_id, workspace=workspace)

    def dead_letters(self, limit: int = 100, *, workflow: str | None = None, connection: str | None = None,
                     reason: str | None = None, since: datetime | None = None,
                     until: datetime | None = None, workspace: int | None = None,
                     before: tuple[datetime, int] | int | None = None) -> list[DeadLetter]:
        """Newest first; `reason` is part of the reason (any case); died in [since, until); `before`: the
        (died_at, job_id) of the previous page's last one, or its job id."""
        with self._read("list dead letters") as conn:
            return history.dead_letters(conn, limit, workflow=workflow, connection=connection, reason=reason,
                                        since=since, until=until, workspace=workspace, before=before)

    # rate limits and usage

    def take_token(self, name: str, *, capacity: float, refill_per_second: float,
                   now: datetime | None = None) -> float:
        """0.0 if a token was taken; else the seconds to wait before asking again (nothing was taken)."""
        granted, wait = self.take_tokens(name, want=1, capacity=capacity, refill_per_second=refill_per_second,
                                         now=now)
        return 0.0 if granted else wait

    def take_tokens(self, name: str, *, want: int, capacity: float, refill_per_second: float,
                    now: datetime | None = None) -> tuple[int, float]:
        """Up to `want` tokens in one round trip, for a worker to spend locally: (taken, 0.0) or (0, wait)."""
        # Relaxed: a crash that loses a grant can only hand those tokens out again (at worst one 429, retried).
        with self._write(f"take tokens from {name!r}", relaxed=True) as conn:
            return buckets.take_tokens(conn, name, want=want, capacity=capacity,
                                       refill_per_second=refill_per_second, now=now or self._clock())

    def block_bucket(self, name: str, until: datetime, *, now: datetime | None = None) -> None:
        with self._write(f"block bucket {name!r}") as conn:
            buckets.block_bucket(conn, name, until, now or self._clock())

    def observe_limits(self, name: str, *, capacity: float, refill_per_second: float, remaining: int | None,
                       now: datetime | None = None) -> None:
        with self._write(f"update bucket {name!r}") as conn:
            buckets.observe_limits(conn, name, capacity=capacity, refill_per_second=refill_per_second,
                                   remaining=remaining, now=now or self._clock())

    def get_bucket(self, name: str) -> BucketState | None:
        with self._read(f"read bucket {name!r}") as conn:
            return buckets.get_bucket(conn, name)

    def record_usage(self, connection: str, *, now: datetime | None = None, status: int | None,
                     latency_ms: float, throttled: bool = False) -> None:
        sample = UsageSample(connection, now or self._clock(), status, latency_ms, throttled)
        self.record_usage_batch([sample])

    def record_usage_batch(self, samples: Sequence[UsageSample]) -> None:
        """Many requests' usage in one transaction (workers may buffer and flush)."""
        with self._write("record usage", relaxed=True) as conn:
            usage.record_usage(conn, samples)

    def usage(self, connection: str | None, since: datetime, *, workspace: int | None = None) -> list[UsageWindow]:
        with self._read("read usage") as conn:
            return usage.usage_since(conn, connection, since, workspace=workspace)

    # retention and wake-ups

    def prune(self, *, older_than: datetime) -> int:
        with self._write("prune old runs") as conn:
            return retention.prune(conn, older_than)

    def notify_jobs(self) -> None:
        with self._write("notify workers") as conn:
            notify_jobs(conn)

    def wait_for_jobs(self, timeout: float) -> bool:
        """Block up to `timeout` s for a sign that jobs may be claimable (True if one came); the first call
        starts watching. PostgreSQL: a NOTIFY. SQLite: a commit by any other connection (notify.CommitWatch)."""
        return self._listener.wait(timeout)
