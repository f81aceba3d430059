"""Usage counters per connection and minute, and retention of old succeeded runs, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from snapbridge.store import (
    AttemptRecord,
    EventSource,
    NewInboundEvent,
    NewJob,
    NewRun,
    RunStatus,
    Store,
    UsageSample,
)
from snapbridge.store.schema import inbound_events
from snapbridge.store.usage import minute, summarise

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "throttled", "errors", "throttles"),
    [(200, False, 0, 0), (399, False, 0, 0), (400, False, 1, 0), (503, False, 1, 0), (None, False, 1, 0),
     (429, True, 1, 1)],
)
def test_what_counts_as_an_error(status: int | None, throttled: bool, errors: int, throttles: int) -> None:
    ((_, counts),) = summarise([UsageSample("hl", T0, status, 10.0, throttled)]).items()
    assert counts == (1, errors, throttles, 10.0, 1)


def test_samples_add_up_per_minute() -> None:
    samples = [UsageSample("hl", T0 + timedelta(seconds=s), 200, 10.0) for s in (0, 59.999, 60)]
    totals = summarise(samples)
    assert totals == {("hl", T0): (2, 0, 0, 20.0, 2), ("hl", T0 + timedelta(minutes=1)): (1, 0, 0, 10.0, 1)}
    assert minute(T0 + timedelta(seconds=59, microseconds=999_999)) == T0


def test_usage_accumulates_across_calls(store: Store) -> None:
    store.record_usage("hl", now=T0, status=200, latency_ms=20.0)
    store.record_usage("hl", now=T0 + timedelta(seconds=30), status=429, latency_ms=5.0, throttled=True)
    store.record_usage_batch([UsageSample("hl", T0 + timedelta(minutes=1), None, 100.0),
                              UsageSample("gumroad", T0, 200, 1.0)])
    windows = store.usage("hl", T0 + timedelta(seconds=10))
    assert [(w.window_start, w.requests, w.errors, w.throttled) for w in windows] == [
        (T0, 2, 1, 1), (T0 + timedelta(minutes=1), 1, 1, 0)]
    assert windows[0].mean_latency_ms == pytest.approx(12.5)
    assert {w.connection for w in store.usage(None, T0)} == {"hl", "gumroad"}


def _succeeded_run(store: Store, key: str, finished: datetime) -> int:
    payload = {"email": "a@x.io"}
    new = NewInboundEvent(EventSource.GUMROAD, "g", key, "sale", payload, finished)
    (event,) = store.insert_events([new])
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun("wf", event.id, "purchase", key, finished))
        tx.enqueue([NewJob(run_id, 0, "s0", "a", "hl", key, f"idem-{key}", payload)], now=finished)
    (job,) = store.claim("w", limit=1, lease_seconds=30, now=finished)
    attempt = AttemptRecord(finished, 5.0, 200, request_excerpt='{"email": "a@x.io"}', response_excerpt="{}")
    assert store.complete(job, output={"id": "c_1"}, attempt=attempt, now=finished)
    return run_id


def test_prune_empties_old_succeeded_runs_only(store: Store) -> None:
    old = _succeeded_run(store, "old", T0)
    new = _succeeded_run(store, "new", T0 + timedelta(days=10))
    with store.transaction() as tx:
        failing = tx.create_run(NewRun("wf", None, "purchase", "f", T0))
        tx.enqueue([NewJob(failing, 0, "s0", "a", "hl", "f", "idem-f", {"email": "b@x.io"})], now=T0)
    assert store.prune(older_than=T0 + timedelta(days=1)) == 1
    assert store.prune(older_than=T0 + timedelta(days=1)) == 0
    pruned = store.run_detail(old)
    kept = store.run_detail(new)
    assert pruned is not None and kept is not None
    assert pruned.run.payload_pruned and pruned.run.status is RunStatus.SUCCEEDED
    assert (pruned.steps[0].input, pruned.steps[0].output) == ({}, None)
    assert pruned.steps[0].attempt_log[0].request_excerpt == ""
    assert kept.steps[0].input == {"email": "a@x.io"} and kept.steps[0].output == {"id": "c_1"}
    assert not kept.run.payload_pruned
    assert store.run_detail(failing).steps[0].input == {"email": "b@x.io"}  # type: ignore[union-attr]
    with store.engine.connect() as conn:
        payloads = dict(conn.execute(sa.select(inbound_events.c.dedupe_key, inbound_events.c.payload)).all())
    assert payloads == {"old": {}, "new": {"email": "a@x.io"}}
    # The dedupe key outlives the payload: a late repeat is still a duplicate.
    (again,) = store.insert_events([NewInboundEvent(EventSource.GUMROAD, "g", "old", "sale", {}, T0)])
    assert again.duplicate
