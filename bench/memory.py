"""Memory benchmark: peak RSS of `snapbridge worker` with 100,000 queued jobs, against an empty queue.

    .venv/bin/python bench/memory.py [--jobs 100000] [--seconds 10]

The jobs (`snapshots.events.create`, 1,000 customers) are enqueued directly with Store.transaction().enqueue
into a fresh SQLite file; the worker then runs as a child process against the Snapshots sandbox for a bounded
time, is stopped with SIGTERM, and its peak RSS is read from the kernel (wait4's ru_maxrss). The baseline, in
the same run, is the same worker over an empty queue.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from snapbridge.sandbox import start_sandboxes
from snapbridge.store import NewJob, NewRun, Store, migrate, open_engine

ROOT = Path(__file__).resolve().parents[1]


def enqueue(url: str, count: int) -> float:
    engine = open_engine(url)
    migrate(engine)
    store = Store(engine)
    began = time.perf_counter()
    now = datetime.now(UTC)
    try:
        for start in range(0, count, 1000):
            with store.transaction() as tx:
                runs = tx.create_runs([NewRun("memory-bench", None, "purchase", f"customer:{n % 1000}", now)
                                       for n in range(start, min(count, start + 1000))])
                tx.enqueue([NewJob(
                    run_id=run_id, step_index=0, step_id="event", action="snapshots.events.create",
                    connection="snapshots", ordering_key=f"customer:{n % 1000}", idempotency_key=f"mem-{n}",
                    input={"event_id": f"mem-{n}", "type": "purchase", "timestamp": now.isoformat(),
                           "customer_id": f"c{n % 1000}@memory.example", "data": {"n": n}},
                ) for n, run_id in zip(range(start, start + len(runs)), runs, strict=True)], now=now)
    finally:
        store.close()
        engine.dispose()
    return time.perf_counter() - began


def worker_rss(env: dict[str, str], seconds: float) -> tuple[float, int]:
    """(peak RSS in MiB, events accepted by the sandbox meanwhile is counted by the caller)."""
    child = subprocess.Popen([sys.executable, "-m", "snapbridge", "worker"], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds)  # the bounded run itself, not a wait for a condition
    child.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(child.pid, 0)
    return usage.ru_maxrss / 1024, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    boxes = start_sandboxes(seed=6, time_factor=0.01)
    try:
        scopes = next(k for k in boxes.snapshots.keys() if "saas/location.write" in k.scopes).scopes  # noqa: SIM118
        key = boxes.snapshots.create_key(scopes, burst_limit=10_000_000, daily_limit=1_000_000_000)
        for label, jobs in (("baseline: empty queue", 0), (f"{args.jobs:,} queued jobs", args.jobs)):
            home = Path(tempfile.mkdtemp(prefix="sb-memory-"))
            url = f"sqlite:///{home / 'snapbridge.db'}"
            env = {k: v for k, v in os.environ.items() if not k.startswith("SNAPBRIDGE_")}
            env.update({"SNAPBRIDGE_HOME": str(home), "SNAPBRIDGE_DATABASE_URL": url,
                        "SNAPBRIDGE_ALLOWED_HOSTS": "127.0.0.1", "SNAPBRIDGE_SNAPSHOTS_BASE_URL": boxes.snapshots_url,
                        "SNAPBRIDGE_GUMROAD_BASE_URL": boxes.gumroad_url})
            argv = [sys.executable, "-m", "snapbridge", "connect", "snapshots", "--api-key", key.key]
            done = subprocess.run(argv,  # noqa: S603
                                  env=env, cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"connect failed: {done.stderr[-1000:]}")
            took = enqueue(url, jobs) if jobs else 0.0
            before = len(boxes.snapshots.journal.entries(method="POST"))
            rss, status = worker_rss(env, args.seconds)
            sent = len(boxes.snapshots.journal.entries(method="POST")) - before
            print(f"{label:<24} enqueue {took:6.1f} s | worker {args.seconds:.0f} s: peak RSS {rss:6.1f} MiB, "
                  f"{sent} POSTs to the sandbox, exit status {status}")
        print("target (issue 5): RSS < 200 MB with 100,000 queued jobs")
    finally:
        boxes.stop()


if __name__ == "__main__":
    main()
