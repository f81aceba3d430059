"""Retention: the bulky parts of old succeeded runs are emptied; the rows, keys and statuses stay."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from snapbridge.store.models import RunStatus
from snapbridge.store.rows import chunks, utc
from snapbridge.store.schema import attempts, inbound_events, jobs, runs

__all__ = ["prune"]


def prune(conn: Connection, older_than: datetime) -> int:
    """Empty job inputs and outputs, attempt excerpts and the inbound payload of runs that succeeded
    before `older_than`; returns how many runs were pruned. An inbound event is emptied once all its runs
    are, and its dedupe key is kept, so a late repeat is still recognised.
    """
    old = conn.execute(
        sa.select(runs.c.id)
        .where(runs.c.status == RunStatus.SUCCEEDED.value, runs.c.payload_pruned.is_(False),
               runs.c.finished_at < utc(older_than))
        .order_by(runs.c.id)
    ).scalars().all()
    for part in chunks(old):
        ids = list(part)
        job_ids = sa.select(jobs.c.id).where(jobs.c.run_id.in_(ids))
        conn.execute(attempts.update().where(attempts.c.job_id.in_(job_ids)).values(request_excerpt="",
                                                                                     response_excerpt=""))
        conn.execute(jobs.update().where(jobs.c.run_id.in_(ids)).values(input={}, output=None))
        conn.execute(runs.update().where(runs.c.id.in_(ids)).values(payload_pruned=True))
        others = sa.alias(runs, "others")
        conn.execute(
            inbound_events.update()
            .where(
                inbound_events.c.id.in_(sa.select(runs.c.inbound_event_id).where(runs.c.id.in_(ids))),
                ~sa.exists().where(others.c.inbound_event_id == inbound_events.c.id,
                                   others.c.payload_pruned.is_(False)),
            )
            .values(payload={})
        )
    return len(old)
