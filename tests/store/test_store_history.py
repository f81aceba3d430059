"""Run history for the CLI and dashboard on both engines: filters, paging, steps with their attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

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


def test_runs_filter_by_a_time_window(store: Store) -> None:
    a = _run(store, "welcome", "customer:a", T0)
    b = _run(store, "welcome", "customer:b", T0 + timedelta(minutes=1))
    c = _run(store, "welcome", "customer:c", T0 + timedelta(minutes=2))
    # [since, until): a run made exactly at `until` belongs to the next window.
    assert [r.id for r in store.runs(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=2))] == [b]
    assert [r.id for r in store.runs(until=T0 + timedelta(minutes=1))] == [a]
    assert [r.id for r in store.runs(since=T0, until=T0 + timedelta(hours=1))] == [c, b, a]
    assert store.runs(since=T0 + timedelta(minutes=5)) == []
    in_berlin = T0.astimezone(timezone(timedelta(hours=1)))  # the same instant in another zone
    assert [r.id for r in store.runs(since=in_berlin + timedelta(minutes=2))] == [c]


def _dead(store: Store, workflow: str, connection: str, reason: str, at: datetime, steps: int = 1) -> int:
    """A run whose first step fails for good at `at`; its later steps are cancelled."""
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun(workflow, None, "purchase", f"customer:{workflow}:{connection}", at))
        tx.enqueue([NewJob(run_id, i, f"s{i}", "customers.update", connection, f"key:{run_id}",
                           f"{run_id}-{i}", {"i": i}) for i in range(steps)], now=at)
    (job,) = [j for j in store.claim("w", limit=50, lease_seconds=30, now=at) if j.run_id == run_id]
    store.dead_letter(job, attempt=AttemptRecord(at, 1.0, 422), reason=reason, now=at)
    return run_id


def test_dead_letters_filter_by_workflow_connection_reason_and_time(store: Store) -> None:
    _dead(store, "welcome", "snapshots", "HTTP 422: email is invalid", T0)
    _dead(store, "welcome", "gumroad", "HTTP 404: sale not found", T0 + timedelta(minutes=1))
    _dead(store, "upsell", "snapshots", "HTTP 401: The token is not authorized", T0 + timedelta(minutes=2))

    def reasons(**filters: Any) -> list[str]:
        return [d.reason for d in store.dead_letters(**filters)]

    assert reasons(workflow="welcome") == ["HTTP 404: sale not found", "HTTP 422: email is invalid"]
    assert reasons(connection="snapshots") == ["HTTP 401: The token is not authorized",
                                               "HTTP 422: email is invalid"]
    assert reasons(reason="NOT AUTHORIZED") == ["HTTP 401: The token is not authorized"]  # any case
    assert reasons(reason="%") == [] and reasons(reason="_") == []  # LIKE wildcards are plain text
    assert reasons(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=2)) == ["HTTP 404: sale not found"]
    assert reasons(workflow="welcome", connection="snapshots", reason="invalid") == ["HTTP 422: email is invalid"]
    assert reasons(workflow="nope") == []


def test_replaying_a_filter_takes_only_the_matching_dead_letters(store: Store) -> None:
    kept = _dead(store, "welcome", "snapshots", "HTTP 422: email is invalid", T0)
    gumroad = _dead(store, "welcome", "gumroad", "HTTP 404: sale not found", T0 + timedelta(minutes=1))
    assert store.replay_matching(connection="nope").queued == 0
    assert store.replay_matching(workflow="welcome", connection="gumroad", since=T0, now=T0).queued == 1
    assert [d.run_id for d in store.dead_letters()] == [kept]
    detail = store.run_detail(gumroad)
    assert detail is not None and detail.run.status is RunStatus.RUNNING
    assert [s.status for s in detail.steps] == [JobStatus.QUEUED]
    assert store.replay_matching(workflow="welcome", connection="gumroad").queued == 0  # nothing dead there now


def test_replaying_from_the_trigger_queues_every_step_with_the_same_keys(store: Store) -> None:
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun("welcome", None, "purchase", "customer:a", T0))
        tx.enqueue([NewJob(run_id, i, f"s{i}", "customers.update", "snapshots", "customer:a", f"{run_id}-{i}",
                           {"i": i}) for i in range(3)], now=T0)
    (first,) = store.claim("w", limit=5, lease_seconds=30, now=T0)
    store.complete(first, output={"id": "c_1"}, attempt=AttemptRecord(T0, 5.0, 200), now=T0)
    (second,) = store.claim("w", limit=5, lease_seconds=30, now=T0)
    store.dead_letter(second, attempt=AttemptRecord(T0, 5.0, 422), reason="HTTP 422: bad plan", now=T0)
    before = store.run_detail(run_id)
    assert before is not None
    assert [s.status for s in before.steps] == [JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED]

    assert store.replay_matching(reason="bad plan", from_start=True, now=T0).queued == 1
    after = store.run_detail(run_id)
    assert after is not None and after.run.status is RunStatus.RUNNING
    assert [s.status for s in after.steps] == [JobStatus.QUEUED] * 3
    assert [s.idempotency_key for s in after.steps] == [s.idempotency_key for s in before.steps]
    # The first step runs again first: the same key asks the API for the write it already made.
    assert [j.step_index for j in store.claim("w", limit=5, lease_seconds=30, now=T0)] == [0]


def test_dead_letters_page_by_the_last_job_id_without_skips_or_repeats(store: Store) -> None:
    for n in range(5):
        _run(store, "welcome", f"customer:{n}", T0)
    jobs = store.claim("w", limit=10, lease_seconds=30, now=T0)
    for n, job in enumerate(jobs):  # two died at one instant: the job id orders them
        store.dead_letter(job, attempt=AttemptRecord(T0, 1.0, 422), reason=f"invalid {n}",
                          now=T0 + timedelta(seconds=min(n, 3)))
    everything = [d.job_id for d in store.dead_letters()]
    pages: list[int] = []
    before: int | None = None
    while page := store.dead_letters(2, before=before):
        pages += [d.job_id for d in page]
        before = page[-1].job_id
    assert pages == everything and len(everything) == 5
    assert store.dead_letters(before=max(everything) + 1000) == []  # not a job: nothing, not everything
