"""Users, API tokens and sessions: rows keyed by digests, never by the secret tokens themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from snapbridge.errors import InvalidInput, StoreUnavailable
from snapbridge.store.models import DEFAULT_WORKSPACE
from snapbridge.store.rows import refused, unavailable
from snapbridge.store.schema import api_tokens, sessions, users, workspaces

__all__ = ["ApiTokenRecord", "UserRecord", "UserStore"]


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes even for timezone=True columns; everything we write is UTC.
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class UserRecord:
    id: int
    username: str
    password_hash: str = field(repr=False)
    role: str
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime
    workspace_id: int = DEFAULT_WORKSPACE

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> UserRecord:
        m = row._mapping
        return cls(id=m["id"], username=m["username"], password_hash=m["password_hash"], role=m["role"],
                   failed_logins=m["failed_logins"], locked_until=_aware(m["locked_until"]),
                   created_at=_aware(m["created_at"]) or datetime.now(UTC), workspace_id=m["workspace_id"])


@dataclass(frozen=True)
class ApiTokenRecord:
    id: int
    user_id: int
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> ApiTokenRecord:
        m = row._mapping
        return cls(id=m["id"], user_id=m["user_id"], name=m["name"], role=m["role"],
                   created_at=_aware(m["created_at"]) or datetime.now(UTC),
                   last_used_at=_aware(m["last_used_at"]))


class UserStore:
    """Every lookup of a token or session goes by its digest; every token listing is scoped to its owner."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _read(self, what: str, query: sa.Executable) -> list[sa.Row[Any]]:
        try:
            with self._engine.connect() as conn:
                return list(conn.execute(query).all())
        except SQLAlchemyError as exc:
            raise (refused(what, exc) or unavailable(what, exc)) from exc

    def _write(self, what: str, *statements: sa.Executable) -> list[sa.CursorResult[Any]]:
        try:
            with self._engine.begin() as conn:
                return [conn.execute(s) for s in statements]
        except IntegrityError as exc:
            raise InvalidInput(f"cannot {what}: it already exists") from exc
        except SQLAlchemyError as exc:
            raise (refused(what, exc) or unavailable(what, exc)) from exc

    # users

    def count_users(self) -> int:
        rows = self._read("count users", sa.select(sa.func.count()).select_from(users))
        return int(rows[0][0])

    def create_user(self, username: str, password_hash: str, role: str, *, now: datetime,
                    workspace: int = DEFAULT_WORKSPACE) -> UserRecord:
        self._write(f"create user {username!r}", users.insert().values(
            username=username, password_hash=password_hash, role=role, failed_logins=0, locked_until=None,
            created_at=now, workspace_id=workspace))
        user = self.user_by_name(username)
        if user is None:  # pragma: no cover - just written in the same database
            raise StoreUnavailable(f"cannot read back user {username!r}")
        return user

    def create_first_user(self, username: str, password_hash: str, role: str, *, now: datetime) -> UserRecord | None:
        """The user, if there was none before; None if another request or process created one first."""
        values = {"username": username, "password_hash": password_hash, "role": role, "failed_logins": 0,
                  "locked_until": None, "created_at": now, "workspace_id": DEFAULT_WORKSPACE}
        only_if_empty = users.insert().from_select(
            list(values), sa.select(*(sa.literal(v, users.c[k].type) for k, v in values.items()))
            .where(~sa.exists().select_from(users)))
        statements: list[sa.Executable] = [only_if_empty]
        if self._engine.dialect.name == "postgresql":
            # Two transactions would both see no users; this lock mode conflicts with itself, so the second
            # waits and then sees the first's row. (SQLite takes its write lock when the INSERT starts.)
            statements.insert(0, sa.text("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"))
        inserted = self._write(f"create user {username!r}", *statements)[-1]
        return self.user_by_name(username) if inserted.rowcount == 1 else None

    def name_taken(self, username: str) -> str | None:
        """The existing user name equal to `username` but for letter case ("Bob" for "bob"), if any: two
        accounts told apart only by case are confusing to sign in to and easy to impersonate."""
        rows = self._read("look up a user name", sa.select(users.c.username)
                          .where(sa.func.lower(users.c.username) == username.lower()).limit(1))
        return str(rows[0][0]) if rows else None

    def user_by_name(self, username: str) -> UserRecord | None:
        rows = self._read("read a user", sa.select(users).where(users.c.username == username))
        return UserRecord.from_row(rows[0]) if rows else None

    def user(self, user_id: int) -> UserRecord | None:
        rows = self._read("read a user", sa.select(users).where(users.c.id == user_id))
        return UserRecord.from_row(rows[0]) if rows else None

    def all_users(self) -> list[UserRecord]:
        rows = self._read("list users", sa.select(users).order_by(users.c.workspace_id, users.c.username))
        return [UserRecord.from_row(r) for r in rows]

    def users_of(self, workspace: int) -> list[UserRecord]:
        rows = self._read("list users", sa.select(users).where(users.c.workspace_id == workspace)
                          .order_by(users.c.username))
        return [UserRecord.from_row(r) for r in rows]

    # workspaces

    def create_workspace(self, name: str, *, now: datetime) -> int:
        self._write(f"create workspace {name!r}", workspaces.insert().values(name=name, created_at=now))
        found = self.workspace_id(name)
        if found is None:  # pragma: no cover - just written in the same database
            raise StoreUnavailable(f"cannot read back workspace {name!r}")
        return found

    def workspace_id(self, name: str) -> int | None:
        rows = self._read("read a workspace", sa.select(workspaces.c.id).where(workspaces.c.name == name))
        return int(rows[0][0]) if rows else None

    def workspace_name(self, workspace: int) -> str | None:
        rows = self._read("read a workspace", sa.select(workspaces.c.name).where(workspaces.c.id == workspace))
        return str(rows[0][0]) if rows else None

    def record_failure(self, user_id: int, failures: int, locked_until: datetime | None) -> None:
        self._write("record a failed sign-in", users.update().where(users.c.id == user_id).values(
            failed_logins=failures, locked_until=locked_until))

    def reset_failures(self, user_id: int) -> None:
        self._write("record a sign-in", users.update().where(users.c.id == user_id).values(
            failed_logins=0, locked_until=None))

    # sessions

    def create_session(self, token_hash: str, user_id: int, *, now: datetime, expires_at: datetime) -> None:
        self._write("start a session", sessions.insert().values(
            token_hash=token_hash, user_id=user_id, created_at=now, expires_at=expires_at))

    def session_user(self, token_hash: str, *, now: datetime) -> UserRecord | None:
        query = (sa.select(users).join(sessions, sessions.c.user_id == users.c.id)
                 .where(sessions.c.token_hash == token_hash, sessions.c.expires_at > now))
        rows = self._read("read a session", query)
        return UserRecord.from_row(rows[0]) if rows else None

    def end_session(self, token_hash: str) -> None:
        self._write("end a session", sessions.delete().where(sessions.c.token_hash == token_hash))

    # API tokens

    def create_token(self, user_id: int, name: str, token_hash: str, role: str, *, now: datetime) -> ApiTokenRecord:
        self._write("create an API token", api_tokens.insert().values(
            user_id=user_id, name=name, token_hash=token_hash, role=role, created_at=now, last_used_at=None))
        rows = self._read("read an API token", sa.select(api_tokens).where(api_tokens.c.token_hash == token_hash))
        return ApiTokenRecord.from_row(rows[0])

    def token_user(self, token_hash: str, *, now: datetime) -> tuple[ApiTokenRecord, UserRecord] | None:
        query = (sa.select(api_tokens, users.c.username, users.c.password_hash, users.c.role.label("user_role"),
                           users.c.failed_logins, users.c.locked_until, users.c.created_at.label("user_created"),
                           users.c.workspace_id)
                 .join(users, users.c.id == api_tokens.c.user_id)
                 .where(api_tokens.c.token_hash == token_hash))
        rows = self._read("read an API token", query)
        if not rows:
            return None
        m = rows[0]._mapping
        token = ApiTokenRecord.from_row(rows[0])
        user = UserRecord(id=m["user_id"], username=m["username"], password_hash=m["password_hash"],
                          role=m["user_role"], failed_logins=m["failed_logins"],
                          locked_until=_aware(m["locked_until"]), created_at=_aware(m["user_created"]) or now,
                          workspace_id=m["workspace_id"])
        self._write("mark an API token used", api_tokens.update().where(api_tokens.c.id == token.id).values(
            last_used_at=now))
        return token, user

    def tokens(self, user_id: int) -> list[ApiTokenRecord]:
        rows = self._read("list API tokens", sa.select(api_tokens).where(api_tokens.c.user_id == user_id)
                          .order_by(api_tokens.c.id))
        return [ApiTokenRecord.from_row(r) for r in rows]

    def delete_token(self, user_id: int, token_id: int) -> bool:
        """False when there is no such token OF THIS USER: another user's token is not found."""
        (result,) = self._write("delete an API token", api_tokens.delete().where(
            api_tokens.c.id == token_id, api_tokens.c.user_id == user_id))
        return result.rowcount > 0
