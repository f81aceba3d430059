"""Claims side by side: a claim in progress holds only the ordering keys it leases, never the whole queue, and
no claim leases a second job of a key that another claim is leasing, even when an earlier job of that key comes
back to the queue meanwhile (a replay). PostgreSQL only where two claims overlap (SQLite's claims take turns)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from snapbridge.store import (
    AttemptRecord,
    ClaimedJob,
    EventSource,
    NewInboundEvent,
    NewJob,
    NewRun,
    RunStatus,
    Store,
)
from snapbridge.store.jobs import claim

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
# How long a claim beside an open one may take before the test calls it blocked (it takes milliseconds).
BLOCKED_AFTER_SECONDS = 10.0


def _attempt() -> AttemptRecord:
    return AttemptRecord(started_at=T0, duration_ms=1.0, http_status=200)


def _run(store: Store, key: str) -> int:
    """One single-step run for ordering key `key`; returns its job id."""
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun("wf", None, "purchase", key, T0))
        (result,) = tx.enqueue([NewJob(run_id, 0, "s0", "customers.update", "hl", key, f"{key}:{run_id}", {})],
                               now=T0)
    return result.id


def _claim(store: Store, worker: str, at: datetime = T0) -> list[int]:
    return [job.id for job in store.claim(worker, limit=10, lease_seconds=60, now=at)]


@contextmanager
def _claim_in_progress(engine: Engine, worker: str) -> Iterator[list[ClaimedJob]]:
    """A claim of one job by `worker` whose transaction stays open (leased, not committed) inside the block."""
    with engine.connect() as conn, conn.begin():
        yield claim(conn, worker, limit=1, lease_seconds=60, now=T0)


def _beside(call: Callable[[], list[int]]) -> list[int]:
    """`call` in another thread (its own connection), which must not wait for the claim left open here."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(call).result(timeout=BLOCKED_AFTER_SECONDS)
    except FutureTimeout:
        raise AssertionError("the claim waited for another claim's transaction") from None
    finally:
        pool.shutdown(wait=False)  # a blocked call ends once the open transaction does, as the test fails


def _waiting_for_a_claim_key(engine: Engine) -> bool:
    """Whether a transaction waits for an ordering key lock in this schema's claim key space (PostgreSQL)."""
    with engine.connect() as conn:
        return bool(conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 2 "
            "AND classid::bigint = ('jobs'::regclass::oid::bigint % 2147483647)")).scalar())


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_claim_in_progress_holds_only_its_own_keys(store: Store, migrated: Engine) -> None:
    mine = _run(store, "customer:a")
    theirs = _run(store, "customer:b")
    with _claim_in_progress(migrated, "w1") as claimed:
        assert [job.id for job in claimed] == [mine]
        # Not blocked by w1, and not given customer:a's job, which w1 has leased but not yet committed.
        assert _beside(lambda: _claim(store, "w2")) == [theirs]
    assert _claim(store, "w3") == []


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_claim_beside_another_looks_past_the_keys_that_one_holds(store: Store, migrated: Engine) -> None:
    first, second, third = (_run(store, f"customer:{name}") for name in "abc")
    with _claim_in_progress(migrated, "w1") as claimed:
        assert [job.id for job in claimed] == [first]
        # Both claims find customer:a's job first; the one that cannot lock its key takes the next.
        one = _beside(lambda: [job.id for job in store.claim("w2", limit=1, lease_seconds=60, now=T0)])
        assert one == [second]
    assert _claim(store, "w3") == [third]


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_an_earlier_job_queued_again_during_a_claim_waits_for_that_claims_lease(store: Store,
                                                                                 migrated: Engine) -> None:
    earlier = _run(store, "customer:a")
    (job,) = store.claim("w0", limit=1, lease_seconds=60, now=T0)
    assert store.dead_letter(job, attempt=_attempt(), reason="HTTP 422")
    later = _run(store, "customer:a")
    with _claim_in_progress(migrated, "w1") as claimed:
        assert [job.id for job in claimed] == [later]
        # Forced, the dead letter comes back ahead of `later`, while w1's lease of `later` is not yet visible.
        assert store.replay(job_ids=[earlier], force=True, now=T0).queued == 1
        assert _beside(lambda: _claim(store, "w2")) == []
    assert _claim(store, "w2") == []  # w1's lease is live: the key's head waits for it
    assert store.complete(claimed[0], output=None, attempt=_attempt())
    assert _claim(store, "w2") == [earlier]


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_replay_during_a_claim_of_a_later_job_of_the_key_waits_for_it_and_leaves_the_dead_letter_out(
        store: Store, migrated: Engine) -> None:
    earlier = _run(store, "customer:a")
    (job,) = store.claim("w0", limit=1, lease_seconds=60, now=T0)
    assert store.dead_letter(job, attempt=_attempt(), reason="HTTP 422")
    later = _run(store, "customer:a")
    pool = ThreadPoolExecutor(1)
    try:
        with _claim_in_progress(migrated, "w1") as claimed:
            assert [job.id for job in claimed] == [later]
            replaying = pool.submit(lambda: store.replay(job_ids=[earlier], now=T0))
            # It waits for the claim's key: queued now, `earlier` would be written after `later`.
            deadline = time.monotonic() + BLOCKED_AFTER_SECONDS
            while not _waiting_for_a_claim_key(migrated):
                assert not replaying.done(), replaying.result()
                assert time.monotonic() < deadline, "the replay never waited for the claim's key"
                time.sleep(0.01)
        outcome = replaying.result(timeout=BLOCKED_AFTER_SECONDS)
    finally:
        pool.shutdown(wait=True)
    assert outcome.queued == 0
    (left_out,) = outcome.superseded
    assert (left_out.job_id, left_out.superseded_by, left_out.delivered_at) == (earlier, later, None)
    assert "being delivered now" in left_out.reason
    assert store.complete(claimed[0], output=None, attempt=_attempt(), now=T0)
    (superseded,) = store.replay(job_ids=[earlier], now=T0).superseded
    assert (superseded.superseded_by, superseded.delivered_at) == (later, T0)


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_claim_does_not_wait_for_a_deriver_holding_the_key(store: Store) -> None:
    job_id = _run(store, "customer:a")
    with store.transaction() as tx:
        tx.lock_key("customer:a")  # a deriver adding this customer's jobs
        assert _beside(lambda: _claim(store, "w1")) == [job_id]


