"""The group committer against a fake insert function: grouping, outcomes per request, backpressure, drain."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from snapbridge.errors import StoreUnavailable
from snapbridge.runtime import GroupCommitter, ReceiverLimits
from snapbridge.store import EventSource, InsertResult, NewInboundEvent

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


def event(key: str) -> NewInboundEvent:
    return NewInboundEvent(source=EventSource.GUMROAD, connection="shop", dedupe_key=key, kind="sale",
                           payload={"sale_id": key}, received_at=NOW)


class FakeInserts:
    """Stands in for Store.insert_events: keeps keys, can fail, can be held until released."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.keys: dict[str, int] = {}
        self.fail_with: Exception | None = None
        self.poison: str | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, events: Sequence[NewInboundEvent]) -> list[InsertResult]:
        self.entered.set()
        self.gate.wait(10)
        self.calls.append([e.dedupe_key for e in events])
        if self.fail_with is not None:
            raise self.fail_with
        if self.poison is not None and any(e.dedupe_key == self.poison for e in events):
            raise TypeError("payload is not JSON serialisable")
        results = []
        for e in events:
            duplicate = e.dedupe_key in self.keys
            if not duplicate:
                self.keys[e.dedupe_key] = len(self.keys) + 1
            results.append(InsertResult(self.keys[e.dedupe_key], e.dedupe_key, duplicate))
        return results


async def running(fake: FakeInserts, **limits: object) -> GroupCommitter:
    notified: list[int] = []
    committer = GroupCommitter(fake, ReceiverLimits(**limits),  # type: ignore[arg-type]
                               on_commit=lambda: notified.append(1))
    committer.notified = notified  # type: ignore[attr-defined]
    await committer.start()
    return committer


async def test_concurrent_events_share_transactions_and_each_gets_its_own_result() -> None:
    fake = FakeInserts()
    committer = await running(fake)
    fake.gate.clear()  # hold the first commit so the rest pile up behind it
    first = asyncio.ensure_future(committer.submit(event("k0")))
    await asyncio.to_thread(fake.entered.wait, 5)
    rest = [asyncio.ensure_future(committer.submit(event(f"k{i}"))) for i in range(1, 100)]
    await asyncio.sleep(0)
    fake.gate.set()
    results = await asyncio.gather(first, *rest)
    await committer.stop()
    assert [r.key for r in results] == [f"k{i}" for i in range(100)]
    assert len({r.id for r in results}) == 100 and not any(r.duplicate for r in results)
    assert fake.calls[0] == ["k0"] and len(fake.calls) == 2  # the 99 that waited went in one transaction
    stats = committer.stats
    assert (stats.batches, stats.events, stats.largest_batch) == (2, 100, 99)


async def test_a_duplicate_in_the_same_or_a_later_batch_is_reported_as_such() -> None:
    fake = FakeInserts()
    committer = await running(fake)
    first, second = await asyncio.gather(committer.submit(event("same")), committer.submit(event("same")))
    third = await committer.submit(event("same"))
    await committer.stop()
    assert [first.duplicate, second.duplicate, third.duplicate] == [False, True, True]
    assert first.id == second.id == third.id


async def test_max_batch_caps_a_transaction() -> None:
    fake = FakeInserts()
    committer = await running(fake, max_batch=10)
    fake.gate.clear()
    waiting = [asyncio.ensure_future(committer.submit(event(f"k{i}"))) for i in range(35)]
    await asyncio.to_thread(fake.entered.wait, 5)
    fake.gate.set()
    await asyncio.gather(*waiting)
    await committer.stop()
    assert max(len(call) for call in fake.calls) == 10 and sum(len(c) for c in fake.calls) == 35


async def test_linger_gathers_events_that_arrive_a_little_later() -> None:
    fake = FakeInserts()
    committer = await running(fake, linger_seconds=0.05)
    first = asyncio.ensure_future(committer.submit(event("a")))
    await asyncio.sleep(0.005)
    second = asyncio.ensure_future(committer.submit(event("b")))
    await asyncio.gather(first, second)
    await committer.stop()
    assert fake.calls == [["a", "b"]]


async def test_a_store_outage_fails_every_request_of_the_batch() -> None:
    fake = FakeInserts()
    fake.fail_with = StoreUnavailable("database is locked")
    committer = await running(fake)
    outcomes = await asyncio.gather(*(committer.submit(event(f"k{i}")) for i in range(5)),
                                    return_exceptions=True)
    fake.fail_with = None
    after = await committer.submit(event("k0"))  # the outage is over: the same event now commits
    await committer.stop()
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert not after.duplicate
    assert committer.stats.failed_batches >= 1
    assert committer.notified == [1]  # type: ignore[attr-defined]


