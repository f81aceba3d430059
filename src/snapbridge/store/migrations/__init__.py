"""Versioned schema migrations, applied in order, each in its own transaction, recorded in `schema_migrations`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from snapbridge.errors import StoreUnavailable
from snapbridge.store.migrations import (
    m0001_connections,
    m0002_pipeline,
    m0003_users,
    m0004_workspaces,
    m0005_sqlite_planner_stats,
)

__all__ = ["MIGRATIONS", "Migration", "applied_versions", "migrate"]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "connections", m0001_connections.apply),
    Migration(2, "pipeline", m0002_pipeline.apply),
    Migration(3, "users", m0003_users.apply),
    Migration(4, "workspaces", m0004_workspaces.apply),
    Migration(5, "sqlite planner statistics", m0005_sqlite_planner_stats.apply),
)

_ledger = sa.Table(
    "schema_migrations",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


def applied_versions(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("schema_migrations"):
            return []
        return [row[0] for row in conn.execute(sa.select(_ledger.c.version).order_by(_ledger.c.version))]


def migrate(engine: Engine) -> list[int]:
    """Apply every migration not yet applied; returns the versions applied now."""
    done: list[int] = []
    try:
        _ledger.create(engine, checkfirst=True)
        have = set(applied_versions(engine))
        for migration in MIGRATIONS:
            if migration.version in have:
                continue
            with engine.begin() as conn:
                migration.apply(conn)
                conn.execute(
                    _ledger.insert().values(
                        version=migration.version, description=migration.description, applied_at=datetime.now(UTC)
                    )
                )
            done.append(migration.version)
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"cannot migrate the database: {exc.__class__.__name__}") from exc
    return done
