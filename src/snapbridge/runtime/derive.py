"""Derivation, pure: (stored inbound event, customer profile or None, now) → (new profile, derived domain events).

Rules (DESIGN "Derive"; workflows issue §1):
- A sale (webhook or poll) by an email with no profile yet → customer.created + purchase (first_purchase); a
  later one → purchase. A membership's first charge (subscription_id, not a renewal) also → subscription.started.
  A name or plan that differs from the profile → customer.updated naming what changed (email too, when the shell
  found the profile under another email). The same values → nothing more.
- refund (full: refunded=true, partial: refunded=false), dispute, dispute_won, cancellation,
  subscription_updated (→ subscription.updated, and customer.updated when the plan changes),
  subscription_ended, subscription_restarted → their domain events.
- Snapshots LocationCreate/LocationUpdate → location.created/updated, and the profile of the customer whose
  email is the location's external_id (else its email) gets location_id, name, timezone, tier and activity.
  CustomerUpdate → the Snapshots customer.updated, and the profile learns the customer id, tags and activity.
- Test purchases (test=true) and Gumroad's settings-page test ping derive nothing; the note says why.
- Only sales create a profile: a refund or membership event for an unknown email is derived without one.
- Lifetime value is USD cents: every sale adds its price, a full refund takes it off again (never below 0).
  A sale already fully refunded when derived (its refund was derived first, or `refunded`: the API said so)
  adds nothing and counts its refund, so the refund's own event, in either order, takes nothing off twice.
- Order by event time, not arrival: profile fields carry the time of the event that set them, and an older
  event that arrives late fills only fields still empty (counters and activity still count it).
- Whenever the profile changes, segments are evaluated at `now`; a change adds customer.segment_changed.
Event ids are "<inbound id>:<type>", so deriving one inbound event twice gives the same events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, TypedDict

from snapbridge.connectors.gumroad import CancellationEvent as GumroadCancellation
from snapbridge.connectors.gumroad import (
    CancelledBy,
    GumroadEvent,
    ResourceName,
    SaleEvent,
    SubscriptionEvent,
    event_from_fields,
)
from snapbridge.connectors.gumroad import Plan as GumroadPlan
from snapbridge.connectors.gumroad import Sale as ApiSale
from snapbridge.connectors.gumroad import Subscriber as ApiSubscriber
from snapbridge.connectors.gumroad import SubscriptionEndedEvent as GumroadEnded
from snapbridge.connectors.gumroad import SubscriptionRestartedEvent as GumroadRestarted
from snapbridge.connectors.gumroad import SubscriptionUpdatedEvent as GumroadUpdated
from snapbridge.connectors.snapshots import (
    CustomerUpdateEvent,
    LocationCreateEvent,
    LocationUpdateEvent,
    SnapshotsWebhookEvent,
    WebhookType,
)
from snapbridge.connectors.snapshots import parse_webhook as parse_snapshots_webhook
from snapbridge.errors import InvalidInput
from snapbridge.runtime.profile_state import MAX_COUNTED, ProfileState, state_from_record, state_to_record
from snapbridge.workflows import (
    DEFAULT_SEGMENTS,
    App,
    CancellationEvent,
    Customer,
    CustomerCreatedEvent,
    CustomerFields,
    CustomerProfile,
    CustomerUpdatedEvent,
    DisputeEvent,
    Event,
    Location,
    LocationEvent,
    PlanChange,
    PlanTerms,
    PurchaseEvent,
    RefundEvent,
    Sale,
    SegmentRule,
    SnapshotsCustomer,
    SnapshotsCustomerUpdatedEvent,
    Subscription,
    SubscriptionEndedEvent,
    SubscriptionRestartedEvent,
    SubscriptionStartedEvent,
    SubscriptionUpdatedEvent,
    find_country,
    refresh_segments,
)

__all__ = [
    "Derivation",
    "Inbound",
    "MAX_COUNTED",
    "ProfileState",
    "derive",
    "normalise_email",
    "parse_inbound",
    "state_from_record",
    "state_to_record",
    "subject_email",
]

Inbound = GumroadEvent | SnapshotsWebhookEvent
_SNAPSHOTS_KINDS = frozenset(t.value for t in WebhookType)
_TIER_CATEGORY = "tier"


@dataclass(frozen=True)
class Derivation:
    """What one inbound event means: the profile to save (None: unchanged or none), the events, and why.

    `ignored` with a `note` when the event means nothing to act on (a test purchase, no email to key it).
    """

    state: ProfileState | None
    events: tuple[Event, ...] = ()
    ignored: bool = False
    note: str = ""
    email: str | None = None


def normalise_email(email: str | None) -> str | None:
    """Profiles are keyed by the trimmed, lower-cased email; empty is None."""
    if email is None:
        return None
    cleaned = email.strip().lower()
    return cleaned or None


def parse_inbound(kind: str, payload: Mapping[str, object]) -> Inbound:
    """The typed event of a stored inbound row: Snapshots kinds are webhook types, the rest Gumroad bodies."""
    if kind in _SNAPSHOTS_KINDS:
        return parse_snapshots_webhook(json.dumps(dict(payload)).encode("utf-8"))
    return event_from_fields(payload, where="payload")


def subject_email(event: Inbound, truth: ApiSale | ApiSubscriber | None = None) -> str | None:
    """The email of the customer the event is about, normalised; a fetched subscriber fills a missing one."""
    if isinstance(event, SaleEvent):
        return normalise_email(event.email)
    if isinstance(event, SubscriptionEvent):
        found = normalise_email(event.user_email)
        if found is None and isinstance(truth, ApiSubscriber):
            found = normalise_email(truth.email) or normalise_email(truth.user_email)
        return found
    if isinstance(event, CustomerUpdateEvent):
        return normalise_email(event.customer.email)
    location = event.location
    if location.external_id and "@" in location.external_id:
        return normalise_email(location.external_id)
    return normalise_email(location.email)


def derive(
    inbound_id: str,
    event: Inbound,
    state: ProfileState | None,
    now: datetime,
    *,
    email: str | None = None,
    segments: Sequence[SegmentRule] = DEFAULT_SEGMENTS,
    refunded: bool = False,
) -> Derivation:
    """The derivation of one inbound event; `email` overrides the event's own (see `subject_email`).

    `state` is the profile found for that email (or, for an email change, under the old one). `refunded`: the
    sale, read back from the API, is fully refunded by now.
    """
    if now.tzinfo is None:
        raise InvalidInput("derive needs a timezone-aware time")
    who = normalise_email(email) or subject_email(event)
    if isinstance(event, SaleEvent):
        result = _sale_family(inbound_id, event, state, who, refunded=refunded)
    elif isinstance(event, SubscriptionEvent):
        result = _subscription(inbound_id, event, state, who, now)
    elif isinstance(event, CustomerUpdateEvent):
        result = _snapshots_customer(inbound_id, event, state, who)
    else:
        result = _location(inbound_id, event, state, who)
    if result.state is None or result.ignored:
        return result
    refreshed, changed = refresh_segments(result.state.profile, segments, now, inbound_id=inbound_id)
    if changed is None:
        return result
    return replace(result, state=replace(result.state, profile=refreshed), events=(*result.events, changed))


# ---- shared pieces --------------------------------------------------------------------------------------


def _id(inbound_id: str, kind: str) -> str:
    return f"{inbound_id}:{kind}"


class _Envelope(TypedDict):
    id: str
    inbound_id: str
    type: str
    app: App
    occurred_at: datetime


def _envelope(inbound_id: str, kind: str, at: datetime, app: App = App.GUMROAD) -> _Envelope:
    return _Envelope(id=_id(inbound_id, kind), inbound_id=inbound_id, type=kind, app=app, occurred_at=at)


def _customer(profile: CustomerProfile | None, email: str) -> Customer:
    if profile is None:
        return Customer(email=email)
    return Customer(email=email, name=profile.name, purchaser_id=profile.purchaser_id, country=profile.country,
                    country_code=profile.country_code, plan=profile.plan)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


def _newer(at: datetime, as_of: datetime | None) -> bool:
    # Equal times count as newer: two events of one instant arrive in an order we cannot improve on.
    return as_of is None or at >= as_of


_IDENTITY: tuple[Literal["email", "name", "plan"], ...] = ("email", "name", "plan")


def _changed(before: CustomerFields, after: CustomerProfile) -> list[Literal["email", "name", "plan"]]:
    return [name for name in _IDENTITY if getattr(before, name) != getattr(after, name)]


def _updated_event(inbound_id: str, before: CustomerProfile | None, after: CustomerProfile, at: datetime,
                   previous: CustomerFields | None = None) -> CustomerUpdatedEvent | None:
    if before is not None:
        previous = CustomerFields(email=before.email, name=before.name, plan=before.plan)
    if previous is None:
        return None
    changed = _changed(previous, after)
    if not changed:
        return None
    return CustomerUpdatedEvent(
        **_envelope(inbound_id, "customer.updated", at), customer=_customer(after, after.email),
        previous=previous, changed=changed,
    )


# ---- Gumroad sales, refunds, disputes ---------------------------------------------------------------------


def _text(fields: Mapping[str, object], key: str) -> str | None:
    value = fields.get(key)
    return value.strip() or None if isinstance(value, str) else None


def _country(event: SaleEvent) -> tuple[str | None, str | None]:
    """(English name, ISO code): the shipping country first, then what a poll row carries, then the IP's."""
    shipping = event.shipping_information.country if event.shipping_information else None
    name = (shipping or "").strip() or _text(event.fields, "country") or event.ip_country
    code = _text(event.fields, "country_iso2")
    if code is None and name:
        found = find_country(name)
        code = found.code if found else None
    return name, code


