"""A claim that follows a key's run of events (both engines): the events queued right behind a claimed event of
the same key come along, so the worker sends them in one batch, in order; anything else still waits its turn."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.sql import Executable

from snapbridge.store import AttemptRecord, ClaimedJob, NewJob, NewRun, Store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
EVENT = "snapshots.events.create"


def _job(store: Store, key: str, action: str = EVENT, *, connection: str = "snap", step: int = 0,
         deferred: Mapping[str, object] | None = None, due: datetime | None = None) -> int:
    """One run of one job (its own run, as each workflow's event is), queued at T0; its id."""
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun("wf", None, "purchase", key, T0))
        (result,) = tx.enqueue([NewJob(
            run_id=run_id, step_index=step, step_id=f"s{step}", action=action, connection=connection,
            ordering_key=key, idempotency_key=f"{key}:{run_id}:{action}", input={"event_id": f"e{run_id}"},
            deferred=deferred or {}, next_attempt_at=due)], now=T0)
    return result.id


def _claim(store: Store, *, limit: int = 10, follow_limit: int = 10, worker: str = "w1",
           at: datetime = T0) -> list[ClaimedJob]:
    return store.claim(worker, limit=limit, lease_seconds=30, now=at, follow=(EVENT,), follow_limit=follow_limit)


def _ids(jobs: list[ClaimedJob]) -> list[int]:
    return [job.id for job in jobs]


def _done(store: Store, job: ClaimedJob) -> None:
    attempt = AttemptRecord(started_at=T0, duration_ms=1.0, http_status=200, request_excerpt="POST /events",
                            response_excerpt="{}")
    assert store.complete(job, output={"ok": True}, attempt=attempt, now=T0)


def test_the_events_right_behind_a_claimed_event_come_along_until_something_else(store: Store) -> None:
    first, second, third = (_job(store, "customer:a") for _ in range(3))
    other = _job(store, "customer:a", "snapshots.locations.update")
    after = _job(store, "customer:a")
    lone = _job(store, "customer:b")
    claimed = _claim(store)
    assert _ids(claimed) == [first, second, third, lone]
    assert {job.lease_token for job in claimed} == {1} and {job.leased_by for job in claimed} == {"w1"}
    assert _claim(store, worker="w2") == []  # the key is taken: the update and the event after it wait
    for job in claimed:
        _done(store, job)
    (update,) = _claim(store)  # not an event: on its own, and the event behind it waits for it
    assert update.id == other
    _done(store, update)
    assert _ids(_claim(store)) == [after]


def test_without_follow_a_claim_takes_only_heads(store: Store) -> None:
    first = _job(store, "customer:a")
    _job(store, "customer:a")
    assert _ids(store.claim("w1", limit=10, lease_seconds=30, now=T0)) == [first]


def test_a_head_that_is_not_an_event_brings_nothing(store: Store) -> None:
    head = _job(store, "customer:a", "snapshots.locations.update")
    _job(store, "customer:a")
    assert _ids(_claim(store)) == [head]


def test_the_run_stops_at_an_event_not_due_on_another_connection_or_with_input_to_fill(store: Store) -> None:
    a1, a2 = _job(store, "customer:a"), _job(store, "customer:a")
    _job(store, "customer:a", due=T0 + timedelta(minutes=5))  # a retry waiting for its time
    _job(store, "customer:a")
    b1 = _job(store, "customer:b")
    _job(store, "customer:b", connection="other-snap")
    c1 = _job(store, "customer:c")
    _job(store, "customer:c", step=1, deferred={"location_id": "{{ steps.s0.output.id }}"})
    assert _ids(_claim(store)) == [a1, a2, b1, c1]


def test_follow_limit_bounds_the_jobs_brought_along(store: Store) -> None:
    a = [_job(store, "customer:a") for _ in range(4)]
    b = [_job(store, "customer:b") for _ in range(2)]
    assert _ids(_claim(store, follow_limit=2)) == [a[0], a[1], a[2], b[0]]


