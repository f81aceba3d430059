"""End-to-end benchmark: Gumroad ping → `snapbridge serve` → Snapshots sandbox, throughput and p50/p99 latency.

    .venv/bin/python bench/e2e.py [--engines sqlite,postgresql] [--seconds 5] [--rate 500] [--workers 1,2]

For each engine (a fresh SQLite file, or a fresh PostgreSQL database on --pg-admin-url) the sandboxes run in this
process, the CLI connects snapbridge to them and installs the starter templates, and `snapbridge serve
--no-pollers` runs as a child process (with N-1 extra `snapbridge worker` processes on PostgreSQL). Two loads:
a fixed offered rate (--rate pings/s) and saturation (as fast as 32 connections go). Latency is from sending a
ping to its `POST /events` being accepted by the Snapshots sandbox (watched every 5 ms), so it includes the
receiver's commit, deriving, the worker's claim and the HTTP call. The baseline, measured in the same run, is
the receiver alone: the time until the ping's 200 (the durable commit), which the end-to-end figure builds on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

from snapbridge.sandbox import Sandboxes, bind_socket, start_sandboxes
from snapbridge.sandbox.gumroad import encode_form
from snapbridge.store import open_engine

ROOT = Path(__file__).resolve().parents[1]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CUSTOMERS = 50
START = datetime(2024, 3, 10, tzinfo=UTC)


@contextlib.contextmanager
def database(engine: str, home: Path, admin_url: str) -> Iterator[str]:
    if engine == "sqlite":
        yield f"sqlite:///{home / 'snapbridge.db'}"
        return
    name = f"sb_bench_{uuid.uuid4().hex[:12]}"
    admin = open_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "snapbridge", *args], env=env, capture_output=True, text=True,
                          cwd=ROOT, check=False, timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"snapbridge {' '.join(args[:2])} failed: {done.stderr[-1000:]}")
    return done.stdout


def prepare(boxes: Sandboxes, home: Path, url: str) -> tuple[dict[str, str], int, str, str]:
    """Connect like a seller; returns (env, port, Gumroad hook URL, Snapshots company id)."""
    with contextlib.closing(bind_socket()) as probe:
        port = int(probe.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAPBRIDGE_")}
    env.update({"SNAPBRIDGE_HOME": str(home), "SNAPBRIDGE_DATABASE_URL": url, "SNAPBRIDGE_ALLOWED_HOSTS": "127.0.0.1",
                "SNAPBRIDGE_LISTEN": f"127.0.0.1:{port}", "SNAPBRIDGE_GUMROAD_BASE_URL": boxes.gumroad_url,
                "SNAPBRIDGE_SNAPSHOTS_BASE_URL": boxes.snapshots_url,
                "SNAPBRIDGE_HIGHLEVEL_BASE_URL": boxes.highlevel_server.base_url})
    scopes = next(k for k in boxes.snapshots.keys() if "saas/location.write" in k.scopes).scopes  # noqa: SIM118
    key = boxes.snapshots.create_key(scopes, burst_limit=10_000_000, daily_limit=1_000_000_000)
    cli(env, "connect", "gumroad", "--access-token", boxes.gumroad.access_token, "--no-verify-by-fetch")
    cli(env, "connect", "snapshots", "--api-key", key.key, "--webhook-public-key", boxes.snapshots.webhook_public_key)
    cli(env, "templates", "install", "--all", "--force")
    hooks = json.loads(cli(env, "hooks", "--json"))
    return env, port, next(h["url"] for h in hooks if h["app"] == "gumroad"), key.company_id


def ping(seller_id: str, sale_id: str, number: int) -> bytes:
    email = f"bench{number % CUSTOMERS:03d}@e2e.example"
    return encode_form({
        "seller_id": seller_id, "product_id": "bench-product", "product_name": "Bench pack", "permalink": "bench",
        "product_permalink": "https://seller.gumroad.com/l/bench", "short_product_id": "bnch", "email": email,
        "price": 1500, "gumroad_fee": 150, "currency": "usd", "quantity": 1, "discover_fee_charged": False,
        "can_contact": True, "referrer": "direct", "order_number": number, "sale_id": sale_id,
        "sale_timestamp": (START + timedelta(seconds=number)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "full_name": f"Bench Buyer {number % CUSTOMERS}", "is_gift_receiver_purchase": False, "refunded": False,
        "resource_name": "sale", "disputed": False, "dispute_won": False,
    })


class Watcher:
    """Records when each `gumroad-sale-*` event first appears in the Snapshots sandbox."""

    def __init__(self, boxes: Sandboxes) -> None:
        self.state = boxes.snapshots._state
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        done = 0
        while not self.stop.wait(0.005):
            with self.state.lock:
                ids = list(self.state.events)[done:]
            now = time.perf_counter()
            done += len(ids)
            for _, event_id in ids:
                if event_id.startswith("gumroad-sale-"):
                    self.seen.setdefault(event_id[len("gumroad-sale-"):], now)


@dataclass
class Cell:
    sent: dict[str, float]
    acked: dict[str, float]
    elapsed: float


async def load(url: str, seller_id: str, tag: str, seconds: float, rate: float | None) -> Cell:
    """Offer `rate` pings/s (None: saturate with 32 connections) for `seconds`."""
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    counter = iter(range(10**9))
    begin = time.perf_counter()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        async def one(number: int) -> None:
            sale_id = f"{tag}-{number:07d}"
            body = ping(seller_id, sale_id, number)
            sent[sale_id] = time.perf_counter()
            answer = await client.post(url, content=body, headers=FORM)
            if answer.status_code == 200:
                acked[sale_id] = time.perf_counter()

        if rate is None:
            async def lane() -> None:
                while time.perf_counter() - begin < seconds:
                    await one(next(counter))
            await asyncio.gather(*(lane() for _ in range(32)))
        else:
            tasks = []
            for number in range(int(rate * seconds)):
                if time.perf_counter() - begin > seconds:
                    break  # the generator fell behind: what was really offered is reported
                due = begin + number / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(number)))
            await asyncio.gather(*tasks)
    return Cell(sent, acked, time.perf_counter() - begin)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(name: str, cell: Cell, watcher: Watcher, drain_seconds: float) -> None:
    deadline = time.perf_counter() + drain_seconds
    while time.perf_counter() < deadline and not all(s in watcher.seen for s in cell.acked):
        time.sleep(0.05)
    delivered = [s for s in cell.acked if s in watcher.seen]
    e2e = [watcher.seen[s] - cell.sent[s] for s in delivered]
    ack = [cell.acked[s] - cell.sent[s] for s in cell.acked]
    span = (max(watcher.seen[s] for s in delivered) - min(cell.sent.values())) if delivered else float("nan")
    print(f"  {name:<22} offered {len(cell.sent) / cell.elapsed:7.0f}/s  acked {len(cell.acked):6d}  "
          f"delivered {len(delivered):6d} in {span:5.1f} s = {len(delivered) / span:6.0f}/s  "
          f"e2e p50 {pct(e2e, 0.5):7.1f} ms p99 {pct(e2e, 0.99):7.1f} ms | "
          f"baseline (receiver 200) p50 {pct(ack, 0.5):6.1f} ms p99 {pct(ack, 0.99):6.1f} ms")


def run_engine(engine: str, procs: int, args: argparse.Namespace) -> None:
    boxes = start_sandboxes(seed=5, time_factor=0.01)
    home = Path(tempfile.mkdtemp(prefix=f"sb-e2e-{engine}-"))
    children: list[subprocess.Popen[bytes]] = []
    try:
        with database(engine, home, args.pg_admin_url) as url:
            env, port, hook, _company = prepare(boxes, home, url)
            log = (home / "serve.log").open("ab")
            children.append(subprocess.Popen([sys.executable, "-m", "snapbridge", "serve", "--no-pollers"], env=env,
                                             stdout=log, stderr=log, cwd=ROOT))
            children.extend(subprocess.Popen([sys.executable, "-m", "snapbridge", "worker"], env=env, stdout=log,
                                             stderr=log, cwd=ROOT) for _ in range(procs - 1))
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("serve did not start")
                time.sleep(0.05)
            watcher = Watcher(boxes)
            print(f"{engine}, {procs} worker process(es):")
            seller = boxes.gumroad.seller_id
            warm = asyncio.run(load(hook, seller, "warm", 1.0, 100))  # every customer's first purchase
            report("warm-up (100/s, 1 s)", warm, watcher, 20)
            fixed = asyncio.run(load(hook, seller, "fixed", args.seconds, args.rate))
            report(f"fixed {args.rate:.0f}/s", fixed, watcher, 20)
            saturated = asyncio.run(load(hook, seller, "sat", args.seconds, None))
            report("saturation (32 conns)", saturated, watcher, 25)
            watcher.stop.set()
            for child in children:
                child.send_signal(signal.SIGTERM)
            for child in children:
                child.wait(timeout=30)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        boxes.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--workers", default="1,2", help="worker processes (2+ only on PostgreSQL)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    for engine in args.engines.split(","):
        for procs in (int(p) for p in args.workers.split(",")):
            if procs > 1 and engine == "sqlite":
                continue  # SQLite: workers run within one process
            run_engine(engine, procs, args)
    print("targets (issue 5): end to end >= 2000/s; p99 < 100 ms at 500/s")


if __name__ == "__main__":
    main()
