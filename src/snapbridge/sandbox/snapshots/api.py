"""The ten operations of the Snapshots API contract, as pure handlers from a checked call to an answer."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from starlette.datastructures import URL

from snapbridge.sandbox.snapshots import events
from snapbridge.sandbox.snapshots.bodies import (
    ApiResult,
    WebhookEvent,
    bad_request,
    conflict,
    forbidden_location,
    not_found,
    ok,
    unprocessable,
    wrong_auth_class,
)
from snapbridge.sandbox.snapshots.state import (
    Customer,
    Location,
    OnboardingStatus,
    SandboxKey,
    SandboxState,
    Scope,
)
from snapbridge.sandbox.snapshots.validation import (
    BodyError,
    Field,
    Kind,
    check_body,
    check_limit,
    check_query,
    parse_body,
    parse_datetime,
)

__all__ = ["OPERATIONS", "Call", "Operation", "page_of"]

T = TypeVar("T")
STATUSES = tuple(s.value for s in OnboardingStatus)
LOCATION_FIELDS = (
    Field("name", required=True, nullable=False),
    Field("timezone", Kind.TIMEZONE, nullable=False),
    Field("email", Kind.EMAIL),
    Field("region"),
    Field("onboarding_status", Kind.CHOICE, nullable=False, choices=STATUSES),
    Field("tier"),
    Field("snapshot_id"),
    Field("external_id"),
)
LOCATION_UPDATE_FIELDS = tuple(replace(f, required=False) for f in LOCATION_FIELDS)
CUSTOMER_FIELDS = (
    Field("email", Kind.EMAIL),
    Field("name"),
    Field("plan"),
    Field("location_id"),
    Field("tags", Kind.STRINGS, nullable=False, max_length=100),
    Field("last_activity_at", Kind.DATETIME),
)
DEFAULT_TIMEZONE = "UTC"


@dataclass(frozen=True)
class Call:
    """A request that passed authentication, the rate limit and the scope check."""

    state: SandboxState
    key: SandboxKey
    params: Mapping[str, str]
    query: Sequence[tuple[str, str]]
    body: bytes
    url: URL
    now: datetime

    @property
    def company(self) -> str:
        return self.key.company_id

    def json(self) -> Any:
        return parse_body(self.body)


Handler = Callable[[Call], ApiResult]


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    pattern: re.Pattern[str]  # matched against the raw (still percent-encoded) path
    scope: Scope
    handler: Handler

    @property
    def writes(self) -> bool:
        return self.method != "GET"


def page_of(items: Sequence[T], id_of: Callable[[T], str], call: Call, name: str,
            render: Callable[[T], dict[str, Any]], limit: int, after: str | None) -> ApiResult:
    """One page in the contract's shape: items after the cursor, ordered by id, with total and next URL."""
    rest = [i for i in items if id_of(i) > after] if after else list(items)
    chunk = rest[:limit]
    next_id = id_of(chunk[-1]) if len(rest) > limit else None
    next_url = str(call.url.include_query_params(startAfterId=next_id)) if next_id else None
    meta = {"total": len(items), "startAfterId": next_id, "nextPageUrl": next_url}
    return ok(200, {name: [render(i) for i in chunk], "meta": meta})


def _listing(call: Call, allowed: Sequence[str]) -> tuple[dict[str, str], int, list[str]]:
    values, problems = check_query(call.query, ("limit", "startAfterId", *allowed))
    limit, more = check_limit(values)
    return values, limit, problems + more


def _reach_location(call: Call, location_id: str) -> Location | ApiResult:
    """The location if this key may touch it; 403 for another location or company, 404 if it is nowhere."""
    location = call.state.locations.get(location_id)
    if not call.key.reaches(location_id) or (location is not None and location.company_id != call.company):
        return forbidden_location()
    if location is None:
        return not_found(f"Location with id {location_id} not found")
    return location


def _body(call: Call, fields: Sequence[Field]) -> tuple[dict[str, Any], ApiResult | None]:
    try:
        raw = call.json()
    except BodyError as exc:
        return {}, bad_request(str(exc))
    values, problems = check_body(raw, fields)
    return values, unprocessable(problems) if problems else None


