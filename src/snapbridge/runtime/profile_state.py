"""The customer profile as derivation keeps it: the profile, the event times that guard its fields, the sales
already counted; and its stored form (store.Profile, whose `attributes` JSON holds what has no column)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from snapbridge.store import Profile
from snapbridge.workflows import CustomerProfile, find_country

__all__ = ["MAX_COUNTED", "ProfileState", "state_from_record", "state_to_record"]

# How many counted sale keys a profile remembers: far more than one customer's events in flight at once.
MAX_COUNTED = 200


@dataclass(frozen=True)
class ProfileState:
    """A profile and the event times its fields were set at (the ordering guard).

    `identity_as_of`: the newest event that set name, email or plan; `location_as_of`: the newest location
    event applied. None: nothing set them yet. `counted`: the newest sales and full refunds already in the
    counters ("sale:<id>", "refund:<id>"), so deriving one of them again does not count it twice.
    """

    profile: CustomerProfile
    identity_as_of: datetime | None = None
    location_as_of: datetime | None = None
    counted: tuple[str, ...] = ()

    def has_counted(self, key: str) -> bool:
        return key in self.counted

    def count(self, key: str) -> tuple[str, ...]:
        return (*self.counted, key)[-MAX_COUNTED:]


# Profile fields the store has no column for travel in its `attributes` JSON under these names.
_ATTRIBUTES = ("customer_id", "purchaser_id", "country", "country_code", "location_name")
_AS_OF = ("identity_as_of", "location_as_of")


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def state_from_record(record: Profile) -> ProfileState:
    """The derivation view of a stored profile."""
    attrs = record.attributes
    extra: dict[str, str] = {}
    for name in _ATTRIBUTES:
        value = attrs.get(name)
        if isinstance(value, str):
            extra[name] = value
    profile = CustomerProfile(
        email=record.email, name=record.name, plan=record.plan, location_id=record.location_id,
        timezone=record.timezone, tier=record.tier, tags=tuple(record.tags), segments=tuple(record.segments),
        purchase_count=record.purchases, lifetime_value_cents=record.lifetime_value_cents,
        first_seen_at=record.first_seen_at, last_activity_at=record.last_activity_at,
    ).model_copy(update=extra)
    counted = attrs.get("counted")
    keys = tuple(k for k in counted if isinstance(k, str)) if isinstance(counted, list) else ()
    return ProfileState(profile, _time(attrs.get("identity_as_of")), _time(attrs.get("location_as_of")), keys)


def state_to_record(state: ProfileState, *, connection: str, now: datetime, base: Profile | None = None
                    ) -> Profile:
    """The stored form of a profile; attributes of `base` this module does not know are kept."""
    p = state.profile
    attrs: dict[str, object] = dict(base.attributes) if base is not None else {}
    for name in _ATTRIBUTES:
        value = getattr(p, name)
        if value is None:
            attrs.pop(name, None)
        else:
            attrs[name] = value
    for name, moment in zip(_AS_OF, (state.identity_as_of, state.location_as_of), strict=True):
        if moment is None:
            attrs.pop(name, None)
        else:
            attrs[name] = moment.isoformat()
    attrs["counted"] = list(state.counted)
    country = next((c for c in (find_country(t) for t in (p.country_code, p.country) if t) if c), None)
    return Profile(
        connection=connection, email=p.email, first_seen_at=p.first_seen_at, updated_at=now, name=p.name,
        plan=p.plan, location_id=p.location_id, timezone=p.timezone,
        region=country.region.value if country else None, tier=p.tier, tags=p.tags, segments=p.segments,
        attributes=attrs, last_activity_at=p.last_activity_at, lifetime_value_cents=p.lifetime_value_cents,
        purchases=p.purchase_count, id=base.id if base is not None else None,
    )
