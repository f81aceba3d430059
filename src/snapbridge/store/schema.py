"""The current tables, as SQLAlchemy Core objects for queries; the migrations build the same schema."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["connections", "metadata"]

metadata = sa.MetaData()

# One row per connected account. Credentials are vault ciphertexts bound to the row's name, never plain text.
connections = sa.Table(
    "connections",
    metadata,
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
