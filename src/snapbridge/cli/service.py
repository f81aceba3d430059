"""`snapbridge serve`, `snapbridge worker` and `snapbridge sync`: run the pipeline, or backfill history."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import click

from snapbridge.cli.context import open_context
from snapbridge.cli.logs import register_secret
from snapbridge.config import Settings, listen_address, listen_host, split_listen
from snapbridge.errors import InvalidInput, SnapbridgeError
from snapbridge.runtime import (
    BackfillProgress,
    ChildProcesses,
    ConnectionClients,
    Connections,
    ServiceOptions,
    WorkerConfig,
    backfill_gumroad,
    hook_urls,
    run_service,
    wake_through,
    watch_parent,
)
from snapbridge.sandbox import bind_socket, run_async
from snapbridge.web import create_app

__all__ = ["serve_command", "sync_group", "worker_command"]

# Seconds a thread may hold the interpreter while another waits for it (Python's default: 0.005).
SWITCH_INTERVAL = 0.0005
# Gumroad opened in 2011: a backfill from before would walk years of empty days.
_GUMROAD_STARTED = date(2011, 1, 1)


def _listen(settings: Settings, host: str | None, port: int | None) -> Settings:
    current_host, current_port = split_listen(settings.listen)
    listen = listen_address(host or current_host or "127.0.0.1", port if port is not None else current_port or 8080)
    return Settings(**{**settings.__dict__, "listen": listen})


def _bind(settings: Settings, *, shared: bool, first: bool = True) -> tuple[socket.socket, Settings]:
    """The receiver's socket, bound before anything says it listens; the settings name the port it got (for 0).
    `shared`: other receiver processes listen on the same port; `first`: this process binds it first."""
    host, port = split_listen(settings.listen)
    try:
        number = int(port)
        if shared and first:
            # Bound once without SO_REUSEPORT first: that fails while anything listens there, even a program (or
            # a second snapbridge) that shares its port, which would otherwise silently take part of the load.
            with contextlib.closing(bind_socket(host, number)) as probe:
                number = probe.getsockname()[1]
        sock = bind_socket(host, number, reuse_port=shared)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        reason = reason[:1].lower() + reason[1:] if reason[1:2].islower() else reason
        raise click.ClickException(f"cannot listen on {settings.listen}: {reason}") from None
    return sock, Settings(**{**settings.__dict__, "listen": listen_address(host, sock.getsockname()[1])})


def _checked_host(_ctx: click.Context, _param: click.Parameter, given: str | None) -> str | None:
    if given is None:
        return None
    try:
        return listen_host(given)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc)) from None


@dataclass(frozen=True)
class _ChildOf:
    """A process that `serve --receivers` or `--worker-processes` started: its parent, and the pipe to wake its
    deriver (a worker's stays unused: its end tells the parent it is gone)."""

    parent_pid: int
    wake_fd: int


def _receiver_command(settings: Settings, wake_fd: int) -> list[str]:
    host, port = split_listen(settings.listen)
    return [sys.executable, "-m", "snapbridge", "serve", "--receiver-of", str(os.getpid()),
            "--wake-fd", str(wake_fd), "--host", host, "--port", port]


def _worker_command(config: WorkerConfig, wake_fd: int) -> list[str]:
    return [sys.executable, "-m", "snapbridge", "worker", "--worker-of", str(os.getpid()), "--wake-fd", str(wake_fd),
            "--concurrency", str(config.concurrency), "--lease-seconds", repr(config.lease_seconds)]


def _run(options: ServiceOptions, host: str | None, port: int | None, *, receivers: int = 1,
         worker_processes: int = 0, child_of: _ChildOf | None = None) -> int:
    ctx = open_context()
    settings = _listen(ctx.settings, host, port)
    sock: socket.socket | None = None
    try:
        if worker_processes > 1 and not ctx.store.is_postgres:
            raise click.UsageError("--worker-processes above 1 needs PostgreSQL: on SQLite the rate limit is kept "
                                   "by the one process that delivers")
        if options.receiver:
            sock, settings = _bind(settings, shared=receivers > 1 or child_of is not None, first=child_of is None)
        siblings = None
        if receivers > 1 or worker_processes:
            siblings = ChildProcesses(receivers, partial(_receiver_command, settings), workers=worker_processes,
                                      worker=partial(_worker_command, options.worker))
        for record in ctx.connections.list():
            register_secret(ctx.vault.decrypt(record.credential, bound_to=f"{record.name}:credential"))

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if child_of is not None:
                parent = asyncio.create_task(watch_parent(child_of.parent_pid, stop))

            def ready() -> None:
                # Everything made at start-up lives as long as the process: keep the collector from scanning it
                # again and again, and collect less often (bench/ingest.py --gc-tuned: ~10% less CPU per webhook,
                # p99 at concurrency 64 about halved).
                gc.collect()
                gc.freeze()
                gc.set_threshold(10_000, 10, 10)
                # A store thread inside a write transaction needs the interpreter between its statements; at the
                # default 5 ms switch interval each hand-over from a busy event loop could hold SQLite's write
                # lock (and every other process's writes) that much longer. bench/e2e.py, SQLite, 2 processes:
                # saturation 659-669/s delivered against 631-637/s, the receiver's p50 21 ms against 23-26 ms.
                sys.setswitchinterval(SWITCH_INTERVAL)
                if child_of is not None:
                    return  # the parent said where it listens
                if options.receiver:
                    many = f" ({receivers} receiver processes)" if receivers > 1 else ""
                    click.echo(f"snapbridge is listening on http://{settings.listen}{many}", err=True)
                    for hook in hook_urls(ctx.connections, ctx.vault, f"http://{settings.listen}"):
                        shown = hook.url if hook.app == "snapshots" else hook.url.rsplit("/", 1)[0] + "/****"
                        click.echo(f"  {hook.app:9} webhooks  {shown}   (`snapbridge hooks` shows the full URL)",
                                   err=True)
                delivering = f"{worker_processes} worker process(es)" if worker_processes else f"{options.workers}"
                click.echo(f"  workers: {delivering}, pollers: {'on' if options.pollers else 'off'}; "
                           "Ctrl+C stops after finishing jobs in flight", err=True)

            await run_service(settings, ctx.store, ctx.vault, ctx.connections, options, stop,
                              make_app=lambda s, st, hooks, on_commit: create_app(
                                  s, st, hooks, on_commit=on_commit, vault=ctx.vault, connections=ctx.connections),
                              sock=sock, on_ready=ready, children=siblings,
                              on_commit=wake_through(child_of.wake_fd) if child_of is not None else None)
            if child_of is not None:
                parent.cancel()

        run_async(main())
    finally:
        if sock is not None:
            sock.close()
        ctx.close()
    if child_of is None:
        click.echo("snapbridge stopped", err=True)
    return 0


@click.command("serve")
@click.option("--host", callback=_checked_host,
              help="Address to listen on, IPv6 with or without brackets (default from settings: 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535),
              help="Port to listen on (default from settings: 8080; 0 picks a free port).")
@click.option("--no-workers", is_flag=True, help="Only receive and derive; `snapbridge worker` delivers.")
@click.option("--workers", "worker_count", type=click.IntRange(0, 64), default=1, show_default=True,
              help="Worker loops in this process.")
@click.option("--poll-interval", type=click.FloatRange(min=0.01), default=60.0, show_default=True,
              help="Seconds between reconciliation polls of both APIs.")
@click.option("--no-pollers", is_flag=True, help="Do not run the reconciliation pollers.")
@click.option("--lease-seconds", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="How long a claimed job is a worker's; after a crash its jobs wait this long at most.")
@click.option("--receivers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes answering webhooks (and the API and dashboard) on this port; more use more cores.")
@click.option("--worker-processes", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Deliver in this many processes of their own instead of in this one: delivering then uses "
                   "another core (on SQLite at most 1).")
@click.option("--receiver-of", "parent_pid", type=int, hidden=True)  # a process --receivers started
@click.option("--wake-fd", type=int, hidden=True)
def serve_command(host: str | None, port: int | None, no_workers: bool, worker_count: int,
                  poll_interval: float, no_pollers: bool, lease_seconds: float, receivers: int,
                  worker_processes: int, parent_pid: int | None, wake_fd: int | None) -> int:
    """Run the receiver, deriver, workers and pollers in one process (the embedded deployment)."""
    if parent_pid is not None:
        if wake_fd is None:
            raise click.UsageError("--receiver-of needs --wake-fd")
        # Only the receiver: the parent derives, delivers and polls.
        child = ServiceOptions(deriver=False, workers=0, pollers=False)
        return _run(child, host, port, child_of=_ChildOf(parent_pid, wake_fd))
    if worker_processes and no_workers:
        raise click.UsageError("--worker-processes and --no-workers contradict each other: choose one")
    options = ServiceOptions(workers=0 if no_workers or worker_processes else worker_count, pollers=not no_pollers,
                             poll_interval_seconds=poll_interval, worker=_worker_config(lease_seconds))
    return _run(options, host, port, receivers=receivers, worker_processes=worker_processes)


def _worker_config(lease_seconds: float, concurrency: int = WorkerConfig.concurrency) -> WorkerConfig:
    # The lease must leave room for a request after a rate-limit wait; keep the reserve below the lease.
    return WorkerConfig(concurrency=concurrency, lease_seconds=lease_seconds,
                        lease_reserve_seconds=min(WorkerConfig.lease_reserve_seconds, lease_seconds / 4))


@click.command("worker")
@click.option("--concurrency", type=click.IntRange(1, 256), default=32, show_default=True,
              help="Jobs in flight at once.")
@click.option("--lease-seconds", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="How long a claimed job is this worker's; after a crash its jobs wait this long at most.")
@click.option("--worker-of", "parent_pid", type=int, hidden=True)  # a process --worker-processes started
@click.option("--wake-fd", type=int, hidden=True)
def worker_command(concurrency: int, lease_seconds: float, parent_pid: int | None, wake_fd: int | None) -> int:
    """Only deliver queued jobs (scale-out: run many, on PostgreSQL)."""
    options = ServiceOptions(receiver=False, deriver=False, pollers=False, workers=1,
                             worker=_worker_config(lease_seconds, concurrency))
    if parent_pid is None:
        return _run(options, None, None)
    if wake_fd is None:
        raise click.UsageError("--worker-of needs --wake-fd")
    return _run(options, None, None, child_of=_ChildOf(parent_pid, wake_fd))


@click.group("sync")
def sync_group() -> None:
    """Backfill history from an app."""


@sync_group.command("gumroad")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), required=True, help="First day (YYYY-MM-DD).")
@click.option("--connection", "name", default="gumroad", show_default=True, help="Gumroad connection name.")
def sync_gumroad(since: datetime, name: str) -> int:
    """Store every Gumroad sale since DATE as inbound events (duplicates of known events are skipped)."""
    start = since.date()
    if start > datetime.now(UTC).date():
        raise click.UsageError("--since must be today (UTC) or earlier")
    if start < _GUMROAD_STARTED:
        raise click.UsageError(f"--since must be {_GUMROAD_STARTED} or later (Gumroad opened in 2011)")
    ctx = open_context()
    try:
        if ctx.connections.get(name) is None:
            click.echo(f"error: no connection named {name!r}; run `snapbridge connect gumroad` first", err=True)
            return 1

        async def main() -> int:
            connections = Connections(ctx.connections, ctx.vault, allowed_hosts=ctx.settings.allowed_hosts,
                                      timeout=ctx.settings.http_timeout_seconds)
            try:
                link = await ConnectionClients(connections).gumroad(name)
                if link is None:
                    click.echo(f"error: {name!r} is not a Gumroad connection", err=True)
                    return 1
                # A window's events wait in memory until the whole window is read (100,000 sales: millions of
                # objects, none of them garbage): at the default thresholds the collector walks them again and
                # again, ~1 s of every 30,000 sales; with these, about a third of that.
                gc.collect()
                gc.freeze()
                gc.set_threshold(10_000, 10, 10)
                days = max(1, (datetime.now(UTC).date() - start).days + 1)
                stderr = sys.stderr
                last: list[BackfillProgress] = []
                try:
                    if stderr.isatty():
                        bar_context: Any = click.progressbar(length=days, label="days", file=stderr)
                        with bar_context as bar:
                            def progress(p: BackfillProgress) -> None:
                                last[:] = [p]
                                bar.label = f"{p.sales} sales, {p.inserted} new"
                                bar.update((p.reached - start).days - bar.pos)
                            report = await backfill_gumroad(ctx.store, link.client, connection=name, since=start,
                                                            on_progress=progress)
                    else:
                        # A log or a pipe: one dated line per day reached, not a bar redrawn into new lines.
                        def line(p: BackfillProgress) -> None:
                            if not last or p.reached != last[0].reached:
                                click.echo(f"{p.reached}: {p.sales} sales read, {p.inserted} new", err=True)
                            last[:] = [p]
                        report = await backfill_gumroad(ctx.store, link.client, connection=name, since=start,
                                                        on_progress=line)
                except SnapbridgeError:
                    if last and last[0].reached > start:
                        click.echo(f"stored every sale before {last[0].reached}; go on with `snapbridge sync "
                                   f"gumroad --since {last[0].reached}`", err=True)
                    raise
            finally:
                await connections.aclose()
            click.echo(f"read {report.sales} sales in {report.batches} batches: {report.inserted} new events, "
                       f"{report.duplicates} already known")
            return 0

        return asyncio.run(main())
    finally:
        ctx.close()
