"""Group commit for job endings: the outcomes that finish while a transaction commits share the next one.

Each ending (done, retry, dead letter, release) used to be its own transaction, so a worker with 50 jobs in
flight paid 50 commits — 50 fsyncs on SQLite, each waiting for the one writer — for what one transaction
records as well. The settler queues outcomes and writes everything queued in ONE `Store.settle` call; the
answers are the same per job (False: fenced, another worker holds the job now), and nothing is answered
before its commit. A busy store is tried again briefly; an error that is not an outage falls back to one
transaction per outcome, so a single bad row cannot refuse the others that shared its batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from snapbridge.errors import StoreUnavailable
from snapbridge.store import JobOutcome

__all__ = ["Settler"]

log = logging.getLogger(__name__)

SettleCall = Callable[[Sequence[JobOutcome]], Awaitable[list[bool]]]


@dataclass
class _Waiting:
    outcome: JobOutcome
    future: asyncio.Future[bool | None]


class Settler:
    """`await settle(outcome)` → True once committed, False when fenced, None when the store never answered."""

    def __init__(self, call: SettleCall, *, retry_delays: Sequence[float], max_batch: int = 256) -> None:
        self._call = call
        self._delays = tuple(retry_delays)
        self._max_batch = max_batch
        self._queue: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="settler")

    async def stop(self) -> None:
        """Write what is queued (a write under way finishes and is answered), then stop."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        await self._task
        self._task = None

    async def settle(self, outcome: JobOutcome) -> bool | None:
        future: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(outcome, future))
        if self._task is None or self._task.done():
            await self._flush()  # not running (stopped): write it now rather than never
        else:
            self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._flush()

    async def _flush(self) -> None:
        batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch:]
        if not batch:
            return
        try:
            answers = await self._write([w.outcome for w in batch])
        except Exception as exc:
            # Not an outage: something in the batch cannot be written. One by one, so only that one fails.
            log.error("action=settle_batch_failed outcomes=%d error=%s", len(batch), type(exc).__name__)
            for item in batch:
                try:
                    answer = await self._write([item.outcome])
                    _answer(item, answer[0] if answer is not None else None)
                except Exception as one:
                    log.error("action=settle_failed job=%d error=%s", item.outcome.job.id, type(one).__name__)
                    _answer(item, None)
            return
        self.batches += 1
        for i, item in enumerate(batch):
            _answer(item, answers[i] if answers is not None else None)

    async def _write(self, outcomes: list[JobOutcome]) -> list[bool] | None:
        """The store's answers, or None when it stayed unavailable through every retry."""
        for delay in (*self._delays, None):
            try:
                return await self._call(outcomes)
            except StoreUnavailable as exc:
                if delay is None:
                    # The leases run out and other claims redo the jobs with the same idempotency keys.
                    log.error("action=settle_store_failed outcomes=%d error=%s", len(outcomes), exc)
                    return None
                await asyncio.sleep(delay)
        return None


def _answer(item: _Waiting, answer: bool | None) -> None:
    if not item.future.done():
        item.future.set_result(answer)
