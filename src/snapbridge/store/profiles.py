"""Customer profiles (one per Gumroad connection and email) and the installed workflows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from snapbridge.store.models import DEFAULT_WORKSPACE, Profile, WorkflowRecord
from snapbridge.store.rows import InsertFn, aware, aware_or_none, chunks, is_postgres, json_dict, per_dialect, utc
from snapbridge.store.schema import customer_profiles, in_workspace, workflows

__all__ = [
    "delete_workflow",
    "get_profile",
    "get_workflow",
    "list_profiles",
    "list_workflows",
    "save_profile",
    "save_profiles",
    "save_workflow",
    "set_workflow_enabled",
]


KEPT = ("connection", "email", "first_seen_at")  # an update keeps these


def _save_profiles(insert: InsertFn) -> sa.Insert:
    stmt = insert(customer_profiles)
    changed = {c.name: stmt.excluded[c.name] for c in customer_profiles.c if c.name not in (*KEPT, "id")}
    return stmt.on_conflict_do_update(index_elements=["connection", "email"], set_=changed)


def _save_profile(insert: InsertFn) -> sa.Insert:
    return _save_profiles(insert).returning(customer_profiles.c.id)


def _save_workflow(insert: InsertFn) -> sa.Insert:
    stmt = insert(workflows)
    changed = {name: stmt.excluded[name] for name in ("source_yaml", "enabled", "updated_at")}
    return stmt.on_conflict_do_update(index_elements=["workspace_id", "name"], set_=changed).returning(
        *workflows.c)


_SAVE_PROFILE = per_dialect(_save_profile)
_SAVE_PROFILES = per_dialect(_save_profiles)
_SAVE_WORKFLOW = per_dialect(_save_workflow)


def _profile(row: sa.Row[Any]) -> Profile:
    m = row._mapping
    return Profile(
        id=m["id"], connection=m["connection"], email=m["email"], name=m["name"], plan=m["plan"],
        location_id=m["location_id"], timezone=m["timezone"], region=m["region"], tier=m["tier"],
        tags=tuple(m["tags"] or ()), segments=tuple(m["segments"] or ()),
        attributes=json_dict(m["attributes"]),
        last_activity_at=aware_or_none(m["last_activity_at"]), lifetime_value_cents=m["lifetime_value_cents"],
        purchases=m["purchases"], first_seen_at=aware(m["first_seen_at"]), updated_at=aware(m["updated_at"]),
    )


def get_profile(conn: Connection, connection: str, email: str, *, lock: bool = False) -> Profile | None:
    """The profile of `email` (any case); with `lock`, held until the transaction ends (PostgreSQL)."""
    stmt = sa.select(customer_profiles).where(
        customer_profiles.c.connection == connection, customer_profiles.c.email == email.strip().lower()
    )
    if lock and is_postgres(conn):
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    return _profile(row) if row else None


def get_profiles(conn: Connection, keys: Sequence[tuple[str, str]], *, lock: bool = False
                 ) -> dict[tuple[str, str], Profile | None]:
    """get_profile for many (connection, email) keys in one query per chunk; None for each one not found.
    With `lock`, the rows are locked in key order (PostgreSQL), so two callers cannot deadlock on them."""
    wanted: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for connection, email in keys:
        wanted.setdefault((connection, email.strip().lower()), []).append((connection, email))
    found: dict[tuple[str, str], Profile | None] = dict.fromkeys(keys)
    for part in chunks(sorted(wanted)):
        stmt = (sa.select(customer_profiles)
                .where(sa.tuple_(customer_profiles.c.connection, customer_profiles.c.email).in_(part))
                .order_by(customer_profiles.c.connection, customer_profiles.c.email))
        if lock and is_postgres(conn):
            stmt = stmt.with_for_update()
        for row in conn.execute(stmt):
            for key in wanted[(row.connection, row.email)]:
                found[key] = _profile(row)
    return found


SCAN_ROWS = 500  # rows read per query while filling a page; the segment filter runs in Python


def list_profiles(
    conn: Connection, *, segment: str | None = None, search: str | None = None, limit: int = 100,
    after_id: int | None = None, workspace: int | None = None,
) -> list[Profile]:
    """Profiles in id order after `after_id`: `search` matches email or name (any case), `segment` one of the
    profile's segments. The segment test runs in Python because SQLite and PostgreSQL query JSON differently."""
    if limit <= 0:
        return []
    segment = segment or None
    table = customer_profiles
    where: list[sa.ColumnElement[bool]] = []
    if workspace is not None:
        where.append(in_workspace(table.c.connection, workspace))
    term = (search or "").strip().lower()
    if term:
        where.append(sa.or_(sa.func.lower(table.c.email).contains(term, autoescape=True),
                            sa.func.lower(sa.func.coalesce(table.c.name, "")).contains(term, autoescape=True)))
    found: list[Profile] = []
    cursor = after_id or 0
    while len(found) < limit:
        # Without a segment filter every row read is kept, so read no more than the page needs.
        size = SCAN_ROWS if segment else limit - len(found)
        stmt = sa.select(table).where(table.c.id > cursor, *where).order_by(table.c.id).limit(size)
        rows = conn.execute(stmt).all()
        for row in rows:
            profile = _profile(row)
            if segment is None or segment in profile.segments:
                found.append(profile)
                if len(found) == limit:
                    break
        if len(rows) < size:
            break
        cursor = rows[-1]._mapping["id"]
    return found


