"""The typed events a workflow can be triggered by, with a sample of each, and the customer profile model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import UnionType
from typing import Annotated, ClassVar, Literal, Union, get_args, get_origin

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from snapbridge.errors import InvalidInput
from snapbridge.workflows.values import child_path

__all__ = [
    "EVENT_SPECS",
    "App",
    "CancellationEvent",
    "Customer",
    "CustomerCreatedEvent",
    "CustomerFields",
    "CustomerProfile",
    "CustomerUpdatedEvent",
    "DisputeEvent",
    "Event",
    "EventSpec",
    "Location",
    "LocationEvent",
    "PlanChange",
    "PlanTerms",
    "PurchaseEvent",
    "RefundEvent",
    "Sale",
    "SegmentChangedEvent",
    "SnapshotsCustomer",
    "SnapshotsCustomerUpdatedEvent",
    "Subscription",
    "SubscriptionEndedEvent",
    "SubscriptionRestartedEvent",
    "SubscriptionStartedEvent",
    "SubscriptionUpdatedEvent",
    "event_spec",
    "field_problem",
    "parse_event",
]


class App(StrEnum):
    """The apps events come from and actions go to."""

    GUMROAD = "gumroad"
    SNAPSHOTS = "snapshots"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Customer(_Model):
    """The Gumroad buyer an event is about."""

    email: str
    name: str | None = None
    purchaser_id: str | None = Field(default=None, description="Gumroad user id, if the buyer has one")
    country: str | None = Field(default=None, description="English country name, as Gumroad sends it")
    country_code: str | None = Field(default=None, description="ISO 3166-1 alpha-2, when known")
    plan: str | None = Field(default=None, description="tier or product name of the customer's current plan")


class Sale(_Model):
    """One Gumroad sale, as the sale ping and GET /v2/sales/:id describe it."""

    sale_id: str
    order_number: int | None = None
    sale_timestamp: AwareDatetime
    product_id: str
    product_name: str
    product_permalink: str | None = None
    email: str
    full_name: str | None = None
    purchaser_id: str | None = None
    price_cents: int = Field(description="always USD cents, whatever `currency` says")
    currency: str = Field(description="the product's currency, lower case")
    quantity: int = 1
    country: str | None = None
    country_iso2: str | None = None
    ip_country: str | None = None
    subscription_id: str | None = None
    recurrence: str | None = None
    is_recurring_charge: bool = False
    test: bool = False
    refunded: bool = False
    disputed: bool = False
    offer_code: str | None = None
    referrer: str | None = None
    license_key: str | None = None
    variants: dict[str, str] = Field(default_factory=dict)
    custom_fields: dict[str, str] = Field(default_factory=dict)


class Subscription(_Model):
    """One Gumroad membership, as the subscription pings describe it."""

    subscription_id: str
    product_id: str
    product_name: str
    email: str
    user_id: str | None = None
    purchase_ids: list[str] = Field(default_factory=list)
    recurrence: str | None = None
    tier: str | None = None
    created_at: AwareDatetime | None = None
    charge_occurrence_count: int | None = None
    free_trial_ends_at: AwareDatetime | None = None


class PlanTerms(_Model):
    """A membership's tier, recurrence and price before or after a change."""

    tier_id: str | None = None
    tier_name: str | None = None
    recurrence: str | None = None
    price_cents: int | None = None
    quantity: int | None = None


class PlanChange(_Model):
    kind: Literal["upgrade", "downgrade"]
    effective_as_of: AwareDatetime | None = None
    old_plan: PlanTerms
    new_plan: PlanTerms


class CustomerFields(_Model):
    """The customer fields whose change makes a customer.updated event."""

    email: str
    name: str | None = None
    plan: str | None = None


class Location(_Model):
    """A Snapshots location, as its webhooks and GET /locations describe it."""

    location_id: str
    name: str
    timezone: str
    email: str | None = None
    region: str | None = None
    onboarding_status: Literal["pending", "active", "paused", "cancelled"] | None = None
    tier: str | None = None
    snapshot_id: str | None = None
    external_id: str | None = None
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None