def _plan_of(event: SaleEvent) -> str | None:
    """A membership sale's plan: its tier option, else the product; one-off purchases name no plan."""
    if event.subscription_id is None:
        return None
    for category, option in event.variants.items():
        if category.strip().lower() == _TIER_CATEGORY and option.strip():
            return option.strip()
    return event.product_name or None


def _sale_model(event: SaleEvent, email: str) -> Sale:
    country, code = _country(event)
    return Sale(
        sale_id=event.sale_id, order_number=event.order_number, sale_timestamp=event.sale_timestamp,
        product_id=event.product_id, product_name=event.product_name, product_permalink=event.product_permalink,
        email=email, full_name=event.full_name, purchaser_id=event.purchaser_id, price_cents=event.price.cents,
        currency=event.product_currency or "usd", quantity=event.quantity, country=country, country_iso2=code,
        ip_country=event.ip_country, subscription_id=event.subscription_id,
        recurrence=event.recurrence.value if event.recurrence else None,
        is_recurring_charge=event.is_recurring_charge, test=event.test, refunded=event.refunded,
        disputed=event.disputed, offer_code=event.offer_code, referrer=event.referrer or None,
        license_key=event.license_key, variants=dict(event.variants), custom_fields=dict(event.custom_fields),
    )


def _sale_family(inbound_id: str, event: SaleEvent, state: ProfileState | None, email: str | None, *,
                 refunded: bool = False) -> Derivation:
    if event.is_test_ping:
        return Derivation(None, ignored=True, note="Gumroad's settings-page test ping: no derived events")
    if event.test:
        return Derivation(None, ignored=True, note="test purchase (test=true): no derived events", email=email)
    if email is None:
        return Derivation(None, ignored=True, note=f"sale {event.sale_id} has no email to key a customer by")
    if event.resource_name is ResourceName.SALE:
        return _purchase(inbound_id, event, state, email, refunded=refunded or event.refunded)
    profile = state.profile if state else None
    customer = _customer(profile, email)
    sale = _sale_model(event, email)
    at = event.sale_timestamp
    if event.resource_name is ResourceName.REFUND:
        refund = RefundEvent(**_envelope(inbound_id, "refund", at), customer=customer, sale=sale,
                             full_refund=event.refunded)
        key = f"refund:{event.sale_id}"
        new_state = None
        if state is not None and event.refunded and not state.has_counted(key):
            value = max(0, state.profile.lifetime_value_cents - event.price.cents)
            new_state = replace(state, profile=state.profile.model_copy(update={"lifetime_value_cents": value}),
                                counted=state.count(key))
        return Derivation(new_state, (refund,), email=email)
    kind = "dispute_won" if event.resource_name is ResourceName.DISPUTE_WON else "dispute"
    dispute = DisputeEvent(**_envelope(inbound_id, kind, at), customer=customer, sale=sale,
                           outcome="won" if kind == "dispute_won" else "opened")
    return Derivation(None, (dispute,), email=email)


