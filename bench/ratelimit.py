"""Rate-limit benchmark: how much of a limited quota the workers use, and how many 429s they cause.

    .venv/bin/python bench/ratelimit.py [--seconds 20] [--limit 100] [--window-ms 10000] [--pg-url URL]

The Snapshots sandbox runs in real time (time factor 1) with a key limited to --limit requests per
--window-ms, far more jobs are queued than the quota allows, and workers deliver for --seconds. Three runs,
each against its own fresh key and database:
  sqlite   one worker in this process, buckets in memory (the embedded deployment);
  pg x2    two `Worker` processes on one PostgreSQL schema, buckets in the database (scale-out);
  naive    one worker whose limiter never waits (what the quota looks like without one).
Used = requests accepted / (limit x seconds / window); 429s after the first window count as sustained.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from snapbridge.http import RateLimitState
from snapbridge.runtime import ActionRunner, Connections, Limiter, Worker, WorkerConfig, limiter_for
from snapbridge.sandbox import SnapshotsSandbox, start_sandboxes
from snapbridge.security import Secret, Vault
from snapbridge.store import (
    ConnectionRecord,
    ConnectionStore,
    JobStatus,
    NewJob,
    NewRun,
    Store,
    migrate,
    open_engine,
)

SCOPES = ("saas/location.read", "saas/location.write", "events.write", "events.readonly", "customers.write",
          "customers.readonly")
CHILD = r"""
import asyncio, os
from pathlib import Path
import sqlalchemy as sa
from snapbridge.runtime import ActionRunner, Connections, StoreLimiter, Worker, WorkerConfig
from snapbridge.security import Vault
from snapbridge.store import ConnectionStore, Store

engine = sa.create_engine(os.environ["B_PG_URL"],
                          connect_args={"options": f"-csearch_path={os.environ['B_SCHEMA']}"})
store = Store(engine)

async def main() -> None:
    runner = ActionRunner(Connections(ConnectionStore(engine), Vault.open(Path(os.environ["B_KEY_FILE"])),
                                      allowed_hosts=("127.0.0.1",)), store)
    limiter = StoreLimiter(store)
    worker = Worker(store, runner, limiter, WorkerConfig(name=os.environ["B_NAME"], idle_seconds=0.5))
    worker.handle_signals()
    print("ready", flush=True)
    await worker.run()
    await runner.aclose()
    limiter.close()