class SnapshotsCustomer(_Model):
    """A Snapshots customer, as its CustomerUpdate webhook describes it."""

    customer_id: str
    email: str | None = None
    name: str | None = None
    plan: str | None = None
    location_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    last_activity_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None


class Event(_Model):
    """What every event carries: its own id, the inbound event it came from, its type, app and time."""

    TYPES: ClassVar[tuple[str, ...]] = ()
    APP: ClassVar[App] = App.GUMROAD

    id: str = Field(description="unique id of this event")
    inbound_id: str = Field(description="id of the stored webhook or poll result it was derived from")
    type: str
    app: App
    occurred_at: AwareDatetime

    @model_validator(mode="after")
    def _type_belongs_to_model(self) -> Event:
        if self.type not in self.TYPES or self.app != self.APP:
            raise ValueError(f"{type(self).__name__} is for {self.APP.value} {', '.join(self.TYPES)} events")
        return self

    def customer_email(self) -> str | None:
        """The email of the customer this event touches, if any (the ordering key of its jobs)."""
        customer = getattr(self, "customer", None)
        return customer.email if isinstance(customer, Customer | SnapshotsCustomer) else None

    def location_id(self) -> str | None:
        """The Snapshots location this event touches, if any."""
        location = getattr(self, "location", None)
        return location.location_id if isinstance(location, Location) else None


class PurchaseEvent(Event):
    """Every successful sale (`purchase`), and the raw sale ping (`sale`)."""

    TYPES = ("purchase", "sale")
    customer: Customer
    sale: Sale
    first_purchase: bool = Field(description="the first purchase by this email")


class CustomerCreatedEvent(Event):
    """The first purchase by an email."""

    TYPES = ("customer.created",)
    customer: Customer
    sale: Sale


class CustomerUpdatedEvent(Event):
    """A customer's email, name or plan changed (a later sale or a `subscription_updated`)."""

    TYPES = ("customer.updated",)
    customer: Customer
    previous: CustomerFields
    changed: list[Literal["email", "name", "plan"]]


class SubscriptionStartedEvent(Event):
    """The first charge of a membership."""

    TYPES = ("subscription.started",)
    customer: Customer
    subscription: Subscription
    sale: Sale


class SubscriptionUpdatedEvent(Event):
    """A tier or recurrence upgrade or downgrade (also the raw `subscription_updated` ping)."""

    TYPES = ("subscription.updated", "subscription_updated")
    customer: Customer
    subscription: Subscription
    change: PlanChange


class SubscriptionEndedEvent(Event):
    """A membership actually ended (also the raw `subscription_ended` ping)."""

    TYPES = ("subscription.ended", "subscription_ended")
    customer: Customer
    subscription: Subscription
    ended_at: AwareDatetime
    reason: Literal["cancelled", "failed_payment", "fixed_subscription_period_ended"]


class SubscriptionRestartedEvent(Event):
    """A terminated membership restarted (also the raw `subscription_restarted` ping)."""

    TYPES = ("subscription.restarted", "subscription_restarted")
    customer: Customer
    subscription: Subscription
    restarted_at: AwareDatetime


class CancellationEvent(Event):
    """A membership was cancelled; access lasts until `cancelled_at`."""

    TYPES = ("cancellation",)
    customer: Customer
    subscription: Subscription
    cancelled_at: AwareDatetime
    cancelled_by: Literal["buyer", "seller", "admin", "payment_failures"]


class RefundEvent(Event):
    """A full or partial refund of a sale."""

    TYPES = ("refund",)
    customer: Customer
    sale: Sale
    full_refund: bool = Field(description="Gumroad says refunded=true only for a full refund")


