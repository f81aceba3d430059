"""How leased jobs end (done, retry later, dead letter, released), in batches; how dead letters are replayed.

Every ending is fenced: it applies only while the job is still leased with the caller's token, so a worker
whose lease expired and was taken over changes nothing but the attempt log (outcome `fenced`). An ending that
is already in place with the caller's token (its commit went through but the reply was lost, and the caller
tried again) is answered as applied, and changes nothing, not even the attempt log.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from snapbridge.errors import InvalidInput
from snapbridge.store.jobs import CLAIM_KEYS
from snapbridge.store.models import (
    AttemptOutcome,
    JobDead,
    JobDone,
    JobOutcome,
    JobReleased,
    JobRetry,
    JobStatus,
    RunStatus,
)
from snapbridge.store.notify import notify_jobs
from snapbridge.store.rows import JSON, WHEN, aware, chunks, is_postgres, json_dict, param, utc
from snapbridge.store.schema import attempts, jobs, runs

__all__ = ["ReplayOutcome", "Superseded", "lookup", "reference_path", "replay", "settle", "supersessions"]

_HELD = (
    sa.select(jobs.c.id, jobs.c.lease_token)
    .where(jobs.c.id.in_(sa.bindparam("b_ids", expanding=True)), jobs.c.status == JobStatus.LEASED.value)
    .order_by(jobs.c.id)  # rows locked in one order by everyone: two batches cannot deadlock
    .with_for_update()
)
# The jobs an ending did not find leased: read back to tell an ending already applied from a taken-over lease.
_ENDED = sa.select(
    jobs.c.id, jobs.c.lease_token, jobs.c.status, jobs.c.output, jobs.c.last_error, jobs.c.next_attempt_at
).where(jobs.c.id.in_(sa.bindparam("b_ids", expanding=True)))
_FENCE = jobs.update().where(
    jobs.c.id == param("id"), jobs.c.lease_token == param("token"), jobs.c.status == JobStatus.LEASED.value
)
_FREE = {"lease_expires_at": None, "leased_by": None, "updated_at": param("now", WHEN)}
_DONE = _FENCE.values(status=JobStatus.SUCCEEDED.value, output=param("output", JSON), last_error=None,
                      **_FREE)
_RETRY = _FENCE.values(status=JobStatus.QUEUED.value, next_attempt_at=param("at", WHEN),
                       last_error=param("error"), **_FREE)
_DEAD = _FENCE.values(status=JobStatus.DEAD.value, last_error=param("error"), **_FREE)
_RELEASE = _FENCE.values(status=JobStatus.QUEUED.value, attempts=jobs.c.attempts - 1, **_FREE)
# Without the inputs: most steps wait for no output, and decoding every step's input to fill none was a twentieth
# of a worker's CPU. The few that are filled are read by _INPUTS.
_RUN_STEPS = sa.select(
    jobs.c.id, jobs.c.run_id, jobs.c.step_index, jobs.c.status, jobs.c.deferred
).where(jobs.c.run_id.in_(sa.bindparam("b_runs", expanding=True)))
_INPUTS = sa.select(jobs.c.id, jobs.c.input).where(jobs.c.id.in_(sa.bindparam("b_ids", expanding=True)))
_SET_INPUT = jobs.update().where(jobs.c.id == param("id")).values(input=param("input", JSON))
_SET_RUNS = runs.update().where(runs.c.id.in_(sa.bindparam("b_runs", expanding=True))).values(
    status=param("status"), finished_at=param("finished", WHEN)
)
_CANCEL_LATER = (
    jobs.update()
    .where(jobs.c.run_id == param("run"), jobs.c.step_index > param("step"),
           jobs.c.status == JobStatus.QUEUED.value)
    .values(status=JobStatus.CANCELLED.value, updated_at=param("now", WHEN))
)
_ATTEMPT = {
    JobDone: AttemptOutcome.SUCCEEDED, JobRetry: AttemptOutcome.RETRY, JobDead: AttemptOutcome.DEAD,
}


def reference_path(reference: object, step_id: str) -> tuple[str, ...] | None:
    """The path in `step_id`'s output that a deferred value names ("steps.<id>.output[.<path>]"), or None."""
    if not isinstance(reference, str):
        return None
    stem = f"steps.{step_id}.output"
    if reference == stem:
        return ()
    if reference.startswith(stem + ".") and len(reference) > len(stem) + 1:
        return tuple(reference[len(stem) + 1:].split("."))
    return None


