"""Event schemas: every sample is valid, round-trips through JSON, and field paths are checked by schema."""

from __future__ import annotations

import pytest

from snapbridge.errors import InvalidInput
from snapbridge.workflows.events import (
    EVENT_SPECS,
    CustomerProfile,
    EventSpec,
    PurchaseEvent,
    event_spec,
    field_problem,
    parse_event,
)

ISSUE_4_TYPES = {
    ("gumroad", "customer.created"), ("gumroad", "customer.updated"), ("gumroad", "purchase"),
    ("gumroad", "subscription.started"), ("gumroad", "subscription.updated"),
    ("gumroad", "subscription.ended"), ("gumroad", "subscription.restarted"), ("gumroad", "cancellation"),
    ("gumroad", "refund"),
    ("gumroad", "dispute"), ("gumroad", "customer.segment_changed"), ("snapshots", "location.created"),
    ("snapshots", "location.updated"), ("snapshots", "customer.updated"),
}


def test_every_event_type_of_the_issue_has_a_spec() -> None:
    assert {(s.app.value, s.name) for s in EVENT_SPECS} >= ISSUE_4_TYPES


@pytest.mark.parametrize("spec", EVENT_SPECS, ids=lambda s: f"{s.app.value}:{s.name}")
def test_each_sample_is_valid_and_round_trips(spec: EventSpec) -> None:
    event = spec.sample_event()
    assert (event.app, event.type) == (spec.app, spec.name)
    assert parse_event(event.model_dump(mode="json")) == event
    assert event.customer_email() or event.location_id()


@pytest.mark.parametrize(
    ("app", "kind", "message"),
    [
        ("gumroad", "purchased",
         "unknown gumroad event 'purchased'; known events: cancellation, customer.created"),
        ("shopify", "purchase", "unknown app 'shopify'; known apps: gumroad, snapshots"),
        ("snapshots", "purchase", "unknown snapshots event 'purchase'; known events: customer.updated, "
                                  "location.created, location.updated"),
    ],
)
def test_unknown_event_types_list_the_known_ones(app: str, kind: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace(".", r"\.")):
        event_spec(app, kind)


def test_an_event_of_the_wrong_model_is_refused() -> None:
    data = event_spec("gumroad", "purchase").sample_event().model_dump(mode="json")
    with pytest.raises(InvalidInput, match="not a valid gumroad refund event"):
        parse_event({**data, "type": "refund"})
    with pytest.raises(InvalidInput, match="needs text fields 'app' and 'type'"):
        parse_event({"type": "refund"})
    with pytest.raises(ValueError, match="PurchaseEvent is for gumroad purchase, sale events"):
        PurchaseEvent.model_validate({**data, "type": "refund"})


def test_naive_times_are_refused() -> None:
    data = event_spec("gumroad", "purchase").sample_event().model_dump(mode="json")
    with pytest.raises(InvalidInput):
        parse_event({**data, "occurred_at": "2024-05-01T12:00:00"})


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        (("sale", "price_cents"), None),
        (("sale", "custom_fields", "Any name"), None),
        (("customer", "email"), None),
        (("occurred_at",), None),
        (("sale", "pricecents"), "event.sale.pricecents is not a field; known fields of event.sale: cou"),
        (("sale", "price_cents", "x"), "event.sale.price_cents is a number and has no field 'x'"),
        (("sale", "custom_fields", "a", "b"), "event.sale.custom_fields.a is text and has no field 'b'"),
        (("occurred_at", "year"), "event.occurred_at is a time and has no field 'year'"),
        (("location",), "event.location is not a field; known fields of event: app, customer, first_pur"),
    ],
)
def test_field_paths_are_checked_against_the_schema(path: tuple[str | int, ...], problem: str | None) -> None:
    found = field_problem("event", PurchaseEvent, path)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)


def test_list_fields_take_indexes_only() -> None:
    assert field_problem("profile", CustomerProfile, ("tags", 0)) is None
    assert field_problem("profile", CustomerProfile, ("tags", "x")) == (
        "profile.tags is a list; profile.tags.x names no item (use profile.tags[0])"
    )
