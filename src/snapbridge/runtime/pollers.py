"""Reconciliation pollers: Gumroad sales and Snapshots locations re-read from the APIs, so a missed webhook heals.

Each poller keeps a cursor (the newest timestamp it has seen) and re-reads a trailing window before it
(`overlap`, two days by default), because Gumroad lists sales by creation day only and cannot say what changed.
Everything read becomes an inbound event with the dedupe key its webhook would have had: a sale read here and
its `sale` ping are one event, never two, whichever arrives first. A poll reads everything first, then stores the
events oldest first in batches, each batch in one transaction with the cursor moved to its newest timestamp: a
poll that fails, or crashes half way through storing, leaves the cursor no later than any event it did not store,
and the next poll stores those again, the duplicates recognised by key. (One transaction per batch, not per poll,
keeps the write lock short: after a long outage a poll may store thousands of events while webhooks arrive.)

Cursors come from the API's timestamps but never pass our own clock: a sale or location stamped in the future
(a bad clock, a bad import) would otherwise start every later window after the sales still to come. A page
that fails transiently is asked for again (`PageRetry`) rather than failing the whole poll or backfill.

Sales that show a refund or dispute also yield `refund` / `dispute` / `dispute_won` events under the keys those
pings use, so the window heals missed refund and dispute webhooks too. Locations are keyed by id and
`updated_at`, as the receiver keys a location webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import httpx

from snapbridge.connectors.gumroad import (
    GumroadClient,
    GumroadConnectionOptions,
    ResourceName,
    refund_state_key,
    sale_dedupe_key,
)
from snapbridge.connectors.gumroad import Sale as ApiSale
from snapbridge.connectors.snapshots import Location as ApiLocation
from snapbridge.connectors.snapshots import SnapshotsClient, WebhookType
from snapbridge.errors import InvalidInput, Retryable, SnapbridgeError
from snapbridge.runtime.actions import Connections
from snapbridge.runtime.deriver import GumroadLink
from snapbridge.runtime.receiver import location_dedupe_key
from snapbridge.runtime.retry import GiveUp, decide
from snapbridge.security import Secret
from snapbridge.store import (
    ConnectionRecord,
    EventSource,
    InsertResult,
    NewInboundEvent,
    Store,
    Tx,
)

__all__ = [
    "ConnectionClients",
    "DEFAULT_OVERLAP",
    "GumroadSalesPoller",
    "PageRetry",
    "PollReport",
    "Poller",
    "SnapshotsLocationsPoller",
    "location_dedupe_key",
    "insert_in_order",
    "location_inbound_event",
    "run_pollers",
    "sale_inbound_events",
    "sale_payload",
]

log = logging.getLogger(__name__)

DEFAULT_OVERLAP = timedelta(days=2)
DEFAULT_BATCH = 500

# (events stored so far, events to store): called inside the transaction after every `batch_size` events.
Progress = Callable[[int, int], object]


@dataclass(frozen=True)
class PageRetry:
    """When a listing asks again for a page that failed transiently (network, 429, 5xx): after exponential
    backoff with full jitter, never sooner than the server's Retry-After, at most `attempts` times a page.

    A Retry-After past `max_wait` gives up at once: a backfill should say so, not hang for an hour.
    """

    attempts: int = 6
    base_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(seconds=60)
    max_wait: timedelta = timedelta(minutes=10)
    rand: Callable[[], float] = random.random

    def __call__(self, error: Retryable, failures: int) -> float | None:
        """Seconds to wait after the page's `failures`-th failure, or None to give up."""
        if failures >= self.attempts:
            return None
        now = datetime.now(UTC)
        verdict = decide(error, failures, now, self.rand, horizon=self.max_wait, base_delay=self.base_delay,
                         max_delay=self.max_delay)
        if isinstance(verdict, GiveUp):
            return None
        log.warning("action=page_retry operation=%s failures=%d wait_s=%.2f error=%s", error.operation, failures,
                    (verdict.at - now).total_seconds(), error)
        return (verdict.at - now).total_seconds()


DEFAULT_PAGE_RETRY = PageRetry()
# A poll runs again within an interval anyway, and the service waits for a poll in flight when it stops: a few
# quick tries only, and a long Retry-After fails the poll instead of holding up shutdown.
POLL_PAGE_RETRY = PageRetry(attempts=3, base_delay=timedelta(milliseconds=500), max_delay=timedelta(seconds=2),
                            max_wait=timedelta(seconds=5))


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- what a poll turns into -------------------------------------------------------------------------------------


