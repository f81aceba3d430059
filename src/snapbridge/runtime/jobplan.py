"""The plan a job carries to its worker: what a step needs that planning could not know yet.

A step whose input reads an earlier step's output, or whose condition does, is planned with those mappings
left unrendered (workflows.planner). Its job keeps them in `deferred`, and under PLAN_KEY the derived event
they render from, the condition, the steps they read and the customer profile as it was when the event was
derived. The worker turns a claimed job back into that plan with `job_plan` and finishes it with
`resolve_step(plan.step, plan.event, plan.profile, job.step_outputs)`; a false condition means the step is
skipped. The profile is the one planned with, never the one of the moment: every try of a job must send the
same request, or a retry after a lost answer would reuse its idempotency key for another body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from snapbridge.errors import InvalidInput
from snapbridge.store import ClaimedJob
from snapbridge.workflows import CustomerProfile, Event, PlannedStep, parse_event

__all__ = ["PLAN_KEY", "JobPlan", "job_plan", "pack_plan"]

# The key in a job's `deferred` that holds the rest of its plan; "$" cannot start a catalog parameter name.
PLAN_KEY = "$plan"


def pack_plan(step: PlannedStep, event: Event, *, profile_connection: str, email: str | None,
              profile: CustomerProfile | None = None) -> dict[str, object]:
    """A job's `deferred`: the step's unrendered inputs and, when anything is left to render, its plan."""
    deferred: dict[str, object] = dict(step.deferred)
    if step.deferred or step.condition is not None:
        deferred[PLAN_KEY] = {
            "event": event.model_dump(mode="json"), "condition": step.condition, "after": list(step.after),
            "profile": {"connection": profile_connection, "email": email,
                        "snapshot": profile.model_dump(mode="json") if profile is not None else None},
        }
    return deferred


@dataclass(frozen=True)
class JobPlan:
    """The planned step behind a job, the derived event it renders from, and whose profile it reads.

    A worker renders the job with `resolve_step(plan.step, plan.event, plan.profile, job.step_outputs)`; a false
    condition means the step is skipped (output null).
    """

    step: PlannedStep
    event: Event
    profile_connection: str
    email: str | None
    profile: CustomerProfile | None = None  # as planned; None: the customer had no profile then


def job_plan(job: ClaimedJob) -> JobPlan | None:
    """What a worker needs to finish a job's input with `resolve_step`; None when the input is complete."""
    packed = job.deferred.get(PLAN_KEY)
    if not isinstance(packed, Mapping):
        return None
    event = packed.get("event")
    condition = packed.get("condition")
    after = packed.get("after")
    profile = packed.get("profile")
    if not isinstance(event, Mapping) or not isinstance(after, list) or not isinstance(profile, Mapping):
        raise InvalidInput(f"job {job.id}: its deferred plan is malformed")
    connection, email = profile.get("connection"), profile.get("email")
    step = PlannedStep(
        workflow=job.workflow_name, step_id=job.step_id, position=job.step_index, action=job.action,
        input=dict(job.input), idempotency_key=job.idempotency_key, ordering_key=job.ordering_key,
        deferred={k: v for k, v in job.deferred.items() if k != PLAN_KEY},
        condition=condition if isinstance(condition, str) else None, after=tuple(str(s) for s in after),
    )
    snapshot = profile.get("snapshot")
    planned = CustomerProfile.model_validate(snapshot) if isinstance(snapshot, Mapping) else None
    return JobPlan(step, parse_event(event), str(connection or job.connection),
                   email if isinstance(email, str) else None, planned)
