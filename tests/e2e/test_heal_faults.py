"""Healing and backfill under a hostile API: pages sharing one second, transient failures mid-walk, page cursors
that come back, timestamps in the future, a poll racing a webhook. Private sandboxes served over real HTTP, each
behind a switchboard that can replace an answer (the sandboxes have no such faults for these endpoints)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import sqlalchemy as sa
from test_pipeline_support import wait_for
from test_pollers import all_events

from snapbridge.connectors.gumroad import GumroadClient
from snapbridge.connectors.snapshots import LocationChanges, LocationCreate, SnapshotsClient
from snapbridge.errors import DeliveryError, Retryable, SnapbridgeError
from snapbridge.http import create_client
from snapbridge.runtime import GumroadSalesPoller, SnapshotsLocationsPoller, backfill_gumroad
from snapbridge.runtime.pollers import PageRetry, sale_inbound_events
from snapbridge.sandbox import GumroadSandbox, ServerThread, SnapshotsSandbox
from snapbridge.security import Secret
from snapbridge.store import Store

CONNECTION = "gumroad"
LOOPBACK = ("127.0.0.1",)
# Fast enough for a test, the same decisions as the default policy.
QUICK = PageRetry(attempts=4, base_delay=timedelta(milliseconds=5), max_delay=timedelta(milliseconds=20))


# ---- a switchboard in front of a sandbox ----------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the switchboard saw it, with the sandbox's answer (body parsed when it is JSON)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    body: Any


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


def as_json(body: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(body).encode())


Rule = Callable[[Seen], Answer | None]
Asgi = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class Switchboard:
    """An ASGI app in front of a sandbox app: every HTTP answer is shown to `rule`, which may replace it."""

    def __init__(self, app: Asgi) -> None:
        self.app = app
        self.rule: Rule | None = None
        self.seen: list[Seen] = []

    def requests(self, path: str) -> int:
        """GETs of `path` so far."""
        return sum(1 for s in self.seen if s.method == "GET" and s.path.endswith(path))

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def keep(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, keep)
        raw = b"".join(chunks)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        query = dict(parse_qsl(scope["query_string"].decode()))
        seen = Seen(scope["method"], scope["path"], query, start["status"], body)
        self.seen.append(seen)
        answer = self.rule(seen) if self.rule is not None else None
        if answer is None:
            status = start["status"]
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        else:
            status, raw = answer.status, answer.body
            headers = [(k.encode(), v.encode()) for k, v in answer.headers.items()]
        headers.append((b"content-length", str(len(raw)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": raw})


class Clock:
    """The Gumroad sandbox's clock: real time unless frozen."""

    def __init__(self) -> None:
        self.frozen: datetime | None = None

    def __call__(self) -> datetime:
        return self.frozen or datetime.now(UTC)


@dataclass
class Gumroad:
    sandbox: GumroadSandbox
    board: Switchboard
    clock: Clock
    url: str

    def purchase(self, **params: Any) -> str:
        sale_id: str = self.sandbox.emit("first_purchase", params)["sale_id"]
        return sale_id


@pytest.fixture
def gumroad() -> Iterator[Gumroad]:
    clock = Clock()
    sandbox = GumroadSandbox(seed=41, time_factor=0.001, clock=clock)
    board = Switchboard(sandbox.app)
    server = ServerThread(board).start()
    sandbox.base_url = server.base_url
    try:
        yield Gumroad(sandbox, board, clock, server.base_url)
    finally:
        server.stop()


@pytest.fixture
async def client(gumroad: Gumroad) -> AsyncIterator[GumroadClient]:
    async with create_client(gumroad.url, allowed_hosts=LOOPBACK) as http:
        yield GumroadClient(http, Secret(gumroad.sandbox.access_token), base_url=gumroad.url)


@dataclass
class Snapshots:
    board: Switchboard
    client: SnapshotsClient