def sale_payload(sale: ApiSale, resource: ResourceName = ResourceName.SALE) -> dict[str, object]:
    """The sale as a ping body (the fields the deriver reads), so polls and webhooks derive alike.

    The ping's `email` is the checkout email, which the API calls `purchase_email`; the API's `email` is the
    buyer's account email. Keys with no value are left out, as Gumroad leaves them out.
    """
    values: dict[str, object | None] = {
        "resource_name": resource.value, "sale_id": sale.id, "sale_timestamp": _stamp(sale.created_at),
        "order_number": sale.order_id, "seller_id": sale.seller_id, "product_id": sale.product_id,
        "product_name": sale.product_name, "product_permalink": sale.product_permalink,
        "email": sale.purchase_email or sale.email, "full_name": sale.full_name, "purchaser_id": sale.purchaser_id,
        "price": sale.price.cents, "gumroad_fee": sale.gumroad_fee.cents if sale.gumroad_fee else None,
        "currency": sale.product_currency, "quantity": sale.quantity, "refunded": sale.refunded,
        "disputed": sale.disputed, "dispute_won": sale.dispute_won, "subscription_id": sale.subscription_id,
        "is_recurring_charge": sale.recurring_charge, "variants": dict(sale.variants) or None,
        "custom_fields": dict(sale.custom_fields) or None,
        "offer_code": sale.offer_code.code if sale.offer_code else None, "license_key": sale.license_key,
        "referrer": sale.referrer or "", "country": sale.country, "country_iso2": sale.country_iso2,
        "is_gift_receiver_purchase": sale.is_gift_receiver_purchase,
        "is_preorder_authorization": sale.is_preorder_authorization,
    }
    return {key: value for key, value in values.items() if value is not None}


def _resources(sale: ApiSale) -> list[ResourceName]:
    found = [ResourceName.SALE]
    if sale.refunded or sale.partially_refunded:
        found.append(ResourceName.REFUND)
    if sale.disputed or sale.chargedback:
        found.append(ResourceName.DISPUTE)
    if sale.dispute_won:
        found.append(ResourceName.DISPUTE_WON)
    return found


def sale_inbound_events(sale: ApiSale, *, connection: str, now: datetime) -> list[NewInboundEvent]:
    """The inbound events a sale read from the API stands for, keyed exactly as their webhooks are."""
    return [NewInboundEvent(source=EventSource.POLLER, connection=connection, dedupe_key=_sale_key(sale, resource),
                            kind=resource.value, payload=sale_payload(sale, resource), received_at=now)
            for resource in _resources(sale)]


def _sale_key(sale: ApiSale, resource: ResourceName) -> str:
    """The key the receiver gives this resource's ping of the sale (`SaleEvent.dedupe_key`); for a partial refund,
    the key the deriver then gives it (`refund_state_key`).

    Made from the sale rather than by parsing its ping body back, which took two thirds of the time spent making
    a sale's events; tests/e2e/test_backfill_pipeline.py holds it equal to the parser's key for every resource
    and refund state.
    """
    partial = resource is ResourceName.REFUND and not sale.refunded  # as SaleEvent.partial_refund
    key = sale_dedupe_key(resource.value, sale.id, partial_refund=partial)
    return refund_state_key(key, sale) if partial else key


def location_inbound_event(location: ApiLocation, *, connection: str, now: datetime) -> NewInboundEvent:
    """A location read from the API as the webhook body the Snapshots API would have sent for it, keyed as the
    receiver keys that webhook (by the location's state), so whichever comes second is a duplicate."""
    created = location.updated_at is None or location.updated_at == location.created_at
    kind = WebhookType.LOCATION_CREATE if created else WebhookType.LOCATION_UPDATE
    key = location_dedupe_key(location)
    values: dict[str, object | None] = {
        "type": kind.value, "webhookId": f"poll:{key}", "timestamp": _stamp(location.updated_at or now),
        "companyId": location.company_id, "location_id": location.location_id, "name": location.name,
        "timezone": location.timezone, "email": location.email, "region": location.region,
        "onboarding_status": location.onboarding_status.value if location.onboarding_status else None,
        "tier": location.tier, "snapshot_id": location.snapshot_id, "external_id": location.external_id,
        # Full precision, as the API sent them: the payload read back keys and derives as the location did.
        "created_at": location.created_at.astimezone(UTC).isoformat() if location.created_at else None,
        "updated_at": location.updated_at.astimezone(UTC).isoformat() if location.updated_at else None,
    }
    payload = {k: v for k, v in values.items() if v is not None}
    return NewInboundEvent(source=EventSource.POLLER, connection=connection, dedupe_key=key, kind=kind.value,
                           payload=payload, received_at=now)


