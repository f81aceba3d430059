"""When the database cannot commit, every call says StoreUnavailable (never hangs, never leaks the URL's
password), and work resumes once it can; PostgreSQL workers wake on NOTIFY, SQLite ones are not kept.
A PostgreSQL server stopped and started again under the same engine: tests/e2e/test_pg_outage.py."""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from snapbridge.errors import InvalidInput, StoreUnavailable
from snapbridge.store import (
    EventSource,
    NewInboundEvent,
    NewJob,
    NewRun,
    Store,
    UserStore,
    is_sqlite,
    migrate,
    open_engine,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _event(key: str) -> NewInboundEvent:
    return NewInboundEvent(EventSource.SNAPSHOTS, "hl", key, "LocationUpdate", {}, T0)


def _calls(store: Store) -> dict[str, Callable[[], object]]:
    def in_transaction() -> None:
        with store.transaction() as tx:
            tx.set_cursor("c", "1")

    return {
        "insert_events": lambda: store.insert_events([_event("e1")]),
        "claim": lambda: store.claim("w", limit=5, lease_seconds=30, now=T0),
        "take_token": lambda: store.take_token("hl", capacity=5, refill_per_second=1, now=T0),
        "record_usage": lambda: store.record_usage("hl", now=T0, status=200, latency_ms=1.0),
        "transaction": in_transaction,
    }


def test_a_locked_sqlite_file_is_unavailable_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    engine = open_engine(f"sqlite:///{path}", busy_timeout=0.2)
    migrate(engine)
    store = Store(engine)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        for name, call in _calls(store).items():
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="database is locked"):
                call()
            assert time.monotonic() - started < 5, name
        assert store.counts()["queued"] == 0  # WAL: reads go on while a writer holds the lock
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.insert_events([_event("e1")])[0].duplicate is False
    engine.dispose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_postgres_refusing_connections_is_unavailable() -> None:
    engine = open_engine(f"postgresql://postgres:canary-pw-1234@127.0.0.1:{_closed_port()}/test")
    store = Store(engine)
    calls: dict[str, Callable[[], object]] = {
        **_calls(store), "counts": store.counts, "wait_for_jobs": lambda: store.wait_for_jobs(0.1),
    }
    for name, call in calls.items():
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert "canary-pw-1234" not in str(caught.value), name
        assert "refused" in str(caught.value) or "failed" in str(caught.value), name
    engine.dispose()


def test_workers_wake_when_jobs_are_enqueued(store: Store) -> None:
    """PostgreSQL: a NOTIFY; SQLite: another connection's commit (store/notify.py)."""
    assert store.wait_for_jobs(0.0) in (False, True)  # starts listening; another test database may notify
    producer = Store(store.engine)
    with producer.transaction() as tx:
        run_id = tx.create_run(NewRun("wf", None, "purchase", "k", T0))
        tx.enqueue([NewJob(run_id, 0, "s0", "a", "hl", "k", "idem", {})], now=T0)
    started = time.monotonic()
    assert store.wait_for_jobs(10.0) is True
    assert time.monotonic() - started < 5


def test_the_first_wait_for_jobs_wakes_at_once(store: Store) -> None:
    """Jobs may have been enqueued (and notified) before the worker listened: its first wait says so."""
    assert store.wait_for_jobs(5.0) is True


def test_a_value_the_database_refuses_is_bad_input_for_users_too(migrated: Engine) -> None:
    users = UserStore(migrated)
    if is_sqlite(migrated):  # SQLite's text holds a NUL: nothing to refuse
        assert users.user_by_name("ad\x00min") is None
        return
    with pytest.raises(InvalidInput, match="the database refused a value"):
        users.user_by_name("ad\x00min")  # was StoreUnavailable: a 503 "retry later", or a 500 at sign-in
