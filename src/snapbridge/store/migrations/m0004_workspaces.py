"""Migration 4: workspaces. Users, connections, workflows and runs belong to one; what existed joins workspace 1."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# Written out rather than taken from schema.py, so later schema changes never rewrite history.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)
OWNED = ("users", "connections", "workflows", "runs")


def apply(conn: Connection) -> None:
    meta = sa.MetaData()
    workspaces = sa.Table(
        "workspaces",
        meta,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.UniqueConstraint("name", name="uq_workspaces_name"),
    )
    meta.create_all(conn)
    conn.execute(workspaces.insert().values(name="default", created_at=datetime.now(UTC)))
    id_type = Id.compile(dialect=conn.dialect)
    for table in OWNED:
        # No foreign key: SQLite refuses a referencing column with a default on an existing table.
        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN workspace_id {id_type} NOT NULL DEFAULT 1"))
    conn.execute(sa.text("CREATE INDEX ix_runs_workspace_id_id ON runs (workspace_id, id)"))
    # A workflow's name is now unique within its workspace (two teams may install the same template).
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("ALTER TABLE workflows DROP CONSTRAINT uq_workflows_name"))
        conn.execute(sa.text("ALTER TABLE workflows ADD CONSTRAINT uq_workflows_workspace_name "
                             "UNIQUE (workspace_id, name)"))
    else:
        _rebuild_sqlite_workflows(conn)


def _rebuild_sqlite_workflows(conn: Connection) -> None:
    """SQLite cannot drop a constraint: copy the rows into a new table and swap it in."""
    meta = sa.MetaData()
    sa.Table(
        "workflows_v4",
        meta,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("source_yaml", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.Column("workspace_id", Id, nullable=False, server_default="1"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_workflows_workspace_name"),
    )
    meta.create_all(conn)
    conn.execute(sa.text("INSERT INTO workflows_v4 (id, name, source_yaml, enabled, created_at, updated_at, "
                         "workspace_id) SELECT id, name, source_yaml, enabled, created_at, updated_at, "
                         "workspace_id FROM workflows"))
    conn.execute(sa.text("DROP TABLE workflows"))
    conn.execute(sa.text("ALTER TABLE workflows_v4 RENAME TO workflows"))
