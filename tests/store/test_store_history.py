"""Run history for the CLI and dashboard on both engines: filters, paging, steps with their attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from snapbridge.store import AttemptOutcome, AttemptRecord, JobStatus, NewJob, NewRun, RunStatus, Store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _run(store: Store, workflow: str, customer: str, at: datetime, steps: int = 1) -> int:
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun(workflow, None, "purchase", customer, at))
        tx.enqueue([NewJob(run_id, i, f"s{i}", "customers.update", "hl", customer, f"{run_id}-{i}", {"i": i})
                    for i in range(steps)], now=at)
    return run_id


def test_runs_filter_and_page(store: Store) -> None:
    a = _run(store, "welcome", "customer:a", T0)
    b = _run(store, "welcome", "customer:b", T0 + timedelta(minutes=1))
    c = _run(store, "upsell", "customer:a", T0 + timedelta(minutes=2))
    assert [r.id for r in store.runs()] == [c, b, a]
    assert [r.id for r in store.runs(workflow="welcome")] == [b, a]
    assert [r.id for r in store.runs(customer="customer:a")] == [c, a]
    assert [r.id for r in store.runs(since=T0 + timedelta(minutes=1))] == [c, b]
    assert [r.id for r in store.runs(before_id=c, limit=1)] == [b]
    assert [r.id for r in store.runs(status=RunStatus.PENDING)] == [c, b, a]
    assert store.runs(status=[RunStatus.FAILED, RunStatus.DEAD]) == []


def test_run_detail_shows_steps_and_attempts(store: Store) -> None:
    run_id = _run(store, "welcome", "customer:a", T0, steps=2)
    (job,) = store.claim("w", limit=5, lease_seconds=30, now=T0)
    store.retry_later(job, at=T0, attempt=AttemptRecord(T0, 40.0, 503, "PUT /c", "busy", "HTTP 503"),
                      error="HTTP 503", now=T0)
    (job,) = store.claim("w", limit=5, lease_seconds=30, now=T0)
    store.complete(job, output={"id": "c_1"}, attempt=AttemptRecord(T0, 20.0, 200, "PUT /c", "{}"), now=T0)
    summary = store.runs()[0]
    assert (summary.steps, summary.steps_succeeded, summary.attempts) == (2, 1, 2)
    assert summary.status is RunStatus.RUNNING
    detail = store.run_detail(run_id)
    assert detail is not None
    first, second = detail.steps
    assert (first.status, first.attempts, first.output, first.last_error) == (
        JobStatus.SUCCEEDED, 2, {"id": "c_1"}, None)
    assert [(a.attempt, a.outcome, a.http_status, a.error) for a in first.attempt_log] == [
        (1, AttemptOutcome.RETRY, 503, "HTTP 503"), (2, AttemptOutcome.SUCCEEDED, 200, "")]
    assert first.attempt_log[0].duration_ms == 40.0 and first.attempt_log[0].response_excerpt == "busy"
    assert (second.status, second.attempt_log, second.input) == (JobStatus.QUEUED, (), {"i": 1})
    assert store.run_detail(run_id + 100) is None


def test_dead_letters_newest_first(store: Store) -> None:
    for customer in ("customer:a", "customer:b"):
        _run(store, "welcome", customer, T0)
    jobs = store.claim("w", limit=5, lease_seconds=30, now=T0)
    for offset, job in enumerate(jobs):
        store.dead_letter(job, attempt=AttemptRecord(T0, 1.0, 422), reason=f"invalid {offset}",
                          now=T0 + timedelta(seconds=offset))
    letters = store.dead_letters()
    assert [d.reason for d in letters] == ["invalid 1", "invalid 0"]
    assert letters[0].died_at == T0 + timedelta(seconds=1) and letters[0].attempts == 1
    assert [d.reason for d in store.dead_letters(limit=1)] == ["invalid 1"]
    assert store.runs()[0].last_error == "invalid 1"
