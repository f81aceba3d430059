"""Helpers for the Snapshots sandbox tests: a private server, request headers, waiting on a condition."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from snapbridge.sandbox import ServerThread, SnapshotsSandbox
from snapbridge.sandbox.snapshots import SandboxKey

VERSION = "2021-07-28"
ALL_SCOPES = frozenset({
    "saas/location.read", "saas/location.write", "events.write", "events.readonly",
    "customers.write", "customers.readonly",
})
RATE_HEADERS = (
    "X-RateLimit-Max",
    "X-RateLimit-Remaining",
    "X-RateLimit-Interval-Milliseconds",
    "X-RateLimit-Limit-Daily",
    "X-RateLimit-Daily-Remaining",
)


@dataclass
class Served:
    sandbox: SnapshotsSandbox
    server: ServerThread

    @property
    def url(self) -> str:
        return self.server.base_url

    def roomy_key(self, scopes: frozenset[str] = ALL_SCOPES, company_id: str | None = None,
                  location_id: str | None = None) -> SandboxKey:
        """A key whose limits no test of ordinary behaviour can reach."""
        return self.sandbox.create_key(scopes, company_id=company_id, location_id=location_id,
                                       burst_limit=1_000_000, daily_limit=10_000_000)


@contextmanager
def serving(seed: int = 1, time_factor: float = 1.0) -> Iterator[Served]:
    """A Snapshots sandbox of its own on loopback, so faults and limits never leak into other tests."""
    sandbox = SnapshotsSandbox(seed=seed, time_factor=time_factor)
    server = ServerThread(sandbox.app).start()
    sandbox.base_url = server.base_url
    try:
        yield Served(sandbox, server)
    finally:
        server.stop()


def auth(key: SandboxKey | str | None, **extra: str) -> dict[str, str]:
    """Bearer key and Version, as every call sends; more headers as keywords (underscores → dashes)."""
    headers = {"Version": VERSION}
    if key is not None:
        headers["Authorization"] = f"Bearer {key if isinstance(key, str) else key.key}"
    headers.update({name.replace("_", "-"): value for name, value in extra.items()})
    return headers


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll until the condition holds; fail after the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def assert_rate_headers(response: httpx.Response) -> None:
    for name in RATE_HEADERS:
        value = response.headers.get(name, "")
        assert value.isdigit(), f"{name} missing or not a number on a {response.status_code}"
