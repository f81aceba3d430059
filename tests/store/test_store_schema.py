"""The migrations build the same indexes and unique constraints that schema.py declares, on both engines."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from snapbridge.store import metadata


def test_indexes_and_unique_constraints_match(migrated: Engine) -> None:
    inspector = sa.inspect(migrated)
    for table in metadata.sorted_tables:
        declared_indexes = {i.name: [c.name for c in i.columns] for i in table.indexes}
        # PostgreSQL also lists the indexes behind unique constraints; those are compared below.
        built_indexes = {
            i["name"]: list(i["column_names"])
            for i in inspector.get_indexes(table.name)
            if not i.get("duplicates_constraint")
        }
        assert built_indexes == declared_indexes, table.name
        declared_unique = {
            c.name: [col.name for col in c.columns]
            for c in table.constraints
            if isinstance(c, sa.UniqueConstraint)
        }
        built_unique = {
            u["name"]: list(u["column_names"]) for u in inspector.get_unique_constraints(table.name)
        }
        assert built_unique == declared_unique, table.name
        declared_fks = sorted((fk.parent.name, fk.column.table.name) for fk in table.foreign_keys)
        built_fks = sorted(
            (fk["constrained_columns"][0], fk["referred_table"])
            for fk in inspector.get_foreign_keys(table.name)
        )
        assert built_fks == declared_fks, table.name