def _purchase(inbound_id: str, event: SaleEvent, state: ProfileState | None, email: str, *,
              refunded: bool = False) -> Derivation:
    at = event.sale_timestamp
    refund_key = f"refund:{event.sale_id}"
    country, code = _country(event)
    plan = _plan_of(event)
    seen = {"name": event.full_name, "purchaser_id": event.purchaser_id, "country": country,
            "country_code": code, "plan": plan}
    if state is None:
        profile = CustomerProfile(
            email=email, name=event.full_name, plan=plan, purchaser_id=event.purchaser_id, country=country,
            country_code=code, purchase_count=1, lifetime_value_cents=0 if refunded else event.price.cents,
            first_seen_at=at, last_activity_at=at,
        )
        first_keys = (f"sale:{event.sale_id}", *((refund_key,) if refunded else ()))
        new_state = ProfileState(profile, identity_as_of=at, counted=first_keys)
        base = _envelope(inbound_id, "customer.created", at)
        customer = _customer(profile, email)
        sale = _sale_model(event, email)
        events: list[Event] = [CustomerCreatedEvent(**base, customer=customer, sale=sale)]
        events += _purchase_events(inbound_id, event, customer, sale, first=True)
        return Derivation(new_state, tuple(events), email=email)
    before = state.profile
    key = f"sale:{event.sale_id}"
    counted = state.counted
    update: dict[str, object] = {
        "first_seen_at": min(before.first_seen_at, at),
        "last_activity_at": _later(before.last_activity_at, at),
    }
    if not state.has_counted(key):
        update["purchase_count"] = before.purchase_count + 1
        counted = state.count(key)
        if refunded and not state.has_counted(refund_key):
            # Refunded before we counted it: its value never arrives, and its refund must not take it off.
            counted = (*counted, refund_key)[-MAX_COUNTED:]
        else:
            # Not refunded, or its refund already took the price off: the sale puts it back.
            update["lifetime_value_cents"] = before.lifetime_value_cents + event.price.cents
    newer = _newer(at, state.identity_as_of)
    for name, value in seen.items():
        # A newer event overwrites what it knows; an older one only fills what nobody set yet.
        if value is not None and (newer or getattr(before, name) is None):
            update[name] = value
    if newer:
        update["email"] = email
    after = before.model_copy(update=update)
    new_state = ProfileState(after, at if newer else state.identity_as_of, state.location_as_of, counted)
    customer = _customer(after, after.email)
    sale = _sale_model(event, after.email)
    events = []
    changed = _updated_event(inbound_id, before, after, at)
    if changed is not None:
        events.append(changed)
    events += _purchase_events(inbound_id, event, customer, sale, first=False)
    return Derivation(new_state, tuple(events), email=after.email)