asyncio.run(main())
store.close()
"""


class NoLimit:
    """A limiter that never waits and ignores Retry-After: the baseline a real limiter is measured against."""

    async def take(self, name: str) -> float:
        return 0.0

    async def acquire(self, name: str, *, budget: float) -> float:
        return 0.0

    async def observe(self, name: str, state: RateLimitState | None) -> None:
        return None

    async def block(self, name: str, until: datetime) -> None:
        return None


@dataclass(frozen=True)
class Result:
    name: str
    accepted: int
    throttled: int
    sustained: int
    quota: float
    seconds: float

    def line(self) -> str:
        used = self.accepted / self.quota if self.quota else 0.0
        return (f"{self.name:<10} {self.accepted:>9} {self.quota:>8.0f} {used:>7.1%} {self.throttled:>6} "
                f"{self.sustained:>10} {self.accepted / self.seconds:>8.2f}")


@contextmanager
def database(kind: str, pg_url: str) -> Iterator[tuple[Engine, str | None]]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            engine = open_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
            migrate(engine)
            try:
                yield engine, None
            finally:
                engine.dispose()
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = open_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = sa.create_engine(admin.url, connect_args={"options": f"-csearch_path={schema}"})
    migrate(engine)
    try:
        yield engine, schema
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def prepare(engine: Engine, snapshots: SnapshotsSandbox, base_url: str, key_file: Path, limit: int,
            window_ms: int, jobs: int) -> tuple[Store, str]:
    """A fresh key on the plan, the connection to it, and `jobs` independent customer updates queued."""
    key = snapshots.create_key(SCOPES, burst_limit=limit, burst_window_ms=window_ms)
    vault = Vault.open(key_file)
    ConnectionStore(engine).save(ConnectionRecord(
        name="snap", app="snapshots", base_url=base_url,
        credential=vault.encrypt(Secret(key.key), bound_to="snap:credential"),
    ))
    store = Store(engine)
    tag, now = uuid.uuid4().hex[:8], datetime.now(UTC)
    with store.transaction() as tx:
        for i in range(jobs):
            customer = f"bench-{tag}-{i}"
            run_id = tx.create_run(NewRun("bench", None, "purchase", customer, now))
            tx.enqueue([NewJob(run_id=run_id, step_index=0, step_id="s0", action="snapshots.customers.upsert",
                               connection="snap", ordering_key=f"customer:{customer}",
                               idempotency_key=f"bench-{tag}-{i}",
                               input={"customer_id": customer, "plan": "pro"})], now=now)
    return store, key.fingerprint


def measure(name: str, snapshots: SnapshotsSandbox, fingerprint: str, started: datetime, seconds: float,
            limit: int, window_ms: int) -> Result:
    end = started + timedelta(seconds=seconds)
    mine = [e for e in snapshots.requests() if e.api_key == fingerprint and started <= e.arrived_at < end]
    window = timedelta(milliseconds=window_ms)
    throttled = [e for e in mine if e.status == 429]
    return Result(name, sum(1 for e in mine if e.status < 400), len(throttled),
                  sum(1 for e in throttled if e.arrived_at >= started + window),
                  limit * seconds * 1000 / window_ms, seconds)


async def run_in_process(store: Store, engine: Engine, key_file: Path, limiter: Limiter,
                         seconds: float) -> None:
    connections = Connections(ConnectionStore(engine), Vault.open(key_file), allowed_hosts=("127.0.0.1",))
    runner = ActionRunner(connections, store)
    worker = Worker(store, runner, limiter, WorkerConfig(name="bench", idle_seconds=0.5))
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(seconds)
    worker.stop()
    await task
    await runner.aclose()


def in_process(name: str, naive: bool, args: argparse.Namespace, snapshots: SnapshotsSandbox,
               url: str) -> Result:
    with database("sqlite", args.pg_url) as (engine, _), tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "secret.key"
        store, fingerprint = prepare(engine, snapshots, url, key_file, args.limit, args.window_ms, args.jobs)
        started = datetime.now(UTC)
        limiter: Limiter = NoLimit() if naive else limiter_for(store)
        asyncio.run(run_in_process(store, engine, key_file, limiter, args.seconds))
        result = measure(name, snapshots, fingerprint, started, args.seconds, args.limit, args.window_ms)
        store.close()
        return result


def two_processes(args: argparse.Namespace, snapshots: SnapshotsSandbox, url: str) -> Result:
    with database("postgresql", args.pg_url) as (engine, schema), tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "secret.key"
        Vault.open(key_file)
        env = {**os.environ, "B_PG_URL": engine.url.render_as_string(hide_password=False),
               "B_SCHEMA": str(schema), "B_KEY_FILE": str(key_file)}
        procs = []
        for i in range(args.pg_workers):
            command = [sys.executable, "-c", CHILD]  # our own code, run as a second worker process
            proc = subprocess.Popen(command, env={**env, "B_NAME": f"bench-p{i}"},  # noqa: S603
                                    stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            procs.append(proc)
        store, fingerprint = prepare(engine, snapshots, url, key_file, args.limit, args.window_ms, args.jobs)
        started = datetime.now(UTC)
        store.notify_jobs()
        time.sleep(args.seconds)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        result = measure(f"pg x{args.pg_workers}", snapshots, fingerprint, started, args.seconds, args.limit,
                         args.window_ms)
        left = store.counts()[JobStatus.QUEUED.value]
        store.close()
        print(f"  (pg x{args.pg_workers}: {left} jobs still queued at the end: the queue outlasts the quota)")
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--limit", type=int, default=100, help="requests per window (the contract's default)")
    parser.add_argument("--window-ms", type=int, default=10_000)
    parser.add_argument("--pg-url", default=os.environ.get("SNAPBRIDGE_TEST_PG_URL",
                                                          "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--pg-workers", type=int, default=2, help="worker processes on PostgreSQL")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    args.jobs = int(args.limit * args.seconds * 1000 / args.window_ms * 2) + args.limit
    boxes = start_sandboxes(seed=7, time_factor=1.0)
    try:
        snapshots, url = boxes.snapshots, boxes.snapshots_url
        print(f"quota: {args.limit} requests per {args.window_ms} ms; {args.seconds:g} s per run; "
              f"{args.jobs} jobs queued per run")
        results = [in_process("sqlite", False, args, snapshots, url), two_processes(args, snapshots, url)]
        if not args.skip_naive:
            results.append(in_process("naive", True, args, snapshots, url))
    finally:
        boxes.stop()
    print(f"{'run':<10} {'accepted':>9} {'quota':>8} {'used':>7} {'429s':>6} {'sustained':>10} {'req/s':>8}")
    for result in results:
        print(result.line())


if __name__ == "__main__":
    main()
