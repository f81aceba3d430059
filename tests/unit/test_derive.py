"""Derivation tables: which domain events each inbound event makes, for a new and a known customer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from snapbridge.connectors.gumroad import parse_webhook
from snapbridge.errors import InvalidInput
from snapbridge.runtime.derive import Derivation, ProfileState, derive, parse_inbound, subject_email
from snapbridge.workflows import (
    CancellationEvent,
    CustomerCreatedEvent,
    CustomerProfile,
    CustomerUpdatedEvent,
    DisputeEvent,
    LocationEvent,
    PurchaseEvent,
    RefundEvent,
    SegmentChangedEvent,
    SnapshotsCustomerUpdatedEvent,
    SubscriptionEndedEvent,
    SubscriptionRestartedEvent,
    SubscriptionStartedEvent,
    SubscriptionUpdatedEvent,
    parse_event,
)

DATA = Path(__file__).resolve().parents[1] / "data"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
EMAIL = "ada@example.com"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def sale_fields(resource: str | None = "sale", /, **over: object) -> dict[str, object]:
    """A folded sale-family body as the receiver stores it (every value text, as in a form post)."""
    fields: dict[str, object] = {
        "seller_id": "seller-1", "product_id": "prod-1", "product_name": "Pixel Brushes", "email": EMAIL,
        "price": "1500", "gumroad_fee": "200", "currency": "usd", "quantity": "1", "referrer": "direct",
        "card": {"visual": "", "type": ""}, "order_number": "1001", "sale_id": "sale-1",
        "sale_timestamp": iso(T0), "full_name": "Ada Lovelace", "purchaser_id": "555", "ip_country": "United Kingdom",
        "refunded": "false", "disputed": "false", "dispute_won": "false", "is_gift_receiver_purchase": "false",
    }
    if resource is not None:
        fields["resource_name"] = resource
    fields.update({k: v for k, v in over.items() if v is not None})
    for key in [k for k, v in over.items() if v is None]:
        fields.pop(key, None)
    return fields


def membership_fields(**over: object) -> dict[str, object]:
    values: dict[str, object] = {"product_id": "course", "product_name": "Ultimate Course",
                                 "subscription_id": "sub-1", "recurrence": "monthly", "variants": {"Tier": "Pro"},
                                 "price": "2500"}
    return sale_fields("sale", **{**values, **over})


def sub_fields(resource: str, **over: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "subscription_id": "sub-1", "product_id": "course", "product_name": "Ultimate Course", "user_id": "555",
        "user_email": EMAIL, "purchase_ids": ["sale-1"], "created_at": iso(T0), "charge_occurrence_count": "2",
        "recurrence": "monthly", "resource_name": resource,
    }
    fields.update(over)
    return fields


def location_body(kind: str = "LocationUpdate", **over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "type": kind, "webhookId": "wh-1", "timestamp": iso(T0 + timedelta(days=2)), "companyId": "co-1",
        "location_id": "loc-1", "name": "Ada Lovelace", "timezone": "Europe/London", "email": EMAIL,
        "external_id": EMAIL, "tier": "gold", "onboarding_status": "active",
        "created_at": iso(T0), "updated_at": iso(T0 + timedelta(days=2)),
    }
    body.update(over)
    return body


def customer_body(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "type": "CustomerUpdate", "webhookId": "wh-2", "timestamp": iso(T0 + timedelta(days=3)),
        "customer_id": "cus-1", "email": EMAIL, "name": "Ada L.", "plan": "Gold", "tags": ["vip", "beta"],
        "last_activity_at": iso(T0 + timedelta(days=3)), "updated_at": iso(T0 + timedelta(days=3)),
    }
    body.update(over)
    return body


def known(**over: object) -> ProfileState:
    """A customer who bought once on T0, with segments already evaluated (so tests see only new changes)."""
    values: dict[str, object] = {
        "email": EMAIL, "name": "Ada Lovelace", "purchaser_id": "555", "country": "United Kingdom",
        "country_code": "GB", "purchase_count": 1, "lifetime_value_cents": 1500, "first_seen_at": T0,
        "last_activity_at": T0,
    }
    values.update(over)
    return ProfileState(CustomerProfile.model_validate(values), identity_as_of=T0, counted=("sale:sale-0",))


def run(kind: str, payload: Mapping[str, object], state: ProfileState | None = None, *,
        email: str | None = None, inbound_id: str = "7") -> Derivation:
    return derive(inbound_id, parse_inbound(kind, payload), state, NOW, email=email, segments=())


def types(result: Derivation) -> list[str]:
    return [event.type for event in result.events]


CASES: list[tuple[str, str, Mapping[str, object], ProfileState | None, list[str]]] = [
    ("first purchase", "sale", sale_fields(), None, ["customer.created", "purchase"]),
    ("repeat purchase, same name", "sale", sale_fields(sale_id="sale-2"), known(), ["purchase"]),
    ("repeat purchase, new name", "sale", sale_fields(sale_id="sale-2", full_name="Ada King"), known(),
     ["customer.updated", "purchase"]),
    ("repeat purchase without a name keeps it", "sale", sale_fields(sale_id="sale-2", full_name=None), known(),
     ["purchase"]),
    ("membership start, new customer", "sale", membership_fields(), None,
     ["customer.created", "purchase", "subscription.started"]),
    ("membership start changes the plan", "sale", membership_fields(sale_id="sale-2"), known(plan="Basic"),
     ["customer.updated", "purchase", "subscription.started"]),
    ("membership renewal", "sale", membership_fields(sale_id="sale-3", is_recurring_charge="true"),
     known(plan="Pro"), ["purchase"]),
    ("test purchase", "sale", sale_fields(test="true"), None, []),
    ("test purchase of a known customer", "sale", sale_fields(test="true"), known(), []),
    ("settings-page test ping", "test_ping", sale_fields(None, test="true"), None, []),
    ("full refund", "refund", sale_fields("refund", refunded="true"), known(), ["refund"]),
    ("partial refund", "refund", sale_fields("refund"), known(), ["refund"]),
    ("refund of an unknown customer", "refund", sale_fields("refund", refunded="true"), None, ["refund"]),
    ("dispute", "dispute", sale_fields("dispute", disputed="true"), known(), ["dispute"]),
    ("dispute won", "dispute_won", sale_fields("dispute_won", disputed="true", dispute_won="true"), known(),
     ["dispute_won"]),
    ("cancellation", "cancellation",
     sub_fields("cancellation", cancelled="true", cancelled_at=iso(T0 + timedelta(days=30)),
                cancelled_by_buyer="true"), known(plan="Pro"), ["cancellation"]),
    ("subscription updated", "subscription_updated",
     sub_fields("subscription_updated", type="upgrade", effective_as_of=iso(T0 + timedelta(days=5)),
                old_plan={"tier": {"id": "t1", "name": "Basic"}, "recurrence": "monthly", "price_cents": "1000"},
                new_plan={"tier": {"id": "t2", "name": "Pro"}, "recurrence": "monthly", "price_cents": "2500"}),
     known(plan="Basic"), ["subscription.updated", "customer.updated"]),
    ("subscription updated to the plan already known", "subscription_updated",
     sub_fields("subscription_updated", type="upgrade", effective_as_of=iso(T0 + timedelta(days=5)),
                old_plan={"tier": {"name": "Basic"}}, new_plan={"tier": {"name": "Pro"}}),
     known(plan="Pro"), ["subscription.updated"]),
    ("subscription updated, unknown customer", "subscription_updated",
     sub_fields("subscription_updated", type="downgrade", effective_as_of=iso(T0 + timedelta(days=5)),
                old_plan={"tier": {"name": "Pro"}}, new_plan={"tier": {"name": "Basic"}}),
     None, ["subscription.updated", "customer.updated"]),
    ("subscription ended", "subscription_ended",
     sub_fields("subscription_ended", ended_at=iso(T0 + timedelta(days=40)), ended_reason="failed_payment"),
     known(), ["subscription.ended"]),
    ("subscription restarted", "subscription_restarted",
     sub_fields("subscription_restarted", restarted_at=iso(T0 + timedelta(days=41))), known(),
     ["subscription.restarted"]),
    ("location created", "LocationCreate", location_body("LocationCreate"), known(), ["location.created"]),
    ("location updated", "LocationUpdate", location_body(), known(), ["location.updated"]),
    ("location of nobody we know", "LocationUpdate", location_body(external_id="ext-9", email=None), None,
     ["location.updated"]),
    ("snapshots customer updated", "CustomerUpdate", customer_body(), known(), ["customer.updated"]),
]


@pytest.mark.parametrize(("kind", "payload", "state", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_derived_event_types(kind: str, payload: Mapping[str, object], state: ProfileState | None,
                             expected: list[str]) -> None:
    result = run(kind, payload, state)
    assert types(result) == expected
    assert result.ignored == (not expected)
    for event in result.events:
        assert event.id == f"7:{event.type}" and event.inbound_id == "7"
        # Every derived event survives the JSON round trip the planner and the job rows use.
        assert parse_event(event.model_dump(mode="json")) == event


def test_first_purchase_events_carry_customer_and_sale() -> None:
    created, purchase = run("sale", sale_fields()).events
    assert isinstance(created, CustomerCreatedEvent) and isinstance(purchase, PurchaseEvent)
    assert created.customer.email == EMAIL and created.customer.name == "Ada Lovelace"
    assert created.customer.country_code == "GB"  # from the ping's country name
    assert purchase.first_purchase and purchase.sale.price_cents == 1500 and purchase.sale.sale_id == "sale-1"
    assert purchase.occurred_at == T0 and created.app.value == "gumroad"


def test_membership_start_names_plan_and_subscription() -> None:
    *_, started = run("sale", membership_fields()).events
    assert isinstance(started, SubscriptionStartedEvent)
    assert started.customer.plan == "Pro" and started.subscription.tier == "Pro"
    assert started.subscription.subscription_id == "sub-1" and started.subscription.purchase_ids == ["sale-1"]


def test_name_change_says_what_changed_and_before() -> None:
    updated = run("sale", sale_fields(sale_id="sale-2", full_name="Ada King"), known()).events[0]
    assert isinstance(updated, CustomerUpdatedEvent)
    assert updated.changed == ["name"] and updated.previous.name == "Ada Lovelace"
    assert updated.customer.name == "Ada King"


def test_plan_change_from_subscription_updated() -> None:
    payload = sub_fields("subscription_updated", type="upgrade", effective_as_of=iso(T0 + timedelta(days=5)),
                         old_plan={"tier": {"name": "Basic"}}, new_plan={"tier": {"name": "Pro"}})
    changed, updated = run("subscription_updated", payload, known(plan="Basic")).events
    assert isinstance(changed, SubscriptionUpdatedEvent) and isinstance(updated, CustomerUpdatedEvent)
    assert changed.change.kind == "upgrade" and changed.change.new_plan.tier_name == "Pro"
    assert updated.changed == ["plan"] and updated.previous.plan == "Basic" and updated.customer.plan == "Pro"


def test_future_downgrade_is_ordered_by_when_it_was_decided() -> None:
    later = NOW + timedelta(days=20)
    payload = sub_fields("subscription_updated", type="downgrade", effective_as_of=iso(later),
                         old_plan={"tier": {"name": "Pro"}}, new_plan={"tier": {"name": "Basic"}})
    result = run("subscription_updated", payload, known(plan="Pro"))
    assert result.state is not None and result.state.identity_as_of == NOW
    changed = result.events[0]
    assert isinstance(changed, SubscriptionUpdatedEvent) and changed.change.effective_as_of == later


@pytest.mark.parametrize(("flags", "expected"), [
    ({"cancelled_by_buyer": "true"}, "buyer"),
    ({"cancelled_by_seller": "true"}, "seller"),
    ({"cancelled_by_admin": "true"}, "admin"),
    ({"cancelled_due_to_payment_failures": "true"}, "payment_failures"),
    ({}, "buyer"),
])
def test_cancellation_says_who(flags: dict[str, str], expected: str) -> None:
    payload = sub_fields("cancellation", cancelled="true", cancelled_at=iso(T0 + timedelta(days=30)), **flags)
    event = run("cancellation", payload, known()).events[0]
    assert isinstance(event, CancellationEvent)
    assert event.cancelled_by == expected and event.cancelled_at == T0 + timedelta(days=30)


def test_refund_full_or_partial() -> None:
    full = run("refund", sale_fields("refund", refunded="true"), known()).events[0]
    partial = run("refund", sale_fields("refund"), known()).events[0]
    assert isinstance(full, RefundEvent) and isinstance(partial, RefundEvent)
    assert full.full_refund and not partial.full_refund


def test_dispute_outcomes() -> None:
    opened = run("dispute", sale_fields("dispute", disputed="true"), known()).events[0]
    won = run("dispute_won", sale_fields("dispute_won", dispute_won="true"), known()).events[0]
    assert isinstance(opened, DisputeEvent) and isinstance(won, DisputeEvent)
    assert (opened.outcome, won.outcome) == ("opened", "won")


def test_ended_and_restarted() -> None:
    ended = run("subscription_ended", sub_fields("subscription_ended", ended_at=iso(T0 + timedelta(days=40)),
                                                 ended_reason="cancelled"), known(plan="Pro")).events[0]
    restarted = run("subscription_restarted", sub_fields(
        "subscription_restarted", restarted_at=iso(T0 + timedelta(days=41))), known()).events[0]
    assert isinstance(ended, SubscriptionEndedEvent) and ended.reason == "cancelled"
    assert ended.subscription.tier == "Pro" and ended.customer.plan == "Pro"
    assert isinstance(restarted, SubscriptionRestartedEvent)
    assert restarted.restarted_at == T0 + timedelta(days=41)


@pytest.mark.parametrize(("kind", "payload"), [
    ("sale", sale_fields(test="true")),
    ("test_ping", sale_fields(None, test="true")),
])
def test_tests_are_ignored_with_a_reason(kind: str, payload: Mapping[str, object]) -> None:
    result = run(kind, payload, known())
    assert result.ignored and result.state is None and not result.events
    assert "test" in result.note


def test_subscription_event_without_email_is_ignored_unless_one_is_given() -> None:
    payload = sub_fields("subscription_ended", user_email="", ended_at=iso(T0), ended_reason="cancelled")
    assert subject_email(parse_inbound("subscription_ended", payload)) is None
    ignored = run("subscription_ended", payload)
    assert ignored.ignored and "no email" in ignored.note
    derived = run("subscription_ended", payload, email=" Ada@Example.com ")
    assert types(derived) == ["subscription.ended"] and derived.email == EMAIL


def test_location_events_are_snapshots_events() -> None:
    event = run("LocationUpdate", location_body(), known()).events[0]
    assert isinstance(event, LocationEvent) and event.app.value == "snapshots"
    assert event.location.location_id == "loc-1" and event.location.external_id == EMAIL


def test_snapshots_customer_update_is_a_snapshots_event() -> None:
    event = run("CustomerUpdate", customer_body(), known()).events[0]
    assert isinstance(event, SnapshotsCustomerUpdatedEvent) and event.app.value == "snapshots"
    assert event.customer.customer_id == "cus-1" and event.customer.tags == ["vip", "beta"]


@pytest.mark.parametrize(("kind", "payload", "expected"), [
    ("sale", sale_fields(email=" Ada@Example.COM "), EMAIL),
    ("LocationUpdate", location_body(external_id="Ada@Example.com", email="other@example.com"), EMAIL),
    ("LocationUpdate", location_body(external_id="ext-9", email="Other@Example.com"), "other@example.com"),
    ("CustomerUpdate", customer_body(email="ADA@example.com"), EMAIL),
    ("cancellation", sub_fields("cancellation", cancelled_at=iso(T0)), EMAIL),
])
def test_subject_email(kind: str, payload: Mapping[str, object], expected: str) -> None:
    assert subject_email(parse_inbound(kind, payload)) == expected


def test_segment_change_is_an_event() -> None:
    result = derive("9", parse_inbound("sale", sale_fields()), None, T0 + timedelta(days=1))
    assert types(result) == ["customer.created", "purchase", "customer.segment_changed"]
    changed = result.events[-1]
    assert isinstance(changed, SegmentChangedEvent)
    assert {"paying", "active", "eu"} <= set(changed.entered) and not changed.left
    assert result.state is not None and set(result.state.profile.segments) == set(changed.segments)
    again = derive("10", parse_inbound("sale", sale_fields(sale_id="sale-2")), result.state, T0 + timedelta(days=2))
    assert types(again) == ["purchase"]  # still in the same segments: no event


def test_deriving_twice_gives_the_same_events() -> None:
    first = run("sale", membership_fields())
    second = run("sale", membership_fields())
    assert first == second


def test_recorded_bodies_derive() -> None:
    expected = {
        "sale.txt": ["customer.created", "purchase"],
        "sale_recurring.txt": ["customer.created", "purchase"],
        "refund.txt": ["refund"], "refund_partial.txt": ["refund"], "dispute.txt": ["dispute"],
        "dispute_won.txt": ["dispute_won"], "cancellation.txt": ["cancellation"],
        "subscription_updated.txt": ["subscription.updated", "customer.updated"],
        "subscription_ended.txt": ["subscription.ended"], "subscription_restarted.txt": ["subscription.restarted"],
        "sale_preorder_test.txt": [], "test_ping.txt": [],
    }
    for name, wanted in expected.items():
        parsed = parse_webhook((DATA / "gumroad_webhooks" / name).read_bytes(), "application/x-www-form-urlencoded")
        kind = parsed.resource_name.value if parsed.resource_name else "test_ping"
        assert types(run(kind, parsed.fields)) == wanted, name
    for name, wanted in {"location_create": ["location.created"], "location_update": ["location.updated"],
                         "customer_update": ["customer.updated"]}.items():
        body = json.loads((DATA / "snapshots_webhooks" / f"{name}.body.json").read_text())
        assert types(run(body["type"], body)) == wanted, name


@pytest.mark.parametrize(("kind", "payload"), [
    ("sale", {"resource_name": "sale"}),
    ("LocationUpdate", {"type": "LocationUpdate", "webhookId": "x"}),
    ("sale", {"resource_name": "nonsense", "sale_id": "1"}),
])
def test_unreadable_payloads_are_invalid_input(kind: str, payload: Mapping[str, object]) -> None:
    with pytest.raises(InvalidInput):
        parse_inbound(kind, payload)


def test_naive_now_is_refused() -> None:
    with pytest.raises(InvalidInput):
        derive("1", parse_inbound("sale", sale_fields()), None, datetime(2024, 1, 1))


def test_a_fetched_subscriber_names_the_customer_the_post_left_out() -> None:
    from snapbridge.connectors.gumroad import Subscriber

    event = parse_inbound("subscription_ended", sub_fields("subscription_ended", user_email="", ended_at=iso(T0),
                                                           ended_reason="cancelled"))
    truth = Subscriber.from_json({"id": "sub-1", "product_id": "course", "product_name": "Ultimate Course",
                                  "created_at": iso(T0), "status": "cancelled", "purchase_ids": ["sale-1"],
                                  "email": "Ada@Example.com"})
    assert subject_email(event, truth) == EMAIL
