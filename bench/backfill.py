"""Backfill benchmark: N sales seeded into the Gumroad sandbox, then `snapbridge sync gumroad --since`: time, requests.

    .venv/bin/python bench/backfill.py [--sales 2000] [--database-url URL]

Sales are made with the sandbox's `bulk` scenario (at most 500 events per call, mixed kinds), in this process;
no Ping URL is set, so nothing is posted. `snapbridge sync` runs as a child process against a fresh SQLite file
(or --database-url). Requests are counted from the Gumroad sandbox's journal. The baseline, in the same run, is
a bare paginated read of every sale with httpx (the API's floor): sync's extra time is the store's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from snapbridge.sandbox import start_sandboxes

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=2_000, help="sales to add (the bulk mix makes ~0.7 per event)")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    boxes = start_sandboxes(seed=4, time_factor=0.01)
    try:
        gumroad = boxes.gumroad
        before = len(gumroad.state.sales)
        seeded = time.perf_counter()
        while len(gumroad.state.sales) - before < args.sales:
            gumroad.emit("bulk", {"count": 500})
        total = len(gumroad.state.sales)
        print(f"seeded {total - before} sales ({total} in the sandbox) in {time.perf_counter() - seeded:.1f} s")
        since = (datetime.now(UTC) - timedelta(days=3 * 365)).date().isoformat()

        # Baseline: page through every sale with plain httpx.
        gumroad.journal.clear()
        began = time.perf_counter()
        pages = read = 0
        with httpx.Client(base_url=boxes.gumroad_url, timeout=30) as client:
            params: dict[str, str] = {"access_token": gumroad.access_token, "after": since}
            while True:
                body = client.get("/v2/sales", params=params).json()
                pages += 1
                read += len(body.get("sales", []))
                token = body.get("next_page_key")
                if not token:
                    break
                params = {"access_token": gumroad.access_token, "after": since, "page_key": token}
        bare = time.perf_counter() - began
        print(f"baseline (plain paginated GET /v2/sales): {read} sales, {pages} requests, {bare:.2f} s, "
              f"{read / bare:.0f} sales/s")

        home = Path(tempfile.mkdtemp(prefix="sb-backfill-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SNAPBRIDGE_")}
        env.update({"SNAPBRIDGE_HOME": str(home), "SNAPBRIDGE_ALLOWED_HOSTS": "127.0.0.1",
                    "SNAPBRIDGE_DATABASE_URL": args.database_url or f"sqlite:///{home / 'snapbridge.db'}",
                    "SNAPBRIDGE_GUMROAD_BASE_URL": boxes.gumroad_url,
                    "SNAPBRIDGE_SNAPSHOTS_BASE_URL": boxes.snapshots_url})

        def cli(*argv: str) -> str:
            done = subprocess.run(  # noqa: S603
                [sys.executable, "-m", "snapbridge", *argv], env=env, capture_output=True,
                                  text=True, cwd=ROOT, check=False, timeout=600)
            if done.returncode != 0:
                raise SystemExit(f"snapbridge {' '.join(argv[:2])} failed: {done.stderr[-1500:]}")
            return done.stdout

        cli("connect", "gumroad", "--access-token", gumroad.access_token)
        gumroad.journal.clear()
        began = time.perf_counter()
        out = cli("sync", "gumroad", "--since", since)
        took = time.perf_counter() - began
        requests = len(gumroad.journal.entries())
        print(f"snapbridge sync gumroad --since {since}: {took:.2f} s wall (incl. ~1.5 s start-up), "
              f"{requests} requests; {out.strip()}")
        print(f"sync / baseline time: {took / bare:.1f}x; target (issue 5): 100,000 sales < 60 s")
    finally:
        boxes.stop()


if __name__ == "__main__":
    main()
