"""Migration 1: the connections table (credentials stored as vault ciphertexts)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def apply(conn: Connection) -> None:
    # Written out rather than taken from schema.py, so later schema changes never rewrite history.
    table = sa.Table(
        "connections",
        sa.MetaData(),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("app", sa.String(20), nullable=False),
        sa.Column("base_url", sa.String(2000), nullable=False),
        sa.Column("credential", sa.Text, nullable=False),
        sa.Column("webhook_key", sa.Text, nullable=True),
        sa.Column("account", sa.String(500), nullable=False, server_default=""),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    table.create(conn)
