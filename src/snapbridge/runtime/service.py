"""The running service: receiver, deriver, workers and pollers wired together over one store, in one process.

`serve` runs all of them (embedded deployment); `serve --no-workers` only receives and derives (receivers behind
a load balancer); `worker` only delivers. Every part takes what it needs as arguments; this module only wires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import uvicorn

from snapbridge.config import Settings
from snapbridge.errors import InvalidInput, SnapbridgeError, VaultError
from snapbridge.runtime.actions import ActionRunner, Connections
from snapbridge.runtime.deriver import Deriver, DeriverConfig
from snapbridge.runtime.limiter import limiter_for
from snapbridge.runtime.pollers import ConnectionClients, GumroadSalesPoller, SnapshotsLocationsPoller, run_pollers
from snapbridge.runtime.receiver import ReceiverConfig, check_webhook_key
from snapbridge.runtime.receivers import ChildProcesses
from snapbridge.runtime.worker import Worker, WorkerConfig
from snapbridge.security import Secret, Vault
from snapbridge.store import ConnectionRecord, ConnectionStore, Store

__all__ = ["HookURL", "ServiceOptions", "hook_urls", "receiver_config", "run_service"]

log = logging.getLogger(__name__)

AppFactory = Callable[[Settings, Store, ReceiverConfig, Callable[[], object] | None], Any]


@dataclass(frozen=True)
class ServiceOptions:
    receiver: bool = True
    deriver: bool = True
    workers: int = 1  # worker loops in this process; 0 for a receiver-only process
    pollers: bool = True
    poll_interval_seconds: float = 60.0
    poll_overlap: timedelta = timedelta(days=2)
    worker: WorkerConfig = field(default_factory=WorkerConfig)


@dataclass(frozen=True)
class HookURL:
    connection: str
    app: str
    url: str = field(repr=False)  # holds the Gumroad path secret


def _secret(vault: Vault, record: ConnectionRecord) -> Secret | None:
    if not record.webhook_key:
        return None
    return vault.decrypt(record.webhook_key, bound_to=f"{record.name}:webhook_key")


def receiver_config(records: ConnectionStore, vault: Vault) -> ReceiverConfig:
    """Hook secrets (Gumroad) and webhook public keys (Snapshots API) of every stored connection."""
    gumroad: dict[str, tuple[str, str]] = {}
    snapshots: dict[str, str] = {}
    for record in records.list():
        secret = _secret(vault, record)
        if secret is None:
            continue
        if record.app == "gumroad":
            gumroad[secret.reveal()] = (record.name, str(record.options.get("seller_id") or ""))
        elif record.app == "snapshots":
            try:
                check_webhook_key(secret.reveal())
            except InvalidInput:
                # One unusable key (stored before keys were checked) must not stop every other hook loading.
                log.error("action=webhook_key_unusable connection=%s", record.name)
                continue
            snapshots[record.name] = secret.reveal()
    return ReceiverConfig.from_values(gumroad=gumroad, snapshots=snapshots)


def hook_urls(records: ConnectionStore, vault: Vault, public_base: str) -> list[HookURL]:
    """The URLs to register with each app: Gumroad's carry the connection's secret in the path."""
    base = public_base.rstrip("/")
    urls: list[HookURL] = []
    for record in records.list():
        if record.app == "gumroad":
            secret = _secret(vault, record)
            if secret is not None:
                urls.append(HookURL(record.name, "gumroad", f"{base}/hooks/gumroad/{secret.reveal()}"))
        elif record.app == "snapshots":
            urls.append(HookURL(record.name, "snapshots", f"{base}/hooks/snapshots"))
    return urls


async def run_service(settings: Settings, store: Store, vault: Vault, records: ConnectionStore,
                      options: ServiceOptions, stop: asyncio.Event, *, make_app: AppFactory,
                      sock: socket.socket | None = None, on_ready: Callable[[], object] | None = None,
                      children: ChildProcesses | None = None,
                      on_commit: Callable[[], object] | None = None) -> None:
    """Run the chosen parts until `stop` is set, then stop claiming, drain, and return.

    `children`: more receiver processes on the same port, whose wake-ups start this process's deriver, and
    processes that deliver in place of this one's workers.
    `on_commit`: what a receiver without a deriver here calls after storing new events (tell another's).

    A part that fails (or ends before `stop`) stops the others too, and then this raises SnapbridgeError naming
    it, so the process exits non-zero instead of looking like a clean stop.
    `make_app` builds the ASGI app (the web package's `create_app`; web sits above runtime, so it comes in).
    """
    stored = records.list()
    connections = Connections(records, vault, allowed_hosts=settings.allowed_hosts,
                              timeout=settings.http_timeout_seconds)
    clients = ConnectionClients(connections)
    workers: list[Worker] = []

    def wake_workers() -> None:
        for worker in workers:
            worker.wake()

    # Each event goes to its connection's workspace: its workflows and its connection of each app.
    deriver = Deriver(store, clients, on_jobs=wake_workers, config=DeriverConfig())
    runner = ActionRunner(connections, store, on_segment_changed=deriver.on_segment_changed)
    limiter = limiter_for(store)
    # On SQLite the deriver here wakes the workers here; watching commits would add a claim per receiver commit.
    watch = options.worker.watch_store and (store.is_postgres or not options.deriver)
    for index in range(options.workers):
        name = options.worker.name if options.workers == 1 else f"{options.worker.name}-{index}"
        workers.append(Worker(store, runner, limiter, replace(options.worker, name=name, watch_store=watch)))

    tasks: list[asyncio.Task[None]] = []
    parts: dict[asyncio.Task[None], str] = {}  # each task's part, as the log and the error name it

    def start(part: str, run: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(run)
        tasks.append(task)
        parts[task] = part

    server: uvicorn.Server | None = None
    if options.receiver:
        try:
            hooks = receiver_config(records, vault)
        except VaultError as exc:
            raise SnapbridgeError(f"cannot read the stored webhook secrets: {exc}") from exc
        app = make_app(settings, store, hooks, deriver.wake if options.deriver else on_commit)
        host, _, port = settings.listen.rpartition(":")
        # Access logs stay off: Gumroad's hook URL carries its secret in the path.
        server = uvicorn.Server(uvicorn.Config(app, host=host or "127.0.0.1", port=int(port or 8080),
                                               log_level="warning", access_log=False, lifespan="on"))
        # The CLI owns SIGINT/SIGTERM (stop claiming, drain, exit 0); uvicorn would capture and re-raise them.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        start("receiver", server.serve(sockets=[sock] if sock else None))
    if options.deriver:
        start("deriver", deriver.run_forever(stop))
    if children is not None:
        start(children.part, children.run(deriver.wake, stop))
    for worker in workers:
        start(f"worker {worker.name}", worker.run())
    if options.pollers:
        pollers: list[GumroadSalesPoller | SnapshotsLocationsPoller] = []
        for record in stored:
            if record.app == "gumroad" and (link := await clients.gumroad(record.name)) is not None:
                pollers.append(GumroadSalesPoller(store, link.client, connection=record.name,
                                                  overlap=options.poll_overlap))
            elif record.app == "snapshots" and (client := await clients.snapshots(record.name)) is not None:
                pollers.append(SnapshotsLocationsPoller(store, client, connection=record.name,
                                                        overlap=options.poll_overlap))
        if pollers:
            start("pollers", run_pollers(pollers, stop, interval_seconds=options.poll_interval_seconds,
                                         on_events=deriver.wake if options.deriver else None))
    log.info("action=service_started receiver=%s deriver=%s workers=%d pollers=%s", options.receiver,
             options.deriver, len(workers), options.pollers)
    if on_ready is not None:
        # uvicorn offers no "started" event, only a flag; this wait lasts a few milliseconds once.
        while server is not None and not server.started and not any(t.done() for t in tasks):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        on_ready()
    stopper = asyncio.create_task(stop.wait())
    ended: list[asyncio.Task[None]] = []  # parts that ended before anyone asked them to
    failed: list[tuple[str, str]] = []  # (part, what happened), in the order the parts were started
    try:
        await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            ended = [task for task in tasks if task.done()]
    finally:
        stop.set()
        for worker in workers:
            worker.stop()
        if server is not None:
            server.should_exit = True
        results = await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        with contextlib.suppress(Exception):
            await runner.aclose()  # closes the connections' HTTP clients
        for task, result in zip(tasks, results, strict=True):
            part = parts[task]
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                # One line naming the part and the error's type, then the traceback for whoever looks into it.
                log.error("action=service_part_failed part=%s error=%s", part, type(result).__name__,
                          exc_info=result)
                failed.append((part, f"failed with {type(result).__name__}"))
            elif task in ended:
                log.error("action=service_part_failed part=%s error=ended_early", part)
                failed.append((part, "ended before the service was stopped"))
    if failed:
        # Named: the part whose end stopped the service (others may have failed while stopping).
        part, what = ([f for f in failed if f[0] in {parts[t] for t in ended}] or failed)[0]
        raise SnapbridgeError(f"the service stopped because its {part} {what} (see the log)")
    log.info("action=service_stopped")
