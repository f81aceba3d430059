"""Ingest benchmark: durable webhooks accepted/s with p50/p99, against a no-op endpoint on the same stack.

    .venv/bin/python bench/ingest.py [--database-url URL] [--seconds 2.5] [--concurrency 1,16,64]

The receiver (create_app over a real Store: a fresh SQLite file by default, or a private schema in the
PostgreSQL at --database-url) and a no-op Starlette app run in this process on ServerThread, as in production.
The load comes from a separate process over raw keep-alive HTTP/1.1 connections, so the client's own cost
stays off the server's core. Every durable answer is a 200 sent after the commit; rows are counted at the
end.

CPU per answered request (warm-up included) is shown beside the rates, since the rate on a shared machine
moves with whatever else runs: the server process, its event loop thread and the group-commit thread
(Linux /proc; "-" elsewhere), and the load generator. The server holds one GIL, so 1e6 / server µs is
about the most one core can answer.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import read_status
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from snapbridge.config import Settings
from snapbridge.runtime import ReceiverConfig, new_webhook_secret
from snapbridge.sandbox import ServerThread, bind_socket, run_async
from snapbridge.store import Store, migrate, open_engine
from snapbridge.web import create_app

ROOT = Path(__file__).resolve().parents[1]
SALE = ROOT / "tests" / "data" / "gumroad_webhooks" / "sale.txt"
SELLER = "hN7pZkQwT3xVbJ9sLmR2cA=="  # the seller in the recorded sale body
SIGNING_SEED = bytes(range(32))
WARMUP_SECONDS = 0.3
PRESIGNED_PER_SECOND = 8_000


# ---- the load generator (runs in its own process) ---------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    kind: str  # "noop" | "gumroad" | "snapshots"
    host: str
    port: int
    concurrency: int
    seconds: float
    tag: str  # makes every event id of this cell unique
    secret: str  # the Gumroad path token, fresh for each run


@dataclass(frozen=True)
class Measured:
    latencies: list[float]
    statuses: dict[int, int]
    elapsed: float
    answered: int  # warm-up included, like cpu_seconds
    cpu_seconds: float  # the load generator's own


def _request_factory(cell: Cell) -> Callable[[int], bytes]:
    sale = SALE.read_bytes().strip()
    key = Ed25519PrivateKey.from_private_bytes(SIGNING_SEED)

    def frame(path: str, body: bytes, content_type: str, extra: str = "") -> bytes:
        head = (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n{extra}\r\n")
        return head.encode() + body

    def gumroad(n: int) -> bytes:
        body = sale.replace(b"sale_id=FO8TXN", f"sale_id={cell.tag}-{n}-".encode())
        return frame(f"/hooks/gumroad/{cell.secret}", body, "application/x-www-form-urlencoded")

    def snapshots(n: int) -> bytes:
        body = json.dumps({
            "type": "LocationUpdate", "webhookId": f"{cell.tag}-{n}",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "companyId": "comp_1",
            "location_id": f"loc_{n}", "name": "Bench Studio", "timezone": "Europe/Oslo",
        }).encode()
        signature = base64.b64encode(key.sign(body)).decode()
        return frame("/hooks/snapshots", body, "application/json", f"X-GHL-Signature: {signature}\r\n")

    def noop(n: int) -> bytes:
        return frame("/noop", sale, "application/x-www-form-urlencoded")

    return {"gumroad": gumroad, "snapshots": snapshots, "noop": noop}[cell.kind]


async def _drive(cell: Cell) -> Measured:
    make = _request_factory(cell)
    counter = iter(range(10**9))
    if cell.kind == "snapshots":
        # Signing a body costs the load generator ~60 µs, on a core the servers need: sign enough before the
        # clock starts (what a sender that can keep up would have ready), then fall back to signing as it goes.
        ready = [make(n) for n in range(int(PRESIGNED_PER_SECOND * (cell.seconds + WARMUP_SECONDS)))]
        signing = make
        make = lambda n: ready[n] if n < len(ready) else signing(n)  # noqa: E731
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    answered = 0
    cpu = time.process_time()
    start = time.perf_counter()
    warm_until = start + WARMUP_SECONDS
    deadline = warm_until + cell.seconds

    async def connection() -> None:
        nonlocal answered
        reader, writer = await asyncio.open_connection(cell.host, cell.port)
        try:
            while True:
                request = make(next(counter))
                sent = time.perf_counter()
                if sent >= deadline:
                    return
                writer.write(request)
                status = await read_status(reader)
                done = time.perf_counter()
                answered += 1
                if sent >= warm_until:
                    latencies.append(done - sent)
                    statuses[status] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(cell.concurrency)))
    return Measured(latencies, dict(statuses), time.perf_counter() - warm_until, answered,
                    time.process_time() - cpu)


def run_cell(cell: Cell) -> Measured:
    return asyncio.run(_drive(cell))


# ---- the servers -------------------------------------------------------------------------------------------


async def _noop(request: Request) -> Response:
    await request.body()
    return JSONResponse({"status": "stored", "id": 1, "duplicate": False})


@contextmanager
def database(url: str | None) -> Iterator[Engine]:
    """A fresh SQLite file, or a private schema in the given PostgreSQL, dropped afterwards."""
    if url is None or url.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            engine = open_engine(url or f"sqlite:///{tmp}/bench.db")
            migrate(engine)
            yield engine
            engine.dispose()
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = open_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    # The schema rides in the URL, so receiver processes (--processes) open the same database from it.
    engine = open_engine(admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
                         .render_as_string(hide_password=False))
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@dataclass(frozen=True)
class ChildServer:
    """What a receiver process of --processes N runs: the app (or the no-op) on a port shared by N."""

    kind: str  # "noop" | "receiver"
    database_url: str
    port: int
    secret: str
    snapshots_key: str


def serve_child(spec: ChildServer, ready: Any, stop: Any) -> None:
    """One receiver process, as `serve --receivers N` runs them: its own socket on the shared port
    (SO_REUSEPORT), uvicorn on uvloop, the same app over the same database (SQLite writers take turns)."""
    import uvicorn

    store = None
    if spec.kind == "noop":
        app: Any = Starlette(routes=[Route("/noop", _noop, methods=["POST"])])
    else:
        engine = open_engine(spec.database_url)
        store = Store(engine)
        config = ReceiverConfig.from_values(gumroad={spec.secret: ("bench", SELLER)},
                                            snapshots={"bench": spec.snapshots_key})
        app = create_app(Settings(home=Path(tempfile.mkdtemp()), database_url=spec.database_url), store, config)
    sock = bind_socket("127.0.0.1", spec.port, reuse_port=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))

    async def main() -> None:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110 (uvicorn has only the flag)
            await asyncio.sleep(0.01)
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)  # what serve does once started
        ready.set()
        while not stop.is_set():  # noqa: ASYNC110 (a multiprocessing Event)
            await asyncio.sleep(0.05)
        server.should_exit = True
        await serving

    run_async(main())
    if store is not None:
        store.close()


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def child_servers(spec: ChildServer, count: int) -> Iterator[list[int]]:
    """`count` receiver processes on spec.port; their pids."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    children = []
    try:
        for _ in range(count):
            ready = ctx.Event()
            child = ctx.Process(target=serve_child, args=(spec, ready, stop), daemon=True)
            child.start()
            children.append(child)
            if not ready.wait(60):
                raise RuntimeError("a receiver process did not start")
        yield [c.pid for c in children if c.pid is not None]
    finally:
        stop.set()
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()


