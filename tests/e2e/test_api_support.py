"""A served snapbridge web app on loopback for the API, dashboard and browser tests, pointed at the sandboxes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from snapbridge.config import Settings
from snapbridge.runtime import ReceiverConfig
from snapbridge.sandbox import Sandboxes, ServerThread
from snapbridge.security import Passwords, Vault
from snapbridge.store import ConnectionStore, Store, migrate, open_engine
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
def serve_app(tmp_path: Path, boxes: Sandboxes) -> Iterator[Served]:
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'web.db'}",
                        gumroad_base_url=boxes.gumroad_url, snapshots_base_url=boxes.snapshots_url,
                        allowed_hosts=("127.0.0.1",), http_timeout_seconds=5.0)
    engine = open_engine(settings.database_url)
    migrate(engine)
    store = Store(engine)
    vault = Vault.open(tmp_path / "key")
    app = create_app(settings, store, ReceiverConfig.from_values(gumroad={}, snapshots={}), vault=vault,
                     connections=ConnectionStore(engine), passwords=cheap_passwords())
    server = ServerThread(app).start()
    try:
        yield Served(server.base_url, store, settings, app.state.web)
    finally:
        server.stop()
        store.close()
        engine.dispose()


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
