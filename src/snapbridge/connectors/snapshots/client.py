"""The Snapshots API client: one async method per contract operation, typed in and out, errors decoded."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TypeVar
from urllib.parse import quote

import httpx

from snapbridge.connectors.snapshots.decode import decode_error, unwrap
from snapbridge.connectors.snapshots.models import (
    BatchItemResult,
    BatchResult,
    Customer,
    CustomerChanges,
    CustomerUpsert,
    Event,
    EventInput,
    EventReceipt,
    Location,
    LocationChanges,
    LocationCreate,
    LocationUpsert,
    Page,
    Probe,
    format_timestamp,
)
from snapbridge.connectors.snapshots.pagination import CURSOR_PARAM, next_page_params, page_size
from snapbridge.errors import Conflict, InvalidInput, Permanent
from snapbridge.http import RateLimitState, send
from snapbridge.security import Secret

__all__ = [
    "DEFAULT_VERSION",
    "MAX_BATCH_EVENTS",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "OPERATIONS",
    "Operation",
    "SnapshotsClient",
    "derived_key",
]

DEFAULT_VERSION = "2021-07-28"
MAX_BATCH_EVENTS = 100
MAX_IDEMPOTENCY_KEY_LENGTH = 255
REPLAYED_HEADER = "Idempotent-Replayed"

T = TypeVar("T")


@dataclass(frozen=True)
class Operation:
    """One endpoint of the contract: HTTP method and path, the scope it needs, the method that calls it."""

    name: str
    method: str
    path: str
    scope: str
    client_method: str

    @property
    def writes(self) -> bool:
        return self.method != "GET"


_OPERATIONS = (
    Operation("locations.list", "GET", "/locations", "saas/location.read", "list_locations"),
    Operation("locations.get", "GET", "/locations/{location_id}", "saas/location.read", "get_location"),
    Operation("locations.create", "POST", "/locations", "saas/location.write", "create_location"),
    Operation("locations.update", "PUT", "/locations/{location_id}", "saas/location.write",
              "update_location"),
    Operation("events.create", "POST", "/events", "events.write", "create_event"),
    Operation("events.batch", "POST", "/events/batch", "events.write", "create_events_batch"),
    Operation("events.list", "GET", "/events", "events.readonly", "list_events"),
    Operation("customers.upsert", "PUT", "/customers/{customer_id}", "customers.write", "upsert_customer"),
    Operation("customers.get", "GET", "/customers/{customer_id}", "customers.readonly", "get_customer"),
    Operation("customers.list", "GET", "/customers", "customers.readonly", "list_customers"),
)
# Every endpoint of snapshots-contract.md, by operation name; the catalog and a test cross-check it.
OPERATIONS: Mapping[str, Operation] = MappingProxyType({op.name: op for op in _OPERATIONS})


@dataclass(frozen=True)
class _Reply:
    status: int
    content: bytes
    replayed: bool
    rate_limit: RateLimitState | None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _check_idempotency_key(key: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise InvalidInput("idempotency_key must be a non-empty string")
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidInput(
            f"idempotency_key is {len(key)} characters, more than {MAX_IDEMPOTENCY_KEY_LENGTH}"
        )
    if not key.isascii() or not key.isprintable():
        raise InvalidInput("idempotency_key must be printable ASCII (it travels as a header)")
    return key


def derived_key(key: str, step: str) -> str:
    """A second deterministic key for a follow-up write of the same logical step (never random)."""
    candidate = f"{key}:{step}"
    if len(candidate) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        return candidate
    return f"{step}:{hashlib.sha256(key.encode()).hexdigest()}"


class SnapshotsClient:
    """A typed client for one API key. `rate_limit` holds the rate-limit headers of the last response seen.

    Writes take `idempotency_key` from the caller (derived from the inbound event and the step), so a
    retry of the same write is recognised by the API and applied once.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_key: Secret,
        *,
        base_url: str,
        version: str = DEFAULT_VERSION,
        clock: Callable[[], datetime] = _utc_now,
        max_response_bytes: int = 10_485_760,
    ) -> None:
        self._http = http
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._version = version
        self._clock = clock
        self._max_response_bytes = max_response_bytes
        self.rate_limit: RateLimitState | None = None

    def __repr__(self) -> str:
        return f"SnapshotsClient(base_url={self._base_url!r}, api_key={self._api_key!r})"

    # ---- transport ----------------------------------------------------------------------------------

    async def _call(
        self,
        name: str,
        *,
        ids: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json: object = None,
        idempotency_key: str | None = None,
    ) -> _Reply:
        op = OPERATIONS[name]
        path = op.path.format(**{k: quote(v, safe="") for k, v in (ids or {}).items()})
        headers = {
            "Authorization": f"Bearer {self._api_key.reveal()}",
            "Version": self._version,
            "Accept": "application/json",
        }
        if op.writes:
            if idempotency_key is None:
                raise InvalidInput(f"{name} is a write and needs an idempotency_key")
            headers["Idempotency-Key"] = _check_idempotency_key(idempotency_key)
        response = await send(
            self._http, op.method, self._base_url + path, operation=name, headers=headers,
            params=dict(params) if params else None, json=json, max_response_bytes=self._max_response_bytes,
        )
        state = RateLimitState.from_headers(response.headers)
        if state is not None:
            self.rate_limit = state
        if not 200 <= response.status < 300:
            raise decode_error(response.status, response.content, response.headers, operation=name,
                               scope=op.scope, now=self._clock(), secrets=[self._api_key])
        replayed = response.headers.get(REPLAYED_HEADER, "").strip().lower() == "true"
        return _Reply(response.status, response.content, replayed, state)

    def _parse(self, name: str, reply: _Reply, key: str | None, parse: Callable[[object], T]) -> T:
        """Unwrap and parse a success body; a body that breaks the contract is a Permanent error (its excerpt
        without the key: an answer can echo it)."""
        value = unwrap(reply.content, key, operation=name, status=reply.status, secrets=[self._api_key])
        try:
            return parse(value)
        except InvalidInput as exc:
            raise Permanent(f"the answer does not match the contract: {exc}", operation=name,
                            status=reply.status) from exc

    async def _page(self, name: str, key: str, params: Mapping[str, str],
                    parse: Callable[[object, str], T]) -> Page[T]:
        reply = await self._call(name, params=params)
        state = reply.rate_limit
        return self._parse(name, reply, None,
                           lambda body: Page.from_json(body, key=key, parse=parse, rate_limit=state))

    async def _walk(self, name: str, key: str, params: dict[str, str],
                    parse: Callable[[object, str], T]) -> AsyncIterator[T]:
        query: dict[str, str] | None = params
        sent = {params.get(CURSOR_PARAM)}  # a cursor that comes back (A → B → A) would go round for ever
        while query is not None:
            reply = await self._call(name, params=query)
            body = self._parse(name, reply, None, _json_object)
            page = self._parse(name, reply, None, lambda value: Page.from_json(value, key=key, parse=parse))
            for item in page.items:
                yield item
            try:
                query = next_page_params(body, query, items_key=key)
            except InvalidInput as exc:
                raise Permanent(f"pagination failed: {exc}", operation=name, status=reply.status) from exc
            if query is not None:
                if query[CURSOR_PARAM] in sent:
                    raise Permanent(f"pagination failed: meta.{CURSOR_PARAM} {query[CURSOR_PARAM]!r} leads back to "
                                    "a page already read; stopping", operation=name, status=reply.status)
                sent.add(query[CURSOR_PARAM])

    # ---- locations ----------------------------------------------------------------------------------

    @staticmethod
    def _location_query(limit: int | None, start_after_id: str | None, external_id: str | None,
                        updated_since: datetime | None) -> dict[str, str]:
        query = {"limit": str(page_size(limit))}
        if start_after_id:
            query[CURSOR_PARAM] = start_after_id
        if external_id is not None:
            query["external_id"] = external_id
        if updated_since is not None:
            query["updated_since"] = format_timestamp(updated_since)
        return query

    async def list_locations(
        self, *, limit: int | None = None, start_after_id: str | None = None, external_id: str | None = None,
        updated_since: datetime | None = None,
    ) -> Page[Location]:
        """One page of locations, ordered by location_id; pass `next_cursor` back as `start_after_id`."""
        query = self._location_query(limit, start_after_id, external_id, updated_since)
        return await self._page("locations.list", "locations", query, _location)

    async def iter_locations(
        self, *, page_size: int | None = None, external_id: str | None = None,
        updated_since: datetime | None = None,
    ) -> AsyncIterator[Location]:
        """Every location matching the filters, page after page."""
        query = self._location_query(page_size, None, external_id, updated_since)
        async for location in self._walk("locations.list", "locations", query, _location):
            yield location

    async def get_location(self, location_id: str) -> Location:
        reply = await self._call("locations.get", ids={"location_id": location_id})
        return self._parse("locations.get", reply, "location",
                           lambda v: Location.from_json(v, rate_limit=reply.rate_limit))

    async def create_location(self, location: LocationCreate, *, idempotency_key: str) -> Location:
        """Creates a location; a duplicate `external_id` raises Conflict with `existing_id`."""
        reply = await self._call("locations.create", json=location.to_json(), idempotency_key=idempotency_key)
        return self._parse("locations.create", reply, "location",
                           lambda v: Location.from_json(v, rate_limit=reply.rate_limit))

    async def update_location(self, location_id: str, changes: LocationChanges, *, idempotency_key: str
                              ) -> Location:
        reply = await self._call("locations.update", ids={"location_id": location_id}, json=changes.to_json(),
                                 idempotency_key=idempotency_key)
        return self._parse("locations.update", reply, "location",
                           lambda v: Location.from_json(v, rate_limit=reply.rate_limit))

    async def upsert_location_by_external_id(self, location: LocationCreate, *, idempotency_key: str
                                             ) -> LocationUpsert:
        """Create the location, or, when its `external_id` exists (409), update that location instead.

        The update carries a key derived from `idempotency_key` (`<key>:update`), so a retry of the whole
        upsert replays both steps instead of writing twice.
        """
        if not location.external_id:
            raise InvalidInput("upsert_location_by_external_id needs a location with an external_id")
        try:
            created = await self.create_location(location, idempotency_key=idempotency_key)
        except Conflict as conflict:
            existing = conflict.existing_id or await self._find_by_external_id(location.external_id)
            if existing is None:
                raise
            updated = await self.update_location(existing, location.as_changes(),
                                                 idempotency_key=derived_key(idempotency_key, "update"))
            return LocationUpsert(updated, created=False, rate_limit=updated.rate_limit)
        return LocationUpsert(created, created=True, rate_limit=created.rate_limit)

    async def _find_by_external_id(self, external_id: str) -> str | None:
        page = await self.list_locations(limit=1, external_id=external_id)
        return page.items[0].location_id if page.items else None

    # ---- events -------------------------------------------------------------------------------------

    async def create_event(self, event: EventInput, *, idempotency_key: str) -> EventReceipt:
        """Records an event. The same event_id and body again answers with the stored event, `replayed`."""
        reply = await self._call("events.create", json=event.to_json(), idempotency_key=idempotency_key)
        stored = self._parse("events.create", reply, "event",
                             lambda v: Event.from_json(v, rate_limit=reply.rate_limit))
        # A first write answers 201; 200 (with Idempotent-Replayed) is the stored copy.
        replayed = reply.replayed or reply.status == 200
        return EventReceipt(stored, replayed=replayed, rate_limit=reply.rate_limit)

    async def create_events_batch(self, events: Sequence[EventInput], *, idempotency_key: str) -> BatchResult:
        """Records up to 100 events in one request (one against the rate limit); per-event outcomes.

        More than 100 raise InvalidInput rather than being split: a split would need one idempotency key per
        part, and the caller, who derives keys, is the one who can name them.
        """
        if not events:
            raise InvalidInput("create_events_batch needs at least one event")
        if len(events) > MAX_BATCH_EVENTS:
            raise InvalidInput(f"a batch holds at most {MAX_BATCH_EVENTS} events, got {len(events)}")
        reply = await self._call("events.batch", json={"events": [e.to_json() for e in events]},
                                 idempotency_key=idempotency_key)
        results = self._parse("events.batch", reply, "results", _batch_results)
        return BatchResult(results, replayed=reply.replayed, rate_limit=reply.rate_limit)

    @staticmethod
    def _event_query(customer_id: str | None, type: str | None, limit: int | None,
                     start_after_id: str | None) -> dict[str, str]:
        query = {"limit": str(page_size(limit))}
        if customer_id is not None:
            query["customer_id"] = customer_id
        if type is not None:
            query["type"] = type
        if start_after_id:
            query[CURSOR_PARAM] = start_after_id
        return query

    async def list_events(self, *, customer_id: str | None = None, type: str | None = None,
                          limit: int | None = None, start_after_id: str | None = None) -> Page[Event]:
        query = self._event_query(customer_id, type, limit, start_after_id)
        return await self._page("events.list", "events", query, _event)

    async def iter_events(self, *, customer_id: str | None = None, type: str | None = None,
                          page_size: int | None = None) -> AsyncIterator[Event]:
        query = self._event_query(customer_id, type, page_size, None)
        async for event in self._walk("events.list", "events", query, _event):
            yield event

    # ---- customers ----------------------------------------------------------------------------------

    async def upsert_customer(self, customer_id: str, changes: CustomerChanges, *, idempotency_key: str
                              ) -> CustomerUpsert:
        """Creates or updates the customer (201 created, 200 updated); `tags` replaces the list."""
        reply = await self._call("customers.upsert", ids={"customer_id": customer_id}, json=changes.to_json(),
                                 idempotency_key=idempotency_key)
        customer = self._parse("customers.upsert", reply, "customer",
                               lambda v: Customer.from_json(v, rate_limit=reply.rate_limit))
        return CustomerUpsert(customer, created=reply.status == 201, rate_limit=reply.rate_limit)

    async def get_customer(self, customer_id: str) -> Customer:
        reply = await self._call("customers.get", ids={"customer_id": customer_id})
        return self._parse("customers.get", reply, "customer",
                           lambda v: Customer.from_json(v, rate_limit=reply.rate_limit))

    @staticmethod
    def _customer_query(email: str | None, limit: int | None, start_after_id: str | None) -> dict[str, str]:
        query = {"limit": str(page_size(limit))}
        if email is not None:
            query["email"] = email
        if start_after_id:
            query[CURSOR_PARAM] = start_after_id
        return query

    async def list_customers(self, *, email: str | None = None, limit: int | None = None,
                             start_after_id: str | None = None) -> Page[Customer]:
        query = self._customer_query(email, limit, start_after_id)
        return await self._page("customers.list", "customers", query, _customer)

    async def iter_customers(self, *, email: str | None = None, page_size: int | None = None
                             ) -> AsyncIterator[Customer]:
        query = self._customer_query(email, page_size, None)
        async for customer in self._walk("customers.list", "customers", query, _customer):
            yield customer

    # ---- connect test -------------------------------------------------------------------------------

    async def whoami(self) -> Probe:
        """A cheap call that proves the key works: GET /locations?limit=1 (the contract has no account call).

        Needs `saas/location.read`, so a key without it fails here with ScopeMissing naming that scope. The
        company is read from the first location's company id when the API sends one.
        """
        page = await self.list_locations(limit=1)
        sample = page.items[0] if page.items else None
        return Probe(company_id=sample.company_id if sample else None, location_count=page.total,
                     sample_location=sample, rate_limit=page.rate_limit)


def _json_object(value: object) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"expected a JSON object, got {type(value).__name__}")
    return value


def _location(value: object, path: str) -> Location:
    return Location.from_json(value, path=path)


def _event(value: object, path: str) -> Event:
    return Event.from_json(value, path=path)


def _customer(value: object, path: str) -> Customer:
    return Customer.from_json(value, path=path)


def _batch_results(value: object) -> tuple[BatchItemResult, ...]:
    if not isinstance(value, list):
        raise InvalidInput(f"results: expected a list, got {type(value).__name__}")
    return tuple(BatchItemResult.from_json(item, f"results[{i}]") for i, item in enumerate(value))

