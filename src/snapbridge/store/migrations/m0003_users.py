"""Migration 3: users, API tokens and sessions of the dashboard and the management API."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def apply(conn: Connection) -> None:
    # Written out rather than taken from schema.py, so later schema changes never rewrite history.
    meta = sa.MetaData()
    sa.Table(
        "users",
        meta,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(500), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False),
        sa.Column("locked_until", When, nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    sa.Table(
        "api_tokens",
        meta,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("user_id", Id, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("last_used_at", When, nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    sa.Table(
        "sessions",
        meta,
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", Id, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("expires_at", When, nullable=False),
    )
    meta.create_all(conn)
