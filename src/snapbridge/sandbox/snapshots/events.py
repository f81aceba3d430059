"""Accepting events one at a time or in batches, with event_id idempotency and the 16 KiB data limit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from snapbridge.sandbox.snapshots.bodies import (
    FORBIDDEN_LOCATION_MESSAGE,
    ApiResult,
    conflict,
    forbidden_location,
    ok,
    unprocessable,
)
from snapbridge.sandbox.snapshots.state import Event, SandboxKey, SandboxState
from snapbridge.sandbox.snapshots.validation import Field, Kind, canonical, check_body

__all__ = ["MAX_BATCH", "MAX_DATA_BYTES", "accept_batch", "accept_one"]

MAX_DATA_BYTES = 16 * 1024
MAX_BATCH = 100
EVENT_FIELDS = (
    Field("event_id", required=True, nullable=False),
    Field("type", required=True, nullable=False, max_length=100),
    Field("timestamp", Kind.DATETIME, required=True, nullable=False),
    Field("location_id"),
    Field("customer_id"),
    Field("data", Kind.OBJECT, nullable=False, max_length=MAX_DATA_BYTES),
)
REPLAYED = ("Idempotent-Replayed", "true")


@dataclass(frozen=True)
class _Outcome:
    """What happened to one event: created, duplicate (same body) or error (status and message(s))."""

    status: str
    event: Event | None = None
    http_status: int = 201
    problems: tuple[str, ...] = ()
    existing_id: str | None = None


def _accept(state: SandboxState, key: SandboxKey, raw: Any) -> _Outcome:
    values, problems = check_body(raw, EVENT_FIELDS)
    if problems:
        return _Outcome("error", http_status=422, problems=tuple(problems))
    location_id = values.get("location_id")
    if location_id is None and key.location_id is not None:
        location_id = key.location_id  # a bound key's events belong to its location
    if not key.reaches(location_id):
        return _Outcome("error", http_status=403, problems=(FORBIDDEN_LOCATION_MESSAGE,))
    if location_id is not None:
        location = state.locations.get(location_id)
        if location is None or location.company_id != key.company_id:
            return _Outcome("error", http_status=422,
                            problems=(f"location_id {location_id} is not a location of this company",))
    event = Event(
        company_id=key.company_id,
        event_id=values["event_id"],
        type=values["type"],
        timestamp=values["timestamp"],
        location_id=location_id,
        customer_id=values.get("customer_id"),
        data=values.get("data", {}),
        body_fingerprint="",
    )
    # Same event = same normalised content; "2024-01-01T00:00:00Z" and "+00:00" spell the same instant.
    event = replace(event, body_fingerprint=canonical(event.to_json()))
    existing = state.events.get((key.company_id, event.event_id))
    if existing is not None:
        if existing.body_fingerprint == event.body_fingerprint:
            return _Outcome("duplicate", existing, http_status=200)
        return _Outcome("error", http_status=409, existing_id=event.event_id,
                        problems=(f"Event {event.event_id} already exists with a different body",))
    state.events[(key.company_id, event.event_id)] = event
    return _Outcome("created", event)


def accept_one(state: SandboxState, key: SandboxKey, raw: Any) -> ApiResult:
    """POST /events: 201 new, 200 + Idempotent-Replayed for a repeat, 409 for a different body."""
    outcome = _accept(state, key, raw)
    if outcome.status == "created" and outcome.event is not None:
        return ok(201, {"event": outcome.event.to_json()}, entity=outcome.event.event_id)
    if outcome.status == "duplicate" and outcome.event is not None:
        result = ok(200, {"event": outcome.event.to_json()}, entity=outcome.event.event_id)
        return ApiResult(result.status, result.body, (REPLAYED,), result.entity, replayed=True)
    if outcome.http_status == 403:
        return forbidden_location()
    if outcome.http_status == 409:
        return conflict(outcome.problems[0], {"event_id": outcome.existing_id})
    return unprocessable(outcome.problems)


def accept_batch(state: SandboxState, key: SandboxKey, raw: Any) -> ApiResult:
    """POST /events/batch: each event on its own, in order; one answer with a result per event."""
    if not isinstance(raw, dict):
        return unprocessable(["body must be a JSON object"])
    problems = [f"property {name} should not exist" for name in raw if name != "events"]
    items = raw.get("events")
    if not isinstance(items, list):
        problems.append("events must be an array")
    elif not items:
        problems.append("events should not be empty")
    elif len(items) > MAX_BATCH:
        problems.append(f"events must contain no more than {MAX_BATCH} elements")
    if problems or not isinstance(items, list):
        return unprocessable(problems)
    results = []
    for item in items:
        outcome = _accept(state, key, item)
        event_id = item.get("event_id") if isinstance(item, dict) else None
        results.append({
            "event_id": event_id if isinstance(event_id, str) else None,
            "status": outcome.status,
            "error": "; ".join(outcome.problems) if outcome.problems else None,
        })
    return ok(200, {"results": results})