def _purchase_events(inbound_id: str, event: SaleEvent, customer: Customer, sale: Sale, *, first: bool
                     ) -> list[Event]:
    at = event.sale_timestamp
    events: list[Event] = [
        PurchaseEvent(**_envelope(inbound_id, "purchase", at), customer=customer, sale=sale, first_purchase=first)
    ]
    if event.subscription_id is not None and not event.is_recurring_charge:
        subscription = Subscription(
            subscription_id=event.subscription_id, product_id=event.product_id, product_name=event.product_name,
            email=customer.email, user_id=event.purchaser_id, purchase_ids=[event.sale_id],
            recurrence=event.recurrence.value if event.recurrence else None, tier=_plan_of(event),
            created_at=at, charge_occurrence_count=1,
        )
        events.append(SubscriptionStartedEvent(**_envelope(inbound_id, "subscription.started", at),
                                               customer=customer, subscription=subscription, sale=sale))
    return events


# ---- Gumroad memberships ------------------------------------------------------------------------------------


def _subscription_model(event: SubscriptionEvent, email: str, tier: str | None) -> Subscription:
    return Subscription(
        subscription_id=event.subscription_id, product_id=event.product_id, product_name=event.product_name,
        email=email, user_id=event.user_id, purchase_ids=list(event.purchase_ids),
        recurrence=event.recurrence.value if event.recurrence else None, tier=tier, created_at=event.created_at,
        charge_occurrence_count=event.charge_occurrence_count, free_trial_ends_at=event.free_trial_ends_at,
    )


