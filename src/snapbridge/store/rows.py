"""Small helpers the table modules share: UTC datetimes, prepared statements per dialect, JSON shapes, errors.

Hot statements are built once, with named parameters, and executed with values: SQLAlchemy then compiles each
one once, instead of building and compiling a new statement for every call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from snapbridge.errors import InvalidInput, StoreUnavailable

__all__ = [
    "JSON",
    "WHEN",
    "InsertFn",
    "aware",
    "aware_or_none",
    "chunks",
    "is_postgres",
    "json_dict",
    "param",
    "per_dialect",
    "refused",
    "unavailable",
    "utc",
]

T = TypeVar("T")
InsertFn = Callable[[sa.Table], postgresql.Insert | sqlite.Insert]
WHEN = sa.DateTime(timezone=True)
JSON = sa.JSON()

# Lookups by many keys go in slices: SQLite allows 32,766 bound parameters per statement.
CHUNK_ROWS = 500


def param(name: str, type_: sa.types.TypeEngine[Any] | None = None) -> sa.BindParameter[Any]:
    """A named parameter; `b_` keeps it apart from column names, which SQLAlchemy reserves in SET clauses."""
    return sa.bindparam(f"b_{name}", type_=type_)


def per_dialect(build: Callable[[InsertFn], T]) -> dict[str, T]:
    """The statement `build` makes with each dialect's INSERT (both have ON CONFLICT), by dialect name."""
    return {"postgresql": build(postgresql.insert), "sqlite": build(sqlite.insert)}


def utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is refused (SQLite would store it as if it were UTC)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"datetime {value.isoformat()} has no time zone; the store needs aware datetimes")
    return value.astimezone(UTC)


def aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone=True columns; everything written is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def aware_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else aware(value)


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def chunks(items: Sequence[T], size: int = CHUNK_ROWS) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def json_dict(value: object) -> dict[str, object]:
    """A JSON object column as a dict; anything else (NULL, a list) becomes empty."""
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def refused(what: str, exc: Exception) -> InvalidInput | None:
    """InvalidInput when the database refused a value in the statement (PostgreSQL: invalid JSON text, a value
    too long or out of range), so the same data fails the same way however often it is sent; None otherwise."""
    if not isinstance(exc, sa.exc.DataError):
        return None
    lines = str(exc.orig).strip().splitlines()
    return InvalidInput(f"cannot {what}: the database refused a value ({(lines[0] if lines else 'no reason')[:200]})")


def unavailable(what: str, exc: Exception) -> StoreUnavailable:
    """The error for a failed database call: the driver's own first line ("database is locked", "connection
    refused"), never SQLAlchemy's text, which quotes the statement and its values."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return StoreUnavailable(f"cannot {what}: {(lines[0] if lines else exc.__class__.__name__)[:200]}")
