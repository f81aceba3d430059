"""A served snapbridge web app on loopback for the API, dashboard and browser tests, pointed at the sandboxes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine

from snapbridge.config import Settings
from snapbridge.runtime import ReceiverConfig
from snapbridge.sandbox import Sandboxes, ServerThread
from snapbridge.security import Passwords, Vault
from snapbridge.store import (
    AttemptRecord,
    ConnectionRecord,
    ConnectionStore,
    NewJob,
    NewRun,
    Store,
    migrate,
    open_engine,
)
from snapbridge.web import create_app
from snapbridge.web.api import WebContext

ADMIN, PASSWORD = "ada", "correct horse battery"


@dataclass
class Served:
    base_url: str
    store: Store
    settings: Settings
    web: WebContext


def cheap_passwords() -> Passwords:
    # Tests keep argon2id but with small costs, so a sign-in takes milliseconds.
    return Passwords(time_cost=1, memory_cost_kib=1024, parallelism=1)


@contextmanager
def serve_app(tmp_path: Path, boxes: Sandboxes, engine: Engine | None = None) -> Iterator[Served]:
    """The app on a SQLite file of its own, or on `engine` (a migrated database of either kind)."""
    url = engine.url.render_as_string(hide_password=True) if engine else f"sqlite:///{tmp_path / 'web.db'}"
    settings = Settings(home=tmp_path, database_url=url,
                        gumroad_base_url=boxes.gumroad_url, snapshots_base_url=boxes.snapshots_url,
                        allowed_hosts=("127.0.0.1",), http_timeout_seconds=5.0)
    own = engine is None
    used = open_engine(settings.database_url) if engine is None else engine
    if own:
        migrate(used)
    store = Store(used)
    vault = Vault.open(tmp_path / "key")
    app = create_app(settings, store, ReceiverConfig.from_values(gumroad={}, snapshots={}), vault=vault,
                     connections=ConnectionStore(used), passwords=cheap_passwords())
    server = ServerThread(app).start()
    try:
        yield Served(server.base_url, store, settings, app.state.web)
    finally:
        server.stop()
        store.close()
        if own:
            used.dispose()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def signed_in(client: httpx.Client, username: str = ADMIN, password: str = PASSWORD) -> str:
    """Create the admin if needed, sign in; returns a CSRF token of the session."""
    if client.get("/setup", follow_redirects=True).url.path == "/setup":
        client.post("/setup", data={"username": username, "password": password})
    answer = client.post("/signin", data={"username": username, "password": password}, follow_redirects=True)
    assert answer.url.path == "/", answer.text[:500]
    return csrf_of(answer.text)


def make_run(store: Store, workflow: str, *, at: datetime, connection: str = "snapshots", steps: int = 1,
             customer: str = "ada@example.com") -> int:
    """A run with `steps` queued steps, created at `at` (no worker runs in these apps)."""
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun(workflow, None, "purchase", customer, at))
        tx.enqueue([NewJob(run_id, i, f"s{i}", "snapshots.events.create", connection, f"run:{run_id}",
                           f"run{run_id}-s{i}", {"i": i}) for i in range(steps)], now=at)
    return run_id


def make_dead_letter(store: Store, workflow: str, reason: str, *, at: datetime, connection: str = "snapshots",
                     steps: int = 1, succeed_first: bool = False) -> int:
    """A run whose first step (or second, with `succeed_first`) became a dead letter at `at`; its run id."""
    run_id = make_run(store, workflow, at=at, connection=connection, steps=steps)
    for settle in (["done"] if succeed_first else []) + ["dead"]:
        claimed = store.claim("test", limit=100, lease_seconds=60, now=at)
        for job in claimed:
            if job.run_id != run_id:
                store.release(job, now=at)
            elif settle == "done":
                store.complete(job, output={"ok": True}, attempt=AttemptRecord(at, 3.0, 200), now=at)
            else:
                store.dead_letter(job, attempt=AttemptRecord(at, 3.0, 422), reason=reason, now=at)
    return run_id


def placeholder_connection(served: Served, name: str, app: str = "snapshots", workspace: int = 1) -> None:
    """A stored connection row (no working credential): what usage, customers and dead letters are scoped by."""
    assert served.web.connections is not None
    served.web.connections.save(ConnectionRecord(name=name, app=app, base_url="http://127.0.0.1:9",
                                                 credential="not-a-ciphertext", workspace_id=workspace))
