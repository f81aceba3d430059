"""Opens the database named by a URL: SQLite (WAL, foreign keys) embedded, or PostgreSQL through psycopg."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from snapbridge.errors import InvalidInput, StoreUnavailable

__all__ = ["IMMEDIATE", "RELAXED", "is_sqlite", "open_engine", "take_over_sqlite_transactions"]

# Execution option for transactions that read, then write: on SQLite their BEGIN takes the write lock at once.
IMMEDIATE = "snapbridge_begin_immediate"
# A write whose loss in a power cut (not a process crash) is harmless, because what it records is redone
# under the same idempotency keys: SQLite commits it with synchronous=NORMAL (no fsync). The next FULL
# commit (an inbound event's) fsyncs the log up to and including it, so the file stays a prefix in order.
RELAXED = "snapbridge_relaxed_sync"


def _normalise(url: str) -> str:
    # Users write the familiar postgresql:// form; SQLAlchemy needs to be told to use psycopg 3.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, busy_timeout: float) -> None:
    # sqlite3 would open transactions on its own, always deferred; SQLAlchemy's "begin" event does it instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit survives power loss; the inbound path answers 200 only after it.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A deferred transaction that reads and then writes cannot upgrade its lock once another connection has
    # committed (SQLITE_BUSY without waiting); BEGIN IMMEDIATE queues for the write lock up front instead.
    dbapi = conn.connection.dbapi_connection
    if dbapi is not None and dbapi.isolation_level is not None:
        dbapi.isolation_level = None  # a connection opened before take_over_sqlite_transactions ran
    options = conn.get_execution_options()
    level = "NORMAL" if options.get(RELAXED, False) else "FULL"
    info = conn.connection.info
    if info.get("synchronous", "FULL") != level:  # may only change outside a transaction, so here
        conn.exec_driver_sql(f"PRAGMA synchronous={level}")
        info["synchronous"] = level
    immediate = bool(options.get(IMMEDIATE, False))
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def take_over_sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy emit BEGIN on SQLite (the documented recipe), so IMMEDIATE can be used; idempotent."""
    if is_sqlite(engine) and not sa.event.contains(engine, "begin", _sqlite_begin):
        sa.event.listen(engine, "begin", _sqlite_begin)


def open_engine(url: str, *, busy_timeout: float = 5.0) -> Engine:
    """An engine for `url`; the SQLite file's folder is created; nothing is connected until first use.

    `busy_timeout` is how long a SQLite write waits for another writer before the store reports unavailable.
    """
    try:
        parsed = sa.make_url(_normalise(url))
    except ArgumentError as exc:
        raise InvalidInput(f"database URL is not valid: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": busy_timeout})
        sa.event.listen(engine, "connect", partial(_sqlite_pragmas, busy_timeout=busy_timeout))
        take_over_sqlite_transactions(engine)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise InvalidInput(f"database {parsed.get_backend_name()!r} is not supported; use sqlite:// or postgresql://")
    try:
        return sa.create_engine(parsed, pool_pre_ping=True)
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"cannot open database: {exc}") from exc
