"""Backfill benchmark: N sales seeded into the Gumroad sandbox, then `snapbridge sync gumroad --since`: time, requests.

    .venv/bin/python bench/backfill.py [--sales 100000] [--engine sqlite|postgresql] [--database-url URL]

Sales are made in this process, and no Ping URL is set, so nothing is posted. The first 2,000 come from the
sandbox's `bulk` scenario (the realistic mix: repeat buyers, memberships, refunds, disputes, test purchases;
~0.7 sales per event, and it scans every sale per event, so it stays small); the rest are first purchases with
explicit unique emails, which cost the same at any size. Seeding time is printed. `snapbridge sync` runs as a
child process against a fresh SQLite file, a fresh PostgreSQL database made on --pg-admin-url and dropped after
(--engine postgresql), or --database-url as given. Requests are counted from the Gumroad sandbox's journal. The
baseline, in the same run, is a bare paginated read of every sale with httpx (the API's floor): sync's extra time
is its own work per page (the guarded HTTP client, parsing, making events; overlapped with the sandbox answering
the next page) and the store's (one window, so stored after the last page).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from common import database

from snapbridge.sandbox import GumroadSandbox, start_sandboxes

ROOT = Path(__file__).resolve().parents[1]
BULK_SALES = 2_000  # beyond this the mix's per-event scans of every sale dominate the seeding time


def seed(gumroad: GumroadSandbox, count: int) -> None:
    """`count` new sales: the bulk mix up to BULK_SALES, then first purchases by new buyers."""
    before = len(gumroad.state.sales)
    began = time.perf_counter()
    while (wanted := min(count, BULK_SALES) - (len(gumroad.state.sales) - before)) > 0:
        gumroad.emit("bulk", {"count": min(500, wanted)})
    mixed = len(gumroad.state.sales) - before
    for i in range(count - mixed):
        gumroad.emit("first_purchase", {"email": f"backfill{i}@example.net"})
    if not gumroad.wait_idle(timeout=300):  # the webhook sender's queue, so it does not run during the timings
        raise SystemExit("the sandbox's webhook sender did not go idle")
    total = len(gumroad.state.sales)
    print(f"seeded {total - before} sales ({mixed} from the bulk mix; {total} in the sandbox) "
          f"in {time.perf_counter() - began:.1f} s")


def baseline(url: str, token: str, since: str) -> float:
    """Page through every sale with plain httpx; returns the seconds taken."""
    began = time.perf_counter()
    pages = read = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        params: dict[str, str] = {"access_token": token, "after": since}
        while True:
            body = client.get("/v2/sales", params=params).json()
            pages += 1
            read += len(body.get("sales", []))
            key = body.get("next_page_key")
            if not key:
                break
            params = {"access_token": token, "after": since, "page_key": key}
    took = time.perf_counter() - began
    print(f"baseline (plain paginated GET /v2/sales): {read} sales, {pages} requests, {took:.2f} s, "
          f"{read / took:.0f} sales/s")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=100_000, help="sales to add to the seeded ones")
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database-url", help="use this (empty) database instead of a fresh one")
    args = parser.parse_args()
    boxes = start_sandboxes(seed=4, time_factor=0.01)
    home = Path(tempfile.mkdtemp(prefix="sb-backfill-"))
    try:
        gumroad = boxes.gumroad
        seed(gumroad, args.sales)
        since = (datetime.now(UTC) - timedelta(days=3 * 365)).date().isoformat()
        gumroad.journal.clear()
        bare = baseline(boxes.gumroad_url, gumroad.access_token, since)

        with contextlib.ExitStack() as stack:
            url = args.database_url or stack.enter_context(database(args.engine, home, args.pg_admin_url))
            env = {k: v for k, v in os.environ.items() if not k.startswith("SNAPBRIDGE_")}
            env.update({"SNAPBRIDGE_HOME": str(home), "SNAPBRIDGE_ALLOWED_HOSTS": "127.0.0.1",
                        "SNAPBRIDGE_DATABASE_URL": url, "SNAPBRIDGE_GUMROAD_BASE_URL": boxes.gumroad_url,
                        "SNAPBRIDGE_SNAPSHOTS_BASE_URL": boxes.snapshots_url})

            def cli(*argv: str) -> str:
                done = subprocess.run(  # noqa: S603
                    [sys.executable, "-m", "snapbridge", *argv], env=env, capture_output=True,
                    text=True, cwd=ROOT, check=False, timeout=900)
                if done.returncode != 0:
                    raise SystemExit(f"snapbridge {' '.join(argv[:2])} failed: {done.stderr[-1500:]}")
                return done.stdout

            cli("connect", "gumroad", "--access-token", gumroad.access_token)
            gumroad.journal.clear()
            began = time.perf_counter()
            out = cli("sync", "gumroad", "--since", since)
            took = time.perf_counter() - began
        requests = len(gumroad.journal.entries())
        engine = "--database-url" if args.database_url else args.engine
        print(f"snapbridge sync gumroad --since {since} ({engine}): {took:.2f} s wall (incl. ~1.5 s start-up), "
              f"{requests} requests; {out.strip()}")
        print(f"sync / baseline time: {took / bare:.1f}x; target (issue 5): 100,000 sales < 60 s")
    finally:
        boxes.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
