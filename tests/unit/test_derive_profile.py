"""Derivation's profile rules: counters in cents, ordering by event time, enrichment, and the stored form."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from test_derive import (
    EMAIL,
    NOW,
    T0,
    customer_body,
    iso,
    known,
    location_body,
    membership_fields,
    run,
    sale_fields,
    sub_fields,
    types,
)

from snapbridge.runtime.derive import MAX_COUNTED, ProfileState, state_from_record, state_to_record
from snapbridge.store import Profile
from snapbridge.workflows import CustomerProfile, CustomerUpdatedEvent

LATER = T0 + timedelta(days=10)
EARLIER = T0 - timedelta(days=10)


def state_of(result_state: ProfileState | None) -> ProfileState:
    assert result_state is not None
    return result_state


def test_first_purchase_makes_the_profile() -> None:
    state = state_of(run("sale", sale_fields(email="Ada@Example.com")).state)
    p = state.profile
    assert (p.email, p.name, p.purchaser_id) == (EMAIL, "Ada Lovelace", "555")
    assert (p.country, p.country_code, p.plan) == ("United Kingdom", "GB", None)
    assert (p.purchase_count, p.lifetime_value_cents) == (1, 1500)
    assert p.first_seen_at == T0 and p.last_activity_at == T0
    assert state.identity_as_of == T0 and state.counted == ("sale:sale-1",)


def test_membership_sets_the_plan() -> None:
    assert state_of(run("sale", membership_fields()).state).profile.plan == "Pro"
    no_tier = membership_fields(variants=None)
    assert state_of(run("sale", no_tier).state).profile.plan == "Ultimate Course"


def test_lifetime_value_adds_cents_and_counts_purchases() -> None:
    state = state_of(run("sale", sale_fields(sale_id="sale-2", price="2599", sale_timestamp=iso(LATER)),
                         known()).state)
    assert (state.profile.purchase_count, state.profile.lifetime_value_cents) == (2, 1500 + 2599)
    assert state.profile.last_activity_at == LATER and state.identity_as_of == LATER


def test_a_sale_derived_twice_counts_once() -> None:
    first = state_of(run("sale", sale_fields(sale_id="sale-2"), known()).state)
    again = run("sale", sale_fields(sale_id="sale-2"), first)
    assert state_of(again.state).profile.lifetime_value_cents == 3000
    assert state_of(again.state).profile.purchase_count == 2
    assert types(again) == ["purchase"]  # the events are the same; the queue dedupes their jobs


@pytest.mark.parametrize(("refunded", "start", "expected"), [
    ("true", 4000, 2500),  # full refund: its price comes off
    ("false", 4000, 4000),  # partial refund: the amount is unknown, the value stays
    ("true", 1000, 0),  # never below zero (the sale may predate the profile)
])
def test_refunds_and_lifetime_value(refunded: str, start: int, expected: int) -> None:
    result = run("refund", sale_fields("refund", refunded=refunded), known(lifetime_value_cents=start))
    value = result.state.profile.lifetime_value_cents if result.state else start
    assert value == expected


def test_a_full_refund_derived_twice_counts_once() -> None:
    once = state_of(run("refund", sale_fields("refund", refunded="true"), known(lifetime_value_cents=4000)).state)
    twice = run("refund", sale_fields("refund", refunded="true"), once)
    assert twice.state is None and once.profile.lifetime_value_cents == 2500


def test_a_partial_refund_then_the_final_one_derive_two_refunds_and_take_the_value_off_once() -> None:
    partial = run("refund", sale_fields("refund"), known(lifetime_value_cents=4000), inbound_id="8")
    assert types(partial) == ["refund"] and partial.state is None  # the amount is unknown: the value stays
    final = run("refund", sale_fields("refund", refunded="true"), known(lifetime_value_cents=4000),
                inbound_id="9")
    assert types(final) == ["refund"]
    assert [e.id for e in (*partial.events, *final.events)] == ["8:refund", "9:refund"]
    assert [e.model_dump()["full_refund"] for e in (*partial.events, *final.events)] == [False, True]
    assert state_of(final.state).profile.lifetime_value_cents == 2500


def test_refund_of_unknown_customer_makes_no_profile() -> None:
    assert run("refund", sale_fields("refund", refunded="true")).state is None


def test_an_older_sale_arriving_late_does_not_overwrite_newer_fields() -> None:
    newer = ProfileState(known(name="Ada King").profile, identity_as_of=LATER)
    result = run("sale", sale_fields(sale_id="sale-old", full_name="Ada Lovelace", sale_timestamp=iso(EARLIER)),
                 newer)
    state = state_of(result.state)
    assert types(result) == ["purchase"]  # no customer.updated back to the old name
    assert state.profile.name == "Ada King" and state.identity_as_of == LATER
    assert state.profile.first_seen_at == EARLIER  # the older sale still counts
    assert state.profile.last_activity_at == T0
    assert (state.profile.purchase_count, state.profile.lifetime_value_cents) == (2, 3000)


def test_an_older_sale_fills_a_field_nobody_set() -> None:
    nameless = ProfileState(known(name=None).profile, identity_as_of=LATER)
    result = run("sale", sale_fields(sale_id="sale-old", sale_timestamp=iso(EARLIER)), nameless)
    assert state_of(result.state).profile.name == "Ada Lovelace"
    updated = result.events[0]
    assert isinstance(updated, CustomerUpdatedEvent) and updated.changed == ["name"]


def test_a_newer_event_overwrites() -> None:
    result = run("sale", sale_fields(sale_id="sale-new", full_name="Ada King", sale_timestamp=iso(LATER)), known())
    assert state_of(result.state).profile.name == "Ada King"


def test_an_older_plan_change_arriving_late_is_not_applied() -> None:
    newer = ProfileState(known(plan="Pro").profile, identity_as_of=LATER)
    payload = sub_fields("subscription_updated", type="downgrade", effective_as_of=iso(T0),
                         old_plan={"tier": {"name": "Pro"}}, new_plan={"tier": {"name": "Basic"}})
    result = run("subscription_updated", payload, newer)
    assert types(result) == ["subscription.updated"] and result.state is None


def test_email_change_when_the_profile_was_found_under_the_old_email() -> None:
    old = known(email="ada.old@example.com")
    result = run("sale", sale_fields(sale_id="sale-2", sale_timestamp=iso(LATER)), old)
    assert state_of(result.state).profile.email == EMAIL
    updated = result.events[0]
    assert isinstance(updated, CustomerUpdatedEvent)
    assert updated.changed == ["email"] and updated.previous.email == "ada.old@example.com"


def test_location_enriches_the_profile() -> None:
    at = T0 + timedelta(days=2)
    state = state_of(run("LocationUpdate", location_body(), known()).state)
    p = state.profile
    assert (p.location_id, p.location_name, p.timezone, p.tier) == ("loc-1", "Ada Lovelace", "Europe/London", "gold")
    assert p.last_activity_at == at and state.location_as_of == at
    assert state.identity_as_of == T0  # a location says nothing about name, email or plan


def test_an_older_location_update_does_not_overwrite_a_newer_one() -> None:
    newer = state_of(run("LocationUpdate", location_body(tier="platinum", updated_at=iso(LATER)), known()).state)
    result = run("LocationUpdate", location_body(tier="silver"), newer)
    assert result.state is None  # nothing newer to learn
    assert types(result) == ["location.updated"]  # the event itself still goes to workflows


def test_an_unchanged_location_changes_nothing() -> None:
    once = state_of(run("LocationUpdate", location_body(), known()).state)
    assert run("LocationUpdate", location_body(), once).state is None


def test_snapshots_customer_enriches_without_touching_gumroad_fields() -> None:
    state = state_of(run("CustomerUpdate", customer_body(location_id="loc-7"), known(tags=("new-customer",))).state)
    p = state.profile
    assert p.customer_id == "cus-1" and p.tags == ("new-customer", "vip", "beta")
    assert p.location_id == "loc-7" and p.last_activity_at == T0 + timedelta(days=3)
    assert (p.name, p.plan) == ("Ada Lovelace", None)  # Gumroad stays the truth for these


def test_counted_keys_are_bounded() -> None:
    state = ProfileState(known().profile, counted=tuple(f"sale:{i}" for i in range(MAX_COUNTED)))
    after = state_of(run("sale", sale_fields(sale_id="sale-new"), state).state)
    assert len(after.counted) == MAX_COUNTED and after.counted[-1] == "sale:sale-new"
    assert "sale:0" not in after.counted


def test_stored_form_round_trip() -> None:
    profile = CustomerProfile(
        email=EMAIL, name="Ada", plan="Pro", customer_id="cus-1", purchaser_id="555", country="Germany",
        country_code="DE", location_id="loc-1", location_name="Ada's", timezone="Europe/Berlin", tier="gold",
        tags=("vip",), segments=("paying", "eu"), purchase_count=3, lifetime_value_cents=4500, first_seen_at=T0,
        last_activity_at=LATER,
    )
    state = ProfileState(profile, identity_as_of=T0, location_as_of=LATER, counted=("sale:a", "refund:a"))
    base = Profile(connection="gumroad", email=EMAIL, first_seen_at=T0, updated_at=T0,
                   attributes={"kept": "by someone else", "country": "France"}, id=42)
    record = state_to_record(state, connection="gumroad", now=NOW, base=base)
    assert record.region == "EU" and record.purchases == 3 and record.id == 42 and record.updated_at == NOW
    assert record.attributes["kept"] == "by someone else" and record.attributes["country"] == "Germany"
    assert state_from_record(record) == state


def test_stored_form_of_a_new_profile() -> None:
    state = state_of(run("sale", sale_fields(ip_country=None)).state)
    record = state_to_record(state, connection="gumroad", now=NOW)
    assert record.region is None and record.id is None and "country" not in record.attributes
    assert state_from_record(record) == state


def test_bad_stored_times_are_ignored() -> None:
    record = Profile(connection="g", email=EMAIL, first_seen_at=T0, updated_at=T0,
                     attributes={"identity_as_of": "not a time", "location_as_of": "2024-01-01T00:00:00",
                                 "counted": "nope"})
    state = state_from_record(record)
    assert state.identity_as_of is None and state.location_as_of is None and state.counted == ()
    assert state.profile.first_seen_at == T0.astimezone(UTC)
