"""The connections table: one connected account per name, credentials held as vault ciphertexts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from snapbridge.errors import InvalidInput, StoreUnavailable
from snapbridge.store.models import DEFAULT_WORKSPACE
from snapbridge.store.schema import connections

__all__ = ["ConnectionRecord", "ConnectionRoute", "ConnectionStore", "list_routes"]


@dataclass(frozen=True)
class ConnectionRecord:
    name: str
    app: str
    base_url: str
    credential: str = field(repr=False)  # ciphertext from the vault
    webhook_key: str | None = field(default=None, repr=False)
    account: str = ""
    scopes: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    workspace_id: int = DEFAULT_WORKSPACE

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> ConnectionRecord:
        m = row._mapping
        return cls(
            name=m["name"], app=m["app"], base_url=m["base_url"], credential=m["credential"],
            webhook_key=m["webhook_key"], account=m["account"], scopes=tuple(m["scopes"]),
            options=dict(m["options"]), created_at=_aware(m["created_at"]), updated_at=_aware(m["updated_at"]),
            workspace_id=m["workspace_id"],
        )


@dataclass(frozen=True)
class ConnectionRoute:
    """Where a connection belongs, without its secrets: what the pipeline routes by."""

    name: str
    app: str
    workspace_id: int


def list_routes(conn: Connection) -> list[ConnectionRoute]:
    stmt = sa.select(connections.c.name, connections.c.app, connections.c.workspace_id).order_by(connections.c.name)
    return [ConnectionRoute(row.name, row.app, int(row.workspace_id)) for row in conn.execute(stmt)]


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone=True columns; everything we write is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _scoped(name: str, workspace: int | None) -> list[sa.ColumnElement[bool]]:
    where = [connections.c.name == name]
    if workspace is not None:
        where.append(connections.c.workspace_id == workspace)
    return where


class ConnectionStore:
    """Connection names are unique across workspaces (jobs, buckets and usage are kept by name); a lookup
    given a workspace sees only that workspace's connections, None sees all (the pipeline, the operator)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def save(self, record: ConnectionRecord) -> None:
        """Insert or replace the connection with this name; InvalidInput if another workspace holds the name."""
        values = {
            "name": record.name, "app": record.app, "base_url": record.base_url,
            "credential": record.credential, "webhook_key": record.webhook_key, "account": record.account,
            "scopes": list(record.scopes), "options": dict(record.options),
            "created_at": record.created_at, "updated_at": datetime.now(UTC), "workspace_id": record.workspace_id,
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(connections.delete().where(*_scoped(record.name, record.workspace_id)))
                conn.execute(connections.insert().values(**values))
        except IntegrityError as exc:
            raise InvalidInput(f"the connection name {record.name!r} is taken; choose another") from exc
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"cannot save connection {record.name!r}") from exc

    def get(self, name: str, *, workspace: int | None = None) -> ConnectionRecord | None:
        try:
            with self._engine.connect() as conn:
                row = conn.execute(sa.select(connections).where(*_scoped(name, workspace))).first()
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"cannot read connection {name!r}") from exc
        return ConnectionRecord.from_row(row) if row else None

    def list(self, *, workspace: int | None = None) -> list[ConnectionRecord]:
        stmt = sa.select(connections).order_by(connections.c.name)
        if workspace is not None:
            stmt = stmt.where(connections.c.workspace_id == workspace)
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(stmt).all()
        except SQLAlchemyError as exc:
            raise StoreUnavailable("cannot list connections") from exc
        return [ConnectionRecord.from_row(r) for r in rows]

    def remove(self, name: str, *, workspace: int | None = None) -> bool:
        try:
            with self._engine.begin() as conn:
                result = conn.execute(connections.delete().where(*_scoped(name, workspace)))
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"cannot remove connection {name!r}") from exc
        return result.rowcount > 0