class DisputeEvent(Event):
    """A chargeback was opened (`dispute`) or reversed in the seller's favour (`dispute_won`)."""

    TYPES = ("dispute", "dispute_won")
    customer: Customer
    sale: Sale
    outcome: Literal["opened", "won"]


class SegmentChangedEvent(Event):
    """The customer entered or left one or more segments."""

    TYPES = ("customer.segment_changed",)
    customer: Customer
    segments: list[str] = Field(description="every segment the customer is in now")
    entered: list[str]
    left: list[str]


class LocationEvent(Event):
    """A Snapshots location was created or updated."""

    TYPES = ("location.created", "location.updated")
    APP = App.SNAPSHOTS
    location: Location


class SnapshotsCustomerUpdatedEvent(Event):
    """A Snapshots customer changed."""

    TYPES = ("customer.updated",)
    APP = App.SNAPSHOTS
    customer: SnapshotsCustomer


class CustomerProfile(_Model):
    """What snapbridge knows about one Gumroad buyer; the deriver keeps it, segments read it."""

    email: str
    name: str | None = None
    plan: str | None = None
    customer_id: str | None = Field(default=None, description="the customer's id in the Snapshots API")
    purchaser_id: str | None = None
    country: str | None = None
    country_code: str | None = None
    location_id: str | None = None
    location_name: str | None = None
    timezone: str | None = None
    tier: str | None = None
    tags: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    purchase_count: int = 0
    lifetime_value_cents: int = Field(default=0, description="USD cents of sales, less full refunds")
    first_seen_at: AwareDatetime
    last_activity_at: AwareDatetime | None = None


@dataclass(frozen=True)
class EventSpec:
    """One trigger event type: its app and name, its model, what it means, and a sample in JSON form.

    `derived` events are made by snapbridge from raw webhooks; the others are the apps' own webhooks.
    """

    app: App
    name: str
    model: type[Event]
    derived: bool
    description: str
    sample: Mapping[str, object]

    def sample_event(self) -> Event:
        return self.model.model_validate(dict(self.sample))


_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _at(day: int, hour: int = 12) -> str:
    return _AT.replace(day=day, hour=hour).isoformat().replace("+00:00", "Z")


_CUSTOMER: dict[str, object] = {
    "email": "ada@example.com", "name": "Ada Lovelace", "purchaser_id": "5530311507811",
    "country": "United Kingdom", "country_code": "GB", "plan": "Pro",
}
_SALE: dict[str, object] = {
    "sale_id": "FO8TXN-dbxYaBdahG97Y-Q==", "order_number": 524459935, "sale_timestamp": _at(1),
    "product_id": "32-nPAicqbLj8B_WswVlMw==", "product_name": "Analytics Pro",
    "product_permalink": "https://seller.gumroad.com/l/analytics", "email": "ada@example.com",
    "full_name": "Ada Lovelace", "purchaser_id": "5530311507811", "price_cents": 1500, "currency": "usd",
    "quantity": 1, "country": "United Kingdom", "country_iso2": "GB", "ip_country": "United Kingdom",
    "subscription_id": "sub_Xk2-ZQ==", "recurrence": "monthly", "variants": {"Tier": "Pro"},
    "custom_fields": {"Company": "Analytical Engines Ltd"},
}
_SUBSCRIPTION: dict[str, object] = {
    "subscription_id": "sub_Xk2-ZQ==", "product_id": "32-nPAicqbLj8B_WswVlMw==",
    "product_name": "Analytics Pro", "email": "ada@example.com", "user_id": "5530311507811",
    "purchase_ids": ["FO8TXN-dbxYaBdahG97Y-Q=="], "recurrence": "monthly", "tier": "Pro",
    "created_at": _at(1), "charge_occurrence_count": 1,
}
_LOCATION: dict[str, object] = {
    "location_id": "loc_7d1f3a", "name": "Ada Lovelace", "timezone": "Europe/London",
    "email": "ada@example.com", "region": "EU", "onboarding_status": "active", "tier": "gold",
    "external_id": "ada@example.com", "created_at": _at(1), "updated_at": _at(3),
}