def lookup(value: object, path: Sequence[str]) -> object:
    """The value at `path` (object keys, list indexes); None where the path leads nowhere."""
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def settle(conn: Connection, outcomes: Sequence[JobOutcome], now: datetime) -> list[bool]:
    """Apply each outcome in the caller's one transaction, a few statements for the whole batch.

    An outcome whose job is no longer leased with its token is fenced (False): only its attempt is logged. One
    whose job already shows exactly this ending under its token (a retry after a commit whose reply was lost)
    is True and writes nothing more.
    """
    now = utc(now)
    ids = sorted({o.job.id for o in outcomes})
    # Locked here, so no claim can move a token on between this check and the updates below.
    held = {row.id: row.lease_token for row in conn.execute(_HELD, {"b_ids": ids})} if ids else {}
    unheld = sorted(set(ids) - set(held))
    ended_rows: dict[int, Mapping[str, object]] = (
        {int(row.id): row._asdict() for row in conn.execute(_ENDED, {"b_ids": unheld})} if unheld else {}
    )
    applied: list[bool] = []
    again: list[bool] = []  # already applied by an earlier call: answered True, nothing written
    for outcome in outcomes:
        ok = held.get(outcome.job.id) == outcome.job.lease_token
        held.pop(outcome.job.id, None)  # a job listed twice ends once
        done_before = not ok and _already_ended(ended_rows.pop(outcome.job.id, None), outcome)
        applied.append(ok or done_before)
        again.append(done_before)
    ended = [(o, ok) for o, ok, before in zip(outcomes, applied, again, strict=True) if not before]
    _update_jobs(conn, [o for o, ok in ended if ok], now)
    tries = [_attempt_row(o, ok) for o, ok in ended if not isinstance(o, JobReleased)]
    if tries:
        conn.execute(attempts.insert(), tries)
    done = [o for o, ok in ended if ok and isinstance(o, JobDone)]
    if done:
        _after_success(conn, done, now)
    retried = sorted({o.job.run_id for o, ok in ended if ok and isinstance(o, JobRetry)})
    if retried:
        conn.execute(_SET_RUNS, {"b_runs": retried, "b_status": RunStatus.FAILED.value, "b_finished": None})
    dead = [o for o, ok in ended if ok and isinstance(o, JobDead)]
    if dead:
        conn.execute(_CANCEL_LATER, [{"b_run": o.job.run_id, "b_step": o.job.step_index, "b_now": now}
                                     for o in dead])
        runs_dead = sorted({o.job.run_id for o in dead})
        conn.execute(_SET_RUNS, {"b_runs": runs_dead, "b_status": RunStatus.DEAD.value, "b_finished": now})
    if any(ok and not isinstance(o, JobRetry) for o, ok in ended):
        notify_jobs(conn)  # a key's next job may be claimable now, by a worker in another process
    return applied


def _already_ended(row: Mapping[str, object] | None, outcome: JobOutcome) -> bool:
    """Whether the job's row is exactly what this outcome writes, under the outcome's own lease token.

    Each claim moves the token on, so a row holding ours was ended by our lease and nobody else; another
    worker's claim (a different token) keeps the outcome fenced.
    """
    if row is None or row["lease_token"] != outcome.job.lease_token:
        return False
    status = row["status"]
    if isinstance(outcome, JobDone):
        return status == JobStatus.SUCCEEDED.value and row["output"] == _as_stored(outcome.output)
    if isinstance(outcome, JobRetry):
        due = row["next_attempt_at"]
        return (status == JobStatus.QUEUED.value and row["last_error"] == outcome.error
                and isinstance(due, datetime) and aware(due) == utc(outcome.at))
    if isinstance(outcome, JobDead):
        return status == JobStatus.DEAD.value and row["last_error"] == outcome.reason
    return status == JobStatus.QUEUED.value  # released: back in the queue, untried