def run_processes(args: argparse.Namespace, engine: Engine, secret: str, key: str, levels: list[int],
                  kinds: list[str], processes: int) -> tuple[list[str], int]:
    """The same cells against `processes` receiver processes (and as many no-op ones); lines, rows expected."""
    with contextlib.closing(bind_socket("127.0.0.1", 0, reuse_port=True)) as probe:
        port = probe.getsockname()[1]
    url = engine.url.render_as_string(hide_password=False)
    lines: list[str] = []
    expected = 0
    with child_servers(ChildServer("noop", url, port, secret, key), processes) as noop_pids:
        noop_port = port
        with contextlib.closing(bind_socket("127.0.0.1", 0, reuse_port=True)) as probe:
            port = probe.getsockname()[1]
        with child_servers(ChildServer("receiver", url, port, secret, key), processes) as pids, \
                ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            for level in levels:
                baseline = None
                for kind in kinds:
                    target, watched = (noop_port, noop_pids) if kind == "noop" else (port, pids)
                    cell = Cell(kind, "127.0.0.1", target, level, args.seconds, uuid.uuid4().hex[:8], secret)
                    before = [_process_cpu(pid) for pid in watched]
                    measured = pool.submit(run_cell, cell).result()
                    used = [_process_cpu(pid) - b for pid, b in zip(watched, before, strict=True)]
                    rate = len(measured.latencies) / measured.elapsed
                    if kind == "noop":
                        baseline = rate
                    else:
                        expected += measured.statuses.get(200, 0)
                    ratio = f"{rate / baseline:.2f}x" if baseline and kind != "noop" else "-"
                    name = {"noop": "no-op (same stack)", "gumroad": "gumroad (durable)",
                            "snapshots": "snapshots (durable)"}[kind]
                    n = measured.answered
                    shares = "/".join(f"{u / n * 1e6:.0f}" for u in used)
                    line = (f"{name:<22}{processes:>6}{level:>5}{rate:>10.0f}{_pct(measured.latencies, 0.5):>9.2f}"
                            f"{_pct(measured.latencies, 0.99):>9.2f}{ratio:>10}{sum(used) / n * 1e6:>16.0f}"
                            f"  {shares:<12}{measured.cpu_seconds / n * 1e6:>7.0f}  {dict(measured.statuses)}")
                    lines.append(line)
                    print(line, flush=True)
    return lines, expected


