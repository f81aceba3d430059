"""Matching and planning: which workflows run, rendered inputs, deferred inputs, and deterministic keys."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from snapbridge.errors import InvalidInput
from snapbridge.workflows import (
    EVENT_SPECS,
    CustomerProfile,
    Event,
    EventSpec,
    LocationEvent,
    PurchaseEvent,
    Workflow,
    event_spec,
    idempotency_key,
    load_data,
    load_template,
    load_templates,
    ordering_key,
    plan_event,
    resolve_step,
)

PROFILE = CustomerProfile(email="ada@example.com", name="Ada Lovelace", plan="Pro", customer_id="cus_ada",
                          location_id="loc_1", first_seen_at=datetime(2024, 5, 1, tzinfo=UTC))


def sample(app: str, kind: str, **changes: object) -> Event:
    event = event_spec(app, kind).sample_event()
    return event.model_copy(update=changes) if changes else event


def workflow(**changes: object) -> Workflow:
    data: dict[str, object] = {
        "name": "w", "trigger": {"app": "gumroad", "event": "purchase"},
        "steps": [{"id": "one", "action": "snapbridge.segments.refresh",
                   "input": {"email": "{{ event.customer.email }}"}}],
    }
    return load_data({**data, **changes})


def test_templates_plan_for_the_events_they_name_and_only_those() -> None:
    templates = load_templates()
    triggered = {
        (spec.app.value, spec.name): sorted(p.workflow for p in plan_event(spec.sample_event(), PROFILE, templates))
        for spec in EVENT_SPECS
    }
    assert triggered[("gumroad", "customer.created")] == ["new-customer-location"]
    assert triggered[("gumroad", "purchase")] == ["purchase-event"]
    assert triggered[("gumroad", "customer.updated")] == ["customer-sync"]
    assert triggered[("snapshots", "location.updated")] == ["location-enrich"]
    for kind in ("refund", "cancellation", "subscription.ended"):
        assert triggered[("gumroad", kind)] == ["churn"]
    assert triggered[("snapshots", "customer.updated")] == []
    assert triggered[("gumroad", "sale")] == []


@pytest.mark.parametrize(
    ("changes", "runs"),
    [
        ({}, True),
        ({"enabled": False}, False),
        ({"trigger": {"app": "gumroad", "event": "refund"}}, False),
        ({"trigger": {"app": "gumroad", "event": ["refund", "purchase"]}}, True),
        ({"trigger": {"app": "gumroad", "event": "purchase", "filter": "{{ event.sale.price_cents > 1000 }}"}}, True),
        ({"trigger": {"app": "gumroad", "event": "purchase", "filter": "{{ event.sale.test }}"}}, False),
        ({"trigger": {"app": "gumroad", "event": "purchase", "filter": "{{ profile.plan == 'Pro' }}"}}, True),
        ({"trigger": {"app": "gumroad", "event": "purchase", "filter": "{{ 'vip' in profile.segments }}"}}, False),
        ({"trigger": {"app": "gumroad", "event": "purchase", "filter": "false"}}, False),
    ],
)
def test_trigger_enabled_and_filter(changes: dict[str, object], runs: bool) -> None:
    plans = plan_event(sample("gumroad", "purchase"), PROFILE, [workflow(**changes)])
    assert bool(plans) is runs
    assert all(p.error is None for p in plans)


def test_a_filter_that_is_not_a_boolean_or_fails_gives_an_error_plan_not_an_exception() -> None:
    broken = workflow(name="broken", trigger={"app": "gumroad", "event": "purchase",
                                              "filter": "{{ event.sale.product_name }}"})
    failing = workflow(name="failing", trigger={"app": "gumroad", "event": "purchase",
                                                "filter": "{{ event.sale.price_cents / 0 > 1 }}"})
    fine = workflow(name="fine")
    plans = plan_event(sample("gumroad", "purchase"), PROFILE, [broken, failing, fine])
    assert [p.workflow for p in plans] == ["broken", "failing", "fine"]
    assert plans[0].error == "workflow broken: trigger.filter: must render true or false, got text"
    assert plans[1].error == "workflow failing: trigger.filter: division by zero"
    assert plans[2].error is None and len(plans[2].steps) == 1


def test_rendered_inputs_keep_native_types_and_drop_nulls() -> None:
    (plan,) = plan_event(sample("gumroad", "purchase"), PROFILE, [load_template("purchase-event")])
    first = plan.steps[0]
    assert first.input["event_id"] == "gumroad-sale-FO8TXN-dbxYaBdahG97Y-Q=="
    assert first.input["type"] == "subscription.started"
    assert first.input["customer_id"] == "cus_ada"
    assert first.input["location_id"] == "loc_1"
    data = first.input["data"]
    assert isinstance(data, dict) and data["quantity"] == 1 and data["renewal"] is False
    purchase = sample("gumroad", "purchase")
    assert isinstance(purchase, PurchaseEvent)
    renewal = purchase.model_copy(update={"sale": purchase.sale.model_copy(update={"is_recurring_charge": True})})
    (again,) = plan_event(renewal, CustomerProfile(email="ada@example.com", first_seen_at=PROFILE.first_seen_at),
                          [load_template("purchase-event")])
    assert again.steps[0].input["type"] == "purchase"
    assert "location_id" not in again.steps[0].input
    assert again.steps[0].input["customer_id"] == "ada@example.com"


def test_steps_reading_earlier_outputs_are_deferred_and_resolved_at_run_time() -> None:
    event = sample("gumroad", "customer.created")
    (plan,) = plan_event(event, PROFILE, [load_template("new-customer-location")])
    find, create, update, link, segments = plan.steps
    assert find.input == {"external_id": "ada@example.com", "limit": 1} and not find.deferred
    assert create.condition == "{{ steps.find.output | length == 0 }}" and create.after == ("find",)
    assert update.deferred == {"location_id": "{{ steps.find.output[0].location_id }}"}
    assert set(link.deferred) == {"location_id", "location_name", "timezone"}
    assert link.after == ("create", "update")
    assert segments.condition is None and not segments.deferred

    created = {"location_id": "loc_9", "name": "Ada Lovelace", "timezone": "Europe/London"}
    assert resolve_step(create, event, PROFILE, {"find": []}).run
    assert not resolve_step(update, event, PROFILE, {"find": []}).run
    resolved = resolve_step(link, event, PROFILE, {"find": [], "create": created, "update": None})
    assert resolved.run and resolved.input == {
        "email": "ada@example.com", "add_tags": ["new-customer"], "location_id": "loc_9",
        "location_name": "Ada Lovelace", "timezone": "Europe/London",
    }
    found = resolve_step(update, event, PROFILE, {"find": [{"location_id": "loc_3", "name": "x"}]})
    assert found.run and found.input["location_id"] == "loc_3"


def test_a_deferred_input_that_renders_wrong_fails_with_its_path() -> None:
    event = sample("gumroad", "customer.created")
    (plan,) = plan_event(event, PROFILE, [load_template("new-customer-location")])
    update = plan.steps[2]
    message = r"steps\[2\].input.location_id: steps.find.output\[0\].location_id is undefined; known fields: name"
    with pytest.raises(InvalidInput, match=message):
        resolve_step(update, event, PROFILE, {"find": [{"name": "x"}]})


def test_a_condition_false_at_plan_time_skips_the_step() -> None:
    partial = sample("gumroad", "refund", full_refund=False)
    (plan,) = plan_event(partial, PROFILE, [load_template("churn")])
    assert [s.step_id for s in plan.steps] == ["event"]
    assert plan.skipped == ("plan", "profile")


def test_a_rendered_value_of_the_wrong_type_or_a_missing_required_one_is_an_error_plan() -> None:
    bad_type = workflow(name="t", steps=[{"id": "find", "action": "snapshots.locations.list",
                                          "input": {"limit": "{{ event.sale.product_name }}"}}])
    missing = workflow(name="m", steps=[{"id": "s", "action": "snapbridge.segments.refresh",
                                         "input": {"email": "{{ event.customer.name | default(none) }}"}}])
    purchase = sample("gumroad", "purchase")
    assert isinstance(purchase, PurchaseEvent)
    event = purchase.model_copy(update={"customer": purchase.customer.model_copy(update={"name": None})})
    plans = plan_event(event, PROFILE, [bad_type, missing])
    assert plans[0].error == "workflow t: steps[0].input.limit: must be a whole number, got text"
    assert plans[1].error == ("workflow m: steps[0].input: email rendered empty, but snapbridge.segments.refresh "
                              "requires it")


def test_planning_is_deterministic_and_keys_differ_per_step_workflow_and_inbound_event() -> None:
    templates = load_templates()
    event = sample("gumroad", "customer.created")
    first = plan_event(event, PROFILE, templates)
    assert first == plan_event(event, PROFILE, templates)
    keys = [s.idempotency_key for p in first for s in p.steps]
    assert len(keys) == len(set(keys))
    assert keys[0] == idempotency_key(event.inbound_id, "new-customer-location", "find")
    other = plan_event(event.model_copy(update={"inbound_id": "in_other"}), PROFILE, templates)
    assert not set(keys) & {s.idempotency_key for p in other for s in p.steps}
    assert idempotency_key("in_1", "w", "a") != idempotency_key("in_1", "w", "b")
    assert idempotency_key("in_1", "w", "a") != idempotency_key("in_1", "v", "a")
    assert idempotency_key("in_1", "w", "a") == idempotency_key("in_1", "w", "a")
    assert idempotency_key("a\nb", "c", "d") != idempotency_key("a", "b\nc", "d")
    assert all(len(k) <= 255 and k.isascii() for k in keys)


@pytest.mark.parametrize(
    ("app", "kind", "changes", "key"),
    [
        ("gumroad", "purchase", {}, "customer:ada@example.com"),
        ("snapshots", "location.updated", {}, "customer:ada@example.com"),
        ("snapshots", "customer.updated", {}, "customer:ada@example.com"),
    ],
)
def test_ordering_keys(app: str, kind: str, changes: dict[str, object], key: str) -> None:
    assert ordering_key(sample(app, kind, **changes)) == key


def test_a_location_without_a_customer_email_is_ordered_by_location() -> None:
    event = sample("snapshots", "location.updated")
    assert isinstance(event, LocationEvent)
    loose = event.model_copy(update={"location": event.location.model_copy(update={"external_id": "acct-7"})})
    assert ordering_key(loose) == "location:loc_7d1f3a"
    upper = event.model_copy(update={"location": event.location.model_copy(update={"external_id": "Ada@Example.com"})})
    assert ordering_key(upper) == "customer:ada@example.com"


@pytest.mark.parametrize("spec", EVENT_SPECS, ids=lambda s: f"{s.app.value}:{s.name}")
def test_every_template_plans_without_a_profile(spec: EventSpec) -> None:
    """A customer snapbridge has no profile of (purchases before it was connected) still gets planned steps;
    profile fields read as null."""
    event = spec.sample_event()
    for plan in plan_event(event, None, load_templates()):
        assert plan.error is None, plan.error