def save_profile(conn: Connection, profile: Profile) -> int:
    """Insert or replace the profile of (connection, email); returns its id. `first_seen_at` is kept."""
    return int(conn.execute(_SAVE_PROFILE[conn.dialect.name], _profile_values(profile)).scalar_one())


def save_profiles(conn: Connection, many: Sequence[Profile]) -> None:
    """save_profile for many (distinct customers) in one executemany, without reading the ids back: a derive
    pass saves one profile per customer, and a statement each cost more than the writes themselves."""
    if many:
        conn.execute(_SAVE_PROFILES[conn.dialect.name], [_profile_values(p) for p in many])


def _profile_values(profile: Profile) -> dict[str, object]:
    return {
        "connection": profile.connection, "email": profile.email.strip().lower(), "name": profile.name,
        "plan": profile.plan, "location_id": profile.location_id, "timezone": profile.timezone,
        "region": profile.region, "tier": profile.tier, "tags": list(profile.tags),
        "segments": list(profile.segments), "attributes": dict(profile.attributes),
        "last_activity_at": None if profile.last_activity_at is None else utc(profile.last_activity_at),
        "lifetime_value_cents": profile.lifetime_value_cents, "purchases": profile.purchases,
        "first_seen_at": utc(profile.first_seen_at), "updated_at": utc(profile.updated_at),
    }


def _workflow(row: sa.Row[Any]) -> WorkflowRecord:
    m = row._mapping
    return WorkflowRecord(
        id=m["id"], name=m["name"], source_yaml=m["source_yaml"], enabled=bool(m["enabled"]),
        created_at=aware(m["created_at"]), updated_at=aware(m["updated_at"]), workspace_id=m["workspace_id"],
    )


def _named(name: str, workspace: int) -> tuple[sa.ColumnElement[bool], ...]:
    return (workflows.c.workspace_id == workspace, workflows.c.name == name)


def save_workflow(
    conn: Connection, name: str, source_yaml: str, *, enabled: bool, now: datetime,
    workspace: int = DEFAULT_WORKSPACE,
) -> WorkflowRecord:
    """Install or replace the workspace's workflow called `name`; its creation time is kept."""
    values = {"name": name, "source_yaml": source_yaml, "enabled": enabled, "created_at": utc(now),
              "updated_at": utc(now), "workspace_id": workspace}
    return _workflow(conn.execute(_SAVE_WORKFLOW[conn.dialect.name], values).one())


def get_workflow(conn: Connection, name: str, *, workspace: int = DEFAULT_WORKSPACE) -> WorkflowRecord | None:
    row = conn.execute(sa.select(workflows).where(*_named(name, workspace))).first()
    return _workflow(row) if row else None


def list_workflows(conn: Connection, *, enabled_only: bool = False, workspace: int | None = None
                   ) -> list[WorkflowRecord]:
    """The workspace's workflows by name (None: every workspace's, for the pipeline and the operator)."""
    stmt = sa.select(workflows).order_by(workflows.c.name, workflows.c.workspace_id)
    if enabled_only:
        stmt = stmt.where(workflows.c.enabled.is_(True))
    if workspace is not None:
        stmt = stmt.where(workflows.c.workspace_id == workspace)
    return [_workflow(row) for row in conn.execute(stmt)]


def delete_workflow(conn: Connection, name: str, *, workspace: int = DEFAULT_WORKSPACE) -> bool:
    return conn.execute(workflows.delete().where(*_named(name, workspace))).rowcount > 0


def set_workflow_enabled(conn: Connection, name: str, *, enabled: bool, now: datetime,
                         workspace: int = DEFAULT_WORKSPACE) -> bool:
    result = conn.execute(
        workflows.update().where(*_named(name, workspace)).values(enabled=enabled, updated_at=utc(now))
    )
    return result.rowcount > 0