@pytest.fixture
async def snapshots() -> AsyncIterator[Snapshots]:
    sandbox = SnapshotsSandbox(seed=43, time_factor=0.001)
    board = Switchboard(sandbox.app)
    server = ServerThread(board).start()
    key = sandbox.create_key(["saas/location.read", "saas/location.write"], burst_limit=100_000)
    try:
        async with create_client(server.base_url, allowed_hosts=LOOPBACK) as http:
            yield Snapshots(board, SnapshotsClient(http, Secret(key.key), base_url=server.base_url))
    finally:
        server.stop()


def sale_ids(store: Store) -> list[str]:
    return [str(e.payload["sale_id"]) for e in all_events(store) if e.kind == "sale"]


def listed_ids(gumroad: Gumroad) -> set[str]:
    return {s.id for s in gumroad.sandbox.state.listed_sales()}


# ---- pages ----------------------------------------------------------------------------------------------------


async def test_sales_sharing_one_second_across_pages_are_each_read_once(store: Store, gumroad: Gumroad,
                                                                        client: GumroadClient) -> None:
    gumroad.clock.frozen = datetime.now(UTC).replace(microsecond=0)
    same_second = {gumroad.purchase() for _ in range(25)}  # three pages of ten, all stamped alike
    before = gumroad.board.requests("/v2/sales")
    report = await GumroadSalesPoller(store, client, connection=CONNECTION).poll_once()
    assert gumroad.board.requests("/v2/sales") - before >= 3
    polled = sale_ids(store)
    assert same_second <= set(polled) and len(polled) == len(set(polled)) == report.read - report.duplicates \
        - sum(1 for e in all_events(store) if e.kind != "sale")
    done = await backfill_gumroad(store, client, connection=CONNECTION, since=gumroad.clock().date(),
                                  window_days=1)
    assert done.inserted == 0 and done.sales >= 25 and sorted(sale_ids(store)) == sorted(polled)


def failing(statuses: dict[int, Answer], path: str = "/v2/sales") -> Rule:
    """Answer the n-th request to `path` (counting from 1) with statuses[n]."""
    count = 0

    def rule(seen: Seen) -> Answer | None:
        nonlocal count
        if not seen.path.endswith(path):
            return None
        count += 1
        return statuses.get(count)

    return rule


BAD_GATEWAY = Answer(502, b"<html>502 Bad Gateway</html>", {"content-type": "text/html"})
THROTTLED = Answer(429, b"Retry later\n", {"content-type": "text/plain", "retry-after": "0"})


async def test_a_502_and_a_429_mid_backfill_are_retried_and_nothing_is_lost(store: Store, gumroad: Gumroad,
                                                                            client: GumroadClient) -> None:
    everything = listed_ids(gumroad)
    since = min(s.created_at for s in gumroad.sandbox.state.listed_sales()).date()
    gumroad.board.rule = failing({3: BAD_GATEWAY, 4: THROTTLED, 9: BAD_GATEWAY})
    report = await backfill_gumroad(store, client, connection=CONNECTION, since=since, window_days=30,
                                    retry=QUICK)
    assert [s.status for s in gumroad.board.seen[2:4]] == [200, 200]  # the sandbox answered; the board did not
    assert set(sale_ids(store)) == everything and report.sales == len(everything)
    assert report.duplicates == 0


async def test_an_api_that_stays_down_fails_the_backfill_with_its_error(store: Store, gumroad: Gumroad,
                                                                        client: GumroadClient) -> None:
    since = min(s.created_at for s in gumroad.sandbox.state.listed_sales()).date()
    gumroad.board.rule = failing({n: BAD_GATEWAY for n in range(2, 100)})
    with pytest.raises(Retryable, match="502"):
        await backfill_gumroad(store, client, connection=CONNECTION, since=since, window_days=30, retry=QUICK)
    assert gumroad.board.requests("/v2/sales") <= 1 + 2 * QUICK.attempts  # two windows in flight at most


