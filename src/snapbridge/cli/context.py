"""What every stateful command needs, built once from the settings: the store and the vault."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from snapbridge.config import Settings, load_settings
from snapbridge.security import Vault
from snapbridge.store import ConnectionStore, Store, migrate, open_engine

__all__ = ["AppContext", "open_context", "open_store"]


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    vault: Vault
    connections: ConnectionStore
    store: Store

    def close(self) -> None:
        self.store.close()
        self.engine.dispose()


@contextmanager
def open_store(settings: Settings | None = None) -> Iterator[Store]:
    """The migrated store alone, for commands that need no credentials (and so no vault)."""
    settings = settings or load_settings()
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = open_engine(settings.database_url)
    try:
        migrate(engine)
        store = Store(engine)
        try:
            yield store
        finally:
            store.close()
    finally:
        engine.dispose()


def open_context(settings: Settings | None = None) -> AppContext:
    """Create the data directory (owner-only), migrate the database and open the vault."""
    settings = settings or load_settings()
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = open_engine(settings.database_url)
    migrate(engine)
    vault = Vault.open(settings.resolved_key_file, env_key=settings.secret_key)
    return AppContext(settings, engine, vault, ConnectionStore(engine), Store(engine))


