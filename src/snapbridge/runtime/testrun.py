"""A test run: one workflow's steps for one event, sent now through the stored connections, step by step.

This is the "run a test to verify data sync" of the product brief. It uses the same planner, catalog records,
runner and credentials as the pipeline, but runs in the caller's process and records nothing in the history.
Keys are the planned idempotency keys prefixed with `test-`, so running the same test twice is recognised by
the API (a replay) and never doubles a write in the user's account.
"""

from __future__ import annotations

from dataclasses import dataclass

from snapbridge.catalog import get_action, run_action
from snapbridge.errors import DeliveryError, InvalidInput
from snapbridge.runtime.actions import Connections
from snapbridge.workflows import LOCAL_ACTIONS, CustomerProfile, Event, Plan, resolve_step

__all__ = ["StepResult", "execute_test_run"]


@dataclass(frozen=True)
class StepResult:
    step_id: str
    action: str
    status: str  # sent | replayed | skipped | local | failed
    detail: str
    http_status: int | None = None
    output: object = None


async def execute_test_run(plan: Plan, event: Event, profile: CustomerProfile | None, connections: Connections,
                   *, connection_for: dict[str, str] | None = None) -> list[StepResult]:
    """Run the plan's steps in order; a failed step stops the run, as it would hold back the pipeline's.

    `connection_for` maps each app to the connection to use (the caller's workspace's); an app it does not
    name fails its step. Without it, a step uses the connection named after its app (the CLI's default).
    """
    outputs: dict[str, object] = {}
    results: list[StepResult] = []
    for step in plan.steps:
        resolved = resolve_step(step, event, profile, outputs)
        if not resolved.run:
            outputs[step.step_id] = None
            results.append(StepResult(step.step_id, step.action, "skipped", "its condition is false"))
            continue
        if step.action in LOCAL_ACTIONS:
            # Local steps change snapbridge's own customer profile; a test leaves the profile alone.
            outputs[step.step_id] = dict(resolved.input)
            results.append(StepResult(step.step_id, step.action, "local",
                                      "updates the customer profile in the pipeline; not changed by a test run",
                                      output=dict(resolved.input)))
            continue
        op = get_action(step.action)
        name = op.app if connection_for is None else connection_for.get(op.app)
        if name is None:
            results.append(StepResult(step.step_id, step.action, "failed",
                                      f"no {op.app} connection: add one, then test again"))
            break
        try:
            _record, credential, http = await connections.get(name)
            result = await run_action(op, resolved.input, http=http, credential=credential,
                                      idempotency_key=f"test-{step.idempotency_key}")
        except (DeliveryError, InvalidInput) as exc:
            status = exc.status if isinstance(exc, DeliveryError) else None
            results.append(StepResult(step.step_id, step.action, "failed", str(exc), status))
            break
        outputs[step.step_id] = result.payload
        results.append(StepResult(
            step.step_id, step.action, "replayed" if result.replayed else "sent",
            f"{op.method} {op.path} → {result.status}" + (" (already applied by an earlier test)"
                                                          if result.replayed else ""),
            result.status, result.payload,
        ))
    return results

