"""Dashboard and API authentication, pure: argon2 password hashes, hashed tokens, CSRF tokens, lockout rules."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from snapbridge.errors import InvalidInput

__all__ = [
    "API_TOKEN_PREFIX",
    "AddressThrottle",
    "LockoutPolicy",
    "MIN_PASSWORD_LENGTH",
    "Passwords",
    "Role",
    "check_new_password",
    "check_username",
    "csrf_token",
    "csrf_valid",
    "new_api_token",
    "new_session_token",
    "token_digest",
]

API_TOKEN_PREFIX = "sbt_"  # noqa: S105  (a visible prefix, so leaked tokens are easy to spot)
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; a cap keeps one sign-in from costing a megabyte hash


class Role(StrEnum):
    ADMIN = "admin"  # may change things
    VIEWER = "viewer"  # may only read


class Passwords:
    """argon2id hashing (memory-hard). Tests may pass cheaper parameters; the defaults are argon2-cffi's."""

    def __init__(self, *, time_cost: int = 3, memory_cost_kib: int = 65536, parallelism: int = 4) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism)
        # Unknown user names are checked against this hash, so a sign-in takes as long either way.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True if `password` matches; with no stored hash, spends the same time and answers False."""
        if len(password) > MAX_PASSWORD_LENGTH:
            return False
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def check_username(name: str) -> str:
    cleaned = name.strip()
    if not 1 <= len(cleaned) <= 100 or not all(c.isalnum() or c in "._-@" for c in cleaned):
        raise InvalidInput("a user name is 1 to 100 letters, digits or . _ - @")
    return cleaned


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    return password


def token_digest(token: str) -> str:
    """What the store keeps of a session or API token: tokens are random, so a plain SHA-256 suffices."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(session_token: str, key: bytes) -> str:
    """Bound to the session, so a token from another session (or none) never passes."""
    return hmac.new(key, b"csrf:" + session_token.encode("utf-8"), hashlib.sha256).hexdigest()


def csrf_valid(session_token: str, key: bytes, offered: str | None) -> bool:
    return bool(offered) and hmac.compare_digest(csrf_token(session_token, key), str(offered))


@dataclass(frozen=True)
class LockoutPolicy:
    """After `max_failures` wrong passwords in a row, the account is locked for `lock_for`."""

    max_failures: int = 5
    lock_for: timedelta = timedelta(minutes=15)

    def after_failure(self, failures_before: int, now: datetime) -> tuple[int, datetime | None]:
        """The new failure count and, once the limit is reached, when the lock ends."""
        failures = failures_before + 1
        return failures, (now + self.lock_for if failures >= self.max_failures else None)

    @staticmethod
    def is_locked(locked_until: datetime | None, now: datetime) -> bool:
        return locked_until is not None and now < locked_until


@dataclass
class AddressThrottle:
    """Failed sign-ins per client address: past `max_failures` within `window`, that address waits until the
    oldest failure leaves the window. The account lockout stops guessing one account's password; this stops one
    address guessing across many accounts. Kept in memory, per process; at most `max_addresses` are tracked
    (the oldest forgotten first), so a flood of addresses cannot grow it without bound."""

    max_failures: int = 20
    window: timedelta = timedelta(minutes=10)
    max_addresses: int = 10_000
    _failures: dict[str, deque[datetime]] = field(default_factory=dict, repr=False)

    def wait_seconds(self, address: str, now: datetime) -> int:
        """0 if `address` may try now, else whole seconds until it may."""
        times = self._failures.get(address)
        if times is None:
            return 0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return 0
        if len(times) < self.max_failures:
            return 0
        return max(1, int((times[0] + self.window - now).total_seconds() + 0.999))

    def failed(self, address: str, now: datetime) -> None:
        times = self._failures.pop(address, None) or deque(maxlen=self.max_failures)
        times.append(now)
        self._failures[address] = times  # re-inserted: dict order is least recently failed first
        while len(self._failures) > self.max_addresses:
            del self._failures[next(iter(self._failures))]