def _thread_cpu(name_prefix: str) -> float | None:
    """CPU seconds so far of this process's threads whose name starts with `name_prefix` (Linux only)."""
    total = 0.0
    for thread in threading.enumerate():
        if not thread.name.startswith(name_prefix) or thread.native_id is None:
            continue
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


@dataclass(frozen=True)
class CpuSample:
    process: float
    loop: float | None
    commit: float | None

    @classmethod
    def take(cls, loop_thread: str) -> CpuSample:
        return cls(time.process_time(), _thread_cpu(loop_thread), _thread_cpu("group-commit"))


def _per_request(before: float | None, after: float | None, answered: int) -> str:
    if before is None or after is None or not answered:
        return "-"
    return f"{(after - before) / answered * 1e6:.0f}"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--seconds", type=float, default=2.5, help="measured seconds per cell")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--kinds", default="noop,gumroad,snapshots")
    parser.add_argument("--gc-tuned", action="store_true",
                        help="once the servers are up, freeze what startup allocated out of the collector's reach "
                             "and collect the youngest generation every 10,000 allocations, not 700 (what a "
                             "long-running service does; snapbridge serve and worker do it once started)")
    parser.add_argument("--processes", default="",
                        help="also run the cells against N receiver processes sharing the port, as `serve "
                             "--receivers N` runs them (comma-separated counts, e.g. 1,2)")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    kinds = args.kinds.split(",")
    if args.processes:
        return main_processes(args, levels, kinds, [int(n) for n in args.processes.split(",")])

    secret = new_webhook_secret().reveal()
    public = Ed25519PrivateKey.from_private_bytes(SIGNING_SEED).public_key()
    config = ReceiverConfig.from_values(
        gumroad={secret: ("bench", SELLER)},
        snapshots={"bench": base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()},
    )
    rows_expected = 0
    lines: list[str] = []
    with database(args.database_url) as engine, tempfile.TemporaryDirectory() as home:
        store = Store(engine)
        settings = Settings(home=Path(home), database_url=str(engine.url))
        app = create_app(settings, store, config)
        receiver = ServerThread(app).start()
        noop = ServerThread(Starlette(routes=[Route("/noop", _noop, methods=["POST"])])).start()
        if args.gc_tuned:
            # With 64 webhooks in flight, every young collection promotes their objects; promoted, they make
            # full collections of the whole heap frequent: ~10% of the CPU, and most of the p99.
            gc.collect()
            gc.freeze()
            gc.set_threshold(10_000, 10, 10)
        label = "PostgreSQL" if store.is_postgres else "SQLite (WAL, synchronous=FULL)"
        print(f"ingest: {label}; {args.seconds:g} s per cell after {WARMUP_SECONDS:g} s warm-up; "
              f"load from a separate process over keep-alive HTTP/1.1"
              f"{'; garbage collector tuned (--gc-tuned)' if args.gc_tuned else ''}", flush=True)
        header = (f"{'endpoint':<22}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs no-op':>10}"
                  f"{'avg batch':>11}{'µs/req: server':>16}{'loop':>6}{'commit':>7}{'client':>7}  statuses")
        lines.append(header)
        ctx = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                for level in levels:
                    baseline = None
                    for kind in kinds:
                        server = noop if kind == "noop" else receiver
                        cell = Cell(kind, server.host, server.port, level, args.seconds,
                                    uuid.uuid4().hex[:8], secret)
                        loop_thread = f"sandbox-{server.port}"  # ServerThread's name
                        before = app.state.committer.stats
                        cpu_before = CpuSample.take(loop_thread)
                        measured = pool.submit(run_cell, cell).result()
                        cpu_after = CpuSample.take(loop_thread)
                        after = app.state.committer.stats
                        rate = len(measured.latencies) / measured.elapsed
                        if kind == "noop":
                            baseline = rate
                        else:
                            rows_expected += measured.statuses.get(200, 0)
                        batches = after.batches - before.batches
                        avg = (after.events - before.events) / batches if batches else float("nan")
                        ratio = f"{rate / baseline:.2f}x" if baseline and kind != "noop" else "-"
                        name = {"noop": "no-op (same stack)", "gumroad": "gumroad (durable)",
                                "snapshots": "snapshots (durable)"}[kind]
                        n = measured.answered
                        cpu = (f"{_per_request(cpu_before.process, cpu_after.process, n):>16}"
                               f"{_per_request(cpu_before.loop, cpu_after.loop, n):>6}"
                               f"{'-' if kind == 'noop' else _per_request(cpu_before.commit, cpu_after.commit, n):>7}"
                               f"{_per_request(0.0, measured.cpu_seconds, n):>7}")
                        line = (f"{name:<22}{level:>5}{rate:>10.0f}{_pct(measured.latencies, 0.5):>9.2f}"
                                f"{_pct(measured.latencies, 0.99):>9.2f}{ratio:>10}"
                                f"{'-' if kind == 'noop' else f'{avg:.1f}':>11}{cpu}  {dict(measured.statuses)}")
                        lines.append(line)
                        print(line, flush=True)
        finally:
            receiver.stop()
            noop.stop()
        with engine.connect() as conn:
            # Counted after the warm-up too: the warm-up's posts were committed as well.
            stored = conn.execute(sa.text("SELECT count(*) FROM inbound_events")).scalar_one()
        store.close()
    print()
    print("\n".join(lines))
    stats = app.state.committer.stats
    print(f"\nrows stored: {stored} (>= {rows_expected} answered 200 in the measured windows); "
          f"{stats.batches} transactions for {stats.events} events "
          f"({stats.events / max(1, stats.batches):.1f} per transaction), "
          f"largest batch {stats.largest_batch}")
    return 0 if stored >= rows_expected else 1