async def test_one_unstorable_event_does_not_refuse_its_neighbours() -> None:
    fake = FakeInserts()
    fake.poison = "bad"
    committer = await running(fake)
    fake.gate.clear()
    blocker = asyncio.ensure_future(committer.submit(event("first")))
    await asyncio.to_thread(fake.entered.wait, 5)
    batch = [asyncio.ensure_future(committer.submit(event(k))) for k in ("x", "bad", "y")]
    await asyncio.sleep(0)
    fake.gate.set()
    await blocker
    outcomes = await asyncio.gather(*batch, return_exceptions=True)
    await committer.stop()
    assert isinstance(outcomes[1], StoreUnavailable)
    assert isinstance(outcomes[0], InsertResult) and isinstance(outcomes[2], InsertResult)
    assert set(fake.keys) == {"first", "x", "y"}


async def test_a_full_backlog_answers_at_once() -> None:
    fake = FakeInserts()
    committer = await running(fake, max_backlog=3)
    fake.gate.clear()
    waiting = [asyncio.ensure_future(committer.submit(event(f"k{i}"))) for i in range(3)]
    await asyncio.to_thread(fake.entered.wait, 5)
    with pytest.raises(StoreUnavailable, match="3 events waiting"):
        await committer.submit(event("one too many"))
    fake.gate.set()
    await asyncio.gather(*waiting)
    await committer.submit(event("room again"))
    await committer.stop()
    assert "one too many" not in fake.keys and "room again" in fake.keys


async def test_a_slow_commit_is_answered_as_unavailable_and_the_retry_dedupes() -> None:
    fake = FakeInserts()
    committer = await running(fake, commit_timeout_seconds=0.05)
    fake.gate.clear()
    with pytest.raises(StoreUnavailable, match="did not commit within"):
        await committer.submit(event("slow"))
    fake.gate.set()
    retried = await committer.submit(event("slow"))
    await committer.stop()
    assert retried.duplicate  # the first try was committed after all; its sender's retry is recognised


async def test_stop_commits_what_is_queued_then_refuses() -> None:
    fake = FakeInserts()
    committer = await running(fake)
    fake.gate.clear()
    waiting = [asyncio.ensure_future(committer.submit(event(f"k{i}"))) for i in range(5)]
    await asyncio.to_thread(fake.entered.wait, 5)
    stopping = asyncio.ensure_future(committer.stop())
    await asyncio.sleep(0.01)
    fake.gate.set()
    await stopping
    assert all(not r.duplicate for r in await asyncio.gather(*waiting))
    with pytest.raises(StoreUnavailable, match="not accepting"):
        await committer.submit(event("late"))


async def test_on_commit_runs_only_when_something_new_was_stored() -> None:
    fake = FakeInserts()
    committer = await running(fake)
    await committer.submit(event("new"))
    await committer.submit(event("new"))
    await committer.stop()
    assert committer.notified == [1]  # type: ignore[attr-defined]


async def test_a_failing_callback_does_not_fail_the_request() -> None:
    fake = FakeInserts()

    def broken() -> None:
        raise RuntimeError("deriver gone")

    committer = GroupCommitter(fake, on_commit=broken)
    await committer.start()
    assert not (await committer.submit(event("k"))).duplicate
    await committer.stop()


async def test_a_store_answering_the_wrong_number_of_rows_fails_the_batch_not_the_collector() -> None:
    calls: list[int] = []

    def short(events: Sequence[NewInboundEvent]) -> list[InsertResult]:
        calls.append(len(events))
        if len(calls) == 1:
            return []
        return [InsertResult(1, e.dedupe_key, False) for e in events]

    committer = GroupCommitter(short)
    await committer.start()
    with pytest.raises(StoreUnavailable, match="could not be stored"):
        await committer.submit(event("first"))
    assert (await committer.submit(event("second"))).key == "second"
    await committer.stop()


async def test_requests_queued_behind_a_stuck_commit_each_time_out_and_their_events_land() -> None:
    held = FakeInserts()
    held.gate.clear()
    committer = await running(held, commit_timeout_seconds=0.05)
    first = asyncio.ensure_future(committer.submit(event("first")))
    await asyncio.to_thread(held.entered.wait, 5)  # its batch is in the store, stuck
    queued = [asyncio.ensure_future(committer.submit(event(f"queued-{n}"))) for n in range(20)]
    for waiting in [first, *queued]:
        with pytest.raises(StoreUnavailable, match=r"did not commit within 0\.05s"):
            await waiting
    # Every earlier deadline has passed: a later request gets a timer of its own.
    with pytest.raises(StoreUnavailable, match="did not commit within"):
        await committer.submit(event("later"))
    held.gate.set()
    retried = await asyncio.gather(*(committer.submit(event(key))
                                     for key in ["first", "later", *(f"queued-{n}" for n in range(20))]))
    await committer.stop()
    assert all(result.duplicate for result in retried)  # each timed-out event was committed after all
