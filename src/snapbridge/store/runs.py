"""Run history for people: run lists with filters, one run's steps and attempts, and the dead letters."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from snapbridge.store.models import (
    AttemptOutcome,
    AttemptRow,
    DeadLetter,
    JobStatus,
    RunDetail,
    RunStatus,
    RunSummary,
    StepDetail,
)
from snapbridge.store.rows import aware, aware_or_none, json_dict, utc
from snapbridge.store.schema import attempts, jobs, runs

__all__ = ["dead_letter_ids", "dead_letters", "list_runs", "run_detail"]


def list_runs(
    conn: Connection,
    *,
    status: RunStatus | Collection[RunStatus] | None = None,
    workflow: str | None = None,
    customer: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
    workspace: int | None = None,
) -> list[RunSummary]:
    """Runs newest first, created at or after `since` and before `until`; `before_id` pages back from a run id.
    `workspace`: only that workspace's runs (None: every workspace's)."""
    stmt = sa.select(runs).order_by(runs.c.id.desc()).limit(limit)
    if workspace is not None:
        stmt = stmt.where(runs.c.workspace_id == workspace)
    if status is not None:
        wanted = sorted({status} if isinstance(status, RunStatus) else set(status))
        # Literal values, so the planners can use the partial index when asked for failed and dead runs.
        stmt = stmt.where(runs.c.status.in_([sa.literal_column(f"'{s.value}'") for s in wanted]))
    if workflow is not None:
        stmt = stmt.where(runs.c.workflow_name == workflow)
    if customer is not None:
        stmt = stmt.where(runs.c.customer_key == customer)
    if since is not None:
        stmt = stmt.where(runs.c.created_at >= utc(since))
    if until is not None:
        stmt = stmt.where(runs.c.created_at < utc(until))
    if before_id is not None:
        stmt = stmt.where(runs.c.id < before_id)
    rows = conn.execute(stmt).all()
    return _summaries(conn, rows)


def _summaries(conn: Connection, rows: Sequence[sa.Row[Any]]) -> list[RunSummary]:
    ids = [int(row.id) for row in rows]
    totals: dict[int, tuple[int, int, int]] = {}
    errors: dict[int, str] = {}
    if ids:
        succeeded = sa.case((jobs.c.status == JobStatus.SUCCEEDED.value, 1), else_=0)
        for run_id, steps, done, tries in conn.execute(
            sa.select(jobs.c.run_id, sa.func.count(), sa.func.sum(succeeded), sa.func.sum(jobs.c.attempts))
            .where(jobs.c.run_id.in_(ids))
            .group_by(jobs.c.run_id)
        ):
            totals[int(run_id)] = (int(steps), int(done or 0), int(tries or 0))
        # The error that matters is the earliest step's: later steps wait behind it.
        for run_id, error in conn.execute(
            sa.select(jobs.c.run_id, jobs.c.last_error)
            .where(jobs.c.run_id.in_(ids), jobs.c.last_error.is_not(None))
            .order_by(jobs.c.run_id, jobs.c.step_index.desc())
        ):
            errors[int(run_id)] = str(error)
    return [_summary(row, totals.get(int(row.id), (0, 0, 0)), errors.get(int(row.id))) for row in rows]


def _summary(row: sa.Row[Any], totals: tuple[int, int, int], error: str | None) -> RunSummary:
    m = row._mapping
    return RunSummary(
        id=m["id"], workflow_name=m["workflow_name"], inbound_event_id=m["inbound_event_id"],
        event_type=m["event_type"], customer_key=m["customer_key"], status=RunStatus(m["status"]),
        created_at=aware(m["created_at"]), finished_at=aware_or_none(m["finished_at"]),
        payload_pruned=bool(m["payload_pruned"]), steps=totals[0], steps_succeeded=totals[1],
        attempts=totals[2], last_error=error,
    )


def run_detail(conn: Connection, run_id: int, *, workspace: int | None = None) -> RunDetail | None:
    """One run with each step (job) and each step's attempts, oldest first; None when the run is not the
    workspace's."""
    stmt = sa.select(runs).where(runs.c.id == run_id)
    if workspace is not None:
        stmt = stmt.where(runs.c.workspace_id == workspace)
    row = conn.execute(stmt).first()
    if row is None:
        return None
    steps_query = sa.select(jobs).where(jobs.c.run_id == run_id).order_by(jobs.c.step_index, jobs.c.id)
    job_rows = conn.execute(steps_query).all()
    log: dict[int, list[AttemptRow]] = {}
    if job_rows:
        for attempt in conn.execute(
            sa.select(attempts)
            .where(attempts.c.job_id.in_([j.id for j in job_rows]))
            .order_by(attempts.c.job_id, attempts.c.id)
        ):
            log.setdefault(int(attempt.job_id), []).append(_attempt(attempt))
    steps = tuple(_step(j, tuple(log.get(int(j.id), ()))) for j in job_rows)
    return RunDetail(run=_summaries(conn, [row])[0], steps=steps)