def _envelope(app: App, kind: str, day: int) -> dict[str, object]:
    return {"id": f"evt_sample_{kind}", "inbound_id": f"in_sample_{kind}", "type": kind, "app": app.value,
            "occurred_at": _at(day)}


def _spec(model: type[Event], kind: str, derived: bool, description: str, day: int,
          **payload: object) -> EventSpec:
    sample = {**_envelope(model.APP, kind, day), **payload}
    return EventSpec(app=model.APP, name=kind, model=model, derived=derived, description=description,
                     sample=sample)


EVENT_SPECS: tuple[EventSpec, ...] = (
    _spec(PurchaseEvent, "purchase", True, "every successful sale", 1,
          customer=_CUSTOMER, sale=_SALE, first_purchase=True),
    _spec(CustomerCreatedEvent, "customer.created", True, "the first purchase by an email", 1,
          customer=_CUSTOMER, sale=_SALE),
    _spec(CustomerUpdatedEvent, "customer.updated", True, "a customer's email, name or plan changed", 2,
          customer={**_CUSTOMER, "plan": "Business"},
          previous={"email": "ada@example.com", "name": "Ada Lovelace", "plan": "Pro"}, changed=["plan"]),
    _spec(SubscriptionStartedEvent, "subscription.started", True, "the first charge of a membership", 1,
          customer=_CUSTOMER, subscription=_SUBSCRIPTION, sale=_SALE),
    _spec(SubscriptionUpdatedEvent, "subscription.updated", True, "a membership changed its tier", 2,
          customer={**_CUSTOMER, "plan": "Business"}, subscription={**_SUBSCRIPTION, "tier": "Business"},
          change={"kind": "upgrade", "effective_as_of": _at(2),
                  "old_plan": {"tier_id": "t_pro", "tier_name": "Pro", "recurrence": "monthly",
                               "price_cents": 1500, "quantity": 1},
                  "new_plan": {"tier_id": "t_biz", "tier_name": "Business", "recurrence": "monthly",
                               "price_cents": 4900, "quantity": 1}}),
    _spec(SubscriptionEndedEvent, "subscription.ended", True, "a membership ended", 20,
          customer=_CUSTOMER, subscription=_SUBSCRIPTION, ended_at=_at(20), reason="cancelled"),
    _spec(SubscriptionRestartedEvent, "subscription.restarted", True, "an ended membership restarted", 25,
          customer=_CUSTOMER, subscription=_SUBSCRIPTION, restarted_at=_at(25)),
    _spec(CancellationEvent, "cancellation", True, "a membership was cancelled", 10,
          customer=_CUSTOMER, subscription=_SUBSCRIPTION, cancelled_at=_at(20), cancelled_by="buyer"),
    _spec(RefundEvent, "refund", True, "a sale was refunded in full or in part", 5,
          customer=_CUSTOMER, sale={**_SALE, "refunded": True}, full_refund=True),
    _spec(DisputeEvent, "dispute", True, "a chargeback was opened", 6,
          customer=_CUSTOMER, sale={**_SALE, "disputed": True}, outcome="opened"),
    _spec(SegmentChangedEvent, "customer.segment_changed", True, "the customer entered or left segments", 2,
          customer=_CUSTOMER, segments=["customers", "paying", "eu"], entered=["paying"], left=[]),
    _spec(PurchaseEvent, "sale", False, "Gumroad's sale ping, as sent", 1,
          customer=_CUSTOMER, sale=_SALE, first_purchase=True),
    _spec(DisputeEvent, "dispute_won", False, "Gumroad's dispute_won ping: a chargeback was reversed", 8,
          customer=_CUSTOMER, sale={**_SALE, "disputed": True}, outcome="won"),
    _spec(SubscriptionUpdatedEvent, "subscription_updated", False, "Gumroad's subscription_updated ping", 2,
          customer={**_CUSTOMER, "plan": "Business"}, subscription={**_SUBSCRIPTION, "tier": "Business"},
          change={"kind": "downgrade", "old_plan": {"tier_name": "Business"},
                  "new_plan": {"tier_name": "Pro"}}),
    _spec(SubscriptionEndedEvent, "subscription_ended", False, "Gumroad's subscription_ended ping", 20,
          customer=_CUSTOMER, subscription=_SUBSCRIPTION, ended_at=_at(20), reason="failed_payment"),
    _spec(SubscriptionRestartedEvent, "subscription_restarted", False,
          "Gumroad's subscription_restarted ping", 25,
          customer=_CUSTOMER, subscription=_SUBSCRIPTION, restarted_at=_at(25)),
    _spec(LocationEvent, "location.created", False, "a Snapshots location was created", 1,
          location={**_LOCATION, "updated_at": _at(1)}),
    _spec(LocationEvent, "location.updated", False, "a Snapshots location was updated", 3,
          location=_LOCATION),
    _spec(SnapshotsCustomerUpdatedEvent, "customer.updated", False, "a Snapshots customer changed", 3,
          customer={"customer_id": "cus_ada", "email": "ada@example.com", "name": "Ada Lovelace",
                    "plan": "Pro", "location_id": "loc_7d1f3a", "tags": ["vip"], "last_activity_at": _at(3),
                    "updated_at": _at(3)}),
)

