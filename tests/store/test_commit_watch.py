"""SQLite's commit watch (store.wait_for_jobs without NOTIFY): a commit by another connection, in this process or
another, is seen; a write transaction that changed nothing is not, so an idle worker's own empty claims do not
keep waking it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from snapbridge.store import NewJob, NewRun, Store, migrate, open_engine

QUIET = 0.05  # how long a wait that should see nothing waits (it returns as soon as it sees a commit)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    engine = open_engine(f"sqlite:///{tmp_path / 'watch.db'}")
    migrate(engine)
    store = Store(engine)
    try:
        yield store
    finally:
        store.close()
        engine.dispose()


def _enqueue(store: Store, key: str) -> None:
    now = datetime.now(UTC)
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun("wf", None, "purchase", key, now))
        tx.enqueue([NewJob(run_id=run_id, step_index=0, step_id="s0", action="snapshots.events.create",
                           connection="snap", ordering_key=key, idempotency_key=key, input={})], now=now)


def test_the_first_wait_claims_once_then_only_commits_wake(sqlite_store: Store) -> None:
    assert sqlite_store.wait_for_jobs(QUIET)  # nothing seen yet: claim once, as after a lost LISTEN
    assert not sqlite_store.wait_for_jobs(QUIET)
    _enqueue(sqlite_store, "k1")
    assert sqlite_store.wait_for_jobs(QUIET)
    assert not sqlite_store.wait_for_jobs(QUIET)


def test_a_claim_that_finds_nothing_does_not_wake(sqlite_store: Store) -> None:
    sqlite_store.wait_for_jobs(QUIET)
    assert sqlite_store.claim("w", limit=5, lease_seconds=30) == []
    assert not sqlite_store.wait_for_jobs(QUIET)
    _enqueue(sqlite_store, "k1")
    assert sqlite_store.wait_for_jobs(QUIET)
    assert len(sqlite_store.claim("w", limit=5, lease_seconds=30)) == 1  # a claim that leased: a change
    assert sqlite_store.wait_for_jobs(QUIET)


def test_a_commit_in_another_process_is_seen(sqlite_store: Store, tmp_path: Path) -> None:
    sqlite_store.wait_for_jobs(QUIET)
    insert = "INSERT INTO schema_migrations VALUES (99, 'elsewhere', '2025-01-01')"
    code = f"import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute({insert!r}); c.commit()"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "watch.db")], check=True, timeout=30)
    assert sqlite_store.wait_for_jobs(5.0)
