"""End-to-end benchmark: Gumroad ping → `snapbridge serve` → Snapshots sandbox, throughput and p50/p99 latency.

    .venv/bin/python bench/e2e.py [--engines sqlite,postgresql] [--seconds 5] [--rate 500] [--workers 1,2]
                                  [--receivers 1,2]

For each engine (a fresh SQLite file, or a fresh PostgreSQL database on --pg-admin-url) the sandboxes run in this
process, the CLI connects snapbridge to them and installs the starter templates, and `snapbridge serve
--no-pollers [--receivers N]` runs as a child process (with N-1 extra `snapbridge worker` processes on
PostgreSQL). Two loads:
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
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import sqlalchemy as sa
from common import database, read_status, stop_children

from snapbridge.sandbox import Sandboxes, bind_socket, start_sandboxes
from snapbridge.sandbox.gumroad import encode_form
from snapbridge.store import open_engine

ROOT = Path(__file__).resolve().parents[1]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CUSTOMERS = 1000
START = datetime(2024, 3, 10, tzinfo=UTC)


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
            now = time.monotonic()
            done += len(ids)
            for _, event_id in ids:
                if event_id.startswith("gumroad-sale-"):
                    self.seen.setdefault(event_id[len("gumroad-sale-"):], now)


@dataclass
class Cell:
    sent: dict[str, float]
    acked: dict[str, float]
    elapsed: float


async def _load(url: str, seller_id: str, tag: str, seconds: float, rate: float | None) -> Cell:
    """Offer `rate` pings/s over 64 keep-alive connections (None: saturate 32 connections) for `seconds`.

    Raw HTTP/1.1 keeps the client's own cost small; at a fixed rate, latency counts from when the ping was
    due, so a generator that falls behind cannot hide queueing (no coordinated omission).
    """
    target = httpx.URL(url)
    head = (f"POST {target.raw_path.decode()} HTTP/1.1\r\nHost: {target.host}\r\n"
            f"Content-Type: {FORM['Content-Type']}\r\n")
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    begin = time.monotonic()
    due_numbers: asyncio.Queue[int | None] = asyncio.Queue()
    counter = iter(range(10**9))

    async def lane() -> None:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        try:
            while True:
                if rate is None:
                    number = next(counter)
                    if time.monotonic() - begin >= seconds:
                        return
                    due = time.monotonic()
                else:
                    queued = await due_numbers.get()
                    if queued is None:
                        return
                    number, due = queued, begin + queued / rate
                sale_id = f"{tag}-{number:07d}"
                body = ping(seller_id, sale_id, number)
                sent[sale_id] = due
                writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                if await read_status(reader) == 200:
                    acked[sale_id] = time.monotonic()
        finally:
            writer.close()

    lanes = 32 if rate is None else 64
    tasks = [asyncio.create_task(lane()) for _ in range(lanes)]
    if rate is not None:
        for number in range(int(rate * seconds)):
            delay = begin + number / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            due_numbers.put_nowait(number)
        for _ in tasks:
            due_numbers.put_nowait(None)
    await asyncio.gather(*tasks)
    return Cell(sent, acked, time.monotonic() - begin)


def run_load(url: str, seller_id: str, tag: str, seconds: float, rate: float | None) -> Cell:
    return asyncio.run(_load(url, seller_id, tag, seconds, rate))


def load(url: str, seller_id: str, tag: str, seconds: float, rate: float | None) -> Cell:
    """The load runs in its own process so its CPU stays apart from the sandboxes' (CLOCK_MONOTONIC is shared)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_load, url, seller_id, tag, seconds, rate).result()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def tree_cpu(roots: list[int]) -> dict[str, float]:
    """CPU seconds so far of the `roots` and of each process below them, by role: "serve" or the subcommand
    (`worker` for `serve --worker-processes` children and `snapbridge worker`), from Linux /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    tree, grown = set(roots), True
    while grown:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grown = bool(below)
    used: dict[str, float] = {}
    for pid in tree:
        with contextlib.suppress(OSError, ValueError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            role = argv[argv.index(b"snapbridge") + 1].decode() if b"snapbridge" in argv else "other"
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[role] = used.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def report(name: str, cell: Cell, watcher: Watcher, drain_seconds: float,
           cpu: tuple[list[int], dict[str, float]] | None = None) -> None:
    deadline = time.monotonic() + drain_seconds
    while time.monotonic() < deadline and not all(s in watcher.seen for s in cell.acked):
        time.sleep(0.05)
    delivered = [s for s in cell.acked if s in watcher.seen]
    e2e = [watcher.seen[s] - cell.sent[s] for s in delivered]
    ack = [cell.acked[s] - cell.sent[s] for s in cell.acked]
    span = (max(watcher.seen[s] for s in delivered) - min(cell.sent.values())) if delivered else float("nan")
    print(f"  {name:<22} offered {len(cell.sent) / cell.elapsed:7.0f}/s  acked {len(cell.acked):6d}  "
          f"delivered {len(delivered):6d} in {span:5.1f} s = {len(delivered) / span:6.0f}/s  "
          f"e2e p50 {pct(e2e, 0.5):7.1f} ms p99 {pct(e2e, 0.99):7.1f} ms | "
          f"baseline (receiver 200) p50 {pct(ack, 0.5):6.1f} ms p99 {pct(ack, 0.99):6.1f} ms")
    if cpu is not None and delivered:
        # CPU per delivered ping is steadier than a rate on this shared VM: compare code by it.
        roots, before = cpu
        after = tree_cpu(roots)
        parts = {role: (after.get(role, 0.0) - before.get(role, 0.0)) * 1000 / len(delivered) for role in after}
        shown = "  ".join(f"{role} {ms:.3f}" for role, ms in sorted(parts.items()))
        print(f"  {'':<22} CPU per delivered ping: {sum(parts.values()):.3f} ms ({shown})")
    if len(delivered) < len(cell.acked):
        # Not a loss: the bench stops watching this load after its drain window and moves on.
        print(f"  {'':<22} {len(cell.acked) - len(delivered)} acked pings not yet in the sandbox when this "
              f"load's watch ended (still queued)")


def run_engine(engine: str, procs: int, args: argparse.Namespace, receivers: int = 1, apart: int = 0) -> None:
    boxes = start_sandboxes(seed=5, time_factor=0.01)
    home = Path(tempfile.mkdtemp(prefix=f"sb-e2e-{engine}-"))
    children: list[subprocess.Popen[bytes]] = []
    try:
        with database(engine, home, args.pg_admin_url) as url:
            env, port, hook, _company = prepare(boxes, home, url)
            log = (home / "serve.log").open("ab")
            children.append(spawn(env, log, "serve", "--no-pollers", "--receivers", str(receivers),
                                  "--worker-processes", str(apart)))
            children.extend(spawn(env, log, "worker") for _ in range(procs - 1))
            wait_for_port(port)
            watcher = Watcher(boxes)
            where = f"{apart} of them apart (serve --worker-processes {apart})" if apart else "1 of them in serve"
            print(f"{engine}, {procs - 1 + max(apart, 1)} worker process(es), {where}, "
                  f"{receivers} receiver process(es):")
            seller = boxes.gumroad.seller_id
            ours = [child.pid for child in children]

            def measured() -> tuple[list[int], dict[str, float]]:
                return ours, tree_cpu(ours)

            before = measured()
            warm = load(hook, seller, "warm", CUSTOMERS / 200, 200)  # every customer's first purchase
            report("warm-up (200/s)", warm, watcher, 30, before)
            before = measured()
            fixed = load(hook, seller, "fixed", args.seconds, args.rate)
            report(f"fixed {args.rate:.0f}/s", fixed, watcher, 20, before)
            before = measured()
            saturated = load(hook, seller, "sat", args.seconds, None)
            report("saturation (32 conns)", saturated, watcher, 25, before)
            watcher.stop.set()
            stop_children(children)
    finally:
        stop_children(children, graceful=False)
        boxes.stop()


def spawn(env: dict[str, str], log: IO[bytes], *args: str) -> subprocess.Popen[bytes]:
    """`snapbridge ARGS` as a child process logging to `log`."""
    return subprocess.Popen([sys.executable, "-m", "snapbridge", *args], env=env, stdout=log, stderr=log,  # noqa: S603
                            cwd=ROOT)


def _drained(url: str, query: str, deadline: float,
             on_first: Callable[[int], object] | None = None) -> tuple[float, float] | None:
    """Poll `query` (a count) every 100 ms; (when it first went below its start, when it reached 0).
    `on_first(count left)` is called when it first goes below its start.

    Not more often: counting 10,000 unfinished jobs 50 times a second took a tenth of a core from the database
    the stage under test is using.
    """
    engine = open_engine(url)
    try:
        first: float | None = None
        start_count: int | None = None
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                left = int(conn.execute(sa.text(query)).scalar() or 0)
            now = time.monotonic()
            if start_count is None:
                start_count = left
            elif first is None and left < start_count:
                first = now
                if on_first is not None:
                    on_first(left)
            if left == 0:
                return (first or now), now
            time.sleep(0.1)
        return None
    finally:
        engine.dispose()


def run_stages(engine: str, procs: int, args: argparse.Namespace) -> None:
    """Each stage alone on a backlog: receive N pings (serve --no-workers), derive them, then deliver the
    jobs with `procs` `snapbridge worker` processes; the slowest stage caps the end-to-end rate."""
    boxes = start_sandboxes(seed=5, time_factor=0.01)
    home = Path(tempfile.mkdtemp(prefix=f"sb-stages-{engine}-"))
    children: list[subprocess.Popen[bytes]] = []
    try:
        with database(engine, home, args.pg_admin_url) as url:
            env, port, hook, _company = prepare(boxes, home, url)
            log = (home / "serve.log").open("ab")
            children.append(spawn(env, log, "serve", "--no-pollers", "--no-workers"))
            wait_for_port(port)
            seller = boxes.gumroad.seller_id
            warm = load(hook, seller, "swarm", CUSTOMERS / 200, 200)  # first purchases: locations etc.
            _drained(url, "SELECT count(*) FROM inbound_events WHERE status = 'received'", time.monotonic() + 60)
            children.append(spawn(env, log, "worker"))
            _drained(url, "SELECT count(*) FROM jobs WHERE status IN ('queued', 'leased')", time.monotonic() + 120)
            children.pop().send_signal(signal.SIGTERM)
            print(f"{engine}, stages on a backlog ({len(warm.acked)} first purchases before), "
                  f"delivered by {procs} worker process(es):")
            serve_cpu = cpu_seconds(children[0])
            cell = load(hook, seller, "stage", args.seconds, None)
            received = len(cell.acked)
            span = max(cell.acked.values()) - min(cell.sent.values())
            print(f"  receive  {received:6d} pings   {received / span:7.0f}/s   (serve --no-workers, 32 connections)")
            derived = _drained(url, "SELECT count(*) FROM inbound_events WHERE status = 'received'",
                               time.monotonic() + 300)
            if derived:
                took = derived[1] - min(cell.sent.values())
                print(f"  derive   {received:6d} events  {received / took:7.0f}/s   (until the last is derived)")
            used = cpu_seconds(children[0]) - serve_cpu
            print(f"  serve CPU for receive + derive: {used * 1000 / received:.3f} ms per ping")
            jobs = _count(url, "SELECT count(*) FROM jobs WHERE status IN ('queued', 'leased')")
            begin = time.monotonic()
            children.extend(spawn(env, log, "worker") for _ in range(procs))
            steady: list[tuple[float, int]] = []  # worker CPU and jobs left once the first job is done

            def started(left: int) -> None:
                steady.append((sum(cpu_seconds(child) for child in children[-procs:]), left))

            delivered = _drained(url, "SELECT count(*) FROM jobs WHERE status IN ('queued', 'leased')",
                                 time.monotonic() + 300, started)
            if delivered:
                print(f"  deliver  {jobs:6d} jobs    {jobs / (delivered[1] - delivered[0]):7.0f}/s   "
                      f"({procs} `snapbridge worker` process(es), from the first job done; "
                      f"{delivered[1] - begin:.1f} s from their start)")
                if steady:  # from the first job done, so the workers' start-up (imports, connecting) is left out
                    used = sum(cpu_seconds(child) for child in children[-procs:]) - steady[0][0]
                    print(f"  worker CPU for deliver: {used * 1000 / steady[0][1]:.3f} ms per job")
            stop_children(children)
    finally:
        stop_children(children, graceful=False)
        boxes.stop()


def cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """User + system CPU time the child has used so far (Linux /proc; 0.0 elsewhere). Less disturbed than a
    rate when other jobs share the machine, though not immune: a busy host still adds 10-40 % (seen here)."""
    try:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _count(url: str, query: str) -> int:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(query)).scalar() or 0)
    finally:
        engine.dispose()


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        if time.monotonic() > deadline:
            raise SystemExit("serve did not start")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--workers", default="1,2", help="worker processes (2+ only on PostgreSQL)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--receivers", default="1",
                        help="serve --receivers N: processes answering webhooks (comma-separated counts)")
    parser.add_argument("--worker-processes", default="0",
                        help="serve --worker-processes N: deliver in N processes apart from serve (comma-separated)")
    parser.add_argument("--stages", action="store_true", help="only time each stage alone on a backlog")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    for engine in args.engines.split(","):
        for procs in (int(p) for p in args.workers.split(",")):
            if procs > 1 and engine == "sqlite":
                continue  # SQLite: workers run within one process
            if args.stages:
                run_stages(engine, procs, args)
                continue
            for receivers in (int(r) for r in args.receivers.split(",")):
                for apart in (int(a) for a in args.worker_processes.split(",")):
                    if apart > 1 and engine == "sqlite":
                        continue  # SQLite: one delivering process (its rate limiter is in memory)
                    run_engine(engine, procs, args, receivers, apart)
    print("targets (issue 5): end to end >= 2000/s; p99 < 100 ms at 500/s")


if __name__ == "__main__":
    main()
