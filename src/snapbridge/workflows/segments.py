"""Segments: named rules over the customer profile, evaluated at a given time; a change is an event."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from snapbridge.errors import InvalidInput
from snapbridge.workflows.countries import Region, find_country
from snapbridge.workflows.events import App, Customer, CustomerProfile, SegmentChangedEvent

__all__ = [
    "DEFAULT_SEGMENTS",
    "SegmentRule",
    "check_segments",
    "evaluate_segments",
    "refresh_segments",
    "region_of",
]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class SegmentRule(BaseModel):
    """A named segment: a customer is in it when every condition given holds (a rule with none holds for all).

    Plans and tags compare without regard to case. Activity is `last_activity_at`, or `first_seen_at` for a
    customer never active since; activity exactly `now - N days` ago counts as inactive for N days.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    plans: tuple[str, ...] = Field(default=(), description="on one of these plans")
    regions: tuple[Region, ...] = Field(default=(), description="in a country of one of these regions")
    tags_any: tuple[str, ...] = Field(default=(), description="has at least one of these tags")
    tags_all: tuple[str, ...] = Field(default=(), description="has all of these tags")
    active_within_days: int | None = Field(default=None, ge=0, description="active in the last N days")
    inactive_for_days: int | None = Field(default=None, ge=0, description="not active for N days or more")
    min_lifetime_value_cents: int | None = Field(default=None, description="spent at least N USD cents")
    max_lifetime_value_cents: int | None = Field(default=None, description="spent at most N USD cents")

    @field_validator("name")
    @classmethod
    def _name_is_a_slug(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("a segment name is 1-63 lower-case letters, digits, '-' or '_'")
        return value

    @model_validator(mode="after")
    def _bounds_in_order(self) -> SegmentRule:
        low, high = self.min_lifetime_value_cents, self.max_lifetime_value_cents
        if low is not None and high is not None and low > high:
            raise ValueError("min_lifetime_value_cents is greater than max_lifetime_value_cents")
        return self

    def holds_for(self, profile: CustomerProfile, now: datetime) -> bool:
        if self.plans and (profile.plan or "").casefold() not in {p.casefold() for p in self.plans}:
            return False
        if self.regions and region_of(profile) not in self.regions:
            return False
        tags = {t.casefold() for t in profile.tags}
        if self.tags_any and not tags & {t.casefold() for t in self.tags_any}:
            return False
        if self.tags_all and not {t.casefold() for t in self.tags_all} <= tags:
            return False
        since_active = now - (profile.last_activity_at or profile.first_seen_at)
        if self.active_within_days is not None and since_active >= timedelta(days=self.active_within_days):
            return False
        if self.inactive_for_days is not None and since_active < timedelta(days=self.inactive_for_days):
            return False
        value = profile.lifetime_value_cents
        if self.min_lifetime_value_cents is not None and value < self.min_lifetime_value_cents:
            return False
        return not (self.max_lifetime_value_cents is not None and value > self.max_lifetime_value_cents)


# A starter set; sellers replace or extend it. 50000 cents is $500.
DEFAULT_SEGMENTS: tuple[SegmentRule, ...] = (
    SegmentRule(name="paying", description="spent something", min_lifetime_value_cents=1),
    SegmentRule(name="vip", description="spent $500 or more", min_lifetime_value_cents=50_000),
    SegmentRule(name="active", description="active in the last 30 days", active_within_days=30),
    SegmentRule(name="dormant", description="not active for 90 days", inactive_for_days=90),
    SegmentRule(name="na", regions=(Region.NA,)),
    SegmentRule(name="eu", regions=(Region.EU,)),
    SegmentRule(name="apac", regions=(Region.APAC,)),
    SegmentRule(name="latam", regions=(Region.LATAM,)),
    SegmentRule(name="mea", regions=(Region.MEA,)),
)


def region_of(profile: CustomerProfile) -> Region | None:
    """The region of the profile's country (ISO code first, then name), or None when unknown."""
    for text in (profile.country_code, profile.country):
        country = find_country(text) if text else None
        if country is not None:
            return country.region
    return None


def check_segments(rules: Sequence[SegmentRule]) -> None:
    """InvalidInput if two rules share a name: a segment name must say one thing."""
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.name in seen:
            raise InvalidInput(f"segments[{index}].name: {rule.name!r} is already used by an earlier segment")
        seen.add(rule.name)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise InvalidInput("segments are evaluated at a timezone-aware time")
    return now


def evaluate_segments(
    profile: CustomerProfile, rules: Sequence[SegmentRule], now: datetime
) -> tuple[str, ...]:
    """The names of the segments the profile is in at `now`, in the order of `rules`."""
    now = _aware(now)
    return tuple(rule.name for rule in rules if rule.holds_for(profile, now))


def refresh_segments(
    profile: CustomerProfile,
    rules: Sequence[SegmentRule],
    now: datetime,
    *,
    inbound_id: str,
) -> tuple[CustomerProfile, SegmentChangedEvent | None]:
    """The profile with its segments evaluated at `now`, and the customer.segment_changed event if they moved.

    The event id is derived from the inbound event, so deriving the same inbound event twice gives one event.
    """
    segments = evaluate_segments(profile, rules, now)
    if set(segments) == set(profile.segments):
        # Membership, not order: segments stored in another order (rules reordered since) are no change.
        return profile, None
    entered = [name for name in segments if name not in profile.segments]
    left = [name for name in profile.segments if name not in segments]
    updated = profile.model_copy(update={"segments": segments})
    customer = Customer(
        email=profile.email, name=profile.name, purchaser_id=profile.purchaser_id, country=profile.country,
        country_code=profile.country_code, plan=profile.plan,
    )
    event = SegmentChangedEvent(
        id=f"{inbound_id}:customer.segment_changed", inbound_id=inbound_id,
        type="customer.segment_changed", app=App.GUMROAD, occurred_at=now, customer=customer,
        segments=list(segments), entered=entered, left=left,
    )
    return updated, event
