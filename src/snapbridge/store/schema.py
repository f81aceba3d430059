"""The current tables, as SQLAlchemy Core objects for queries; the migrations build the same schema."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "api_tokens",
    "attempts",
    "connections",
    "customer_profiles",
    "in_workspace",
    "inbound_events",
    "jobs",
    "metadata",
    "poll_cursors",
    "rate_buckets",
    "runs",
    "sessions",
    "usage",
    "users",
    "workflows",
    "workspaces",
]

metadata = sa.MetaData()

# 64-bit keys on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)
ACTIVE_JOB = sa.text("status IN ('queued', 'leased')")
LEASED_JOB = sa.text("status IN ('leased')")
PROBLEM_RUN = sa.text("status IN ('failed', 'dead')")


def _workspace_column() -> sa.Column[int]:
    # Not a foreign key: SQLite cannot add a referencing column with a default to an existing table.
    return sa.Column("workspace_id", Id, nullable=False, server_default="1")


# A team's own space: its users, connections and workflows, and so its runs, customers and usage.
workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("created_at", When, nullable=False),
    sa.UniqueConstraint("name", name="uq_workspaces_name"),
)

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
    _workspace_column(),
)

# Every webhook or polled record, stored before it is answered; the dedupe key makes a repeat a no-op.
inbound_events = sa.Table(
    "inbound_events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("connection", sa.String(100), nullable=False),
    sa.Column("dedupe_key", sa.String(500), nullable=False),
    sa.Column("kind", sa.String(100), nullable=False),
    sa.Column("received_at", When, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("derived_at", When, nullable=True),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("dedupe_key", name="uq_inbound_events_dedupe_key"),
    sa.Index("ix_inbound_events_status_id", "status", "id"),
)

# What snapbridge knows about one buyer of one Gumroad connection; `attributes` keeps the deriver's extras.
customer_profiles = sa.Table(
    "customer_profiles",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("connection", sa.String(100), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(500), nullable=True),
    sa.Column("plan", sa.String(500), nullable=True),
    sa.Column("location_id", sa.String(200), nullable=True),
    sa.Column("timezone", sa.String(100), nullable=True),
    sa.Column("region", sa.String(100), nullable=True),
    sa.Column("tier", sa.String(100), nullable=True),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("segments", sa.JSON, nullable=False),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("last_activity_at", When, nullable=True),
    sa.Column("lifetime_value_cents", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("purchases", sa.Integer, nullable=False, server_default="0"),
    sa.Column("first_seen_at", When, nullable=False),
    sa.Column("updated_at", When, nullable=False),
    sa.UniqueConstraint("connection", "email", name="uq_customer_profiles_connection_email"),
)

# Installed workflows, kept as the YAML the user wrote; a name is unique within its workspace.
workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("source_yaml", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", When, nullable=False),
    sa.Column("updated_at", When, nullable=False),
    _workspace_column(),
    sa.UniqueConstraint("workspace_id", "name", name="uq_workflows_workspace_name"),
)

# One run per workflow per inbound event: the unique pair lets a re-derivation find its earlier run.
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("workflow_name", sa.String(200), nullable=False),
    sa.Column("inbound_event_id", Id, sa.ForeignKey("inbound_events.id"), nullable=True),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("customer_key", sa.String(500), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("created_at", When, nullable=False),
    sa.Column("finished_at", When, nullable=True),
    sa.Column("payload_pruned", sa.Boolean, nullable=False),
    _workspace_column(),
    sa.UniqueConstraint("inbound_event_id", "workflow_name", name="uq_runs_event_workflow"),
    # Runs that need a look (`snapbridge runs --failed`): few among many, so a partial index.
    sa.Index("ix_runs_problems_id", "id", postgresql_where=PROBLEM_RUN, sqlite_where=PROBLEM_RUN),
    sa.Index("ix_runs_customer_key", "customer_key"),
    sa.Index("ix_runs_workspace_id_id", "workspace_id", "id"),
)

# One job per planned step: a small state machine with a lease, a fencing token and two keys.
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("run_id", Id, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("step_id", sa.String(200), nullable=False),
    sa.Column("action", sa.String(200), nullable=False),
    sa.Column("connection", sa.String(100), nullable=False),
    sa.Column("input", sa.JSON, nullable=False),
    sa.Column("deferred", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", When, nullable=False),
    sa.Column("lease_expires_at", When, nullable=True),
    sa.Column("lease_token", sa.BigInteger, nullable=False),
    sa.Column("leased_by", sa.String(200), nullable=True),
    sa.Column("ordering_key", sa.String(500), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("output", sa.JSON, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", When, nullable=False),
    sa.Column("updated_at", When, nullable=False),
    sa.UniqueConstraint("idempotency_key", name="uq_jobs_idempotency_key"),
    sa.Index("ix_jobs_status_next_attempt_at", "status", "next_attempt_at", "id"),
    sa.Index("ix_jobs_ordering_key_id", "ordering_key", "id"),
    sa.Index("ix_jobs_run_id_step_index", "run_id", "step_index"),
    # Unfinished (and leased) jobs only: a claim asks "is an earlier job of this key unfinished, or
    # another one leased?", while the table keeps every finished job as history.
    sa.Index(
        "ix_jobs_active_key", "ordering_key", "id", postgresql_where=ACTIVE_JOB, sqlite_where=ACTIVE_JOB
    ),
    sa.Index(
        "ix_jobs_leased_key", "ordering_key", postgresql_where=LEASED_JOB, sqlite_where=LEASED_JOB
    ),
)

# Each try of a job, with redacted excerpts of what was sent and answered.
attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("job_id", Id, sa.ForeignKey("jobs.id"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", When, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("http_status", sa.Integer, nullable=True),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("request_excerpt", sa.Text, nullable=False),
    sa.Column("response_excerpt", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Index("ix_attempts_job_id_attempt", "job_id", "attempt"),
)

# Where each reconciliation poller stopped; written in the transaction that stores what it found.
poll_cursors = sa.Table(
    "poll_cursors",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("cursor", sa.Text, nullable=False),
    sa.Column("updated_at", When, nullable=False),
)

# One token bucket per connection, shared by every worker process through the database.
rate_buckets = sa.Table(
    "rate_buckets",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("capacity", sa.Float, nullable=False),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("refill_per_second", sa.Float, nullable=False),
    sa.Column("updated_at", When, nullable=False),
    sa.Column("blocked_until", When, nullable=True),
)

# Requests per connection per minute, for the quota view.
usage = sa.Table(
    "usage",
    metadata,
    sa.Column("connection", sa.String(100), primary_key=True),
    sa.Column("window_start", When, primary_key=True),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("errors", sa.Integer, nullable=False),
    sa.Column("throttled", sa.Integer, nullable=False),
    sa.Column("latency_ms_sum", sa.Float, nullable=False),
    sa.Column("latency_count", sa.Integer, nullable=False),
)

# Dashboard and API users; passwords kept as argon2 hashes, with the failures that lead to a lockout.
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(100), nullable=False),
    sa.Column("password_hash", sa.String(500), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("failed_logins", sa.Integer, nullable=False),
    sa.Column("locked_until", When, nullable=True),
    sa.Column("created_at", When, nullable=False),
    _workspace_column(),
    sa.UniqueConstraint("username", name="uq_users_username"),
)

# API tokens, kept as SHA-256 digests: the token itself is shown once, when it is made.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("created_at", When, nullable=False),
    sa.Column("last_used_at", When, nullable=True),
    sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
)

# Dashboard sessions, kept as digests of the cookie's value.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", When, nullable=False),
    sa.Column("expires_at", When, nullable=False),
)


def in_workspace(column: sa.ColumnElement[str], workspace: int) -> sa.ColumnElement[bool]:
    """`column` names one of the workspace's connections (profiles, events, usage are kept by connection)."""
    return column.in_(sa.select(connections.c.name).where(connections.c.workspace_id == workspace))