def _location_event(kind: str, location: Location) -> WebhookEvent:
    return WebhookEvent(kind, location.company_id, location.to_json())


# ---- locations --------------------------------------------------------------------------------------


def list_locations(call: Call) -> ApiResult:
    values, limit, problems = _listing(call, ("external_id", "updated_since"))
    since = None
    if values.get("updated_since"):
        since = parse_datetime(values["updated_since"])
        if since is None:
            problems.append("updated_since must be a valid ISO 8601 date string with a time zone offset")
    if problems:
        return unprocessable(problems)
    found = [x for x in call.state.locations_of(call.company) if call.key.reaches(x.location_id)]
    if "external_id" in values:
        found = [x for x in found if x.external_id == values["external_id"]]
    if since is not None:
        found = [x for x in found if x.updated_at >= since]
    return page_of(found, lambda x: x.location_id, call, "locations", Location.to_json, limit,
                   values.get("startAfterId"))


def get_location(call: Call) -> ApiResult:
    found = _reach_location(call, call.params["location_id"])
    return found if isinstance(found, ApiResult) else ok(200, {"location": found.to_json()})


def create_location(call: Call) -> ApiResult:
    if call.key.location_id is not None:
        return wrong_auth_class()  # creating a sub-account needs an agency (company) key
    values, error = _body(call, LOCATION_FIELDS)
    if error:
        return error
    external = values.get("external_id")
    if external is not None:
        existing = call.state.location_with_external_id(call.company, external)
        if existing is not None:
            return conflict(f"A location with external_id {external} already exists",
                            {"location_id": existing.location_id})
    values.setdefault("timezone", DEFAULT_TIMEZONE)
    values["onboarding_status"] = OnboardingStatus(values.get("onboarding_status", "pending"))
    location = Location(location_id=call.state.new_object_id(), company_id=call.company, created_at=call.now,
                        updated_at=call.now, **values)
    call.state.locations[location.location_id] = location
    return ok(201, {"location": location.to_json()}, entity=location.location_id,
              webhooks=[_location_event("LocationCreate", location)])


def update_location(call: Call) -> ApiResult:
    found = _reach_location(call, call.params["location_id"])
    if isinstance(found, ApiResult):
        return found
    values, error = _body(call, LOCATION_UPDATE_FIELDS)
    if error:
        return replace(error, entity=found.location_id)
    external = values.get("external_id")
    if external is not None:
        other = call.state.location_with_external_id(call.company, external)
        if other is not None and other.location_id != found.location_id:
            return conflict(f"A location with external_id {external} already exists",
                            {"location_id": other.location_id})
    if "onboarding_status" in values:
        values["onboarding_status"] = OnboardingStatus(values["onboarding_status"])
    changed = replace(found, **values)
    if changed == found:  # nothing changed: no new updated_at, no webhook
        return ok(200, {"location": found.to_json()}, entity=found.location_id)
    changed = replace(changed, updated_at=call.now)
    call.state.locations[changed.location_id] = changed
    return ok(200, {"location": changed.to_json()}, entity=changed.location_id,
              webhooks=[_location_event("LocationUpdate", changed)])


# ---- customers --------------------------------------------------------------------------------------


def _reach_customer(call: Call, customer: Customer | None) -> ApiResult | None:
    if customer is not None and not call.key.reaches(customer.location_id):
        return forbidden_location()
    return None


