"""Rereads: an unknown secret waits for a read begun after it arrived; reads run one at a time and at most every
MIN_GAP_SECONDS; a read begun before a change made here is not applied over it; a hung read is waited for at most
WAIT_SECONDS; a new event loop starts clean. Real threads and real time, small gaps."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from snapbridge.web import rereads
from snapbridge.web.rereads import Rereads


class Source:
    """A load function counting its reads, optionally held until released."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a read has begun

    def load(self) -> int:
        self.reads += 1
        self.entered.set()
        seen = self.value
        assert self.gate.wait(10)
        return seen


@pytest.fixture(autouse=True)
def small_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rereads, "MIN_GAP_SECONDS", 0.05)
    monkeypatch.setattr(rereads, "WAIT_SECONDS", 1.0)


async def test_a_miss_during_a_read_waits_for_the_next_one_which_sees_what_was_stored_meanwhile() -> None:
    source, applied = Source(), []
    reads = Rereads(source.load, applied.append)
    source.gate.clear()
    first = asyncio.create_task(reads.fresh(time.monotonic()))  # a read begins, then is held
    assert await asyncio.to_thread(source.entered.wait, 5)
    source.value = 1  # stored by another process while that read runs
    second = asyncio.create_task(reads.fresh(time.monotonic()))
    await asyncio.sleep(0.01)
    source.gate.set()
    assert await first and await second
    assert applied == [0, 1] and source.reads == 2


async def test_a_storm_of_misses_reads_at_most_once_per_gap() -> None:
    source, applied = Source(), []
    reads = Rereads(source.load, applied.append)
    started = time.monotonic()
    results = []
    while time.monotonic() - started < 0.3:
        results += await asyncio.gather(*(reads.fresh(time.monotonic()) for _ in range(50)))
    assert all(results)
    assert source.reads <= 0.3 / rereads.MIN_GAP_SECONDS + 2


async def test_a_read_begun_before_a_change_here_is_not_applied_over_it() -> None:
    source, applied = Source(), []
    reads = Rereads(source.load, applied.append)
    source.gate.clear()
    waiting = asyncio.create_task(reads.fresh(time.monotonic()))
    assert await asyncio.to_thread(source.entered.wait, 5)
    reads.changed()  # e.g. the API removed a connection and applied it
    source.gate.set()
    await waiting
    assert applied == []


async def test_a_hung_read_is_waited_for_at_most_wait_seconds() -> None:
    source = Source()
    reads = Rereads(source.load, lambda _value: None)
    source.gate.clear()
    began = time.monotonic()
    assert not await reads.fresh(began)
    assert time.monotonic() - began < rereads.WAIT_SECONDS + 0.5
    source.gate.set()


def test_an_app_served_again_on_a_new_loop_starts_clean() -> None:
    source, applied = Source(), []
    reads = Rereads(source.load, applied.append)
    assert asyncio.run(reads.fresh(time.monotonic()))
    assert asyncio.run(reads.fresh(time.monotonic()))
    assert source.reads == 2
