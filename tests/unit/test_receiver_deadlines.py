"""The group committer's commit timeout: each request answered "retry later" on its own deadline, its event
still committed once the store catches up."""

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


class HeldInserts:
    """Stands in for Store.insert_events, holding every call while the gate is closed."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, events: Sequence[NewInboundEvent]) -> list[InsertResult]:
        self.entered.set()
        self.gate.wait(10)
        results = []
        for e in events:
            duplicate = e.dedupe_key in self.keys
            self.keys.setdefault(e.dedupe_key, len(self.keys) + 1)
            results.append(InsertResult(self.keys[e.dedupe_key], e.dedupe_key, duplicate))
        return results


async def test_requests_queued_behind_a_stuck_commit_each_time_out_and_their_events_land() -> None:
    held = HeldInserts()
    committer = GroupCommitter(held, ReceiverLimits(commit_timeout_seconds=0.05))
    await committer.start()
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