def _terms(plan: GumroadPlan) -> PlanTerms:
    return PlanTerms(tier_id=plan.tier_id, tier_name=plan.tier_name,
                     recurrence=plan.recurrence.value if plan.recurrence else None,
                     price_cents=plan.price_cents, quantity=plan.quantity)


def _subscription(inbound_id: str, event: SubscriptionEvent, state: ProfileState | None, email: str | None,
                  now: datetime) -> Derivation:
    if email is None:
        return Derivation(None, ignored=True, note=f"{event.resource_name.value} for subscription "
                          f"{event.subscription_id} names no email (and none was fetched)")
    profile = state.profile if state else None
    customer = _customer(profile, email)
    tier = profile.plan if profile else None
    if isinstance(event, GumroadUpdated):
        return _plan_changed(inbound_id, event, state, email, now)
    subscription = _subscription_model(event, email, tier)
    if isinstance(event, GumroadCancellation):
        cancelled = CancellationEvent(
            **_envelope(inbound_id, "cancellation", event.occurred_at), customer=customer,
            subscription=subscription, cancelled_at=event.occurred_at, cancelled_by=_cancelled_by(event),
        )
        return Derivation(None, (cancelled,), email=email)
    if isinstance(event, GumroadEnded):
        ended = SubscriptionEndedEvent(
            **_envelope(inbound_id, "subscription.ended", event.ended_at), customer=customer,
            subscription=subscription, ended_at=event.ended_at, reason=event.ended_reason.value,
        )
        return Derivation(None, (ended,), email=email)
    assert isinstance(event, GumroadRestarted)
    restarted = SubscriptionRestartedEvent(
        **_envelope(inbound_id, "subscription.restarted", event.restarted_at), customer=customer,
        subscription=subscription, restarted_at=event.restarted_at,
    )
    return Derivation(None, (restarted,), email=email)


def _cancelled_by(event: GumroadCancellation) -> Literal["buyer", "seller", "admin", "payment_failures"]:
    if event.due_to_payment_failures:
        return "payment_failures"
    if event.cancelled_by is CancelledBy.SELLER:
        return "seller"
    if event.cancelled_by is CancelledBy.ADMIN:
        return "admin"
    # Buyer, or no flag at all: Gumroad sets exactly one, so a missing one is most likely the buyer's.
    return "buyer"