def test_a_claim_reports_the_run_and_sets_it_running_again_after_a_retry(store: Store) -> None:
    (event,) = store.insert_events([NewInboundEvent(EventSource.GUMROAD, "g", "sale:1", "sale", {}, T0)])
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun("wf-a", event.id, "purchase", "customer:a", T0))
        tx.enqueue([NewJob(run_id, i, f"s{i}", "customers.update", "hl", "customer:a", f"a:{i}", {})
                    for i in range(2)], now=T0)
    (first,) = store.claim("w1", limit=10, lease_seconds=60, now=T0)
    assert (first.workflow_name, first.inbound_event_id, first.step_index) == ("wf-a", event.id, 0)
    assert store.runs()[0].status is RunStatus.RUNNING
    retry_at = T0 + timedelta(seconds=5)
    assert store.retry_later(first, at=retry_at, attempt=_attempt(), error="HTTP 503")
    assert store.runs()[0].status is RunStatus.FAILED
    (again,) = store.claim("w1", limit=10, lease_seconds=60, now=retry_at)
    assert (again.id, again.attempt, again.lease_token) == (first.id, 2, 2)
    assert store.runs()[0].status is RunStatus.RUNNING
    assert store.complete(again, output={"id": "c_1"}, attempt=_attempt())
    (second,) = store.claim("w1", limit=10, lease_seconds=60, now=retry_at)
    assert (second.step_index, second.step_outputs) == (1, {"s0": {"id": "c_1"}})
    assert (second.workflow_name, second.inbound_event_id) == ("wf-a", event.id)
    assert store.runs()[0].status is RunStatus.RUNNING


def test_an_expired_lease_is_taken_before_due_jobs_and_keeps_its_key(store: Store) -> None:
    stalled = _run(store, "customer:a")
    assert _claim(store, "w1") == [stalled]
    _run(store, "customer:a")  # waits behind the stalled job, whoever holds its lease
    other = _run(store, "customer:b")
    expired = T0 + timedelta(seconds=60)
    claimed = store.claim("w2", limit=1, lease_seconds=60, now=expired)
    assert [(job.id, job.lease_token, job.leased_by) for job in claimed] == [(stalled, 2, "w2")]
    assert _claim(store, "w3", at=expired) == [other]  # customer:a's next job waits for the new lease
    assert _claim(store, "w3", at=expired) == []  # the new lease still holds customer:a


def test_claims_racing_with_retries_and_releases_keep_one_lease_per_key_in_order(store: Store) -> None:
    keys = [f"customer:{i}" for i in range(6)]
    expected = [_run(store, keys[n % len(keys)]) for n in range(36)]
    lock = threading.Lock()
    held: dict[str, int] = {}
    claimed_order: dict[str, list[int]] = defaultdict(list)
    done: Counter[int] = Counter()
    violations: list[str] = []
    finished = threading.Event()
    deadline = time.monotonic() + 60

    def worker(index: int) -> None:
        name, pick = f"w{index}", random.Random(index)
        while not finished.is_set() and time.monotonic() < deadline:
            now = datetime.now(UTC)
            batch = store.claim(name, limit=2, lease_seconds=60, now=now)
            with lock:
                for job in batch:
                    claimed_order[job.ordering_key].append(job.id)
                    if job.ordering_key in held:
                        violations.append(f"{name} got {job.id} while {held[job.ordering_key]} holds the key")
                    held[job.ordering_key] = job.id
            for job in batch:
                ending = pick.choice(["done", "done", "retry", "release"])
                with lock:  # let go before the ending commits: the key's next job is claimable right after
                    if held.get(job.ordering_key) == job.id:
                        del held[job.ordering_key]
                    if ending == "done":
                        done[job.id] += 1
                if ending == "done":
                    assert store.complete(job, output=None, attempt=_attempt())
                elif ending == "retry":
                    assert store.retry_later(job, at=now, attempt=_attempt(), error="HTTP 503")
                else:
                    assert store.release(job)
            with lock:
                if len(done) == len(expected):
                    finished.set()

    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            worker(index)
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)
            finished.set()

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]
    assert violations == []
    assert sorted(done) == sorted(expected) and set(done.values()) == {1}
    for key, ids in claimed_order.items():
        assert ids == sorted(ids), f"{key} ran out of order: {ids}"
    assert store.counts()["succeeded"] == len(expected)
