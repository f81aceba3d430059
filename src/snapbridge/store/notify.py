"""Wake-ups for workers in other processes: PostgreSQL NOTIFY when jobs may be claimable, LISTEN to wait; on
SQLite, which has no NOTIFY, a watch on the database's commits (CommitWatch)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection

from snapbridge.errors import StoreUnavailable
from snapbridge.store.rows import is_postgres, unavailable

__all__ = ["CHANNEL", "POLL_SECONDS", "CommitWatch", "JobListener", "notify_jobs"]

CHANNEL = "snapbridge_jobs"
# How often CommitWatch looks: the longest a worker in another process waits to see new jobs. A look reads a
# counter in SQLite's shared memory (no disk, no lock), a few microseconds.
POLL_SECONDS = 0.005


def notify_jobs(conn: Connection) -> None:
    """Tell listening workers to claim; delivered when this transaction commits (nothing on SQLite)."""
    if is_postgres(conn):
        conn.execute(sa.select(sa.func.pg_notify(CHANNEL, "")))


class JobListener:
    """A dedicated PostgreSQL connection that LISTENs, so no notification is missed between two waits."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: psycopg.Connection[Any] | None = None
        self._fairy: PoolProxiedConnection | None = None  # kept, so the detached connection lives as long
        self._lock = threading.Lock()

    def wait(self, timeout: float) -> bool:
        """True when a notification arrived within `timeout` seconds (all pending ones are consumed). The first
        wait on a new connection is True at once: a notification sent before its LISTEN was missed."""
        with self._lock:
            try:
                fresh = self._conn is None or self._conn.closed
                conn = self._connection()
                if fresh:
                    return True
                got = any(True for _ in conn.notifies(timeout=timeout, stop_after=1))
                if got:
                    for _ in conn.notifies(timeout=0.0):
                        pass
                return got
            except (SQLAlchemyError, psycopg.Error) as exc:
                self._drop()
                raise unavailable("wait for jobs", exc) from exc

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        fairy = self._engine.raw_connection()
        fairy.detach()  # ours alone from now on: a pooled connection would carry the LISTEN to other users
        dbapi = fairy.dbapi_connection
        if not isinstance(dbapi, psycopg.Connection):
            fairy.close()
            raise StoreUnavailable("waiting for jobs needs the psycopg driver")
        dbapi.rollback()
        dbapi.autocommit = True
        dbapi.execute(f"LISTEN {CHANNEL}")
        self._conn, self._fairy = dbapi, fairy
        return dbapi

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):  # already broken; closing is all we wanted
                self._conn.close()
            self._conn = self._fairy = None


class CommitWatch:
    """SQLite: a dedicated connection whose `PRAGMA data_version` moves whenever another connection, in this
    process or another, commits a change. A worker without the deriver in its process claims when it moves,
    instead of at its next idle look (seconds later). A commit that changed nothing (a claim that found no job)
    does not move it, so an idle worker does not wake itself."""

    def __init__(self, engine: Engine, *, poll_seconds: float = POLL_SECONDS) -> None:
        self._engine = engine
        self._poll = poll_seconds
        self._conn: sqlite3.Connection | None = None
        self._fairy: PoolProxiedConnection | None = None
        self._seen: int | None = None
        self._lock = threading.Lock()

    def wait(self, timeout: float) -> bool:
        """True as soon as a commit is seen since the last call (the first call: True), else False after
        `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                try:
                    version = self._version()
                except (SQLAlchemyError, sqlite3.Error) as exc:
                    self._drop()
                    raise unavailable("watch for commits", exc) from exc
                if version != self._seen:
                    self._seen = version
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(self._poll, left))

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _version(self) -> int:
        if self._conn is None:
            fairy = self._engine.raw_connection()
            fairy.detach()  # ours alone: data_version counts the commits of every connection but this one
            dbapi = fairy.dbapi_connection
            if not isinstance(dbapi, sqlite3.Connection):
                fairy.close()
                raise StoreUnavailable("watching for commits needs the sqlite3 driver")
            self._conn, self._fairy = dbapi, fairy
        (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        return int(version)

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = self._fairy = None
        self._seen = None