def main_processes(args: argparse.Namespace, levels: list[int], kinds: list[str], counts: list[int]) -> int:
    secret = new_webhook_secret().reveal()
    public = Ed25519PrivateKey.from_private_bytes(SIGNING_SEED).public_key()
    key = base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    lines = [f"{'endpoint':<22}{'procs':>6}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs no-op':>10}"
             f"{'server µs/req':>16}  {'per process':<12}{'client':>7}  statuses"]
    expected = 0
    with database(args.database_url) as engine:
        label = "PostgreSQL" if engine.dialect.name == "postgresql" else "SQLite (WAL, synchronous=FULL)"
        print(f"ingest: {label}; receiver processes sharing one port (SO_REUSEPORT), as `serve --receivers N`; "
              f"{args.seconds:g} s per cell after {WARMUP_SECONDS:g} s warm-up; load from a separate process; "
              f"no-op: as many processes of a bare Starlette endpoint", flush=True)
        print(lines[0], flush=True)
        for count in counts:
            more, rows = run_processes(args, engine, secret, key, levels, kinds, count)
            lines += more
            expected += rows
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM inbound_events")).scalar_one()
    print()
    print("\n".join(lines))
    print(f"\nrows stored: {stored} (>= {expected} answered 200 in the measured windows)")
    return 0 if stored >= expected else 1


if __name__ == "__main__":
    sys.exit(main())
