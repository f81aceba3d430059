"""Migrations build exactly the schema the code queries, on both engines, and run once."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from snapbridge.store import DEFAULT_WORKSPACE, MIGRATIONS, Store, applied_versions, metadata, migrate
from snapbridge.store.migrations import _ledger


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
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table.name)}
        assert uniques == {tuple(c.name for c in u.columns) for u in table.constraints
                           if isinstance(u, sa.UniqueConstraint)}, table.name


def test_migrating_twice_applies_nothing_new(engine: Engine) -> None:
    migrate(engine)
    assert migrate(engine) == []
    assert applied_versions(engine) == [m.version for m in MIGRATIONS]


def test_workspaces_migration_keeps_existing_rows_in_the_default_workspace(engine: Engine) -> None:
    now = datetime.now(UTC)
    _ledger.create(engine, checkfirst=True)
    with engine.begin() as conn:
        for migration in MIGRATIONS[:3]:
            migration.apply(conn)
            conn.execute(_ledger.insert().values(version=migration.version, description=migration.description,
                                                 applied_at=now))
        conn.execute(sa.text("INSERT INTO workflows (name, source_yaml, enabled, created_at, updated_at) "
                             "VALUES ('churn', 'name: churn', true, :now, :now)"), {"now": now})
    assert migrate(engine) == [4, 5]
    store = Store(engine)
    try:
        (kept,) = store.list_workflows()
        assert (kept.name, kept.workspace_id) == ("churn", DEFAULT_WORKSPACE)
        # A name is now unique per workspace: another workspace may have its own "churn".
        store.save_workflow("churn", "name: churn", workspace=2, now=now)
        assert sorted(w.workspace_id for w in store.list_workflows()) == [1, 2]
        assert store.save_workflow("churn", "name: churn  # again", now=now).id == kept.id
    finally:
        store.close()