def _as_stored(value: object) -> object:
    # What a JSON column gives back for `value` (tuples come back as lists, keys as strings).
    return json.loads(json.dumps(value))


def _update_jobs(conn: Connection, outcomes: Sequence[JobOutcome], now: datetime) -> None:
    """The jobs' new states, one executemany per kind of ending."""
    batches: dict[Any, list[dict[str, object]]] = {_DONE: [], _RETRY: [], _DEAD: [], _RELEASE: []}
    for o in outcomes:
        fence: dict[str, object] = {"b_id": o.job.id, "b_token": o.job.lease_token, "b_now": now}
        if isinstance(o, JobDone):
            batches[_DONE].append({**fence, "b_output": o.output})
        elif isinstance(o, JobRetry):
            batches[_RETRY].append({**fence, "b_at": utc(o.at), "b_error": o.error})
        elif isinstance(o, JobDead):
            batches[_DEAD].append({**fence, "b_error": o.reason})
        else:
            batches[_RELEASE].append(fence)
    for stmt, rows in batches.items():
        if rows:
            conn.execute(stmt, rows)


def _attempt_row(outcome: JobDone | JobRetry | JobDead, ok: bool) -> dict[str, object]:
    job, attempt = outcome.job, outcome.attempt
    reason = ""
    if isinstance(outcome, JobRetry):
        reason = outcome.error
    elif isinstance(outcome, JobDead):
        reason = outcome.reason
    return {
        "job_id": job.id, "attempt": job.attempt, "started_at": utc(attempt.started_at),
        "duration_ms": attempt.duration_ms, "http_status": attempt.http_status,
        "outcome": (_ATTEMPT[type(outcome)] if ok else AttemptOutcome.FENCED).value,
        "request_excerpt": attempt.request_excerpt, "response_excerpt": attempt.response_excerpt,
        "error": attempt.error or reason,
    }


def _after_success(conn: Connection, done: Sequence[JobDone], now: datetime) -> None:
    """Fill later steps' references to the new outputs; a run whose steps all succeeded succeeds."""
    by_run: dict[int, list[JobDone]] = {}
    for outcome in done:
        by_run.setdefault(outcome.job.run_id, []).append(outcome)
    unfinished: set[int] = set()
    fills: dict[int, dict[str, object]] = {}
    for row in conn.execute(_RUN_STEPS, {"b_runs": sorted(by_run)}).all():
        if row.status != JobStatus.SUCCEEDED.value:
            unfinished.add(int(row.run_id))
        filled = {}
        for outcome in by_run[int(row.run_id)]:
            if row.step_index <= outcome.job.step_index:
                continue
            for name, reference in json_dict(row.deferred).items():
                path = reference_path(reference, outcome.job.step_id)
                if path is not None:
                    filled[name] = lookup(outcome.output, path)
        if filled:
            fills[int(row.id)] = filled
    if fills:
        given = {int(row.id): json_dict(row.input) for row in conn.execute(_INPUTS, {"b_ids": sorted(fills)})}
        conn.execute(_SET_INPUT, [{"b_id": job_id, "b_input": {**given[job_id], **filled}}
                                  for job_id, filled in fills.items()])
    finished = sorted(set(by_run) - unfinished)
    if finished:
        succeeded = {"b_runs": finished, "b_status": RunStatus.SUCCEEDED.value, "b_finished": now}
        conn.execute(_SET_RUNS, succeeded)


