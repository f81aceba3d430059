"""Which SQLite writes wait for the disk: inbound events always (FULL); relaxed ones (claims, outcomes, the
deriver's pass) skip the fsync, since what they record is redone under the same keys if a power cut loses it."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from snapbridge.store import EventSource, NewInboundEvent, Store

FULL, NORMAL = 2, 1  # PRAGMA synchronous values


def _level(store: Store, *, relaxed: bool) -> int:
    with store.transaction(relaxed=relaxed) as tx:
        return int(tx._conn.exec_driver_sql("PRAGMA synchronous").scalar_one())


def _pg_sync(store: Store, *, relaxed: bool) -> str:
    with store.transaction(relaxed=relaxed) as tx:
        return str(tx._conn.exec_driver_sql("SHOW synchronous_commit").scalar_one())


def test_relaxed_transactions_skip_the_fsync_and_the_rest_keep_it(store: Store) -> None:
    if store.is_postgres:
        assert _pg_sync(store, relaxed=True) == "off"
        assert _pg_sync(store, relaxed=False) == "on"  # SET LOCAL: gone with its transaction
        return
    assert _level(store, relaxed=True) == NORMAL
    assert _level(store, relaxed=False) == FULL  # the pooled connection is set back, not left relaxed
    assert _level(store, relaxed=True) == NORMAL
    row = NewInboundEvent(EventSource.GUMROAD, "gumroad", "k-durable", "sale", {"a": 1}, datetime.now(UTC))
    store.insert_events([row])  # the inbound path after a relaxed write on the same connection
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA synchronous")).scalar_one() == FULL
        assert conn.execute(sa.text("SELECT count(*) FROM inbound_events")).scalar_one() == 1
