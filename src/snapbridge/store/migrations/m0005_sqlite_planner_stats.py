"""Migration 5: on SQLite, fixed planner statistics for the jobs indexes (a no-op on PostgreSQL).

Without statistics SQLite's planner rates every index with an equality on its first column alike, and it chose:
- the key's whole history (ix_jobs_ordering_key_id) to find a key's unfinished jobs, where the partial index of
  unfinished jobs (ix_jobs_active_key) holds only those: a claim read ~20 finished jobs per customer, more every day;
- every leased job (ix_jobs_status_next_attempt_at, status = 'leased') to ask whether a candidate's key is leased,
  where ix_jobs_leased_key finds that key alone: 600 µs of SQLite CPU per claim with 30 jobs in flight.

These rows describe the shape the queue always has, not a moment of it (which a real ANALYZE would record: an empty
queue, or a backlog): many jobs, five statuses, ~20 jobs per customer, few unfinished and fewer leased.
SQLite documents writing sqlite_stat1 by hand for this. A later ANALYZE replaces them with measured figures.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# index → "rows, then rows per distinct value of each leading column prefix"
JOB_INDEX_STATS = {
    "ix_jobs_ordering_key_id": "1000000 20 1",
    "ix_jobs_status_next_attempt_at": "1000000 200000 2 1",
    "ix_jobs_active_key": "1000 2 1",
    "ix_jobs_leased_key": "100 1",
    "ix_jobs_run_id_step_index": "1000000 3 1",
}


def apply(conn: Connection) -> None:
    if conn.dialect.name != "sqlite":
        return
    conn.execute(sa.text("ANALYZE sqlite_master"))  # creates sqlite_stat1 (the schema table has no index to measure)
    conn.execute(sa.text("DELETE FROM sqlite_stat1 WHERE tbl = 'jobs'"))
    conn.execute(sa.text("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('jobs', :idx, :stat)"),
                 [{"idx": idx, "stat": stat} for idx, stat in JOB_INDEX_STATS.items()])
    conn.execute(sa.text("ANALYZE sqlite_master"))  # this connection reads them now; others when they open
