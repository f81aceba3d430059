"""Pure auth rules: argon2 hashes, token digests, CSRF binding, lockout thresholds, input checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from snapbridge.errors import InvalidInput
from snapbridge.security import (
    AddressThrottle,
    LockoutPolicy,
    Passwords,
    check_new_password,
    check_username,
    csrf_token,
    csrf_valid,
    new_api_token,
    token_digest,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)
CHEAP = Passwords(time_cost=1, memory_cost_kib=1024, parallelism=1)


def test_passwords_are_argon2id_and_verify() -> None:
    hashed = CHEAP.hash("correct horse battery")
    assert hashed.startswith("$argon2id$") and "correct" not in hashed
    assert CHEAP.verify(hashed, "correct horse battery")
    assert not CHEAP.verify(hashed, "wrong horse battery")
    assert not CHEAP.verify(None, "anything at all")
    assert not CHEAP.verify("not-a-hash", "anything at all")


@pytest.mark.parametrize(("failures_before", "locked"), [(0, False), (3, False), (4, True), (9, True)])
def test_lockout_starts_at_the_fifth_failure(failures_before: int, locked: bool) -> None:
    policy = LockoutPolicy(max_failures=5, lock_for=timedelta(minutes=15))
    failures, until = policy.after_failure(failures_before, NOW)
    assert failures == failures_before + 1
    assert (until is not None) is locked
    if until is not None:
        assert policy.is_locked(until, NOW + timedelta(minutes=14))
        assert not policy.is_locked(until, NOW + timedelta(minutes=15))


def test_csrf_tokens_are_bound_to_the_session_and_key() -> None:
    key = b"k" * 32
    token = csrf_token("session-a", key)
    assert csrf_valid("session-a", key, token)
    assert not csrf_valid("session-b", key, token)
    assert not csrf_valid("session-a", b"x" * 32, token)
    assert not csrf_valid("session-a", key, None)
    assert not csrf_valid("session-a", key, "")


def test_api_tokens_are_random_and_stored_as_digests() -> None:
    first, second = new_api_token(), new_api_token()
    assert first != second and first.startswith("sbt_")
    assert token_digest(first) != first and len(token_digest(first)) == 64


@pytest.mark.parametrize(("name", "ok"), [("ada", True), (" ada@x.io ", True), ("", False), ("a b", False),
                                          ("x" * 101, False), ("<script>", False)])
def test_usernames(name: str, ok: bool) -> None:
    if ok:
        assert check_username(name) == name.strip()
    else:
        with pytest.raises(InvalidInput):
            check_username(name)


@pytest.mark.parametrize(("password", "ok"), [("x" * 9, False), ("x" * 10, True), ("x" * 1024, True),
                                              ("x" * 1025, False)])
def test_password_length_limits(password: str, ok: bool) -> None:
    if ok:
        assert check_new_password(password) == password
    else:
        with pytest.raises(InvalidInput):
            check_new_password(password)


def test_an_address_waits_after_too_many_failures_until_the_oldest_leaves_the_window() -> None:
    throttle = AddressThrottle(max_failures=3, window=timedelta(minutes=10))
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    for minute in range(3):
        assert throttle.wait_seconds("10.0.0.1", t0 + timedelta(minutes=minute)) == 0
        throttle.failed("10.0.0.1", t0 + timedelta(minutes=minute))
    assert throttle.wait_seconds("10.0.0.1", t0 + timedelta(minutes=3)) == 7 * 60
    assert throttle.wait_seconds("10.0.0.2", t0 + timedelta(minutes=3)) == 0  # only that address
    assert throttle.wait_seconds("10.0.0.1", t0 + timedelta(minutes=10)) == 0  # the first failure has aged out
    assert throttle.wait_seconds("10.0.0.1", t0 + timedelta(minutes=30)) == 0


def test_the_throttle_tracks_a_bounded_number_of_addresses() -> None:
    throttle = AddressThrottle(max_failures=1, max_addresses=100)
    now = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", now)
    assert throttle.wait_seconds("10.0.3.231", now) > 0  # the latest are kept
    assert throttle.wait_seconds("10.0.0.0", now) == 0  # the oldest forgotten
    assert sum(throttle.wait_seconds(f"10.0.{i // 256}.{i % 256}", now) > 0 for i in range(1000)) == 100
