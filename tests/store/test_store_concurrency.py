"""Under real concurrency (threads, each on its own connection), on both engines: one lease per ordering
key, each job claimed once and in order, duplicates recognised across racing inserts, one bucket shared."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from snapbridge.store import AttemptRecord, EventSource, InsertResult, NewInboundEvent, NewJob, NewRun, Store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _run_threads(count: int, target: Callable[[int], None], stop: threading.Event | None = None) -> None:
    """Run target(0..count-1) in threads; the first failure sets `stop` and is raised here."""
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)
            if stop is not None:
                stop.set()

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a worker thread did not finish"
    if errors:
        raise errors[0]


def test_concurrent_workers_hold_one_lease_per_key_and_claim_each_job_once(store: Store) -> None:
    keys = [f"customer:{i}@example.com" for i in range(5)]
    expected: list[int] = []
    with store.transaction() as tx:
        for n in range(45):
            key = keys[n % len(keys)]
            run_id = tx.create_run(NewRun("wf", None, "purchase", key, T0))
            steps = [NewJob(run_id, i, f"s{i}", "a", "hl", key, f"r{run_id}-s{i}", {})
                     for i in range(1 + n % 3)]
            expected += [r.id for r in tx.enqueue(steps, now=T0)]
    lock = threading.Lock()
    held: dict[str, int] = {}
    claims: Counter[int] = Counter()
    order: dict[str, list[int]] = defaultdict(list)
    violations: list[str] = []
    finished = threading.Event()
    deadline = time.monotonic() + 45

    def worker(index: int) -> None:
        name = f"w{index}"
        while not finished.is_set() and time.monotonic() < deadline:
            batch = store.claim(name, limit=3, lease_seconds=60, now=datetime.now(UTC))
            with lock:
                for job in batch:
                    claims[job.id] += 1
                    order[job.ordering_key].append(job.id)
                    if job.ordering_key in held:
                        violations.append(f"{name} got job {job.id} while job {held[job.ordering_key]} holds "
                                          f"{job.ordering_key}")
                    held[job.ordering_key] = job.id
            for job in batch:
                # Let go of the key before completing: once complete commits, the key's next job is claimable.
                with lock:
                    if held.get(job.ordering_key) == job.id:
                        del held[job.ordering_key]
                attempt = AttemptRecord(started_at=datetime.now(UTC), duration_ms=1.0, http_status=200)
                assert store.complete(job, output={"job": job.id}, attempt=attempt)
            with lock:
                if sum(claims.values()) >= len(expected):
                    finished.set()

    _run_threads(4, worker, finished)
    assert violations == []
    assert sorted(claims) == sorted(expected)
    assert set(claims.values()) == {1}
    for key, ids in order.items():
        assert ids == sorted(ids), f"{key} ran out of order: {ids}"
    assert store.counts()["succeeded"] == len(expected)
    assert {run.status.value for run in store.runs(limit=100)} == {"succeeded"}


def test_racing_inserts_of_the_same_dedupe_keys_store_each_once(store: Store) -> None:
    keys = [f"sale:{i}" for i in range(40)]
    barrier = threading.Barrier(2)
    results: dict[int, dict[str, InsertResult]] = {}

    def sender(index: int) -> None:
        mine = keys if index == 0 else list(reversed(keys))
        barrier.wait()
        got: dict[str, InsertResult] = {}
        for start in range(0, len(mine), 8):
            batch = [NewInboundEvent(EventSource.GUMROAD, "g", key, "sale", {"by": index}, T0)
                     for key in mine[start:start + 8]]
            got.update({r.key: r for r in store.insert_events(batch)})
        results[index] = got

    _run_threads(2, sender)
    for key in keys:
        first, second = results[0][key], results[1][key]
        assert first.id == second.id, key
        assert sorted([first.duplicate, second.duplicate]) == [False, True], key
    assert len({r.id for r in results[0].values()}) == len(keys)
    assert store.counts()["events_received"] == len(keys)


def test_threads_at_one_instant_take_exactly_the_capacity(store: Store) -> None:
    taken: list[int] = []
    lock = threading.Lock()

    def taker(index: int) -> None:
        for _ in range(10):
            if index % 2:
                granted, _ = store.take_tokens("hl", want=3, capacity=10, refill_per_second=1, now=T0)
            else:
                granted = 1 if store.take_token("hl", capacity=10, refill_per_second=1, now=T0) == 0.0 else 0
            with lock:
                taken.append(granted)

    _run_threads(4, taker)
    assert sum(taken) == 10
    assert len(taken) == 40


def test_threads_over_time_never_exceed_capacity_plus_refill(store: Store) -> None:
    capacity, rate = 5.0, 40.0
    lock = threading.Lock()
    stamps: list[datetime] = []
    taken = Counter[str]()
    stop = time.monotonic() + 0.4

    def taker(index: int) -> None:
        while time.monotonic() < stop:
            now = datetime.now(UTC)
            wait = store.take_token("hl", capacity=capacity, refill_per_second=rate, now=now)
            with lock:
                stamps.append(now)
                taken["yes" if wait == 0.0 else "no"] += 1

    _run_threads(3, taker)
    span = (max(stamps) - min(stamps)).total_seconds()
    assert taken["yes"] <= capacity + rate * span + 1e-6
    assert taken["yes"] >= capacity  # it starts full
    assert taken["no"] > 0  # the threads did ask faster than the refill


def test_derivers_take_turns_on_one_key(store: Store) -> None:
    holding, release, acquired = threading.Event(), threading.Event(), threading.Event()

    def role(index: int) -> None:
        if index == 0:  # the first deriver holds the key until the referee lets go
            with store.transaction() as tx:
                tx.lock_key("customer:ada@example.com")
                holding.set()
                assert release.wait(10)
        elif index == 1:  # the second asks for the same key meanwhile
            assert holding.wait(10)
            with store.transaction() as tx:
                tx.lock_key("customer:ada@example.com")
                acquired.set()
        else:  # the referee
            assert holding.wait(10)
            try:
                assert not acquired.wait(0.3), "the second deriver got the key while the first held it"
            finally:
                release.set()

    _run_threads(3, role)
    assert acquired.is_set()
