"""Helpers for the whole-pipeline tests: a fresh database per test, the CLI run like a seller would, `snapbridge
serve` as a child process that can be killed, and Gumroad sale pings built with the sandbox's own form encoder."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from snapbridge.sandbox import Sandboxes, bind_socket
from snapbridge.sandbox.gumroad import encode_form
from snapbridge.sandbox.snapshots.state import SandboxKey
from snapbridge.store import open_engine

PG_ADMIN_URL = os.environ.get("SNAPBRIDGE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FORM = "application/x-www-form-urlencoded"
ROOT = Path(__file__).resolve().parents[2]
SALES_START = datetime(2024, 3, 10, tzinfo=UTC)


@contextlib.contextmanager
def fresh_database(engine_name: str, home: Path) -> Iterator[str]:
    """A database URL nobody else uses: a SQLite file under `home`, or a new PostgreSQL database, dropped after."""
    if engine_name == "sqlite":
        yield f"sqlite:///{home / 'snapbridge.db'}"
        return
    name = f"sb_{uuid.uuid4().hex[:16]}"
    admin = open_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with contextlib.closing(bind_socket()) as probe:
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Setup:
    """What the CLI set up: the environment of every `snapbridge` process and the Gumroad hook URL."""

    env: dict[str, str]
    port: int
    hook_url: str
    snapshots_key: SandboxKey
    seller_id: str


def run_cli(env: dict[str, str], *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`snapbridge ARGS` in a child process with exactly this environment."""
    return subprocess.run([sys.executable, "-m", "snapbridge", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)


def snapbridge_env(home: Path, database_url: str, boxes: Sandboxes, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAPBRIDGE_")}
    env.update({
        "SNAPBRIDGE_HOME": str(home),
        "SNAPBRIDGE_DATABASE_URL": database_url,
        "SNAPBRIDGE_ALLOWED_HOSTS": "127.0.0.1",
        "SNAPBRIDGE_LISTEN": f"127.0.0.1:{port}",
        "SNAPBRIDGE_GUMROAD_BASE_URL": boxes.gumroad_url,
        "SNAPBRIDGE_SNAPSHOTS_BASE_URL": boxes.snapshots_url,
        "SNAPBRIDGE_HIGHLEVEL_BASE_URL": boxes.highlevel_server.base_url,
    })
    return env


def connect_all(home: Path, database_url: str, boxes: Sandboxes, *, verify_by_fetch: bool,
                burst_limit: int = 1_000_000) -> Setup:
    """`connect gumroad`, `connect snapshots` (a key with every scope and a roomy quota), `templates install`."""
    port = free_port()
    env = snapbridge_env(home, database_url, boxes, port)
    scopes = next(k for k in boxes.snapshots.keys() if "saas/location.write" in k.scopes).scopes  # noqa: SIM118
    key = boxes.snapshots.create_key(scopes, burst_limit=burst_limit, daily_limit=100_000_000)
    verify = "--verify-by-fetch" if verify_by_fetch else "--no-verify-by-fetch"
    steps = [
        ["connect", "gumroad", "--access-token", boxes.gumroad.access_token, verify],
        ["connect", "snapshots", "--api-key", key.key, "--webhook-public-key", boxes.snapshots.webhook_public_key],
        ["templates", "install", "--all", "--force"],
        ["hooks", "--json"],
    ]
    done = None
    for args in steps:
        done = run_cli(env, *args)
        assert done.returncode == 0, (args[:2], done.stdout[-1000:], done.stderr[-1000:])
    assert done is not None
    hooks: list[dict[str, Any]] = json.loads(done.stdout)
    url = next(str(h["url"]) for h in hooks if h["app"] == "gumroad")
    return Setup(env, port, url, key, boxes.gumroad.seller_id)


class Service:
    """`snapbridge serve` as a child process: start, wait until it answers, SIGKILL it, start it again."""

    def __init__(self, setup: Setup, *extra: str, log: Path) -> None:
        self.setup = setup
        self.extra = extra
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def start(self, *, timeout: float = 30.0) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "snapbridge", "serve", "--port", str(self.setup.port), *self.extra],
                env=self.setup.env, stdout=out, stderr=out, cwd=ROOT,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer within {timeout} s: {self.tail()}")
            time.sleep(0.02)

    def answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.setup.port), timeout=0.2):
            return True
        return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine loses power."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.kills += 1

    def stop(self) -> int:
        """SIGTERM and wait for the graceful exit; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9

    def reap(self) -> None:
        """SIGKILL it if it still runs (a test's `finally`)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self) -> str:
        return self.tail_all()[-3000:]

    def tail_all(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def sale_ping(seller_id: str, sale_id: str, email: str, number: int, *, price_cents: int = 1500) -> bytes:
    """A sale ping as Gumroad's worker encodes it (the sandbox's encoder); `number` orders a customer's sales."""
    payload: dict[str, Any] = {
        "seller_id": seller_id,
        "product_id": "pipeline-product-1",
        "product_name": "Pipeline test pack",
        "permalink": "pipeline-pack",
        "product_permalink": "https://seller.gumroad.com/l/pipeline-pack",
        "short_product_id": "plpck",
        "email": email,
        "price": price_cents,
        "gumroad_fee": 150,
        "currency": "usd",
        "quantity": 1,
        "discover_fee_charged": False,
        "can_contact": True,
        "referrer": "direct",
        "card": {"visual": "**** **** **** 4242", "type": "visa", "bin": None, "expiry_month": None,
                 "expiry_year": None},
        "order_number": number,
        "sale_id": sale_id,
        "sale_timestamp": (SALES_START + timedelta(seconds=number)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "full_name": email.split("@")[0].replace(".", " ").title(),
        "ip_country": "Norway",
        "is_gift_receiver_purchase": False,
        "refunded": False,
        "resource_name": "sale",
        "disputed": False,
        "dispute_won": False,
    }
    return encode_form(payload)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll until `condition` returns something truthy; fail after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
