"""Migrations build exactly the schema the code queries, on both engines, and run once."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from snapbridge.store import MIGRATIONS, applied_versions, metadata, migrate


def test_migrations_produce_the_schema(engine: Engine) -> None:
    applied = migrate(engine)
    assert applied == [m.version for m in MIGRATIONS]
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        columns = {c["name"]: c for c in inspector.get_columns(table.name)}
        assert set(columns) == {c.name for c in table.columns}, table.name
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, f"{table.name}.{column.name}"
        assert inspector.get_pk_constraint(table.name)["constrained_columns"] == [
            c.name for c in table.primary_key.columns
        ]


def test_migrating_twice_applies_nothing_new(engine: Engine) -> None:
    migrate(engine)
    assert migrate(engine) == []
    assert applied_versions(engine) == [m.version for m in MIGRATIONS]