def put_customer(call: Call) -> ApiResult:
    customer_id = call.params["customer_id"]
    if len(customer_id) > 255:
        return unprocessable(["customer_id must be shorter than or equal to 255 characters"])
    existing = call.state.customers.get((call.company, customer_id))
    denied = _reach_customer(call, existing)
    if denied:
        return denied
    values, error = _body(call, CUSTOMER_FIELDS)
    if error:
        return replace(error, entity=customer_id)
    location_id = values.get("location_id")
    if "location_id" in values and location_id is not None:
        if not call.key.reaches(location_id):
            return forbidden_location()
        if location_id not in {x.location_id for x in call.state.locations_of(call.company)}:
            return unprocessable([f"location_id {location_id} is not a location of this company"])
    if "tags" in values:
        values["tags"] = tuple(values["tags"])  # the new list replaces the old one, as on HighLevel
    if existing is None:
        if call.key.location_id is not None:
            values.setdefault("location_id", call.key.location_id)
        created = Customer(company_id=call.company, customer_id=customer_id, updated_at=call.now, **values)
        call.state.customers[(call.company, customer_id)] = created
        return ok(201, {"customer": created.to_json()}, entity=customer_id)
    if "location_id" in values and values["location_id"] is None and call.key.location_id is not None:
        return forbidden_location()  # a bound key may not move a customer out of its location
    changed = replace(existing, **values)
    if changed == existing:
        return ok(200, {"customer": existing.to_json()}, entity=customer_id)
    changed = replace(changed, updated_at=call.now)
    call.state.customers[(call.company, customer_id)] = changed
    hook = WebhookEvent("CustomerUpdate", call.company, changed.to_json())
    return ok(200, {"customer": changed.to_json()}, entity=customer_id, webhooks=[hook])


def get_customer(call: Call) -> ApiResult:
    customer_id = call.params["customer_id"]
    customer = call.state.customers.get((call.company, customer_id))
    denied = _reach_customer(call, customer)
    if denied:
        return denied
    if customer is None:
        return not_found(f"Customer with id {customer_id} not found")
    return ok(200, {"customer": customer.to_json()})


def list_customers(call: Call) -> ApiResult:
    values, limit, problems = _listing(call, ("email",))
    if problems:
        return unprocessable(problems)
    found = [c for c in call.state.customers_of(call.company) if call.key.reaches(c.location_id)]
    if "email" in values:
        wanted = values["email"].casefold()
        found = [c for c in found if c.email is not None and c.email.casefold() == wanted]
    return page_of(found, lambda c: c.customer_id, call, "customers", Customer.to_json, limit,
                   values.get("startAfterId"))


# ---- events -----------------------------------------------------------------------------------------


def post_event(call: Call) -> ApiResult:
    try:
        raw = call.json()
    except BodyError as exc:
        return bad_request(str(exc))
    return events.accept_one(call.state, call.key, raw)


def post_events_batch(call: Call) -> ApiResult:
    try:
        raw = call.json()
    except BodyError as exc:
        return bad_request(str(exc))
    return events.accept_batch(call.state, call.key, raw)


def list_events(call: Call) -> ApiResult:
    values, limit, problems = _listing(call, ("customer_id", "type"))
    if problems:
        return unprocessable(problems)
    found = [e for e in call.state.events_of(call.company) if call.key.reaches(e.location_id)]
    if "customer_id" in values:
        found = [e for e in found if e.customer_id == values["customer_id"]]
    if "type" in values:
        found = [e for e in found if e.type == values["type"]]
    return page_of(found, lambda e: e.event_id, call, "events", lambda e: e.to_json(), limit,
                   values.get("startAfterId"))


def _op(name: str, method: str, path: str, scope: Scope, handler: Handler) -> Operation:
    # Path parameters match one raw segment; a trailing slash is ignored, as Express does.
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Operation(name, method, re.compile(f"{regex}/?"), scope, handler)


OPERATIONS: tuple[Operation, ...] = (
    _op("locations.list", "GET", "/locations", Scope.LOCATION_READ, list_locations),
    _op("locations.get", "GET", "/locations/{location_id}", Scope.LOCATION_READ, get_location),
    _op("locations.create", "POST", "/locations", Scope.LOCATION_WRITE, create_location),
    _op("locations.update", "PUT", "/locations/{location_id}", Scope.LOCATION_WRITE, update_location),
    _op("events.create", "POST", "/events", Scope.EVENTS_WRITE, post_event),
    _op("events.batch", "POST", "/events/batch", Scope.EVENTS_WRITE, post_events_batch),
    _op("events.list", "GET", "/events", Scope.EVENTS_READ, list_events),
    _op("customers.upsert", "PUT", "/customers/{customer_id}", Scope.CUSTOMERS_WRITE, put_customer),
    _op("customers.get", "GET", "/customers/{customer_id}", Scope.CUSTOMERS_READ, get_customer),
    _op("customers.list", "GET", "/customers", Scope.CUSTOMERS_READ, list_customers),
)