async def test_a_poll_retries_a_page_that_failed_once(store: Store, gumroad: Gumroad,
                                                      client: GumroadClient) -> None:
    sale = gumroad.purchase()
    gumroad.board.rule = failing({1: THROTTLED})
    report = await GumroadSalesPoller(store, client, connection=CONNECTION, retry=QUICK).poll_once()
    assert sale in sale_ids(store) and report.cursor is not None


async def test_a_sales_page_key_that_comes_back_stops_the_walk(store: Store, gumroad: Gumroad,
                                                               client: GumroadClient) -> None:
    """Page 3 names page 2's key again: A → B → A → B … must end with an error, not run forever."""
    keys: list[str] = []

    def cycle(seen: Seen) -> Answer | None:
        if not seen.path.endswith("/v2/sales") or not isinstance(seen.body, dict):
            return None
        if "next_page_key" in seen.body and len(keys) < 2:
            keys.append(seen.body["next_page_key"])
        if len(keys) == 2 and seen.query.get("page_key") == keys[1]:
            url = str(seen.body["next_page_url"]).replace(keys[1] if keys[1] in seen.body["next_page_url"]
                                                          else "\0", keys[0])
            return as_json({**seen.body, "next_page_key": keys[0], "next_page_url": url})
        return None

    gumroad.board.rule = cycle
    since = min(s.created_at for s in gumroad.sandbox.state.listed_sales()).date()
    with pytest.raises(DeliveryError, match="page"):
        await asyncio.wait_for(backfill_gumroad(store, client, connection=CONNECTION, since=since,
                                                window_days=400), timeout=20)
    assert gumroad.board.requests("/v2/sales") < 10


async def test_a_locations_cursor_that_comes_back_stops_the_poll(store: Store, snapshots: Snapshots) -> None:
    tag = uuid.uuid4().hex[:8]
    for n in range(45):  # three pages of twenty
        await snapshots.client.create_location(
            LocationCreate(name=f"Shop {n}", timezone="UTC", external_id=f"cycle-{tag}-{n}"),
            idempotency_key=f"cycle-{tag}-{n}")
    cursors: list[str] = []

    def cycle(seen: Seen) -> Answer | None:
        if seen.method != "GET" or not seen.path.endswith("/locations") or not isinstance(seen.body, dict):
            return None
        given = seen.body["meta"]["startAfterId"]
        if given and len(cursors) < 2:
            cursors.append(given)
        if len(cursors) == 2 and seen.query.get("startAfterId") == cursors[1]:
            return as_json({**seen.body, "meta": {**seen.body["meta"], "startAfterId": cursors[0]}})
        return None

    snapshots.board.rule = cycle
    poller = SnapshotsLocationsPoller(store, snapshots.client, connection="snapshots")
    with pytest.raises(SnapbridgeError):
        await asyncio.wait_for(poller.poll_once(), timeout=20)
    assert snapshots.board.requests("/locations") < 10
    assert store.get_cursor(poller.name) is None and all_events(store) == []


# ---- clocks ---------------------------------------------------------------------------------------------------


def stamped_in_2099(path: str, items: str, field_name: str) -> Rule:
    """The first listing answer's first item claims a time far in the future (a bad clock, a bad import)."""
    done = False

    def rule(seen: Seen) -> Answer | None:
        nonlocal done
        if done or seen.method != "GET" or not seen.path.endswith(path) or not isinstance(seen.body, dict) \
                or not seen.body.get(items):
            return None
        done = True
        first = {**seen.body[items][0], field_name: "2099-01-01T00:00:00Z"}
        return as_json({**seen.body, items: [first, *seen.body[items][1:]]})

    return rule


