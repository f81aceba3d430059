"""The connections table: one connected account per name, credentials held as vault ciphertexts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from snapbridge.errors import StoreUnavailable
from snapbridge.store.schema import connections

__all__ = ["ConnectionRecord", "ConnectionStore"]


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

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> ConnectionRecord:
        m = row._mapping
        return cls(
            name=m["name"], app=m["app"], base_url=m["base_url"], credential=m["credential"],
            webhook_key=m["webhook_key"], account=m["account"], scopes=tuple(m["scopes"]),
            options=dict(m["options"]), created_at=_aware(m["created_at"]), updated_at=_aware(m["updated_at"]),
        )


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone=True columns; everything we write is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class ConnectionStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def save(self, record: ConnectionRecord) -> None:
        """Insert or replace the connection with this name."""
        values = {
            "name": record.name, "app": record.app, "base_url": record.base_url,
            "credential": record.credential, "webhook_key": record.webhook_key, "account": record.account,
            "scopes": list(record.scopes), "options": dict(record.options),
            "created_at": record.created_at, "updated_at": datetime.now(UTC),
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(connections.delete().where(connections.c.name == record.name))
                conn.execute(connections.insert().values(**values))
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"cannot save connection {record.name!r}") from exc

    def get(self, name: str) -> ConnectionRecord | None:
        try:
            with self._engine.connect() as conn:
                row = conn.execute(sa.select(connections).where(connections.c.name == name)).first()
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"cannot read connection {name!r}") from exc
        return ConnectionRecord.from_row(row) if row else None

    def list(self) -> list[ConnectionRecord]:
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(sa.select(connections).order_by(connections.c.name)).all()
        except SQLAlchemyError as exc:
            raise StoreUnavailable("cannot list connections") from exc
        return [ConnectionRecord.from_row(r) for r in rows]

    def remove(self, name: str) -> bool:
        try:
            with self._engine.begin() as conn:
                result = conn.execute(connections.delete().where(connections.c.name == name))
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"cannot remove connection {name!r}") from exc
        return result.rowcount > 0
