"""Helpers for the receiver tests: the app served on loopback over a real store, signed bodies, waiting."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.engine import Engine

from snapbridge.config import Settings
from snapbridge.runtime import GroupCommitter, ReceiverConfig, ReceiverLimits
from snapbridge.sandbox import ServerThread
from snapbridge.store import InboundEvent, InsertResult, NewInboundEvent, Store, is_sqlite
from snapbridge.web import create_app

DATA = Path(__file__).resolve().parents[1] / "data"
GUMROAD_DATA = DATA / "gumroad_webhooks"
SELLER = "hN7pZkQwT3xVbJ9sLmR2cA=="  # the seller of the recorded Gumroad bodies
SECRET = "s3cr3t-path-token-0123456789_abcdefghij"
OTHER_SECRET = "other-connection-token-0123456789_abcdef"
LIMIT = 8192  # Settings.max_body_bytes for these tests
FORM = "application/x-www-form-urlencoded"
SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WRONG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def public_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


class CountingStore(Store):
    """The real store, counting its insert_events calls (one per transaction)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.insert_calls = 0
        self._count_lock = threading.Lock()

    def insert_events(self, events: Sequence[NewInboundEvent]) -> list[InsertResult]:
        with self._count_lock:
            self.insert_calls += 1
        return super().insert_events(events)


@dataclass
class Served:
    url: str
    store: CountingStore
    engine: Engine
    committer: GroupCommitter
    notified: list[datetime] = field(default_factory=list)

    def gumroad_url(self, secret: str = SECRET) -> str:
        return f"{self.url}/hooks/gumroad/{secret}"

    @property
    def snapshots_url(self) -> str:
        return f"{self.url}/hooks/snapshots"

    def rows(self) -> list[InboundEvent]:
        """Every stored inbound event (none is derived in these tests), oldest first."""
        return Store(self.engine).pending_events(100_000)

    def keys(self) -> list[str]:
        return [row.dedupe_key for row in self.rows()]


@contextmanager
def serve(
    engine: Engine,
    tmp_path: Path,
    *,
    store: Store | None = None,
    gumroad: dict[str, tuple[str, str]] | None = None,
    snapshots: dict[str, str] | None = None,
    limits: ReceiverLimits | None = None,
) -> Iterator[Served]:
    """The receiver app on a loopback port over `engine` (or over `store`, e.g. one that cannot commit)."""
    counting = CountingStore(engine)
    config = ReceiverConfig.from_values(
        gumroad=gumroad if gumroad is not None else {SECRET: ("shop", SELLER), OTHER_SECRET: ("other", "s2")},
        snapshots=snapshots if snapshots is not None else {"snap": public_b64(SIGNING_KEY)},
        limits=limits,
    )
    settings = Settings(home=tmp_path, database_url=str(engine.url), max_body_bytes=LIMIT)
    notified: list[datetime] = []
    app = create_app(settings, store or counting, config,
                     on_commit=lambda: notified.append(datetime.now(UTC)))
    server = ServerThread(app).start()
    try:
        yield Served(server.base_url, counting, engine, app.state.committer, notified)
    finally:
        server.stop()


def gumroad_body(name: str) -> tuple[bytes, str]:
    raw = (GUMROAD_DATA / name).read_bytes()
    return (raw, "application/json") if name.endswith(".json") else (raw.strip(), FORM)


def sale_form(sale_id: str, seller: str = SELLER) -> bytes:
    """A minimal valid sale ping for `sale_id`."""
    body, _ = gumroad_body("sale_minimal.txt")
    fields = dict(part.split(b"=", 1) for part in body.split(b"&"))
    fields[b"sale_id"] = sale_id.encode()
    fields[b"seller_id"] = seller.replace("=", "%3D").encode()
    return b"&".join(k + b"=" + v for k, v in fields.items())


def snapshots_body(webhook_id: str = "wh_1", *, timestamp: datetime | None = None, **fields: object) -> bytes:
    data: dict[str, object] = {
        "type": "LocationUpdate", "webhookId": webhook_id,
        "timestamp": (timestamp or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "companyId": "comp_1", "location_id": "loc_1", "name": "Studio Zürich", "timezone": "Europe/Zurich",
    }
    data.update(fields)
    return json.dumps(data, ensure_ascii=False).encode()


def signature(body: bytes, key: Ed25519PrivateKey = SIGNING_KEY) -> dict[str, str]:
    return {"X-GHL-Signature": base64.b64encode(key.sign(body)).decode(), "Content-Type": "application/json"}


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until `condition` returns something truthy; fail after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@contextmanager
def write_lock(engine: Engine) -> Iterator[None]:
    """Another connection holds the write lock on inbound_events until the block ends."""
    if is_sqlite(engine):
        path = engine.url.database
        assert path is not None
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    with engine.connect() as conn:
        conn.execute(sa.text("LOCK TABLE inbound_events IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            conn.rollback()
