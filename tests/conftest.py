"""Shared fixtures: both sandbox servers on loopback (once per session); a fresh database on both engines."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from snapbridge.store import Store, migrate, open_engine

if TYPE_CHECKING:
    from snapbridge.sandbox import Sandboxes

# Delays in the sandboxes (webhook retry schedule, rate windows) are scaled by this factor in tests.
TIME_FACTOR = 0.001


@pytest.fixture(scope="session")
def sandboxes() -> Iterator[Sandboxes]:
    from snapbridge.sandbox import start_sandboxes

    boxes = start_sandboxes(seed=1, time_factor=TIME_FACTOR)
    try:
        yield boxes
    finally:
        boxes.stop()


PG_URL = os.environ.get("SNAPBRIDGE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty database: a SQLite file, or a private schema in the PostgreSQL at PG_URL."""
    if request.param == "sqlite":
        eng = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
        yield eng
        eng.dispose()
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = open_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    eng = sa.create_engine(
        admin.url, connect_args={"options": f"-csearch_path={schema}"}, pool_pre_ping=True
    )
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def migrated(engine: Engine) -> Engine:
    migrate(engine)
    return engine


@pytest.fixture
def store(migrated: Engine) -> Iterator[Store]:
    st = Store(migrated)
    try:
        yield st
    finally:
        st.close()
