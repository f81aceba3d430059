"""Planning, pure: (event, profile, workflows) → steps to run, with rendered inputs and deterministic keys.

A step input that reads an earlier step's output (`steps.find.output…`) cannot be known when planning; it is
kept as a deferred mapping and rendered by `resolve_step` when the pipeline runs the step, with the outputs of
the steps before it (a skipped step's output is null). A condition is treated the same way.

Keys:
- idempotency key: "sb1-" + SHA-256 of the JSON list [inbound event id, workflow name, step id].
  Replanning the same inbound event gives the same keys, so a retried or replayed step cannot write
  twice; every step of every workflow gets its own key. Several events derived from one inbound event that
  trigger the same workflow share keys, so such a workflow runs once per inbound event.
- ordering key: the customer the event is about (`customer:<email>`); for a location event, the customer
  whose email is the location's external_id, else `location:<location_id>`. Jobs with one key run in order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from snapbridge.errors import InvalidInput
from snapbridge.workflows.events import CustomerProfile, Event, Location, SnapshotsCustomer
from snapbridge.workflows.loader import is_template, param_problem
from snapbridge.workflows.mapping import compile_mapping
from snapbridge.workflows.matching import as_condition, filter_holds, render_scope, triggered_by
from snapbridge.workflows.model import ActionSpec, Step, Workflow, find_action
from snapbridge.workflows.values import child_path

__all__ = [
    "Plan",
    "PlannedStep",
    "ResolvedStep",
    "idempotency_key",
    "ordering_key",
    "plan_event",
    "resolve_step",
]


@dataclass(frozen=True)
class PlannedStep:
    """One step to run: its input rendered as far as planning can, and the keys of its job."""

    workflow: str
    step_id: str
    position: int
    action: str
    input: Mapping[str, object]
    idempotency_key: str
    ordering_key: str
    deferred: Mapping[str, object] = field(default_factory=dict)  # parameter → mapping read at run time
    condition: str | None = None  # a condition read at run time; None when it held (or there was none)
    after: tuple[str, ...] = ()  # ids of the earlier steps whose outputs this step reads


@dataclass(frozen=True)
class Plan:
    """What one workflow does for one event: its steps, the ones skipped by a false condition, or an error."""

    workflow: str
    event_id: str
    inbound_id: str
    steps: tuple[PlannedStep, ...] = ()
    skipped: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class ResolvedStep:
    """A planned step with every input known, ready for its action; `run` is false if its condition fails."""

    step: PlannedStep
    input: Mapping[str, object]
    run: bool


def idempotency_key(inbound_id: str, workflow: str, step_id: str) -> str:
    # JSON keeps the three parts apart whatever characters they hold.
    digest = hashlib.sha256(json.dumps([inbound_id, workflow, step_id]).encode("utf-8")).hexdigest()
    return f"sb1-{digest}"


def ordering_key(event: Event) -> str:
    email = event.customer_email()
    if email:
        return f"customer:{email.strip().lower()}"
    location = getattr(event, "location", None)
    if isinstance(location, Location):
        if location.external_id and "@" in location.external_id:
            return f"customer:{location.external_id.strip().lower()}"
        return f"location:{location.location_id}"
    customer = getattr(event, "customer", None)
    if isinstance(customer, SnapshotsCustomer):
        return f"snapshots-customer:{customer.customer_id}"
    return f"event:{event.inbound_id}"


def _steps_read(value: object) -> frozenset[str]:
    """The ids of the steps whose outputs a (possibly nested) input value reads."""
    if isinstance(value, str):
        return _steps_read_text(value) if is_template(value) else _NONE
    if isinstance(value, Mapping):
        return frozenset().union(*(_steps_read(v) for v in value.values()))
    if isinstance(value, list):
        return frozenset().union(*(_steps_read(v) for v in value))
    return _NONE


_NONE: frozenset[str] = frozenset()


@lru_cache(maxsize=4096)
def _steps_read_text(source: str) -> frozenset[str]:
    # Every planned step asks this of every input (a second compile-cache lookup per render without it).
    return frozenset(str(r[1]) for r in compile_mapping(source).references if r[0] == "steps" and len(r) > 1)


def _render(value: object, scope: Mapping[str, object], path: str) -> object:
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            return compile_mapping(value).render(scope)
        except InvalidInput as exc:
            raise InvalidInput(f"{path}: {exc}") from None
    if isinstance(value, Mapping):
        return {key: _render(item, scope, child_path(path, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, scope, f"{path}[{index}]") for index, item in enumerate(value)]
    return value


def _check(action: ActionSpec, values: Mapping[str, object], pending: Sequence[str], path: str) -> None:
    problems = []
    for param in action.params:
        value = values.get(param.name)
        if value is None:
            if param.required and param.name not in pending:
                problems.append(f"{path}: {param.name} rendered empty, but {action.name} requires it")
            continue
        problem = param_problem(param, value)
        if problem:
            problems.append(f"{child_path(path, param.name)}: {problem}")
    if problems:
        raise InvalidInput("; ".join(problems))


def _plan_step(workflow: Workflow, index: int, step: Step, event: Event, scope: Mapping[str, object],
               order: str) -> PlannedStep | None:
    path = f"steps[{index}]"
    action = find_action(step.action)
    condition: str | None = None
    reads: frozenset[str] = _NONE
    if step.condition is not None:
        reads = _steps_read(step.condition)
        if reads:
            condition = step.condition
        elif not as_condition(_render(step.condition, scope, f"{path}.condition"), f"{path}.condition"):
            return None
    rendered: dict[str, object] = {}
    deferred: dict[str, object] = {}
    for name, value in step.input.items():
        needs = _steps_read(value)
        if needs:
            deferred[name] = value
            reads |= needs
            continue
        result = _render(value, scope, child_path(f"{path}.input", name))
        if result is not None:
            rendered[name] = result
    _check(action, rendered, list(deferred), f"{path}.input")
    return PlannedStep(
        workflow=workflow.name, step_id=step.id, position=index, action=step.action, input=rendered,
        idempotency_key=idempotency_key(event.inbound_id, workflow.name, step.id), ordering_key=order,
        deferred=deferred, condition=condition, after=tuple(s.id for s in workflow.steps if s.id in reads),
    )


def _plan_workflow(workflow: Workflow, event: Event, scope: Mapping[str, object]) -> Plan | None:
    base = Plan(workflow=workflow.name, event_id=event.id, inbound_id=event.inbound_id)
    try:
        if not filter_holds(workflow, scope):
            return None
        order = ordering_key(event)
        planned: list[PlannedStep] = []
        skipped: list[str] = []
        for index, step in enumerate(workflow.steps):
            result = _plan_step(workflow, index, step, event, scope, order)
            if result is None:
                skipped.append(step.id)
            else:
                planned.append(result)
    except InvalidInput as exc:
        return Plan(base.workflow, base.event_id, base.inbound_id, error=f"workflow {workflow.name}: {exc}")
    return Plan(base.workflow, base.event_id, base.inbound_id, tuple(planned), tuple(skipped))


def plan_event(
    event: Event, profile: CustomerProfile | None, workflows: Sequence[Workflow]
) -> tuple[Plan, ...]:
    """A plan for each enabled workflow the event triggers and whose filter holds, in the workflows' order.

    A workflow whose filter or mappings fail gets a plan with `error` set instead of steps, so one broken
    workflow does not hold back the others.
    """
    scope = render_scope(event, profile)
    plans = (_plan_workflow(w, event, scope) for w in triggered_by(event, workflows))
    return tuple(p for p in plans if p is not None)


def resolve_step(
    step: PlannedStep, event: Event, profile: CustomerProfile | None, outputs: Mapping[str, object]
) -> ResolvedStep:
    """Render what planning deferred, with the outputs of the earlier steps (a skipped step's is null)."""
    path = f"steps[{step.position}]"
    scope = render_scope(event, profile, {sid: outputs.get(sid) for sid in step.after})
    run = True
    if step.condition is not None:
        run = as_condition(_render(step.condition, scope, f"{path}.condition"), f"{path}.condition")
    values = dict(step.input)
    if run:
        for name, value in step.deferred.items():
            result = _render(value, scope, child_path(f"{path}.input", name))
            if result is not None:
                values[name] = result
        _check(find_action(step.action), values, (), f"{path}.input")
    return ResolvedStep(step, values, run)