# ---- pollers ------------------------------------------------------------------------------------------------


def insert_in_order(tx: Tx, events: Sequence[NewInboundEvent]) -> list[InsertResult]:
    """Store events so their ids follow the order given (the deriver takes events by id).

    One multi-row statement in the order given (a 100,000-sale backfill made one round trip per event before).
    """
    return tx.insert_events(events, in_order=True)


@dataclass(frozen=True)
class PollReport:
    """One poll: how many events it read and stored, and the cursor it left (None: still none)."""

    poller: str
    read: int
    inserted: int
    duplicates: int
    cursor: str | None


class Poller(Protocol):
    name: str

    async def poll_once(self) -> PollReport: ...


def _parse_cursor(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        log.warning("action=cursor_unreadable cursor=%r", text)
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _CursorPoller:
    """What both pollers share: read everything in the window, then store events and cursor together."""

    name: str

    def __init__(self, store: Store, *, name: str, overlap: timedelta, batch_size: int,
                 clock: Callable[[], datetime] | None, on_progress: Progress | None) -> None:
        if overlap < timedelta(0):
            raise InvalidInput("the overlap window cannot be negative")
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
        self.name = name
        self._store = store
        self._overlap = overlap
        self._batch = batch_size
        self._clock = clock or (lambda: datetime.now(UTC))
        self._on_progress = on_progress

    async def _window(self) -> tuple[datetime, datetime | None, datetime]:
        """(start of the window to read, the stored cursor, now)."""
        now = self._clock()
        cursor = _parse_cursor(await asyncio.to_thread(self._store.get_cursor, self.name))
        # A cursor left in the future (stored before cursors were capped) must not skip what comes before it.
        return min(cursor or now, now) - self._overlap, cursor, now

    @staticmethod
    def _advance(cursor: datetime | None, stamps: Sequence[datetime], now: datetime) -> datetime | None:
        """The newest stamp read, capped at now; never behind the stored cursor unless that is in the future."""
        newest = max(stamps, default=None)
        if newest is not None:
            newest = min(newest, now)
        if cursor is not None and cursor > now:
            return newest or now
        return max(filter(None, (cursor, newest)), default=None)

    async def _store_all(self, stamped: Sequence[tuple[datetime | None, NewInboundEvent]], cursor: datetime | None,
                         now: datetime) -> PollReport:
        """Store `stamped` (sorted by stamp, the time the cursor follows) and move the cursor along."""
        return await asyncio.to_thread(self._commit, stamped, cursor, now)

    def _commit(self, stamped: Sequence[tuple[datetime | None, NewInboundEvent]], cursor: datetime | None,
                now: datetime) -> PollReport:
        inserted = duplicates = 0
        moved = cursor
        batches = [stamped[i:i + self._batch] for i in range(0, len(stamped), self._batch)] or [[]]
        for index, batch in enumerate(batches):
            moved = self._advance(moved, [stamp for stamp, _ in batch if stamp is not None], now)
            with self._store.transaction() as tx:
                results = insert_in_order(tx, [event for _, event in batch]) if batch else []
                if moved is not None:
                    tx.set_cursor(self.name, moved.isoformat(), now=now)
            inserted += sum(1 for r in results if not r.duplicate)
            duplicates += sum(1 for r in results if r.duplicate)
            if self._on_progress is not None and batch:
                self._on_progress(min(len(stamped), (index + 1) * self._batch), len(stamped))
        return PollReport(self.name, len(stamped), inserted, duplicates, moved.isoformat() if moved else None)


class GumroadSalesPoller(_CursorPoller):
    """Gumroad sales created since the cursor (less the overlap), oldest first, as `sale` (and refund…) events."""

    def __init__(self, store: Store, client: GumroadClient, *, connection: str,
                 overlap: timedelta = DEFAULT_OVERLAP, batch_size: int = DEFAULT_BATCH,
                 clock: Callable[[], datetime] | None = None, on_progress: Progress | None = None,
                 retry: PageRetry | None = POLL_PAGE_RETRY) -> None:
        super().__init__(store, name=f"gumroad:sales:{connection}", overlap=overlap, batch_size=batch_size,
                         clock=clock, on_progress=on_progress)
        self._client = client
        self._connection = connection
        self._retry = retry

    async def poll_once(self) -> PollReport:
        since, cursor, now = await self._window()
        # `after` is a UTC day, inclusive: the window starts at that day's midnight.
        sales = [sale async for sale in self._client.iter_sales(after=since.date(), retry=self._retry)]
        sales.sort(key=lambda s: (s.created_at, s.id))
        stamped = [(sale.created_at, e) for sale in sales
                   for e in sale_inbound_events(sale, connection=self._connection, now=now)]
        report = await self._store_all(stamped, cursor, now)
        log.info("action=poll poller=%s read=%d inserted=%d", self.name, report.read, report.inserted)
        return report


class SnapshotsLocationsPoller(_CursorPoller):
    """Snapshots locations updated since the cursor (less the overlap), as LocationCreate/LocationUpdate events."""

    def __init__(self, store: Store, client: SnapshotsClient, *, connection: str,
                 overlap: timedelta = DEFAULT_OVERLAP, batch_size: int = DEFAULT_BATCH,
                 clock: Callable[[], datetime] | None = None, on_progress: Progress | None = None) -> None:
        super().__init__(store, name=f"snapshots:locations:{connection}", overlap=overlap, batch_size=batch_size,
                         clock=clock, on_progress=on_progress)
        self._client = client
        self._connection = connection

    async def poll_once(self) -> PollReport:
        since, cursor, now = await self._window()
        epoch = datetime.min.replace(tzinfo=UTC)
        latest: dict[str, ApiLocation] = {}
        async for location in self._client.iter_locations(updated_since=since):
            # A location updated while the listing is paged may be listed again: its newest version counts.
            seen = latest.get(location.location_id)
            if seen is None or (location.updated_at or epoch) >= (seen.updated_at or epoch):
                latest[location.location_id] = location
        locations = list(latest.values())
        locations.sort(key=lambda loc: (loc.updated_at or epoch, loc.location_id))
        stamped = [(loc.updated_at, location_inbound_event(loc, connection=self._connection, now=now))
                   for loc in locations]
        report = await self._store_all(stamped, cursor, now)
        log.info("action=poll poller=%s read=%d inserted=%d", self.name, report.read, report.inserted)
        return report


async def run_pollers(pollers: Sequence[Poller], stop: asyncio.Event, *, interval_seconds: float,
                      on_events: Callable[[], object] | None = None) -> None:
    """Poll each poller every `interval_seconds` until `stop`; a failed poll is logged and tried next time."""
    if interval_seconds <= 0:
        raise InvalidInput(f"the poll interval must be positive, got {interval_seconds}")
    while not stop.is_set():
        for poller in pollers:
            try:
                report = await poller.poll_once()
            except SnapbridgeError as exc:  # network, API or store trouble: the cursor did not move
                log.warning("action=poll_failed poller=%s error=%s detail=%s", poller.name, type(exc).__name__, exc)
                continue
            except Exception as exc:
                # Anything else (an answer no parser expected, a bug) is one failed poll as well: healing is
                # worth more running than stopping the service, and the cursor moves only with a poll's commit.
                log.error("action=poll_failed poller=%s error=%s", poller.name, type(exc).__name__,
                          exc_info=log.isEnabledFor(logging.DEBUG))
                continue
            if report.inserted and on_events is not None:
                on_events()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_seconds)


# ---- connections -------------------------------------------------------------------------------------------


class ConnectionClients:
    """Typed clients over the service's connection pool (records, vault credentials, HTTP clients); it is the
    deriver's GumroadAccess, and gives the pollers their clients."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections

    async def _get(self, name: str, app: str) -> tuple[ConnectionRecord, Secret, httpx.AsyncClient] | None:
        try:
            record, credential, http = await self._connections.get(name)
        except InvalidInput:  # no connection of that name (yet)
            return None
        return (record, credential, http) if record.app == app else None

    async def gumroad(self, connection: str) -> GumroadLink | None:
        found = await self._get(connection, "gumroad")
        if found is None:
            return None
        record, token, http = found
        # Verification is on unless the connection turned it off (`connect gumroad --no-verify-by-fetch`).
        verify = record.options.get("verify_by_fetch", True) is not False
        return GumroadLink(GumroadClient(http, token, base_url=record.base_url), GumroadConnectionOptions(verify))

    async def snapshots(self, connection: str) -> SnapshotsClient | None:
        found = await self._get(connection, "snapshots")
        if found is None:
            return None
        record, key, http = found
        return SnapshotsClient(http, key, base_url=record.base_url)
