"""The job queue's way in: runs and jobs enqueued once, claimed under a lease, one job per ordering key.

Ordering rule: of the jobs of one ordering key that are not finished (queued or leased), only the one with the
lowest id may be claimed, and never while another job of that key is under a live lease. Ids grow in the order
jobs are enqueued, and the steps of one run are enqueued in step order, so a later step waits for its earlier
steps and one customer's jobs run one at a time, in order.

Claims in several processes run side by side. On PostgreSQL a claim locks its candidates' ordering keys (an
advisory lock per key, skipping keys another claim holds) until it commits, then checks the candidates again in a
snapshot taken after locking: so it sees every lease another claim made on those keys, and two claims never
lease two jobs of one key, even when an earlier job of the key is queued again meanwhile (a replay).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from snapbridge.store.models import ClaimedJob, InsertResult, JobStatus, NewJob, NewRun, RunStatus
from snapbridge.store.rows import WHEN, aware, chunks, is_postgres, json_dict, param, per_dialect, utc
from snapbridge.store.schema import in_workspace, inbound_events, jobs, runs

__all__ = ["ACTIVE", "CLAIM_KEYS", "claim", "counts", "create_runs", "enqueue", "lock_key", "next_due_at"]

ACTIVE = (JobStatus.QUEUED.value, JobStatus.LEASED.value)  # not finished: holds its ordering key
# Any fixed number: PostgreSQL advisory locks are named by integers, database-wide.
CLAIM_LOCK = 0x736E6170
# Candidates a PostgreSQL claim looks at beyond twice its limit, for the keys other claims hold at that moment.
CLAIM_SPARE = 8
# Claims lock ordering keys in the key space of this jobs table (its OID): apart from the derivers' (lock_key),
# and from the stores in other schemas of the database, so none of them skips a key another one holds.
CLAIM_KEYS: sa.ColumnClause[int] = sa.literal_column(f"('{jobs.name}'::regclass::oid::bigint % 2147483647)::integer")


def _status_in(table: sa.FromClause, *statuses: str) -> sa.ColumnElement[bool]:
    # Literal values, not parameters, so both planners can use the partial indexes on unfinished jobs.
    return table.c.status.in_([sa.literal_column(f"'{status}'") for status in statuses])


def _heads(candidate: sa.FromClause) -> sa.ColumnElement[bool]:
    """True for the lowest-id unfinished job of its ordering key."""
    earlier = jobs.alias("earlier")
    return ~sa.exists().where(
        earlier.c.ordering_key == candidate.c.ordering_key,
        earlier.c.id < candidate.c.id,
        _status_in(earlier, *ACTIVE),
    )


def _leased_elsewhere(candidate: sa.FromClause, live: bool, *,
                      until: sa.ColumnElement[Any] | None = None) -> sa.ColumnElement[bool]:
    """True if another job of the candidate's key is leased (with `live`: and the lease runs past b_now; with
    `until`: past that time)."""
    other = jobs.alias("other")
    still = [other.c.lease_expires_at > param("now", WHEN)] if live else []
    if until is not None:
        still.append(other.c.lease_expires_at > until)
    return sa.exists().where(
        other.c.ordering_key == candidate.c.ordering_key,
        other.c.id != candidate.c.id,
        _status_in(other, JobStatus.LEASED.value),
        *still,
    )


def _due(job: sa.FromClause) -> sa.ColumnElement[bool]:
    """Queued and due, or leased with the lease run out (its worker died or stalled)."""
    return sa.or_(
        sa.and_(_status_in(job, JobStatus.QUEUED.value), job.c.next_attempt_at <= param("now", WHEN)),
        sa.and_(_status_in(job, JobStatus.LEASED.value), job.c.lease_expires_at <= param("now", WHEN)),
    )


def _claimable(status: JobStatus, rank: int) -> sa.Subquery:
    """Head jobs in `status` that are due (queued) or whose lease ran out (leased), earliest first."""
    job = jobs.alias("j")
    when = job.c.next_attempt_at if status is JobStatus.QUEUED else job.c.lease_expires_at
    return (
        sa.select(job.c.id, job.c.ordering_key, sa.literal_column(str(rank)).label("rank"), when.label("due"))
        .where(_status_in(job, status.value), when <= param("now", WHEN), _heads(job),
               ~_leased_elsewhere(job, live=True))
        .order_by(when, job.c.id)
        .limit(param("candidates"))
        .subquery()
    )


def _candidates() -> dict[str, sa.Select[Any]]:
    """Up to b_limit ids to lease, expired leases first (a worker died or stalled), then due jobs; by dialect.

    The due part walks the status index in order and stops after b_candidates, however long the queue; the
    expired part reads the leased jobs. On PostgreSQL the first b_limit whose ordering key this transaction could
    lock (another claim holding a key is leasing it now): claims at the same moment find the same first
    candidates, so each looks at a few more.
    """
    parts = [sa.select(part) for part in (_claimable(JobStatus.LEASED, 0), _claimable(JobStatus.QUEUED, 1))]
    both = sa.union_all(*parts).subquery("parts")
    first = sa.select(both.c.id, both.c.ordering_key).order_by(both.c.rank, both.c.due, both.c.id)
    first = first.limit(param("candidates"))
    # Materialized, and scanned in its order up to the limit: keys are locked one by one until there are enough,
    # not for every row the planner looks at on the way.
    found = first.cte("candidates").prefix_with("MATERIALIZED")
    locked = sa.func.pg_try_advisory_xact_lock(CLAIM_KEYS, sa.func.hashtext(found.c.ordering_key))
    return {"postgresql": sa.select(found.c.id).where(locked).limit(param("limit")),
            "sqlite": sa.select(first.subquery().c.id)}


def _lease(*, followers: bool = False) -> sa.Update:
    """Lease the candidates b_ids that are still claimable, checked in this statement's own snapshot; returns
    each leased job with its run's workflow, inbound event and status.

    On PostgreSQL that snapshot is younger than the candidates' key locks, so it holds every lease committed on
    those keys. Rows locked by a settling worker (an expired lease it is still ending) are skipped.
    With `followers`: b_ids are jobs right behind a head this transaction leased (see _followers), so the head
    checks are left out; they need only still be due.
    """
    job = jobs.alias("j")
    if followers:
        still = sa.select(job.c.id).where(job.c.id.in_(sa.bindparam("b_ids", expanding=True)), _due(job))
    else:
        still = (
            sa.select(job.c.id)
            .where(job.c.id.in_(sa.bindparam("b_ids", expanding=True)), _due(job), _heads(job),
                   ~_leased_elsewhere(job, live=True))
            .with_for_update(of=job, skip_locked=True)
        )

    run = runs.alias("r")

    def of_run(column: str) -> sa.Label[Any]:
        # A subquery, not a join: SQLite's RETURNING may name only the updated table.
        return sa.select(run.c[column]).where(run.c.id == jobs.c.run_id).scalar_subquery().label(f"run_{column}")

    return (
        jobs.update()
        .where(jobs.c.id.in_(still))
        .values(status=JobStatus.LEASED.value, lease_expires_at=param("expires", WHEN), leased_by=param("worker"),
                lease_token=jobs.c.lease_token + 1, attempts=jobs.c.attempts + 1, updated_at=param("now", WHEN))
        .returning(*jobs.c, of_run("workflow_name"), of_run("inbound_event_id"), of_run("status"))
    )


_CANDIDATES = _candidates()
_INDEX_ORDER = sa.text("SET LOCAL enable_bitmapscan TO off")
_LEASE = _lease()
_LEASE_FOLLOWERS = _lease(followers=True)
# The first b_per_key unfinished jobs of some keys in the order they run (the partial index on unfinished jobs by
# key). Only those leave the database: a customer with thousands queued (after an outage) cost every claim that
# took their head thousands of rows decoded, for the few that could come along.
_RANKED = (
    sa.select(jobs.c.id, jobs.c.ordering_key, jobs.c.status, jobs.c.next_attempt_at, jobs.c.lease_expires_at,
              jobs.c.action, jobs.c.connection, jobs.c.input, jobs.c.deferred,
              sa.func.row_number().over(partition_by=jobs.c.ordering_key, order_by=jobs.c.id).label("place"))
    .where(jobs.c.ordering_key.in_(sa.bindparam("b_keys", expanding=True)), _status_in(jobs, *ACTIVE))
    .subquery("ranked")
)
_UNFINISHED_OF_KEYS = (
    sa.select(*(column for column in _RANKED.c if column.name != "place"))
    .where(_RANKED.c.place <= param("per_key"))
    .order_by(_RANKED.c.ordering_key, _RANKED.c.id)
)
_NOT_RUNNING = (RunStatus.PENDING.value, RunStatus.FAILED.value)  # a claim sets these running
_CANCEL_ORPHANS = (
    jobs.update()
    .where(jobs.c.id.in_(sa.bindparam("b_ids", expanding=True)))
    .values(status=JobStatus.CANCELLED.value, lease_expires_at=None, leased_by=None, attempts=jobs.c.attempts - 1,
            updated_at=param("now", WHEN))
)
_RUNS_RUNNING = (
    runs.update()
    .where(runs.c.id.in_(sa.bindparam("b_runs", expanding=True)), runs.c.status.in_(_NOT_RUNNING))
    .values(status=RunStatus.RUNNING.value)
)
# By run only, the status checked in Python: with `status = 'succeeded'` in the WHERE, SQLite without
# statistics walks the status index — every succeeded job ever — instead of the few rows of these runs.
_OUTPUTS = sa.select(jobs.c.run_id, jobs.c.step_index, jobs.c.step_id, jobs.c.status, jobs.c.output).where(
    jobs.c.run_id.in_(sa.bindparam("b_runs", expanding=True))
)
_CREATE_RUNS = per_dialect(
    lambda insert: insert(runs)
    .on_conflict_do_nothing(index_elements=["inbound_event_id", "workflow_name"])
    .returning(runs.c.id, runs.c.inbound_event_id, runs.c.workflow_name)
)
_FIND_RUNS = sa.select(runs.c.id, runs.c.inbound_event_id, runs.c.workflow_name).where(
    runs.c.inbound_event_id.in_(sa.bindparam("b_events", expanding=True))
)
_ENQUEUE = per_dialect(
    lambda insert: insert(jobs)
    .on_conflict_do_nothing(index_elements=["idempotency_key"])
    .returning(jobs.c.id, jobs.c.idempotency_key)
)
_JOB_IDS = sa.select(jobs.c.id, jobs.c.idempotency_key).where(
    jobs.c.idempotency_key.in_(sa.bindparam("b_keys", expanding=True))
)
_LOCK_KEY = sa.select(sa.func.pg_advisory_xact_lock(CLAIM_LOCK, sa.func.hashtext(param("key"))))


def lock_key(conn: Connection, ordering_key: str) -> None:
    """Hold `ordering_key` until the transaction ends: derivers in several processes take turns per key.

    Then one customer's jobs get ids in commit order, and a profile is never read by two derivers at once.
    SQLite needs nothing: its write transactions already take turns.
    """
    if is_postgres(conn):
        # The two-key form has its own key space, apart from the one-key claim lock.
        conn.execute(_LOCK_KEY, {"b_key": ordering_key})


def create_runs(conn: Connection, new_runs: Sequence[NewRun]) -> list[int]:
    """A run id for each: a new run, or the one its workflow already has for its inbound event."""
    ids: dict[tuple[int | None, str], int] = {}
    keyed = {(r.inbound_event_id, r.workflow_name): r for r in new_runs if r.inbound_event_id is not None}
    if keyed:
        statement = _CREATE_RUNS[conn.dialect.name]
        for row in conn.execute(statement, [_run_values(r) for r in keyed.values()]):
            ids[(row.inbound_event_id, row.workflow_name)] = int(row.id)
        missing = sorted({event for event, workflow in keyed if (event, workflow) not in ids})
        for part in chunks(missing):
            for row in conn.execute(_FIND_RUNS, {"b_events": list(part)}):
                ids.setdefault((row.inbound_event_id, row.workflow_name), int(row.id))
    result: list[int] = []
    for run in new_runs:
        if run.inbound_event_id is None:  # never a duplicate: each call makes a new run
            (row,) = conn.execute(_CREATE_RUNS[conn.dialect.name], [_run_values(run)]).all()
            result.append(int(row.id))
        else:
            result.append(ids[(run.inbound_event_id, run.workflow_name)])
    return result


def _run_values(run: NewRun) -> dict[str, object]:
    return {
        "workflow_name": run.workflow_name, "inbound_event_id": run.inbound_event_id,
        "event_type": run.event_type, "customer_key": run.customer_key, "status": RunStatus.PENDING.value,
        "created_at": utc(run.created_at), "finished_at": None, "payload_pruned": False,
        "workspace_id": run.workspace_id,
    }


def enqueue(conn: Connection, new_jobs: Sequence[NewJob], now: datetime) -> list[InsertResult]:
    """Queue the jobs in the order given; a job whose idempotency key exists is not added again.

    The order given is the order they run in within an ordering key: enqueue a run's steps by step index.
    """
    now = utc(now)
    first: dict[str, NewJob] = {}
    for job in new_jobs:
        first.setdefault(job.idempotency_key, job)
    if not first:
        return []
    ids: dict[str, int] = {}
    new: set[str] = set()
    for row in conn.execute(_ENQUEUE[conn.dialect.name], [_values(job, now) for job in first.values()]):
        ids[row.idempotency_key] = row.id
        new.add(row.idempotency_key)
    for part in chunks([key for key in first if key not in ids]):
        ids.update({row.idempotency_key: row.id for row in conn.execute(_JOB_IDS, {"b_keys": list(part)})})
    results: list[InsertResult] = []
    for job in new_jobs:
        key = job.idempotency_key
        results.append(InsertResult(id=ids[key], key=key, duplicate=key not in new))
        new.discard(key)
    return results


def _values(job: NewJob, now: datetime) -> dict[str, object]:
    return {
        "run_id": job.run_id, "step_index": job.step_index, "step_id": job.step_id, "action": job.action,
        "connection": job.connection, "input": dict(job.input), "deferred": dict(job.deferred),
        "status": JobStatus.QUEUED.value, "attempts": 0,
        "next_attempt_at": now if job.next_attempt_at is None else utc(job.next_attempt_at),
        "lease_expires_at": None, "lease_token": 0, "leased_by": None, "ordering_key": job.ordering_key,
        "idempotency_key": job.idempotency_key, "output": None, "last_error": None,
        "created_at": now, "updated_at": now,
    }


def claim(
    conn: Connection, worker: str, *, limit: int, lease_seconds: float, now: datetime,
    follow: Collection[str] = (), follow_limit: int = 0,
) -> list[ClaimedJob]:
    """Lease up to `limit` claimable jobs to `worker`, oldest first; each claim moves the lease token on.

    With `follow` (action names) and `follow_limit`: a leased head of one of those actions also brings the queued,
    due jobs right behind it in its key, while each is of those actions on the head's connection with its input
    complete (at most `follow_limit` in all). The worker sends such a run of events in one request, in order, so
    a key still has one request in flight at a time.
    """
    if limit <= 0:
        return []
    now = utc(now)
    # Two statements, so the second's snapshot comes after the first's key locks (SQLite's claims take turns
    # anyway, under BEGIN IMMEDIATE, and need no spare candidates).
    spare = limit
    if is_postgres(conn):
        spare = 2 * limit + CLAIM_SPARE
        # Walks in index order, which stop early and mark dead entries so later walks step over them. After a
        # burst of new jobs the statistics still show a short queue, and the planner read every due job in a
        # bitmap scan, checked each one's key, then sorted: 59 ms a claim with 10,000 queued, 1 ms in order.
        conn.execute(_INDEX_ORDER)
    found = conn.execute(_CANDIDATES[conn.dialect.name], {"b_now": now, "b_limit": limit, "b_candidates": spare})
    picked = [int(i) for i in found.scalars()]
    if not picked:
        return []
    lease = {"b_ids": picked, "b_expires": now + timedelta(seconds=lease_seconds), "b_worker": worker,
             "b_now": now}
    rows = list(conn.execute(_LEASE, lease))
    if not rows:
        return []
    behind = _followers(conn, rows, frozenset(follow), follow_limit, now) if follow and follow_limit > 0 else []
    if behind:
        # Only this claim walks these keys: SQLite's claims take turns, and on PostgreSQL this transaction holds
        # the heads' key locks, which every claim takes, and nothing else makes a queued job wait again.
        rows.extend(conn.execute(_LEASE_FOLLOWERS, {**lease, "b_ids": behind}))
    rows.sort(key=lambda row: int(row.id))
    orphans = [int(row.id) for row in rows if row.run_status == RunStatus.DEAD.value]
    if orphans:
        # A later step of a dead run is cancelled with it (outcomes._CANCEL_LATER) unless it was leased then: an
        # event brought along behind the step that died, whose release was lost. Cancelled here, never sent.
        conn.execute(_CANCEL_ORPHANS, {"b_ids": orphans, "b_now": now})
        rows = [row for row in rows if row.run_status != RunStatus.DEAD.value]
        if not rows:
            return []
    starting = sorted({int(row.run_id) for row in rows if row.run_status in _NOT_RUNNING})
    if starting:  # a later step's run is running already: most claims need no write here
        conn.execute(_RUNS_RUNNING, {"b_runs": starting})
    later = sorted({int(row.run_id) for row in rows if row.step_index > 0})
    outputs: dict[int, list[tuple[int, str, object]]] = {}
    if later:
        for row in conn.execute(_OUTPUTS, {"b_runs": later}):
            if row.status != JobStatus.SUCCEEDED.value:
                continue
            step = (int(row.step_index), str(row.step_id), row.output)
            outputs.setdefault(int(row.run_id), []).append(step)
    return [_claimed(row, outputs.get(row.run_id, [])) for row in rows]


def _followers(conn: Connection, heads: Sequence[sa.Row[Any]], actions: frozenset[str], limit: int,
               now: datetime) -> list[int]:
    """Ids of the due jobs right behind each head of `actions` in its key, while each is of `actions` on the
    head's connection with nothing left to fill from an earlier step; at most `limit` in all.

    Due: queued and due, or leased with the lease run out. A worker that died with a batch under way left its
    followers leased behind the head; they come along with it again, or they would stay leased (and expired)
    behind it for as long as it retries.

    A later step of the head's own run may come along (the purchase starter's second event reads nothing from the
    first). The API answers each event of a batch on its own, so if it refuses the first and accepts the second,
    the second stands where, sent alone after the first died, it would have been cancelled with its run; a replay
    of the first then writes it after the second. The worker gives back the events behind a failed one that also
    failed (runtime.worker `_ends`), so this needs the API to refuse one event and accept the next."""
    starts = {row.ordering_key: row for row in heads if row.action in actions and _complete(row.input, row.deferred)}
    picked: list[int] = []
    for part in chunks(sorted(starts)):
        following: dict[str, list[Any]] = {}  # rows of _UNFINISHED_OF_KEYS
        for found in conn.execute(_UNFINISHED_OF_KEYS, {"b_keys": list(part), "b_per_key": limit + 1}):
            following.setdefault(found.ordering_key, []).append(found)
        for key, rows in following.items():
            head = starts[key]
            for row in (r for r in rows if int(r.id) > int(head.id)):
                if (len(picked) >= limit or not _is_due(row, now) or row.action not in actions
                        or row.connection != head.connection or not _complete(row.input, row.deferred)):
                    break
                picked.append(int(row.id))
    return picked


def _is_due(row: sa.Row[Any], now: datetime) -> bool:
    """_due, of a row read: queued and due, or leased with the lease run out."""
    if row.status == JobStatus.QUEUED.value:
        return aware(row.next_attempt_at) <= now
    expires = row.lease_expires_at
    return row.status == JobStatus.LEASED.value and expires is not None and aware(expires) <= now


def _complete(given: object, deferred: object) -> bool:
    """Whether a job's input has everything: no reference to an earlier step's output is left unfilled."""
    return set(json_dict(deferred)) <= set(json_dict(given))


def _claimed(row: sa.Row[Any], outputs: list[tuple[int, str, object]]) -> ClaimedJob:
    """The job as _LEASE returned it (with its run's columns), and the outputs of its run's steps so far."""
    m = row._mapping
    given = json_dict(m["input"])
    return ClaimedJob(
        id=m["id"], run_id=m["run_id"], workflow_name=m["run_workflow_name"],
        inbound_event_id=m["run_inbound_event_id"],
        step_index=m["step_index"], step_id=m["step_id"], action=m["action"], connection=m["connection"],
        ordering_key=m["ordering_key"], idempotency_key=m["idempotency_key"], input=given,
        deferred={k: v for k, v in json_dict(m["deferred"]).items() if k not in given},
        step_outputs={step_id: output for index, step_id, output in outputs if index < m["step_index"]},
        attempt=m["attempts"], lease_token=m["lease_token"], lease_expires_at=aware(m["lease_expires_at"]),
        leased_by=m["leased_by"],
    )


def next_due_at(conn: Connection) -> datetime | None:
    """When a job may next become claimable: the earliest due head job, or the earliest lease to run out."""
    job = jobs.alias("j")
    due = conn.execute(
        sa.select(job.c.next_attempt_at)
        # A lease behind the head (an event brought along) that runs out before the head is due holds nothing.
        .where(_status_in(job, JobStatus.QUEUED.value), _heads(job),
               ~_leased_elsewhere(job, live=False, until=job.c.next_attempt_at))
        .order_by(job.c.next_attempt_at)
        .limit(1)
    ).scalar()
    # Of heads only: a lease that ran out behind an unfinished job is not claimable until that job ends, and
    # counting it would have idle workers claim every few milliseconds for nothing.
    expiry = conn.execute(
        sa.select(sa.func.min(job.c.lease_expires_at)).where(_status_in(job, JobStatus.LEASED.value), _heads(job))
    ).scalar()
    found = [aware(value) for value in (due, expiry) if value is not None]
    return min(found) if found else None


def counts(conn: Connection, workspace: int | None = None) -> dict[str, int]:
    """Jobs by status (every status present), and `events_received`: inbound events not yet derived; of one
    workspace (its runs' jobs, its connections' events) or, with None, of all."""
    found = {status.value: 0 for status in JobStatus}
    by_status = sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)
    waiting = sa.select(sa.func.count()).select_from(inbound_events).where(inbound_events.c.status == "received")
    if workspace is not None:
        by_status = by_status.where(jobs.c.run_id.in_(sa.select(runs.c.id).where(runs.c.workspace_id == workspace)))
        waiting = waiting.where(in_workspace(inbound_events.c.connection, workspace))
    for status, number in conn.execute(by_status):
        found[status] = number
    found["events_received"] = conn.execute(waiting).scalar_one()
    return found