def _attempt(row: sa.Row[Any]) -> AttemptRow:
    m = row._mapping
    return AttemptRow(
        id=m["id"], job_id=m["job_id"], attempt=m["attempt"], started_at=aware(m["started_at"]),
        duration_ms=m["duration_ms"], http_status=m["http_status"], outcome=AttemptOutcome(m["outcome"]),
        request_excerpt=m["request_excerpt"], response_excerpt=m["response_excerpt"], error=m["error"],
    )


def _step(row: sa.Row[Any], log: tuple[AttemptRow, ...]) -> StepDetail:
    m = row._mapping
    return StepDetail(
        job_id=m["id"], step_index=m["step_index"], step_id=m["step_id"], action=m["action"],
        connection=m["connection"], status=JobStatus(m["status"]), attempts=m["attempts"],
        next_attempt_at=aware(m["next_attempt_at"]), ordering_key=m["ordering_key"],
        idempotency_key=m["idempotency_key"], input=json_dict(m["input"]), deferred=json_dict(m["deferred"]),
        output=m["output"], last_error=m["last_error"], created_at=aware(m["created_at"]),
        updated_at=aware(m["updated_at"]), attempt_log=log,
    )


def _dead_where(
    *, workflow: str | None, connection: str | None, reason: str | None, since: datetime | None,
    until: datetime | None, workspace: int | None,
) -> list[sa.ColumnElement[bool]]:
    """Dead jobs of a workflow, on a connection, whose reason holds `reason` (any case), dead in [since, until),
    of a workspace's runs."""
    where: list[sa.ColumnElement[bool]] = [jobs.c.status == JobStatus.DEAD.value]
    if workspace is not None:
        where.append(runs.c.workspace_id == workspace)
    if workflow is not None:
        where.append(runs.c.workflow_name == workflow)
    if connection is not None:
        where.append(jobs.c.connection == connection)
    term = (reason or "").strip().lower()
    if term:
        where.append(sa.func.lower(sa.func.coalesce(jobs.c.last_error, "")).contains(term, autoescape=True))
    # A dead job is not touched again until a replay, so its last update is when it died.
    if since is not None:
        where.append(jobs.c.updated_at >= utc(since))
    if until is not None:
        where.append(jobs.c.updated_at < utc(until))
    return where


def dead_letters(
    conn: Connection, limit: int = 100, *, workflow: str | None = None, connection: str | None = None,
    reason: str | None = None, since: datetime | None = None, until: datetime | None = None,
    workspace: int | None = None, before: tuple[datetime, int] | int | None = None,
) -> list[DeadLetter]:
    """Dead jobs, most recent first, with the reason they died; the filters combine. `before` (died_at, job id
    of the last one of a page; or that job's id alone) gives the next page: those after it in this order, none
    skipped or repeated when several died at the same instant. An unknown job id lists none."""
    where = _dead_where(workflow=workflow, connection=connection, reason=reason, since=since, until=until,
                        workspace=workspace)
    if before is not None:
        if isinstance(before, int):
            job_id = before
            at: Any = sa.select(jobs.c.updated_at).where(jobs.c.id == job_id).scalar_subquery()
        else:
            at, job_id = utc(before[0]), before[1]
        where.append(sa.or_(jobs.c.updated_at < at, sa.and_(jobs.c.updated_at == at, jobs.c.id < job_id)))
    rows = conn.execute(
        sa.select(jobs, runs.c.workflow_name, runs.c.customer_key)
        .join(runs, runs.c.id == jobs.c.run_id)
        .where(*where)
        .order_by(jobs.c.updated_at.desc(), jobs.c.id.desc())
        .limit(limit)
    )
    return [
        DeadLetter(
            job_id=r.id, run_id=r.run_id, workflow_name=r.workflow_name, customer_key=r.customer_key,
            step_id=r.step_id, action=r.action, connection=r.connection, ordering_key=r.ordering_key,
            idempotency_key=r.idempotency_key, attempts=r.attempts, reason=r.last_error or "",
            died_at=aware(r.updated_at),
        )
        for r in rows
    ]


def dead_letter_ids(
    conn: Connection, *, workflow: str | None = None, connection: str | None = None, reason: str | None = None,
    since: datetime | None = None, until: datetime | None = None, workspace: int | None = None,
) -> list[int]:
    """The ids of every dead job the filters match, in id order (what a replay of the filter takes)."""
    where = _dead_where(workflow=workflow, connection=connection, reason=reason, since=since, until=until,
                        workspace=workspace)
    stmt = sa.select(jobs.c.id).join(runs, runs.c.id == jobs.c.run_id).where(*where).order_by(jobs.c.id)
    return [int(job_id) for job_id in conn.execute(stmt).scalars()]
