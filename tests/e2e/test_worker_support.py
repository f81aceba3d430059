"""What the worker tests share: a Snapshots connection saved as `snapbridge connect` saves it, single-step runs
queued straight into the store, a Worker with test settings, and the jobs they send."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from snapbridge.runtime import ActionRunner, Connections, Limiter, Worker, WorkerConfig, limiter_for
from snapbridge.security import Secret, Vault
from snapbridge.store import ConnectionRecord, ConnectionStore, NewJob, NewRun, StepDetail, Store

ALL_SCOPES = ("saas/location.read", "saas/location.write", "events.write", "events.readonly",
              "customers.write", "customers.readonly")
CONNECTION = "snap"
Job = tuple[str, Mapping[str, object], str]  # (action, input, ordering key)
# Quick to notice work and to give up a lease in tests; a test overrides what it is about.
WORKER_SETTINGS: Mapping[str, object] = {"idle_seconds": 0.2, "lease_seconds": 30.0, "lease_reserve_seconds": 1.0,
                                         "grace_seconds": 5.0}


@dataclass(frozen=True)
class Queued:
    run_id: int
    job_id: int
    idempotency_key: str


def save_connection(store: Store, vault: Vault, base_url: str, api_key: str, name: str = CONNECTION) -> None:
    """The Snapshots connection `name` with this key, as `snapbridge connect` stores it."""
    ConnectionStore(store.engine).save(ConnectionRecord(
        name=name, app="snapshots", base_url=base_url,
        credential=vault.encrypt(Secret(api_key), bound_to=f"{name}:credential")))


def queue_single_steps(store: Store, jobs: Sequence[Job], *, key_prefix: str, connection: str = CONNECTION,
                       workflow: str = "test") -> list[Queued]:
    """One single-step run per job, in order, in one transaction; idempotency keys `{key_prefix}-{index}`."""
    now = datetime.now(UTC)
    queued = []
    with store.transaction() as tx:
        for index, (action, values, order) in enumerate(jobs):
            run_id = tx.create_run(NewRun(workflow, None, "purchase", order, now))
            key = f"{key_prefix}-{index}"
            (made,) = tx.enqueue([NewJob(run_id=run_id, step_index=0, step_id="s0", action=action,
                                         connection=connection, ordering_key=order, idempotency_key=key,
                                         input=values)], now=now)
            queued.append(Queued(run_id, made.id, key))
    return queued


def make_worker(store: Store, vault: Vault, name: str, *, runner: ActionRunner | None = None,
                limiter: Limiter | None = None, cache_seconds: float = 0.0,
                rand: Callable[[], float] = lambda: 0.0, **overrides: object) -> Worker:
    """A Worker on `store` (its connections read through `vault`) with WORKER_SETTINGS and `overrides`."""
    if runner is None:
        connections = Connections(ConnectionStore(store.engine), vault, allowed_hosts=("127.0.0.1",),
                                  cache_seconds=cache_seconds)
        runner = ActionRunner(connections, store)
    config = WorkerConfig(**{**WORKER_SETTINGS, "name": name, **overrides})  # type: ignore[arg-type]
    return Worker(store, runner, limiter or limiter_for(store), config, rand=rand)


def upsert_job(customer: str, **values: object) -> Job:
    return ("snapshots.customers.upsert", {"customer_id": customer, **values}, f"customer:{customer}")


def event_job(event_id: str, order: str | None = None, **data: object) -> Job:
    values: dict[str, object] = {"event_id": event_id, "type": "purchase", "timestamp": "2025-03-01T12:00:00Z"}
    if data:
        values["data"] = data
    return ("snapshots.events.create", values, order or f"customer:{event_id}")


def first_step(store: Store, run_id: int) -> StepDetail:
    found = store.run_detail(run_id)
    assert found is not None
    return found.steps[0]


async def run_workers(workers: Sequence[Worker], done: Callable[[], bool], within: float = 20.0) -> None:
    """Run the workers until `done()` holds (polled), then stop them gracefully; fail after `within` s."""
    tasks = [asyncio.create_task(w.run()) for w in workers]
    deadline = time.monotonic() + within
    try:
        while not await asyncio.to_thread(done):
            if time.monotonic() > deadline:
                raise AssertionError(f"not done within {within} s")
            if any(t.done() for t in tasks):
                raise AssertionError(f"a worker ended early: {[t.exception() for t in tasks if t.done()]}")
            await asyncio.sleep(0.02)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
        for w in workers:
            await w.runner.aclose()
