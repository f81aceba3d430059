"""The web app's guards over real HTTP: password checks never hold the event loop, failed sign-ins are throttled
per address, cross-site writes and oversize bodies are refused before anything runs, every answer carries the
security headers, a dashboard form is accepted by any process sharing the vault, and two first-run forms cannot
both create an admin."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from test_api_support import ADMIN, PASSWORD, Served, cheap_passwords, csrf_of, serve_app, signed_in

from snapbridge.config import Settings
from snapbridge.runtime import ReceiverConfig
from snapbridge.sandbox import Sandboxes, ServerThread
from snapbridge.security import Passwords, Role, Vault
from snapbridge.store import ConnectionStore, Store, UserStore, migrate, open_engine
from snapbridge.web import create_app
from snapbridge.web.api import WebContext


@pytest.fixture
def served(tmp_path: Path, sandboxes: Sandboxes) -> Iterator[Served]:
    with serve_app(tmp_path, sandboxes) as s:
        yield s


@contextmanager
def _app(home: Path, passwords: Passwords) -> Iterator[tuple[str, WebContext]]:
    """One more process-like app over `home`'s database and key file (as a second `serve` would be)."""
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'web.db'}")
    engine = open_engine(settings.database_url)
    migrate(engine)
    store = Store(engine)
    app = create_app(settings, store, ReceiverConfig.from_values(gumroad={}, snapshots={}),
                     vault=Vault.open(home / "key"), connections=ConnectionStore(engine), passwords=passwords)
    server = ServerThread(app).start()
    try:
        yield server.base_url, app.state.web
    finally:
        server.stop()
        store.close()
        engine.dispose()


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_slow_password_check_does_not_hold_other_requests(tmp_path: Path) -> None:
    # A verify costs seconds with these parameters; the health check must be answered while it runs.
    slow = Passwords(time_cost=40, memory_cost_kib=65536, parallelism=1)
    with _app(tmp_path, slow) as (base_url, web):
        web.users.create_user(ADMIN, cheap_passwords().hash(PASSWORD), Role.ADMIN, now=datetime.now(UTC))
        finished = threading.Event()

        def sign_in_unknown() -> None:  # an unknown name is checked against the slow dummy hash
            httpx.post(f"{base_url}/signin", data={"username": "nobody", "password": "x" * 12}, timeout=60)
            finished.set()

        thread = threading.Thread(target=sign_in_unknown)
        thread.start()
        _wait_for(lambda: web.passwords_in_flight > 0, "the sign-in to reach the password check")
        assert httpx.get(f"{base_url}/healthz", timeout=60).status_code == 200
        assert not finished.is_set(), "the health check waited for the password check"
        thread.join(60)
        assert finished.is_set()