def _sqlite_plan(store: Store, statement: Executable, values: Mapping[str, object]) -> str:
    """SQLite's plan for `statement` with `values`: the statement as SQLAlchemy sends it, behind EXPLAIN."""

    def explain(conn: object, cursor: object, sql: str, params: object, context: object, many: bool
                ) -> tuple[str, object]:
        return "EXPLAIN QUERY PLAN " + sql, params

    with store.engine.connect() as conn:
        sa.event.listen(conn, "before_cursor_execute", explain, retval=True)
        rows = conn.execute(statement, dict(values)).all()
    return "\n".join(str(row[3]) for row in rows)


def test_sqlite_reads_unfinished_and_leased_jobs_through_their_own_indexes(store: Store) -> None:
    """Not a key's whole history: SQLite's planner, left to itself, took the index of every job of the key (and
    of every leased job), which grows with each sale (migration 5 gives it the queue's shape)."""
    if store.is_postgres:
        pytest.skip("PostgreSQL keeps its own statistics")
    from snapbridge.store import jobs as queue

    for _ in range(3):
        _job(store, "customer:a")
    unfinished = _sqlite_plan(store, queue._UNFINISHED_OF_KEYS, {"b_keys": ["customer:a"], "b_per_key": 5})
    assert "ix_jobs_active_key" in unfinished and "ix_jobs_ordering_key_id" not in unfinished
    candidates = _sqlite_plan(store, queue._CANDIDATES["sqlite"], {"b_now": T0, "b_limit": 5, "b_candidates": 5})
    assert "SEARCH other USING INDEX ix_jobs_leased_key" in candidates
    assert "SEARCH other USING INDEX ix_jobs_status_next_attempt_at" not in candidates


def test_events_left_leased_behind_their_head_by_a_dead_worker_come_along_when_it_is_claimed_again(
        store: Store) -> None:
    first, second, third = (_job(store, "customer:a") for _ in range(3))
    assert _ids(_claim(store, worker="dead")) == [first, second, third]
    later = T0 + timedelta(seconds=31)  # the dead worker's leases have run out
    # Only the head counts as falling due: the others wait behind it (idle workers must not spin on them).
    assert store.next_due_at() == T0 + timedelta(seconds=30)
    again = _claim(store, worker="w2", at=later)
    assert _ids(again) == [first, second, third]
    assert {job.leased_by for job in again} == {"w2"} and {job.lease_token for job in again} == {2}


def test_a_run_out_lease_behind_a_head_waiting_to_retry_is_not_due(store: Store) -> None:
    first, second = _job(store, "customer:a"), _job(store, "customer:a")
    head, behind = _claim(store)
    retry_at = T0 + timedelta(minutes=10)
    attempt = AttemptRecord(started_at=T0, duration_ms=1.0, http_status=503, error="Service Unavailable")
    assert store.retry_later(head, at=retry_at, attempt=attempt, error="Service Unavailable", now=T0)
    # `behind` keeps its lease (its release was lost); once it runs out, only the head's retry is due.
    assert behind.id == second and store.next_due_at() == retry_at
    assert _ids(_claim(store, at=retry_at)) == [first, second]


def test_a_later_step_left_leased_when_its_run_died_is_cancelled_not_claimed(store: Store) -> None:
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun("wf", None, "purchase", "customer:a", T0))
        tx.enqueue([NewJob(run_id=run_id, step_index=i, step_id=f"s{i}", action=EVENT, connection="snap",
                           ordering_key="customer:a", idempotency_key=f"two:{i}", input={"event_id": f"e{i}"})
                    for i in range(2)], now=T0)
    head, behind = _claim(store)
    attempt = AttemptRecord(started_at=T0, duration_ms=1.0, http_status=422, error="refused")
    # The head dies; the event behind it should have been given back first, but that release was lost.
    assert store.dead_letter(head, attempt=attempt, reason="refused", now=T0)
    assert _claim(store, at=T0 + timedelta(seconds=31)) == []
    detail = store.run_detail(run_id)
    assert detail is not None
    assert [(step.status.value, step.attempts) for step in detail.steps] == [("dead", 1), ("cancelled", 1)]
    assert behind.step_index == 1 and store.next_due_at() is None