@dataclass(frozen=True)
class Superseded:
    """A dead letter a replay leaves out unless forced: a later job of its ordering key has been delivered (or is
    being delivered now), so sending this one again would write older data after newer."""

    job_id: int
    run_id: int
    ordering_key: str
    superseded_by: int
    delivered_at: datetime | None  # None: that job is being delivered now

    @property
    def reason(self) -> str:
        if self.delivered_at is None:
            return (f"job {self.superseded_by} of the same ordering key {self.ordering_key} is being delivered now "
                    "and may supersede it; replay again once it has finished")
        return (f"superseded by job {self.superseded_by}, delivered at {self.delivered_at:%Y-%m-%d %H:%M:%S} UTC, "
                f"for the same ordering key {self.ordering_key}")


@dataclass(frozen=True)
class ReplayOutcome:
    queued: int
    superseded: tuple[Superseded, ...] = ()


_DEAD_RUN = runs.alias("dead_run")
_LATER = jobs.alias("later")
_LATER_RUN = runs.alias("later_run")


def _first_later(status: JobStatus) -> sa.ScalarSelect[Any]:
    """The lowest id of a job in `status` that comes after the dead job (`jobs`, run `_DEAD_RUN`) in its key's order
    and makes the same call (action) through the same connection in the same workspace: another action writes
    other data, which this one cannot make stale.

    Ids grow per ordering key in enqueue order (derivers take turns per key). Jobs of the dead job's own run or
    inbound event (another workflow's steps) carry the same data, not newer, so they do not count.
    """
    return (
        sa.select(sa.func.min(_LATER.c.id))
        .select_from(_LATER.join(_LATER_RUN, _LATER_RUN.c.id == _LATER.c.run_id))
        .where(_LATER.c.ordering_key == jobs.c.ordering_key, _LATER.c.id > jobs.c.id,
               _LATER.c.status == status.value, _LATER.c.connection == jobs.c.connection,
               _LATER.c.action == jobs.c.action,
               _LATER.c.run_id != jobs.c.run_id, _LATER_RUN.c.workspace_id == _DEAD_RUN.c.workspace_id,
               sa.or_(_LATER_RUN.c.inbound_event_id.is_(None), _DEAD_RUN.c.inbound_event_id.is_(None),
                      _LATER_RUN.c.inbound_event_id != _DEAD_RUN.c.inbound_event_id))
        .correlate(jobs, _DEAD_RUN)
        .scalar_subquery()
    )


_SUPERSEDED = (
    sa.select(jobs.c.id, jobs.c.run_id, jobs.c.ordering_key, jobs.c.action,
              _first_later(JobStatus.SUCCEEDED).label("done_by"), _first_later(JobStatus.LEASED).label("busy_by"))
    .select_from(jobs.join(_DEAD_RUN, _DEAD_RUN.c.id == jobs.c.run_id))
    .where(jobs.c.id.in_(sa.bindparam("b_ids", expanding=True)), jobs.c.status == JobStatus.DEAD.value)
)
_DELIVERED = sa.select(jobs.c.id, jobs.c.updated_at).where(jobs.c.id.in_(sa.bindparam("b_ids", expanding=True)))
# The claims' key locks (store.jobs): a replay waits for a claim in progress on its keys, then sees its lease.
_LOCK_CLAIM_KEY = sa.select(sa.func.pg_advisory_xact_lock(CLAIM_KEYS, sa.func.hashtext(param("key"))))


def supersessions(conn: Connection, job_ids: Sequence[int], appends: Collection[str] = frozenset()
                  ) -> dict[int, Superseded]:
    """The dead letters among `job_ids` that a later job of their ordering key supersedes, by job id: one that
    succeeded (the first such), else one under a lease now. Actions in `appends` add records (an event)
    instead of setting them, so nothing later supersedes them (the catalog knows which: the store does not)."""
    found: dict[int, Superseded] = {}
    for part in chunks(sorted(set(job_ids))):
        rows = conn.execute(_SUPERSEDED, {"b_ids": list(part)}).all()
        done = sorted({int(r.done_by) for r in rows if r.done_by is not None})
        delivered = {int(r.id): aware(r.updated_at) for r in conn.execute(_DELIVERED, {"b_ids": done})} \
            if done else {}
        for r in rows:
            by = r.done_by if r.done_by is not None else r.busy_by
            if by is not None and r.action not in appends:
                found[int(r.id)] = Superseded(int(r.id), int(r.run_id), r.ordering_key, int(by),
                                              delivered.get(int(by)))
    return found