async def test_a_sale_stamped_in_the_future_does_not_blind_the_poller(store: Store, gumroad: Gumroad,
                                                                      client: GumroadClient) -> None:
    gumroad.purchase()
    gumroad.board.rule = stamped_in_2099("/v2/sales", "sales", "created_at")
    poller = GumroadSalesPoller(store, client, connection=CONNECTION)
    await poller.poll_once()
    later = gumroad.purchase()
    await poller.poll_once()
    assert later in sale_ids(store)  # the window starts where the cursor says
    cursor = store.get_cursor(poller.name)
    assert cursor is not None and datetime.fromisoformat(cursor) <= datetime.now(UTC)


async def test_a_cursor_stored_in_the_future_is_pulled_back_to_now(store: Store, gumroad: Gumroad,
                                                                    client: GumroadClient) -> None:
    poller = GumroadSalesPoller(store, client, connection=CONNECTION)
    with store.transaction() as tx:  # left by a version that took the API's clock at its word
        tx.set_cursor(poller.name, "2099-01-01T00:00:00+00:00", now=datetime.now(UTC))
    sale = gumroad.purchase()
    await poller.poll_once()
    assert sale in sale_ids(store)
    cursor = store.get_cursor(poller.name)
    assert cursor is not None and datetime.fromisoformat(cursor) <= datetime.now(UTC)


async def test_a_location_stamped_in_the_future_does_not_blind_the_poller(store: Store,
                                                                          snapshots: Snapshots) -> None:
    tag = uuid.uuid4().hex[:8]
    first = await snapshots.client.create_location(
        LocationCreate(name="Early", timezone="UTC", external_id=f"future-{tag}-1"), idempotency_key=f"{tag}-1")
    snapshots.board.rule = stamped_in_2099("/locations", "locations", "updated_at")
    poller = SnapshotsLocationsPoller(store, snapshots.client, connection="snapshots")
    await poller.poll_once()
    await snapshots.client.update_location(first.location_id, LocationChanges(tier="gold"),
                                           idempotency_key=f"{tag}-2")
    changed = await poller.poll_once()
    assert changed.inserted >= 1  # the update: the window starts where the cursor says
    cursor = store.get_cursor(poller.name)
    assert cursor is not None and datetime.fromisoformat(cursor) <= datetime.now(UTC)


# ---- a webhook and a poll at the same moment ------------------------------------------------------------------


async def test_a_poll_waiting_on_a_webhook_for_the_same_sale_stores_it_once(store: Store, gumroad: Gumroad,
                                                                            client: GumroadClient) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("row locks: the PostgreSQL case; SQLite has one writer at a time")
    sale = await client.get_sale(gumroad.purchase())
    [webhook_event] = [e for e in sale_inbound_events(sale, connection=CONNECTION, now=datetime.now(UTC))]
    holding, release = threading.Event(), threading.Event()

    def webhook_in_flight() -> None:  # the receiver's transaction: inserted, not yet committed
        with store.transaction() as tx:
            tx.insert_events([webhook_event])
            holding.set()
            release.wait(30)

    receiver = threading.Thread(target=webhook_in_flight)
    receiver.start()
    assert holding.wait(10)
    poll = asyncio.create_task(GumroadSalesPoller(store, client, connection=CONNECTION).poll_once())

    def poll_waits_on_the_row() -> bool:
        with store.engine.connect() as conn:
            return bool(conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).scalar())

    await asyncio.to_thread(wait_for, poll_waits_on_the_row, 10, "the poll to wait on the webhook's row")
    release.set()
    report = await asyncio.wait_for(poll, 20)
    await asyncio.to_thread(receiver.join, 10)
    assert report.duplicates >= 1 and sale_ids(store).count(sale.id) == 1



# ---- the retry policy, pure ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("retry_after", "failures", "expected"), [
    (None, 1, "wait"),       # a 502: back off
    (0.0, 3, "wait"),        # a 429 that says "now": still within the attempts
    (None, 6, None),         # the sixth failure of one page: give up
    (599.0, 1, "wait"),      # a Retry-After inside max_wait is honoured
    (3600.0, 1, None),       # an hour: say so now rather than hang
])
def test_page_retry_decisions(retry_after: float | None, failures: int, expected: str | None) -> None:
    policy = PageRetry(rand=lambda: 0.5)
    wait = policy(Retryable("busy", retry_after=retry_after, operation="gumroad.list_sales"), failures)
    if expected is None:
        assert wait is None
    else:
        assert wait is not None and wait >= (retry_after or 0.0) and wait <= max(retry_after or 0.0, 60.0)