_BY_KEY = {(spec.app, spec.name): spec for spec in EVENT_SPECS}


def event_spec(app: str, kind: str) -> EventSpec:
    """The spec of one event type, or InvalidInput naming the known types of that app."""
    try:
        source = App(app)
    except ValueError:
        raise InvalidInput(f"unknown app {app!r}; known apps: {', '.join(a.value for a in App)}") from None
    spec = _BY_KEY.get((source, kind))
    if spec is None:
        known = ", ".join(sorted(s.name for s in EVENT_SPECS if s.app == app))
        raise InvalidInput(f"unknown {app} event {kind!r}; known events: {known}")
    return spec


def parse_event(data: Mapping[str, object]) -> Event:
    """An event from its JSON form (as `model_dump(mode='json')` writes it), typed by its app and type."""
    app, kind = data.get("app"), data.get("type")
    if not isinstance(app, str) or not isinstance(kind, str):
        raise InvalidInput("an event needs text fields 'app' and 'type'")
    spec = event_spec(app, kind)
    try:
        return spec.model.model_validate(dict(data))
    except ValueError as exc:
        raise InvalidInput(f"not a valid {app} {kind} event") from exc


def _unwrap(annotation: object) -> object:
    """The annotation without Annotated[...] and without None in an optional."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _kind_of(annotation: object) -> str:
    origin = get_origin(annotation)
    if annotation is str or origin is Literal:
        return "text"
    if annotation in (int, float):
        return "a number"
    if annotation is bool:
        return "a boolean"
    if annotation in (datetime, AwareDatetime):
        return "a time"
    return "a value"


def field_problem(root: str, model: type[BaseModel], path: tuple[str | int, ...]) -> str | None:
    """Why `root.path` names no field of `model` (with the known fields), or None if it does."""
    annotation: object = model
    where = root
    for key in path:
        annotation = _unwrap(annotation)
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = annotation.model_fields
            if not isinstance(key, str) or key not in fields:
                known = ", ".join(sorted(fields))
                return f"{child_path(where, key)} is not a field; known fields of {where}: {known}"
            annotation = fields[key].annotation
        elif origin in (dict, Mapping):
            annotation = get_args(annotation)[1]
        elif origin in (list, tuple):
            if not isinstance(key, int):
                return f"{where} is a list; {child_path(where, key)} names no item (use {where}[0])"
            annotation = get_args(annotation)[0]
        else:
            return f"{where} is {_kind_of(annotation)} and has no field {key!r}"
        where = child_path(where, key)
    return None
