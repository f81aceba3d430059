"""`snapbridge demo` (what `make run` starts): the sandboxes, snapbridge connected to them, and a stream of sales.

Everything a seller would do by hand happens here in order, through the same commands: connect both accounts,
install the starter templates, register the webhooks, serve. Then the Gumroad sandbox plays scenarios (first
purchases, subscriptions, plan changes, refunds, cancellations) and the data flows into the Snapshots sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
from collections import Counter
from pathlib import Path

import click
import httpx

from snapbridge.cli.context import open_context
from snapbridge.config import load_settings
from snapbridge.runtime import ServiceOptions, hook_urls, run_service
from snapbridge.sandbox import Sandboxes, bind_socket, start_sandboxes
from snapbridge.store import RunStatus
from snapbridge.web import create_app

__all__ = ["demo_command"]

# What a day of a small membership business looks like, weighted.
SCENARIOS = (
    ("first_purchase", 5), ("repeat_purchase", 2), ("subscription_start", 3), ("plan_change", 2),
    ("refund", 1), ("cancellation", 1), ("subscription_end", 1), ("dispute", 1),
)


def _invoke(args: list[str]) -> None:
    from snapbridge.cli.main import main

    code = main(args)
    if code != 0:
        raise click.ClickException(f"`snapbridge {' '.join(args[:2])}` failed with exit code {code}")


# What a demo leaves in its --home: a directory holding anything else is not wiped.
_MARKER = ".snapbridge-demo"
_DEMO_FILES = frozenset({_MARKER, "snapbridge.db", "snapbridge.db-wal", "snapbridge.db-shm", "secret.key"})


def _fresh_home(home: Path) -> None:
    """Empty `home` for a new demo, refusing to wipe a directory the demo did not make."""
    if home.exists():
        if not home.is_dir():
            raise click.UsageError(f"--home {home} is a file")
        foreign = sorted(entry.name for entry in home.iterdir() if entry.name not in _DEMO_FILES)
        if foreign and not (home / _MARKER).exists():
            shown = ", ".join(foreign[:3]) + (" …" if len(foreign) > 3 else "")
            raise click.UsageError(f"refusing to wipe --home {home}: it holds {shown}, which `snapbridge demo` did "
                                   "not make; pick another directory")
        shutil.rmtree(home)
    home.mkdir(parents=True, mode=0o700)
    (home / _MARKER).write_text("made by `snapbridge demo`, which wipes this directory when it starts again\n")


def _prepare(home: Path, boxes: Sandboxes, port: int) -> None:
    """Point this process's settings at the sandboxes, then connect, install and register like a seller would.

    Every SNAPBRIDGE_* setting of the caller's environment is dropped first: an exported database URL or key file
    belongs to a real installation, which the demo's connections and templates must never touch.
    """
    for name in [name for name in os.environ if name.startswith("SNAPBRIDGE_")]:
        del os.environ[name]
    os.environ.update({
        "SNAPBRIDGE_HOME": str(home),
        "SNAPBRIDGE_DATABASE_URL": f"sqlite:///{home.resolve() / 'snapbridge.db'}",
        "SNAPBRIDGE_ALLOWED_HOSTS": "127.0.0.1",
        "SNAPBRIDGE_LISTEN": f"127.0.0.1:{port}",
        "SNAPBRIDGE_GUMROAD_BASE_URL": boxes.gumroad_url,
        "SNAPBRIDGE_SNAPSHOTS_BASE_URL": boxes.snapshots_url,
        "SNAPBRIDGE_HIGHLEVEL_BASE_URL": boxes.highlevel_server.base_url,
    })
    full_key = next(k for k in boxes.snapshots.keys() if "saas/location.write" in k.scopes)  # noqa: SIM118
    _invoke(["connect", "gumroad", "--access-token", boxes.gumroad.access_token])
    _invoke(["connect", "snapshots", "--api-key", full_key.key,
             "--webhook-public-key", boxes.snapshots.webhook_public_key])
    _invoke(["templates", "install", "--all", "--force"])
    _invoke(["hooks", "register"])
    boxes.snapshots.subscribe(f"http://127.0.0.1:{port}/hooks/snapshots")


async def _drive(boxes: Sandboxes, stop: asyncio.Event, interval: float, seed: int) -> None:
    rng = random.Random(seed)
    names = [name for name, _ in SCENARIOS]
    weights = [weight for _, weight in SCENARIOS]
    async with httpx.AsyncClient(base_url=boxes.gumroad_url, timeout=10) as client:
        while not stop.is_set():
            name = rng.choices(names, weights)[0]
            answer = await client.post(f"/_sandbox/scenarios/{name}", json={})
            detail = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
            who = detail.get("email") or detail.get("subscription_id") or detail.get("sale_id") or ""
            click.echo(f"gumroad   {name:<20} {who}" if answer.status_code < 300
                       else f"gumroad   {name:<20} skipped ({answer.status_code})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


async def _report(boxes: Sandboxes, home: Path, stop: asyncio.Event, every: float) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
        writes = Counter(
            f"{e.method} /{e.path.strip('/').split('/')[0]}" for e in boxes.snapshots.journal.entries()
            if e.method != "GET" and e.status < 300 and not e.replayed and not (e.idempotency_key or "").startswith(
                "snapbridge-scope-probe")
        )
        ctx = open_context()
        try:
            runs = ctx.store.runs(limit=1000)
        finally:
            ctx.close()
        states = Counter(r.status for r in runs)
        click.echo(
            f"snapshots sandbox writes: {dict(sorted(writes.items())) or 'none yet'} | runs: "
            f"{states[RunStatus.SUCCEEDED]} succeeded, {states[RunStatus.FAILED]} retrying, "
            f"{states[RunStatus.DEAD]} dead | watch: SNAPBRIDGE_HOME={home} snapbridge runs"
        )


@click.command("demo")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=Path(".demo"), show_default=True,
              help="Data directory of the demo; wiped at start (only if a demo made it). The demo ignores "
                   "SNAPBRIDGE_* settings, so it never touches a real installation.")
@click.option("--port", type=int, default=8080, show_default=True, help="Port snapbridge listens on.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.5, show_default=True,
              help="Seconds between Gumroad scenarios.")
@click.option("--duration", type=click.FloatRange(min=0), default=0, help="Stop after this many seconds (0: never).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--any-ports", is_flag=True, help="Let the system pick every port (tests run demos side by side).")
def demo_command(home: Path, port: int, interval: float, duration: float, seed: int, any_ports: bool) -> int:
    """Sandboxes + snapbridge connected to them + a stream of Gumroad sales, until Ctrl+C."""
    _fresh_home(home)
    # Gumroad queues a sale ping 10 s after the purchase; a tenth of real time keeps the demo lively.
    ports = (0, 0, 0) if any_ports else (8701, 8702, 8703)
    boxes = start_sandboxes(seed=seed, time_factor=0.1, gumroad_port=ports[0], snapshots_port=ports[1],
                            highlevel_port=ports[2])
    if any_ports:
        with contextlib.closing(bind_socket()) as probe:
            port = probe.getsockname()[1]
    try:
        _prepare(home, boxes, port)
        settings = load_settings()
        click.echo(f"\nGumroad sandbox   {boxes.gumroad_url}/v2   token {boxes.gumroad.access_token}")
        click.echo(f"Snapshots sandbox {boxes.snapshots_url}   journal: {boxes.snapshots_url}/_sandbox/journal")
        click.echo(f"snapbridge        http://{settings.listen}   data: {home}   dashboard: http://{settings.listen}/ "
                   "(first visit creates the admin)\n")

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if duration:
                loop.call_later(duration, stop.set)
            ctx = open_context(settings)
            try:
                for hook in hook_urls(ctx.connections, ctx.vault, f"http://{settings.listen}"):
                    shown = hook.url if hook.app == "snapshots" else "/hooks/gumroad/****"
                    click.echo(f"{hook.app} webhooks → {shown}")
                options = ServiceOptions(poll_interval_seconds=30.0)
                extra = [asyncio.create_task(_drive(boxes, stop, interval, seed)),
                         asyncio.create_task(_report(boxes, home, stop, 5.0))]
                await run_service(settings, ctx.store, ctx.vault, ctx.connections, options, stop,
                                  make_app=lambda s, st, h, cb: create_app(
                                      s, st, h, on_commit=cb, vault=ctx.vault, connections=ctx.connections))
                stop.set()
                await asyncio.gather(*extra)
            finally:
                ctx.close()

        asyncio.run(main())
    finally:
        boxes.stop()
    click.echo("demo stopped")
    return 0
