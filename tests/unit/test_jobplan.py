"""A job renders the same request on every try: its plan carries the profile it was planned with."""

from __future__ import annotations

from datetime import UTC, datetime

from snapbridge.runtime import job_plan, pack_plan
from snapbridge.store import ClaimedJob
from snapbridge.workflows import CustomerProfile, PlannedStep, event_spec, load_template, plan_event, resolve_step

PLANNED = CustomerProfile(email="ada@example.com", name="Ada", location_id="loc_1",
                          first_seen_at=datetime(2024, 5, 1, tzinfo=UTC))


def _claimed(step: PlannedStep, deferred: dict[str, object], attempt: int) -> ClaimedJob:
    return ClaimedJob(
        id=1, run_id=1, workflow_name=step.workflow, inbound_event_id=1, step_index=step.position,
        step_id=step.step_id, action=step.action, connection="snapshots", ordering_key=step.ordering_key,
        idempotency_key=step.idempotency_key, input=dict(step.input), deferred=deferred, step_outputs={},
        attempt=attempt, lease_token=attempt, lease_expires_at=datetime(2030, 1, 1, tzinfo=UTC), leased_by="w",
    )


def test_every_try_renders_the_planned_profile() -> None:
    event = event_spec("gumroad", "customer.created").sample_event()
    plan = plan_event(event, PLANNED, [load_template("new-customer-location")])[0]
    deferred_steps = [s for s in plan.steps if s.deferred or s.condition]
    assert deferred_steps, "the template has steps rendered at run time"
    for step in deferred_steps:
        packed = pack_plan(step, event, profile_connection="gumroad", email="ada@example.com", profile=PLANNED)
        first, retry = (job_plan(_claimed(step, packed, attempt)) for attempt in (1, 2))
        assert first is not None and retry is not None
        assert first.profile == retry.profile == PLANNED
        created = {"location_id": "loc_9", "name": "Ada", "timezone": "UTC"}
        outputs: dict[str, object] = {"find": [], "create": created, "update": None}
        assert resolve_step(first.step, first.event, first.profile, outputs).input == resolve_step(
            retry.step, retry.event, retry.profile, outputs).input


def test_a_plan_without_a_profile_round_trips_as_none() -> None:
    event = event_spec("gumroad", "customer.created").sample_event()
    step = next(s for s in plan_event(event, None, [load_template("new-customer-location")])[0].steps
                if s.deferred or s.condition)
    packed = pack_plan(step, event, profile_connection="gumroad", email="ada@example.com", profile=None)
    found = job_plan(_claimed(step, packed, 1))
    assert found is not None and found.profile is None