def test_failed_sign_ins_are_throttled_per_address(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        signed_in(client)
    other = httpx.Client(base_url=served.base_url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with httpx.Client(base_url=served.base_url) as client, other:
        for i in range(served.web.throttle.max_failures):
            wrong = client.post("/signin", data={"username": f"guess{i}", "password": "wrong password"})
            assert wrong.status_code == 401
        # Now even the right password from this address waits, and is told how long.
        held = client.post("/signin", data={"username": ADMIN, "password": PASSWORD})
        assert held.status_code == 429 and "too many failed sign-ins" in held.text
        assert 0 < int(held.headers["retry-after"]) <= 600
        # Another address is not affected.
        fine = other.post("/signin", data={"username": ADMIN, "password": PASSWORD})
        assert fine.status_code == 303 and fine.headers["location"] == "/"


@pytest.mark.parametrize("headers", [{"origin": "https://evil.example"}, {"origin": "null"},
                                     {"sec-fetch-site": "cross-site"}])
def test_cross_site_writes_are_refused_before_anything_runs(served: Served, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        setup = client.post("/setup", data={"username": "mallory", "password": "a long password"}, headers=headers)
        assert setup.status_code == 403 and "cross-site" in setup.json()["error"]
        assert served.web.needs_setup()
        csrf = signed_in(client)
        signin = client.post("/signin", data={"username": ADMIN, "password": PASSWORD}, headers=headers)
        assert signin.status_code == 403 and "set-cookie" not in signin.headers
        api = client.post("/api/v1/tokens", json={"name": "t"}, headers={**headers, "x-csrf-token": csrf})
        assert api.status_code == 403
        assert client.get("/api/v1/tokens", headers=headers).status_code == 200  # reading is not a write


def test_same_origin_and_proxied_writes_pass(served: Served) -> None:
    host = served.base_url.removeprefix("http://")
    with httpx.Client(base_url=served.base_url) as client:
        signed_in(client)
        same = client.post("/signin", data={"username": ADMIN, "password": PASSWORD},
                           headers={"origin": served.base_url, "sec-fetch-site": "same-origin"})
        assert same.status_code == 303
        proxied = client.post("/signin", data={"username": ADMIN, "password": PASSWORD},
                              headers={"origin": "https://bridge.example.com", "host": host,
                                       "x-forwarded-host": "bridge.example.com"})
        assert proxied.status_code == 303


def test_oversize_bodies_are_refused_by_length_or_while_streaming(served: Served) -> None:
    limit = served.settings.max_body_bytes
    with httpx.Client(base_url=served.base_url) as client:
        declared = client.post("/setup", content=b"username=a&password=" + b"x" * limit,
                               headers={"content-type": "application/x-www-form-urlencoded"})
        assert declared.status_code == 413 and "over" in declared.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
            yield b"username=a&password="
            for _ in range(limit // 65536 + 2):
                yield b"x" * 65536

        streamed = client.post("/setup", content=chunks(),
                               headers={"content-type": "application/x-www-form-urlencoded"})
        assert streamed.status_code == 413
        assert served.web.needs_setup()
        csrf = signed_in(client)
        api = client.post("/api/v1/workflows", content=chunks(),
                          headers={"content-type": "application/json", "x-csrf-token": csrf})
        assert api.status_code == 413
        assert client.get("/healthz").status_code == 200  # the server is fine


def test_every_answer_carries_the_security_headers(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        for path in ("/healthz", "/api/v1/runs", "/signin", "/no-such-page"):
            answer = client.get(path)
            assert answer.headers["x-content-type-options"] == "nosniff", path
            assert answer.headers["x-frame-options"] == "DENY", path
        signed_in(client)
        api = client.get("/api/v1/runs")
        assert api.status_code == 200 and api.headers["cache-control"] == "no-store"


def test_an_unknown_workflow_action_is_not_a_disable(served: Served) -> None:
    with httpx.Client(base_url=served.base_url, follow_redirects=True) as client:
        csrf = signed_in(client)
        client.post("/templates/churn/install", data={"csrf": csrf})
        client.post("/workflows/churn/enable", data={"csrf": csrf})
        odd = client.post("/workflows/churn/delete", data={"csrf": csrf})
        assert odd.status_code == 404 and "enable or disable" in odd.text
        workflow = served.store.get_workflow("churn")
        assert workflow is not None and workflow.enabled


def test_a_form_from_one_process_is_accepted_by_another(tmp_path: Path) -> None:
    with _app(tmp_path, cheap_passwords()) as (first_url, _), _app(tmp_path, cheap_passwords()) as (second_url, _):
        with httpx.Client(base_url=first_url) as first:
            csrf = signed_in(first)
            cookies = first.cookies
        # The second process verifies the first one's CSRF token: both derive the key from the shared vault.
        with httpx.Client(base_url=second_url, cookies=cookies) as second:
            page = second.get("/templates")
            assert csrf_of(page.text) == csrf
            installed = second.post("/templates/churn/install", data={"csrf": csrf})
            assert installed.status_code == 303


def test_two_first_run_forms_cannot_both_create_an_admin(migrated: Engine) -> None:
    users = UserStore(migrated)
    now = datetime.now(UTC)
    if migrated.dialect.name == "sqlite":
        assert users.create_first_user("ada", "h", Role.ADMIN, now=now) is not None
        assert users.create_first_user("eve", "h", Role.ADMIN, now=now) is None
        return
    # PostgreSQL: the first admin is inserted but not yet committed while the second form arrives; the
    # second must wait for the first's outcome instead of inserting beside it.
    results: list[object] = []
    with migrated.connect() as first:
        first.execute(sa.text("INSERT INTO users (username, password_hash, role, failed_logins, created_at, "
                              "workspace_id) VALUES ('ada', 'h', 'admin', 0, now(), 1)"))
        second = threading.Thread(target=lambda: results.append(
            users.create_first_user("eve", "h", Role.ADMIN, now=now)))
        second.start()
        _wait_for(lambda: _waiting_on_a_lock(migrated), "the second form to wait for the first")
        first.commit()
    second.join(20)
    assert results == [None]
    assert [u.username for u in users.all_users()] == ["ada"]


def _waiting_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'LOCK TABLE users%'")).scalar())
