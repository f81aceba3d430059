"""Schema, migrations and the tables snapbridge keeps, on SQLite (embedded) or PostgreSQL (scale-out)."""

from snapbridge.store.connections import ConnectionRecord, ConnectionStore
from snapbridge.store.engine import is_sqlite, open_engine
from snapbridge.store.migrations import MIGRATIONS, Migration, applied_versions, migrate
from snapbridge.store.schema import metadata

__all__ = [
    "ConnectionRecord",
    "ConnectionStore",
    "MIGRATIONS",
    "Migration",
    "applied_versions",
    "is_sqlite",
    "metadata",
    "migrate",
    "open_engine",
]
