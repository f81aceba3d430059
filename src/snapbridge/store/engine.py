"""Opens the database named by a URL: SQLite (WAL, foreign keys) embedded, or PostgreSQL through psycopg."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from snapbridge.errors import InvalidInput, StoreUnavailable

__all__ = ["is_sqlite", "open_engine"]


def _normalise(url: str) -> str:
    # Users write the familiar postgresql:// form; SQLAlchemy needs to be told to use psycopg 3.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit survives power loss; the inbound path answers 200 only after it.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_engine(url: str) -> Engine:
    """An engine for `url`; the SQLite file's folder is created; nothing is connected until first use."""
    try:
        parsed = sa.make_url(_normalise(url))
    except ArgumentError as exc:
        raise InvalidInput(f"database URL is not valid: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise InvalidInput(f"database {parsed.get_backend_name()!r} is not supported; use sqlite:// or postgresql://")
    try:
        return sa.create_engine(parsed, pool_pre_ping=True)
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"cannot open database: {exc}") from exc