async def test_a_location_listed_again_while_paging_counts_once_in_its_newest_version(
        store: Store, snapshots: Snapshots) -> None:
    tag = uuid.uuid4().hex[:8]
    for n in range(25):  # two pages of twenty
        await snapshots.client.create_location(
            LocationCreate(name=f"Shop {n}", timezone="UTC", external_id=f"moved-{tag}-{n}"),
            idempotency_key=f"moved-{tag}-{n}")
    first: dict[str, object] = {}

    def moved(seen: Seen) -> Answer | None:
        # The first location is updated while the listing is paged, so the second page lists it again.
        if seen.method != "GET" or not seen.path.endswith("/locations") or not isinstance(seen.body, dict):
            return None
        if not seen.query.get("startAfterId"):
            first.update(seen.body["locations"][0])
            return None
        again = {**first, "updated_at": "2030-01-01T00:00:00Z"}  # the clock check is another test's
        return as_json({**seen.body, "locations": [*seen.body["locations"], again]})

    snapshots.board.rule = moved
    poller = SnapshotsLocationsPoller(store, snapshots.client, connection="snapshots")
    report = await poller.poll_once()
    keys = [e.dedupe_key for e in all_events(store) if str(first["location_id"]) in e.dedupe_key]
    assert len(keys) == 1 and "2030" in keys[0]
    assert report.read == len({e.dedupe_key for e in all_events(store)})


# ---- `snapbridge sync gumroad` as a user runs it ----------------------------------------------------------------


def _snapbridge(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SNAPBRIDGE_")}
    environ.update({"SNAPBRIDGE_HOME": str(home), "SNAPBRIDGE_ALLOWED_HOSTS": "127.0.0.1"})
    done = subprocess.run([sys.executable, "-m", "snapbridge", *args], capture_output=True, text=True,
                          env=environ, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_sync_into_a_log_prints_dated_lines_and_on_failure_where_to_go_on(gumroad: Gumroad, tmp_path: Path) -> None:
    home = tmp_path / "home"
    connected = _snapbridge(home, "connect", "gumroad", "--access-token", gumroad.sandbox.access_token,
                            "--base-url", gumroad.url)
    assert connected.returncode == 0, connected.stderr
    since = (datetime.now(UTC) - timedelta(days=30)).date()
    whole = _snapbridge(home, "sync", "gumroad", "--since", since.isoformat())
    assert whole.returncode == 0, whole.stderr
    lines = whole.stderr.splitlines()
    # Not a terminal: one line per window reached, each dated, and no progress bar redrawn into the log.
    assert lines and all(re.fullmatch(r"\d{4}-\d\d-\d\d: \d+ sales read, \d+ new", line) for line in lines), lines
    assert "new events" in whole.stdout

    listed = 0

    def refuse_after_two_pages(seen: Seen) -> Answer | None:
        nonlocal listed
        if seen.method != "GET" or not seen.path.endswith("/sales"):
            return None
        listed += 1
        return as_json({"success": False, "message": "The access token is invalid"}, 401) if listed > 2 else None

    gumroad.board.rule = refuse_after_two_pages
    failed = _snapbridge(home, "sync", "gumroad", "--since", since.isoformat())
    assert failed.returncode == 1
    hint = re.search(r"stored every sale before (\S+); go on with `snapbridge sync gumroad --since (\S+)`",
                     failed.stderr)
    assert hint and hint.group(1) == hint.group(2) and since.isoformat() < hint.group(1), failed.stderr
    assert failed.stderr.strip().splitlines()[-1].startswith("error: ")