def replay(
    conn: Connection,
    *,
    job_ids: Sequence[int] | None,
    run_ids: Sequence[int] | None,
    workflow: str | None,
    all_dead: bool,
    from_start: bool,
    now: datetime,
    workspace: int | None = None,
    force: bool = False,
    appends: Collection[str] = frozenset(),
) -> ReplayOutcome:
    """Queue matching dead letters again (filters combine; `all_dead` alone takes all): how many, and which were
    left out as superseded (see `supersessions`, which `appends` is for), unless `force` queues those too.

    The jobs keep their idempotency keys, so a write that did happen is not doubled. The run's cancelled later
    steps are queued again; with `from_start`, every step of the run is, and outputs filled from earlier steps
    are cleared so they are filled afresh. A superseded dead letter's run stays as it is. `workspace` limits
    every filter to that workspace's runs.
    """
    now = utc(now)
    where: list[sa.ColumnElement[bool]] = []
    if job_ids is not None:
        where.append(jobs.c.id.in_(list(job_ids)))
    if run_ids is not None:
        where.append(jobs.c.run_id.in_(list(run_ids)))
    if workflow is not None:
        where.append(jobs.c.run_id.in_(sa.select(runs.c.id).where(runs.c.workflow_name == workflow)))
    if not where and not all_dead:
        raise InvalidInput("say which dead letters to replay: job ids, run ids, a workflow, or all")
    if workspace is not None:
        where.append(jobs.c.run_id.in_(sa.select(runs.c.id).where(runs.c.workspace_id == workspace)))
    dead = conn.execute(
        sa.select(jobs.c.id, jobs.c.run_id, jobs.c.step_index, jobs.c.ordering_key)
        .where(jobs.c.status == JobStatus.DEAD.value, *where)
        .order_by(jobs.c.id)
        .with_for_update()
    ).all()
    skipped: tuple[Superseded, ...] = ()
    if dead and not force:
        if is_postgres(conn):
            # Sorted, so two replays sharing keys take them in one order and cannot deadlock.
            for key in sorted({row.ordering_key for row in dead}):
                conn.execute(_LOCK_CLAIM_KEY, {"b_key": key})
        superseded = supersessions(conn, [row.id for row in dead], appends)
        skipped = tuple(superseded[row.id] for row in dead if row.id in superseded)
        dead = [row for row in dead if row.id not in superseded]
    if not dead:
        return ReplayOutcome(0, skipped)
    again: dict[str, Any] = {
        "status": JobStatus.QUEUED.value, "attempts": 0, "next_attempt_at": now, "lease_expires_at": None,
        "leased_by": None, "updated_at": now,
    }
    run_set = sorted({int(row.run_id) for row in dead})
    if from_start:
        steps = sa.select(jobs.c.id, jobs.c.input, jobs.c.deferred).where(jobs.c.run_id.in_(run_set))
        for step in conn.execute(steps).all():
            deferred = json_dict(step.deferred)
            kept = {k: v for k, v in json_dict(step.input).items() if k not in deferred}
            conn.execute(jobs.update().where(jobs.c.id == step.id).values(input=kept, output=None, **again))
    else:
        conn.execute(jobs.update().where(jobs.c.id.in_([row.id for row in dead])).values(**again))
        for row in dead:
            conn.execute(
                jobs.update()
                .where(jobs.c.run_id == row.run_id, jobs.c.step_index > row.step_index,
                       jobs.c.status == JobStatus.CANCELLED.value)
                .values(**again)
            )
    conn.execute(
        runs.update().where(runs.c.id.in_(run_set)).values(status=RunStatus.RUNNING.value, finished_at=None)
    )
    notify_jobs(conn)
    return ReplayOutcome(len(dead), skipped)
