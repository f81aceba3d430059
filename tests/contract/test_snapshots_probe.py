"""Scope probing finds exactly the scopes a key holds and writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from snapbridge.connectors.snapshots import PROBES, SnapshotsClient, probe_scopes
from snapbridge.errors import AuthFailed, Retryable
from snapbridge.http import create_client
from snapbridge.runtime import check_connection
from snapbridge.sandbox import Sandboxes
from snapbridge.security import Secret

ALL = set(PROBES)


@pytest.fixture
async def http(sandboxes: Sandboxes) -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(sandboxes.snapshots_url, allowed_hosts=("127.0.0.1",)) as client:
        yield client


@pytest.mark.parametrize("held", [ALL, ALL - {"saas/location.read"}, {"events.write"},
                                  {"customers.write", "saas/location.write"}, set()])
async def test_probe_reports_exactly_the_scopes_held(
    sandboxes: Sandboxes, http: httpx.AsyncClient, held: set[str]
) -> None:
    key = sandboxes.snapshots.create_key(sorted(held))
    before = len([e for e in sandboxes.snapshots.journal.entries() if e.status < 300 and e.method != "GET"])
    found = await probe_scopes(SnapshotsClient(http, Secret(key.key), base_url=sandboxes.snapshots_url))
    assert {scope for scope, ok in found.items() if ok} == held
    assert set(found) == ALL
    after = len([e for e in sandboxes.snapshots.journal.entries() if e.status < 300 and e.method != "GET"])
    assert after == before, "a scope probe wrote something"


async def test_an_unknown_key_is_refused_not_reported_as_holding_no_scopes(
    sandboxes: Sandboxes, http: httpx.AsyncClient
) -> None:
    unknown = Secret("pit-not-a-key-" + "0" * 20)
    with pytest.raises(AuthFailed):
        await probe_scopes(SnapshotsClient(http, unknown, base_url=sandboxes.snapshots_url))
    # The connection check says so in plain words: refused, not "missing scopes".
    with pytest.raises(AuthFailed):
        await check_connection("snapshots", sandboxes.snapshots_url, unknown, allowed_hosts=("127.0.0.1",))


@pytest.mark.parametrize("outage", ["unreachable", "every answer 503"])
async def test_an_outage_is_an_outage_not_a_key_without_scopes(
    sandboxes: Sandboxes, http: httpx.AsyncClient, outage: str
) -> None:
    key = Secret(sandboxes.snapshots.create_key(sorted(ALL)).key)
    if outage == "unreachable":
        async with create_client("http://127.0.0.1:1", allowed_hosts=("127.0.0.1",)) as nowhere:
            with pytest.raises(Retryable):
                await probe_scopes(SnapshotsClient(nowhere, key, base_url="http://127.0.0.1:1"))
        return
    sandboxes.snapshots.set_faults(error_rate=1.0, error_statuses=[503])
    try:
        with pytest.raises(Retryable):
            await probe_scopes(SnapshotsClient(http, key, base_url=sandboxes.snapshots_url))
    finally:
        sandboxes.snapshots.clear_faults()
