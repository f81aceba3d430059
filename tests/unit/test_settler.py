"""The settler's group commit: endings that arrive together share one write; an outage is retried; stop drains."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from snapbridge.errors import StoreUnavailable
from snapbridge.runtime.settler import Settler
from snapbridge.store import ClaimedJob, JobOutcome, JobReleased

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def _released(job_id: int) -> JobReleased:
    job = ClaimedJob(id=job_id, run_id=1, workflow_name="w", inbound_event_id=None, step_index=0, step_id="s",
                     action="a", connection="c", ordering_key=f"k{job_id}", idempotency_key=f"i{job_id}", input={},
                     deferred={}, step_outputs={}, attempt=1, lease_token=1, lease_expires_at=T0, leased_by="me")
    return JobReleased(job)


async def test_endings_that_arrive_together_share_one_write_and_keep_their_answers() -> None:
    writes: list[list[int]] = []
    failures = [StoreUnavailable("busy")]

    async def write(outcomes: Sequence[JobOutcome]) -> list[bool]:
        await asyncio.sleep(0)
        if failures:
            raise failures.pop()
        writes.append([o.job.id for o in outcomes])
        return [o.job.id % 2 == 0 for o in outcomes]  # odd ids: fenced

    settler = Settler(write, retry_delays=(0.0,))
    settler.start()
    answers = await asyncio.gather(*(settler.settle(_released(n)) for n in range(10)))
    assert answers == [n % 2 == 0 for n in range(10)]
    assert sorted(i for batch in writes for i in batch) == list(range(10)) and len(writes) < 10
    late = asyncio.ensure_future(settler.settle(_released(42)))
    await settler.stop()
    assert late.done() and late.result() is True  # queued before stop: written, not dropped
    assert await settler.settle(_released(7)) is False  # after stop: written at once


async def test_a_store_that_stays_down_answers_none() -> None:
    async def down(outcomes: Sequence[JobOutcome]) -> list[bool]:
        raise StoreUnavailable("down")

    settler = Settler(down, retry_delays=(0.0, 0.0))
    settler.start()
    assert await settler.settle(_released(1)) is None
    await settler.stop()
