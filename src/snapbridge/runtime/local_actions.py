"""The local actions (workflows.LOCAL_ACTIONS): steps that change the customer profile snapbridge keeps.

Both run inside one store transaction given by the caller, on the profile of (job connection, email): the
deriver puts a local step on the Gumroad connection the profile belongs to. They are idempotent, so a retried
or replayed job changes nothing twice: profiles.update sets fields and adds tags as a set; segments.refresh
evaluates the segments at `now` and, when they moved, hands the customer.segment_changed event to a hook that
can plan and enqueue the workflows it triggers in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from snapbridge.errors import InvalidInput
from snapbridge.runtime.profile_state import state_from_record, state_to_record
from snapbridge.store import ClaimedJob, Profile, Tx
from snapbridge.workflows import SegmentChangedEvent, SegmentRule, refresh_segments

__all__ = ["PROFILES_UPDATE", "SEGMENTS_REFRESH", "SegmentChangedHook", "run_local_action"]

PROFILES_UPDATE = "snapbridge.profiles.update"
SEGMENTS_REFRESH = "snapbridge.segments.refresh"

# Called inside the profile's transaction when segments.refresh moved the customer's segments.
SegmentChangedHook = Callable[[Tx, SegmentChangedEvent, ClaimedJob], None]


def run_local_action(tx: Tx, job: ClaimedJob, params: Mapping[str, object], *, now: datetime,
                     segments: Sequence[SegmentRule],
                     on_segment_changed: SegmentChangedHook | None = None) -> dict[str, object]:
    """Run the job's local action in `tx`; its output (what the run history shows and later steps read)."""
    email = params.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise InvalidInput(f"{job.action}: email must be an email address")
    email = email.strip().lower()
    found = tx.get_profile(job.connection, email)
    if job.action == PROFILES_UPDATE:
        return _update_profile(tx, job.connection, email, found, params, now)
    if job.action == SEGMENTS_REFRESH:
        return _refresh_segments(tx, job, found, now, segments, on_segment_changed)
    raise InvalidInput(f"unknown local action {job.action!r}; known: {PROFILES_UPDATE}, {SEGMENTS_REFRESH}")


def _update_profile(tx: Tx, connection: str, email: str, found: Profile | None, params: Mapping[str, object],
                    now: datetime) -> dict[str, object]:
    profile = found or Profile(connection=connection, email=email, first_seen_at=now, updated_at=now)

    def text(name: str, current: str | None) -> str | None:
        value = params.get(name)
        return value if isinstance(value, str) else current

    tags = list(profile.tags)
    replaced, added, activity = params.get("tags"), params.get("add_tags"), params.get("last_activity_at")
    if isinstance(replaced, list):
        tags = [str(t) for t in replaced]
    if isinstance(added, list):
        tags += [str(t) for t in added]
    attributes = dict(profile.attributes)
    for name in ("customer_id", "location_name"):  # no column: kept where profile_state keeps them
        if isinstance(params.get(name), str):
            attributes[name] = params[name]
    updated = replace(
        profile, name=text("name", profile.name), plan=text("plan", profile.plan),
        location_id=text("location_id", profile.location_id), timezone=text("timezone", profile.timezone),
        tier=text("tier", profile.tier), tags=tuple(dict.fromkeys(tags)), attributes=attributes,
        last_activity_at=_when(activity) if isinstance(activity, str) else profile.last_activity_at,
    )
    changed = updated != profile or found is None
    if changed:
        tx.save_profile(replace(updated, updated_at=now))
    return {"email": email, "changed": changed, "tags": list(updated.tags)}


def _refresh_segments(tx: Tx, job: ClaimedJob, found: Profile | None, now: datetime,
                      segments: Sequence[SegmentRule], hook: SegmentChangedHook | None) -> dict[str, object]:
    if found is None:
        return {"email": None, "segments": [], "changed": False, "note": "no profile for this customer"}
    state = state_from_record(found)
    # The event id comes from the inbound event and the step, so a replayed job emits the same event.
    inbound = f"{job.inbound_event_id}:{job.step_id}" if job.inbound_event_id is not None else f"job:{job.id}"
    refreshed, event = refresh_segments(state.profile, segments, now, inbound_id=inbound)
    if event is None:
        return {"email": found.email, "segments": list(refreshed.segments), "changed": False}
    tx.save_profile(state_to_record(replace(state, profile=refreshed), connection=found.connection, now=now,
                                    base=found))
    if hook is not None:
        hook(tx, event, job)
    return {"email": found.email, "segments": list(refreshed.segments), "changed": True,
            "entered": list(event.entered), "left": list(event.left)}


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"last_activity_at: {text!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        raise InvalidInput(f"last_activity_at: {text!r} has no time zone")
    return moment
