"""How a claim's events are packed into /events/batch requests: a customer's run of events stays in one request
(two requests in flight at once would race), requests hold at most the batch size."""

from __future__ import annotations

from datetime import UTC, datetime

from snapbridge.runtime.worker import _packed
from snapbridge.store import ClaimedJob


def _job(job_id: int, key: str) -> ClaimedJob:
    return ClaimedJob(id=job_id, run_id=job_id, workflow_name="wf", inbound_event_id=None, step_index=0,
                      step_id="s0", action="snapshots.events.create", connection="snap", ordering_key=key,
                      idempotency_key=f"k{job_id}", input={}, deferred={}, step_outputs={}, attempt=1,
                      lease_token=1, lease_expires_at=datetime(2025, 1, 1, tzinfo=UTC), leased_by="w")


def _ids(batches: list[tuple[ClaimedJob, ...]]) -> list[list[int]]:
    return [[job.id for job in batch] for batch in batches]


def test_a_chain_is_never_split_across_requests() -> None:
    a = [_job(1, "a"), _job(3, "a"), _job(4, "a")]
    b = [_job(2, "b"), _job(5, "b")]
    assert _ids(_packed([a, b], 3)) == [[1, 3, 4], [2, 5]]
    assert _ids(_packed([b, a], 3)) == [[2, 5], [1, 3, 4]]


def test_chains_share_a_request_up_to_the_batch_size() -> None:
    chains = [[_job(i, f"k{i}")] for i in range(1, 6)]
    assert _ids(_packed(chains, 2)) == [[1, 2], [3, 4], [5]]
    assert _ids(_packed(chains, 100)) == [[1, 2, 3, 4, 5]]