def _plan_changed(inbound_id: str, event: GumroadUpdated, state: ProfileState | None, email: str,
                  now: datetime) -> Derivation:
    old, new = _terms(event.old_plan), _terms(event.new_plan)
    plan = new.tier_name or event.product_name or None
    # A downgrade takes effect at the end of the period, possibly in the future; it was decided now.
    at = min(event.effective_as_of, now)
    change = PlanChange(kind=event.type.value, effective_as_of=event.effective_as_of, old_plan=old,
                        new_plan=new)
    new_state: ProfileState | None = None
    if state is None:
        after = CustomerProfile(email=email, plan=plan, first_seen_at=at)
        previous = CustomerFields(email=email, plan=old.tier_name or event.product_name or None)
        updated = _updated_event(inbound_id, None, after, at, previous)
    else:
        before = state.profile
        after = before
        if plan is not None and (_newer(at, state.identity_as_of) or before.plan is None):
            after = before.model_copy(update={"plan": plan})
            new_state = replace(state, profile=after, identity_as_of=_later(state.identity_as_of, at))
        updated = _updated_event(inbound_id, before, after, at)
    customer = _customer(after, email) if state is not None else Customer(email=email, plan=plan)
    subscription = _subscription_model(event, email, plan)
    events: list[Event] = [SubscriptionUpdatedEvent(**_envelope(inbound_id, "subscription.updated", at),
                                                    customer=customer, subscription=subscription, change=change)]
    if updated is not None:
        events.append(updated)
    return Derivation(new_state, tuple(events), email=email)


# ---- Snapshots ------------------------------------------------------------------------------------------------


def _location(inbound_id: str, event: LocationCreateEvent | LocationUpdateEvent, state: ProfileState | None,
              email: str | None) -> Derivation:
    loc = event.location
    kind = "location.created" if isinstance(event, LocationCreateEvent) else "location.updated"
    location = Location(
        location_id=loc.location_id, name=loc.name, timezone=loc.timezone or "", email=loc.email,
        region=loc.region, onboarding_status=loc.onboarding_status.value if loc.onboarding_status else None,
        tier=loc.tier, snapshot_id=loc.snapshot_id, external_id=loc.external_id, created_at=loc.created_at,
        updated_at=loc.updated_at,
    )
    derived = LocationEvent(**_envelope(inbound_id, kind, event.timestamp, App.SNAPSHOTS), location=location)
    if state is None:
        return Derivation(None, (derived,), email=email)
    at = loc.updated_at or event.timestamp
    before = state.profile
    update: dict[str, object] = {"last_activity_at": _later(before.last_activity_at, at)}
    newer = _newer(at, state.location_as_of)
    known = {"location_id": loc.location_id, "location_name": loc.name, "timezone": loc.timezone,
             "tier": loc.tier}
    for name, value in known.items():
        if value is not None and (newer or getattr(before, name) is None):
            update[name] = value
    after = before.model_copy(update=update)
    location_as_of = at if newer else state.location_as_of
    if after == before and location_as_of == state.location_as_of:
        return Derivation(None, (derived,), email=email)
    return Derivation(replace(state, profile=after, location_as_of=location_as_of), (derived,), email=email)


def _snapshots_customer(inbound_id: str, event: CustomerUpdateEvent, state: ProfileState | None,
                        email: str | None) -> Derivation:
    c = event.customer
    customer = SnapshotsCustomer(
        customer_id=c.customer_id, email=c.email, name=c.name, plan=c.plan, location_id=c.location_id,
        tags=list(c.tags), last_activity_at=c.last_activity_at, updated_at=c.updated_at,
    )
    derived = SnapshotsCustomerUpdatedEvent(
        **_envelope(inbound_id, "customer.updated", event.timestamp, App.SNAPSHOTS), customer=customer,
    )
    if state is None:
        return Derivation(None, (derived,), email=email)
    before = state.profile
    # Gumroad stays the truth for email, name and plan; the Snapshots side adds its id, tags and activity.
    tags = tuple(dict.fromkeys((*before.tags, *(t for t in c.tags if t.strip()))))
    after = before.model_copy(update={
        "customer_id": c.customer_id, "tags": tags,
        "last_activity_at": _later(before.last_activity_at, c.last_activity_at),
        "location_id": before.location_id or c.location_id,
    })
    if after == before:
        return Derivation(None, (derived,), email=email)
    return Derivation(replace(state, profile=after), (derived,), email=email)
