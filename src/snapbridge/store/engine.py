"""Opens the database named by a URL: SQLite (WAL, foreign keys) embedded, or PostgreSQL through psycopg."""

from __future__ import annotations

import re
import weakref
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
# The forms of database URL that snapbridge opens, as error messages name them.
_FORMS = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
# libpq's reason a connection failed, and the severity in front of a server's own reason.
_LIBPQ_FAILED = re.compile(r"connection to server (?:at|on) .*? failed: (.*)")
_LIBPQ_SEVERITY = re.compile(r"^(?:FATAL|ERROR):\s+")


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


def _reason(text: str) -> str:
    """The driver's reason a connection failed, in one line: libpq's "connection to server at "h", port p failed:
    FATAL:  database "x" does not exist" (with a hint on the next line) becomes 'database "x" does not exist'."""
    found = _LIBPQ_FAILED.search(text)
    lines = text.strip().splitlines()
    line = (found.group(1) if found else lines[0] if lines else "").strip()
    line = _LIBPQ_SEVERITY.sub("", line.removeprefix("connection failed: ")) or "no reason given"
    return line[:1].lower() + line[1:] if line[1:2].islower() else line  # "Connection refused", not "FATAL"


def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any, *, where: str) -> Any:
    # The driver's own error says it in several lines (libpq adds a hint); SQLAlchemy adds a link to its docs.
    # The same error type, so SQLAlchemy wraps it as before, with one line saying where and why.
    try:
        return dialect.connect(*cargs, **cparams)
    except dialect.loaded_dbapi.OperationalError as exc:
        raise type(exc)(f"cannot connect to {where}: {_reason(str(exc))}") from None


def _where(url: sa.URL) -> str:
    if url.get_backend_name() == "sqlite":
        return f"the SQLite database {url.database}"
    return f"the database at {url.host or url.query.get('host') or 'localhost'}:{url.port or 5432}"


def _parse(url: str) -> sa.URL:
    """The URL, checked; no message quotes it, as it may hold a password."""
    try:
        parsed = sa.make_url(_normalise(url))
    except ArgumentError:
        raise InvalidInput(f"database URL is not valid; expected {_FORMS}") from None
    except ValueError:  # the text after HOST: is not a number (with no @, it may be the password: not quoted)
        raise InvalidInput(f"database URL is not valid: its port is not a number; expected {_FORMS}") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # Each connection (each thread) would get its own, empty database: the worker would never see a job.
            raise InvalidInput("database URL names a SQLite database in memory, which each thread of snapbridge "
                               "would see empty (the worker would never see a job); name a file: sqlite:///PATH")
        return parsed
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise InvalidInput(f"database URL is not valid: port {parsed.port} is not from 1 to 65535")
    if parsed.host is not None and "@" in parsed.host:
        raise InvalidInput("database URL is not valid: its host has an @ (write an @ in the password as %40)")
    return parsed


DEFAULT_BUSY_TIMEOUT = 5.0
_BUSY_TIMEOUTS: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


def busy_timeout(engine: Engine) -> float:
    """How long a write on this SQLite engine waits for another process's writer (open_engine's busy_timeout)."""
    return _BUSY_TIMEOUTS.get(engine, DEFAULT_BUSY_TIMEOUT)


def open_engine(url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Engine:
    """An engine for `url`; the SQLite file's folder is created; nothing is connected until first use.

    `busy_timeout` is how long a SQLite write waits for another writer before the store reports unavailable.
    A URL that cannot be parsed or used (a port that is not a number, SQLite in memory) is InvalidInput.
    """
    parsed = _parse(url)
    connect = partial(_connect, where=_where(parsed))
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": busy_timeout})
        _BUSY_TIMEOUTS[engine] = busy_timeout
        sa.event.listen(engine, "do_connect", connect)
        sa.event.listen(engine, "connect", partial(_sqlite_pragmas, busy_timeout=busy_timeout))
        take_over_sqlite_transactions(engine)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise InvalidInput(f"database {parsed.get_backend_name()!r} is not supported; use sqlite:// or postgresql://")
    try:
        engine = sa.create_engine(parsed, pool_pre_ping=True)
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"cannot open database: {exc}") from exc
    sa.event.listen(engine, "do_connect", connect)
    return engine
