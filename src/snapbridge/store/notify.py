"""Wake-ups for workers in other processes: PostgreSQL NOTIFY when jobs may be claimable, LISTEN to wait."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection

from snapbridge.errors import StoreUnavailable
from snapbridge.store.rows import is_postgres, unavailable

__all__ = ["CHANNEL", "JobListener", "notify_jobs"]

CHANNEL = "snapbridge_jobs"


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
        """True when a notification arrived within `timeout` seconds (all pending ones are consumed)."""
        with self._lock:
            try:
                conn = self._connection()
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
