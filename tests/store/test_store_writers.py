"""Processes writing one SQLite file take turns (store/writers.py): a writer waits for another process's
transaction and goes on when it commits or its holder dies, gives up after busy_timeout (never hangs behind a
stopped process), a forked child takes turns with its parent, and the lock file gets the database's permissions
(or, when it cannot be opened, writes still work through SQLite's own locking)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from snapbridge.errors import StoreUnavailable
from snapbridge.store import EventSource, NewInboundEvent, Store, migrate, open_engine
from snapbridge.store.writers import sqlite_writers

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOLD_SECONDS = 1.0  # how long the other process keeps its transaction open

# Holds a write transaction (one row written) until told to stop or killed; prints "holding" once it holds.
_HOLDER = textwrap.dedent("""
    import sys
    from datetime import UTC, datetime
    from snapbridge.store import EventSource, NewInboundEvent, Store, open_engine
    store = Store(open_engine(sys.argv[1]))
    with store.transaction() as tx:
        tx.insert_events([NewInboundEvent(EventSource.SNAPSHOTS, "hl", "held", "LocationUpdate", {},
                                          datetime.now(UTC))])
        print("holding", flush=True)
        sys.stdin.readline()  # until the test writes a line (or kills this process)
""")


def _event(key: str) -> NewInboundEvent:
    return NewInboundEvent(EventSource.SNAPSHOTS, "hl", key, "LocationUpdate", {}, T0)


def _keys(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return {row[0] for row in conn.exec_driver_sql("SELECT dedupe_key FROM inbound_events")}


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = open_engine(url)
    migrate(engine)
    engine.dispose()
    return url


@contextmanager
def _holder(url: str) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen([sys.executable, "-c", _HOLDER, url], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "holding"
            yield holder
        finally:
            holder.kill()


def _let_go(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()


def test_a_writer_waits_for_another_process_and_goes_on_when_it_commits(db: str) -> None:
    store = Store(open_engine(db, busy_timeout=10))
    with _holder(db) as holder:
        timer = threading.Timer(HOLD_SECONDS, _let_go, (holder,))
        started = time.monotonic()
        timer.start()
        result = store.insert_events([_event("mine")])
        waited = time.monotonic() - started
        timer.join()
        assert holder.wait(timeout=10) == 0
    assert not result[0].duplicate
    assert waited >= HOLD_SECONDS * 0.9  # it waited for the holder's commit, not around it
    assert _keys(store) == {"held", "mine"}


def test_a_writer_gives_up_after_busy_timeout_rather_than_hang_behind_another_process(db: str) -> None:
    # A process stopped while it holds the turn (Ctrl+Z, SIGSTOP) must not hang every other one, nor their
    # shutdown: the wait is bounded as SQLite's own is, and the write fails as unavailable (retried later).
    store = Store(open_engine(db, busy_timeout=0.3))
    with _holder(db) as holder:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="held the database too long"):
            store.insert_events([_event("mine")])
        assert time.monotonic() - started < 5
        _let_go(holder)
        assert holder.wait(timeout=10) == 0
    store.insert_events([_event("mine")])  # and it goes through once the holder is done
    assert _keys(store) == {"held", "mine"}


def test_the_turn_passes_on_when_its_holder_is_killed(db: str) -> None:
    store = Store(open_engine(db, busy_timeout=0.2))
    with _holder(db) as holder:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    store.insert_events([_event("after")])
    assert _keys(store) == {"after"}  # the killed holder's row was never committed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_takes_turns_with_its_parent(db: str) -> None:
    # The turn itself, without SQLite: a connection must not cross a fork, but a Store's engine may (a
    # multiprocessing child). An inherited lock descriptor would be the parent's own lock, held by both.
    engine = open_engine(db)
    parent = sqlite_writers(engine)
    assert parent.acquire(5, 5)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(reader)
            child = sqlite_writers(engine)
            os.write(writer, b"w")
            got = child.acquire(5, 5)
            os.write(writer, b"a" if got and child is not parent else b"x")
            child.release()
            code = 0
        finally:
            os._exit(code)
    os.close(writer)
    try:
        assert os.read(reader, 1) == b"w"
        ready, _, _ = select.select([reader], [], [], HOLD_SECONDS)
        assert not ready, "the child took the turn while the parent held it"
        parent.release()
        assert os.read(reader, 1) == b"a"
    finally:
        os.close(reader)
        _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_lock_file_takes_the_database_files_permissions(db: str, tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    database.chmod(0o660)  # shared with a group: a lock file only its creator can open would lock the group out
    Store(open_engine(db)).insert_events([_event("first")])
    assert (tmp_path / "store.db-writer").stat().st_mode & 0o777 == 0o660


def test_a_lock_file_that_cannot_be_opened_leaves_writes_to_sqlites_own_locking(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    migrate(open_engine(url))
    (tmp_path / "other.db-writer").mkdir()  # cannot be opened as a file
    store = Store(open_engine(url))
    store.insert_events([_event("still written")])
    assert _keys(store) == {"still written"}
    assert "action=sqlite_writer_lock_unusable" in caplog.text
