"""Which workflows an event starts: trigger app and event type, enabled flag, and the filter expression."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from snapbridge.errors import InvalidInput
from snapbridge.workflows.events import CustomerProfile, Event
from snapbridge.workflows.mapping import compile_mapping
from snapbridge.workflows.model import Workflow
from snapbridge.workflows.values import describe

__all__ = ["as_condition", "filter_holds", "render_scope", "trigger_matches", "triggered_by"]


# Every profile field, null: what a mapping sees for a customer snapbridge has no profile of.
_EMPTY_PROFILE: Mapping[str, object] = dict.fromkeys(CustomerProfile.model_fields)


def render_scope(
    event: Event, profile: CustomerProfile | None, outputs: Mapping[str, object] | None = None
) -> dict[str, object]:
    """The names a mapping sees: `event`, `profile` and `steps.<id>.output`.

    A customer seen for the first time (or one whose purchases predate snapbridge) has no profile yet; the
    mapping still sees every profile field, as null, so `profile.location_id` reads as "not known" rather
    than failing the whole plan.
    """
    return {
        "event": event.model_dump(mode="json"),
        "profile": profile.model_dump(mode="json") if profile is not None else _EMPTY_PROFILE,
        "steps": {step_id: {"output": output} for step_id, output in (outputs or {}).items()},
    }


def as_condition(value: object, where: str) -> bool:
    """A rendered filter or condition as a boolean: true/false (also as text) or null for false."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidInput(f"{where}: must render true or false, got {describe(value)}")


def trigger_matches(workflow: Workflow, event: Event) -> bool:
    """Whether the workflow is enabled and triggered by this app and event type (the filter aside)."""
    trigger = workflow.trigger
    return workflow.enabled and trigger.app == event.app.value and event.type in trigger.events


def filter_holds(workflow: Workflow, scope: Mapping[str, object]) -> bool:
    """Whether the trigger's filter renders true for this scope (no filter: true); InvalidInput on failure."""
    source = workflow.trigger.filter
    if source is None:
        return True
    try:
        value = compile_mapping(source).render(scope)
    except InvalidInput as exc:
        raise InvalidInput(f"trigger.filter: {exc}") from None
    return as_condition(value, "trigger.filter")


def triggered_by(event: Event, workflows: Sequence[Workflow]) -> tuple[Workflow, ...]:
    """The enabled workflows whose trigger names this event, in the given order (filters not yet applied)."""
    return tuple(w for w in workflows if trigger_matches(w, event))
