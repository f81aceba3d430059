"""The job queue on both engines: enqueue once, claim in order per key, fencing, deferred inputs, replay."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from snapbridge.errors import InvalidInput
from snapbridge.store import (
    AttemptOutcome,
    AttemptRecord,
    ClaimedJob,
    JobDead,
    JobDone,
    JobOutcome,
    JobReleased,
    JobRetry,
    JobStatus,
    NewJob,
    NewRun,
    RunStatus,
    Store,
)
from snapbridge.store.outcomes import lookup, reference_path

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _attempt(at: datetime = T0, status: int | None = 200, error: str = "") -> AttemptRecord:
    return AttemptRecord(started_at=at, duration_ms=12.5, http_status=status, request_excerpt="PUT /x",
                         response_excerpt="{}", error=error)


def _run(store: Store, key: str, steps: int = 1, *, workflow: str = "wf", event: int | None = None,
         deferred: Mapping[int, Mapping[str, object]] | None = None,
         at: datetime = T0) -> tuple[int, list[int]]:
    """A run of `steps` steps for ordering key `key`; returns (run id, job ids in step order)."""
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun(workflow, event, "purchase", key, at))
        results = tx.enqueue([
            NewJob(run_id=run_id, step_index=i, step_id=f"s{i}", action="customers.update", connection="hl",
                   ordering_key=key, idempotency_key=f"{workflow}:{event}:{run_id}:{key}:s{i}",
                   input={"n": i}, deferred=(deferred or {}).get(i, {}))
            for i in range(steps)
        ], now=at)
    return run_id, [r.id for r in results]


def _claim(store: Store, worker: str = "w1", limit: int = 10, at: datetime = T0,
           lease: float = 30.0) -> list[ClaimedJob]:
    return store.claim(worker, limit=limit, lease_seconds=lease, now=at)


def _job_row(store: Store, job_id: int) -> Mapping[str, object]:
    from snapbridge.store.schema import jobs

    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()._mapping)


def test_one_job_per_ordering_key_in_id_order(store: Store) -> None:
    _, a = _run(store, "customer:a", steps=2)
    _, b = _run(store, "customer:b")
    _, a2 = _run(store, "customer:a")
    first = _claim(store)
    assert [j.id for j in first] == [a[0], b[0]]  # a's second step and a's next run wait
    assert _claim(store, "w2") == []
    assert store.complete(first[0], output={"ok": 1}, attempt=_attempt())
    second = _claim(store, "w2")
    assert [j.id for j in second] == [a[1]]
    assert second[0].step_outputs == {"s0": {"ok": 1}}
    assert store.complete(second[0], output=None, attempt=_attempt())
    assert [j.id for j in _claim(store)] == a2


def test_claim_sets_lease_and_counts_attempts(store: Store) -> None:
    _run(store, "k", event=None)
    (job,) = _claim(store, "worker-7", lease=45)
    assert (job.attempt, job.lease_token, job.leased_by) == (1, 1, "worker-7")
    assert job.lease_expires_at == T0 + timedelta(seconds=45)
    assert job.workflow_name == "wf" and job.input == {"n": 0}
    row = _job_row(store, job.id)
    assert (row["status"], row["attempts"], row["lease_token"]) == ("leased", 1, 1)
    assert store.runs()[0].status is RunStatus.RUNNING


def test_not_due_until_next_attempt_at(store: Store) -> None:
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun("wf", None, "purchase", "k", T0))
        due = T0 + timedelta(seconds=5)
        tx.enqueue([NewJob(run_id, 0, "s0", "a", "hl", "k", "idem-1", {}, next_attempt_at=due)])
    assert _claim(store, at=T0 + timedelta(seconds=4, microseconds=999_999)) == []
    assert store.next_due_at() == T0 + timedelta(seconds=5)
    assert len(_claim(store, at=T0 + timedelta(seconds=5))) == 1


def test_enqueue_ignores_a_known_idempotency_key(store: Store) -> None:
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun("wf", None, "purchase", "k", T0))
        job = NewJob(run_id, 0, "s0", "a", "hl", "k", "idem-same", {"v": 1})
        first = tx.enqueue([job, job])
    with store.transaction() as tx:
        again = tx.enqueue([NewJob(run_id, 0, "s0", "a", "hl", "k", "idem-same", {"v": 2})])
    assert [r.duplicate for r in first] == [False, True]
    assert first[0].id == first[1].id == again[0].id and again[0].duplicate
    assert store.counts()["queued"] == 1
    assert _job_row(store, first[0].id)["input"] == {"v": 1}


def test_a_rederived_event_finds_its_run(store: Store) -> None:
    from snapbridge.store import EventSource, NewInboundEvent

    (event,) = store.insert_events([NewInboundEvent(EventSource.GUMROAD, "g", "sale:1", "sale", {}, T0)])
    with store.transaction() as tx:
        one = tx.create_run(NewRun("wf", event.id, "purchase", "k", T0))
        two = tx.create_run(NewRun("wf", event.id, "purchase", "k", T0))
        other = tx.create_run(NewRun("wf2", event.id, "purchase", "k", T0))
    assert one == two != other


def test_fencing_a_stale_worker_changes_nothing(store: Store) -> None:
    _, (job_id,) = _run(store, "k")
    (stale,) = _claim(store, "w1", lease=30)
    later = T0 + timedelta(seconds=31)
    (fresh,) = _claim(store, "w2", at=later)
    assert (fresh.id, fresh.lease_token, fresh.attempt) == (job_id, stale.lease_token + 1, 2)
    before = _job_row(store, job_id)
    assert store.complete(stale, output={"stale": True}, attempt=_attempt(), now=later) is False
    assert store.retry_later(stale, at=later, attempt=_attempt(), error="x", now=later) is False
    assert store.dead_letter(stale, attempt=_attempt(), reason="x", now=later) is False
    assert store.release(stale, now=later) is False
    assert _job_row(store, job_id) == before
    assert store.complete(fresh, output={"fresh": True}, attempt=_attempt(), now=later) is True
    detail = store.run_detail(fresh.run_id)
    assert detail is not None
    assert detail.run.status is RunStatus.SUCCEEDED and detail.steps[0].output == {"fresh": True}
    outcomes = [a.outcome for a in detail.steps[0].attempt_log]
    assert outcomes == [AttemptOutcome.FENCED] * 3 + [AttemptOutcome.SUCCEEDED]


def _ending(kind: str, job: ClaimedJob) -> JobOutcome:
    if kind == "done":
        return JobDone(job, {"customer": {"id": "c_1"}, "tags": ("a", "b")}, _attempt())
    if kind == "retry":
        return JobRetry(job, T0 + timedelta(seconds=90, microseconds=123), _attempt(status=503), "HTTP 503")
    if kind == "dead":
        return JobDead(job, _attempt(status=404), "NotFound: customer c_9")
    return JobReleased(job)


@pytest.mark.parametrize("kind", ["done", "retry", "dead", "released"])
def test_an_ending_sent_again_after_its_commit_is_applied_once_not_fenced(store: Store, kind: str) -> None:
    # The first settle committed but its answer was lost (say the database went away right after COMMIT); the
    # caller sends the same outcome again.
    run_id, (job_id,) = _run(store, "k")
    (job,) = _claim(store)
    ending = _ending(kind, job)
    assert store.settle([ending], now=T0) == [True]
    after = _job_row(store, job_id)
    runs_after = store.run_detail(run_id)
    assert store.settle([ending], now=T0 + timedelta(seconds=5)) == [True]
    assert _job_row(store, job_id) == after  # nothing written the second time
    detail = store.run_detail(run_id)
    assert detail is not None and runs_after is not None and detail.run == runs_after.run
    attempts = [a.outcome for a in detail.steps[0].attempt_log]
    expected = {"done": [AttemptOutcome.SUCCEEDED], "retry": [AttemptOutcome.RETRY],
                "dead": [AttemptOutcome.DEAD], "released": []}
    assert attempts == expected[kind]  # the attempt is recorded once


def test_an_ending_sent_again_after_another_worker_took_the_job_stays_fenced(store: Store) -> None:
    _, (job_id,) = _run(store, "k")
    (mine,) = _claim(store, "w1")
    retry = JobRetry(mine, T0 + timedelta(seconds=1), _attempt(status=503), "HTTP 503")
    assert store.settle([retry], now=T0) == [True]
    (theirs,) = _claim(store, "w2", at=T0 + timedelta(seconds=1))
    assert store.complete(theirs, output={"theirs": True}, attempt=_attempt())
    assert store.settle([retry], now=T0 + timedelta(seconds=2)) == [False]
    row = _job_row(store, job_id)
    assert (row["status"], row["lease_token"], row["output"]) == ("succeeded", theirs.lease_token, {"theirs": True})


def test_a_different_ending_for_an_already_ended_lease_is_fenced(store: Store) -> None:
    _, (job_id,) = _run(store, "k")
    (job,) = _claim(store)
    assert store.settle([JobDone(job, {"id": 1}, _attempt())], now=T0) == [True]
    assert store.settle([JobDone(job, {"id": 2}, _attempt())], now=T0) == [False]
    assert store.settle([JobDead(job, _attempt(), "bad")], now=T0) == [False]
    assert _job_row(store, job_id)["output"] == {"id": 1}


def test_a_live_lease_is_not_taken_and_an_expired_one_is(store: Store) -> None:
    _run(store, "k")
    _claim(store, "w1", lease=30)
    assert _claim(store, "w2", at=T0 + timedelta(seconds=29)) == []
    assert store.next_due_at() == T0 + timedelta(seconds=30)
    assert len(_claim(store, "w2", at=T0 + timedelta(seconds=30))) == 1


def test_deferred_inputs_are_filled_when_the_earlier_step_completes(store: Store) -> None:
    deferred = {1: {"customer_id": "steps.s0.output.customer.id", "first": "steps.s0.output.items.0",
                    "whole": "steps.s0.output", "gone": "steps.s0.output.nope",
                    "note": "{{ steps.s0.output.customer.name | upper }}"}}
    _, (s0, s1) = _run(store, "k", steps=2, deferred=deferred)
    (job,) = _claim(store)
    assert job.id == s0
    output = {"customer": {"id": "c_1", "name": "Ada"}, "items": ["x", "y"]}
    assert store.complete(job, output=output, attempt=_attempt())
    (later,) = _claim(store)
    assert later.id == s1
    assert later.input == {"n": 1, "customer_id": "c_1", "first": "x", "whole": output, "gone": None}
    assert later.deferred == {"note": "{{ steps.s0.output.customer.name | upper }}"}
    assert later.step_outputs == {"s0": output}
    assert store.complete(later, output={}, attempt=_attempt())
    assert store.runs()[0].status is RunStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("reference", "step_id", "path"),
    [
        ("steps.find.output", "find", ()),
        ("steps.find.output.id", "find", ("id",)),
        ("steps.find.output.a.0.b", "find", ("a", "0", "b")),
        ("steps.find.output.", "find", None),
        ("steps.finder.output.id", "find", None),
        ("steps.find.outputs.id", "find", None),
        ("{{ steps.find.output.id }}", "find", None),
        (42, "find", None),
    ],
)
def test_reference_path(reference: object, step_id: str, path: tuple[str, ...] | None) -> None:
    assert reference_path(reference, step_id) == path


@pytest.mark.parametrize(
    ("value", "path", "expected"),
    [
        ({"a": {"b": 1}}, ("a", "b"), 1),
        ({"a": [10, 20]}, ("a", "1"), 20),
        ({"a": [10, 20]}, ("a", "2"), None),
        ({"a": [10, 20]}, ("a", "x"), None),
        ({"a": 1}, ("a", "b"), None),
        (None, ("a",), None),
        ({"a": 1}, (), {"a": 1}),
    ],
)
def test_lookup(value: object, path: tuple[str, ...], expected: object) -> None:
    assert lookup(value, path) == expected


def test_retry_later_requeues_and_marks_the_run_failed(store: Store) -> None:
    _, (job_id,) = _run(store, "k")
    (job,) = _claim(store)
    at = T0 + timedelta(seconds=90)
    assert store.retry_later(job, at=at, attempt=_attempt(status=503), error="HTTP 503")
    row = _job_row(store, job_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("queued", 1, "HTTP 503")
    assert row["leased_by"] is None
    assert store.runs(status=RunStatus.FAILED)[0].last_error == "HTTP 503"
    assert _claim(store, at=at - timedelta(seconds=1)) == []
    (again,) = _claim(store, at=at)
    assert again.attempt == 2


def test_dead_letter_cancels_later_steps_and_frees_the_key(store: Store) -> None:
    run_id, (s0, s1) = _run(store, "k", steps=2)
    _, (next_run_job,) = _run(store, "k")
    (job,) = _claim(store)
    assert store.dead_letter(job, attempt=_attempt(status=404), reason="NotFound: customer c_9")
    assert _job_row(store, s1)["status"] == "cancelled"
    assert [j.id for j in _claim(store)] == [next_run_job]  # one dead letter does not hold the customer back
    (letter,) = store.dead_letters()
    assert (letter.job_id, letter.run_id, letter.customer_key) == (s0, run_id, "k")
    assert letter.reason == "NotFound: customer c_9"
    assert store.runs(status=[RunStatus.DEAD])[0].id == run_id


def test_replay_from_the_failed_step_then_twice_does_nothing(store: Store) -> None:
    run_id, (_, s1) = _run(store, "k", steps=2)
    (job,) = _claim(store)
    assert store.complete(job, output={"id": 1}, attempt=_attempt())
    (job,) = _claim(store)
    assert store.dead_letter(job, attempt=_attempt(), reason="bad")
    assert store.replay(run_ids=[run_id], now=T0).queued == 1
    assert store.replay(run_ids=[run_id], now=T0).queued == 0
    (again,) = _claim(store)
    assert (again.id, again.attempt, again.idempotency_key) == (s1, 1, job.idempotency_key)
    assert store.complete(again, output={}, attempt=_attempt())
    assert store.run_detail(run_id).run.status is RunStatus.SUCCEEDED  # type: ignore[union-attr]


def test_replay_requeues_cancelled_later_steps(store: Store) -> None:
    _, (s0, s1) = _run(store, "k", steps=2)
    (job,) = _claim(store)
    store.dead_letter(job, attempt=_attempt(), reason="bad")
    assert store.replay(job_ids=[s0], now=T0).queued == 1
    assert _job_row(store, s1)["status"] == "queued"
    assert [j.id for j in _claim(store)] == [s0]


def test_replay_from_start_runs_every_step_again(store: Store) -> None:
    _, (s0, s1) = _run(store, "k", steps=2, deferred={1: {"cid": "steps.s0.output.id"}})
    (job,) = _claim(store)
    store.complete(job, output={"id": "c_1"}, attempt=_attempt())
    (job,) = _claim(store)
    assert job.input["cid"] == "c_1"
    store.dead_letter(job, attempt=_attempt(), reason="bad")
    assert store.replay(workflow="wf", from_start=True, now=T0).queued == 1
    assert _job_row(store, s1)["input"] == {"n": 1}
    (first,) = _claim(store)
    assert first.id == s0 and first.step_outputs == {}


def test_replay_filters_combine(store: Store) -> None:
    jobs = [_run(store, f"k-{n}", workflow=workflow)[1][0] for n, workflow in enumerate(("a", "b", "b", "b"))]
    for job in _claim(store):
        store.dead_letter(job, attempt=_attempt(), reason="bad")
    with pytest.raises(InvalidInput):
        store.replay(now=T0)
    assert store.replay(workflow="missing", now=T0).queued == 0
    assert store.replay(job_ids=[jobs[0]], workflow="b", now=T0).queued == 0  # job 0 is workflow a's
    assert store.replay(job_ids=[jobs[0], jobs[1]], workflow="b", now=T0).queued == 1
    assert store.replay(workflow="b", now=T0).queued == 2
    assert store.replay(all_dead=True, now=T0).queued == 1
    assert store.counts()["dead"] == 0


def test_release_gives_the_job_back_uncounted(store: Store) -> None:
    _, (job_id,) = _run(store, "k")
    (job,) = _claim(store)
    assert store.release(job, now=T0)
    (again,) = _claim(store, "w2")
    assert (again.id, again.attempt, again.lease_token) == (job_id, 1, 2)


def test_counts_and_next_due(store: Store) -> None:
    assert store.next_due_at() is None
    assert store.counts() == {"queued": 0, "leased": 0, "succeeded": 0, "dead": 0, "cancelled": 0,
                              "events_received": 0}
    _run(store, "k", steps=3)
    _claim(store)
    assert store.counts()["queued"] == 2 and store.counts()["leased"] == 1
    # The queued steps wait behind the leased one: nothing is due before its lease ends.
    assert store.next_due_at() == T0 + timedelta(seconds=30)


def test_claimed_statuses_cover_the_state_machine() -> None:
    assert {s.value for s in JobStatus} == {"queued", "leased", "succeeded", "dead", "cancelled"}
