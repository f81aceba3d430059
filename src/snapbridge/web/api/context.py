"""What the API and the dashboard share: the web context, who is asking (Principal), and sign-in rules."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from starlette.requests import Request

from snapbridge.config import Settings
from snapbridge.security import (
    AddressThrottle,
    LockoutPolicy,
    Passwords,
    Role,
    Vault,
    check_new_password,
    check_username,
    csrf_token,
    csrf_valid,
    new_session_token,
    token_digest,
)
from snapbridge.store import DEFAULT_WORKSPACE, ConnectionStore, Store, UserRecord, UserStore

# argon2 costs ~64 MiB and tens of milliseconds per hash: at most this many run at once, on their own threads
# (never on the event loop, where they would hold every webhook answer), and past this many waiting a
# sign-in is told to come back rather than queued without bound.
PASSWORD_THREADS = 2
MAX_PASSWORD_WAITING = 16

T = TypeVar("T")

__all__ = ["SESSION_COOKIE", "ApiProblem", "Principal", "WebContext"]

SESSION_COOKIE = "sb_session"
CSRF_HEADER = "x-csrf-token"


class ApiProblem(Exception):
    """An answer other than success, with its status: raised by handlers, turned into JSON or a page."""

    def __init__(self, status: int, message: str, problems: list[dict[str, str]] | None = None, *,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user (session) or an API token, with the role that applies."""

    user_id: int
    username: str
    role: Role
    workspace_id: int
    session_token: str | None = field(default=None, repr=False)  # None for an API token

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class WebContext:
    settings: Settings
    store: Store
    users: UserStore
    connections: ConnectionStore | None = None
    vault: Vault | None = None
    passwords: Passwords = field(default_factory=Passwords)
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    throttle: AddressThrottle = field(default_factory=AddressThrottle)
    session_lifetime: timedelta = timedelta(hours=12)
    csrf_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    clock: Callable[[], datetime] = _utc_now
    on_connections_changed: Callable[[], object] | None = None
    _password_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(PASSWORD_THREADS, thread_name_prefix="passwords"), repr=False)
    _password_waiting: int = field(default=0, repr=False)

    @property
    def passwords_in_flight(self) -> int:
        """Password checks running or waiting for a password thread."""
        return self._password_waiting

    async def password_work(self, work: Callable[[], T]) -> T:
        """`work` (which hashes or verifies a password, e.g. `create_user`) on the password threads."""
        if self._password_waiting >= MAX_PASSWORD_WAITING:
            raise ApiProblem(503, "too many sign-ins at once; try again in a moment", retry_after=1)
        self._password_waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._password_pool, work)
        finally:
            self._password_waiting -= 1

    # who is asking

    def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            found = self.users.token_user(token_digest(header[7:].strip()), now=self.clock())
            if found is None:
                return None
            token, user = found
            # A token never has more power than its user has now.
            role = Role.ADMIN if token.role == Role.ADMIN and user.role == Role.ADMIN else Role.VIEWER
            return Principal(user.id, user.username, role, user.workspace_id)
        session = request.cookies.get(SESSION_COOKIE)
        if not session:
            return None
        signed_in = self.users.session_user(token_digest(session), now=self.clock())
        if signed_in is None:
            return None
        return Principal(signed_in.id, signed_in.username, Role(signed_in.role), signed_in.workspace_id, session)

    def csrf_for(self, principal: Principal) -> str:
        return csrf_token(principal.session_token, self.csrf_key) if principal.session_token else ""

    def csrf_ok(self, principal: Principal, offered: str | None) -> bool:
        """API tokens carry no ambient authority, so only cookie sessions need the CSRF token."""
        if principal.session_token is None:
            return True
        return csrf_valid(principal.session_token, self.csrf_key, offered)

    # first run and sign-in

    def needs_setup(self) -> bool:
        return self.users.count_users() == 0

    def create_first_admin(self, username: str, password: str) -> UserRecord:
        """The first admin, or ApiProblem 409 once any user exists (also when two first-run forms race)."""
        if not self.needs_setup():
            raise ApiProblem(409, "an admin already exists; sign in instead")
        name = check_username(username)
        hashed = self.passwords.hash(check_new_password(password))
        created = self.users.create_first_user(name, hashed, Role.ADMIN, now=self.clock())
        if created is None:
            raise ApiProblem(409, "an admin already exists; sign in instead")
        return created

    def create_user(self, username: str, password: str, role: Role, *, workspace: int = DEFAULT_WORKSPACE
                    ) -> UserRecord:
        name = check_username(username)
        taken = self.users.name_taken(name)
        if taken is not None:
            raise ApiProblem(409, f"the user name {name!r} is taken" + (f" (as {taken!r})" if taken != name else ""))
        return self.users.create_user(name, self.passwords.hash(check_new_password(password)), role,
                                      now=self.clock(), workspace=workspace)

    async def sign_in_from(self, address: str, username: str, password: str) -> str:
        """`sign_in` for a client at `address`, which is refused (429) for a while after too many failures."""
        wait = self.throttle.wait_seconds(address, self.clock())
        if wait:
            raise ApiProblem(429, f"too many failed sign-ins from your address; try again in {wait} s",
                             retry_after=wait)
        try:
            return await self.password_work(lambda: self.sign_in(username, password))
        except ApiProblem as exc:
            if exc.status == 401:
                self.throttle.failed(address, self.clock())
            raise

    def sign_in(self, username: str, password: str) -> str:
        """A new session token, or ApiProblem 401 (wrong name or password) / 423 (locked). It blocks for the
        password check: call `sign_in_from` on the event loop."""
        now = self.clock()
        user = self.users.user_by_name(username.strip())
        if user is not None and self.lockout.is_locked(user.locked_until, now):
            raise ApiProblem(423, "too many failed sign-ins; this account is locked for a while")
        if not self.passwords.verify(user.password_hash if user else None, password) or user is None:
            if user is not None:
                failures, until = self.lockout.after_failure(user.failed_logins, now)
                self.users.record_failure(user.id, failures, until)
            raise ApiProblem(401, "wrong user name or password")
        self.users.reset_failures(user.id)
        token = new_session_token()
        self.users.create_session(token_digest(token), user.id, now=now, expires_at=now + self.session_lifetime)
        return token

    def sign_out(self, principal: Principal) -> None:
        if principal.session_token:
            self.users.end_session(token_digest(principal.session_token))
