"""Segments: each condition as a table, evaluation at a given time, and the event a change makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from snapbridge.errors import InvalidInput
from snapbridge.workflows.countries import Region
from snapbridge.workflows.events import CustomerProfile
from snapbridge.workflows.segments import (
    DEFAULT_SEGMENTS,
    SegmentRule,
    check_segments,
    evaluate_segments,
    refresh_segments,
    region_of,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def profile(**changes: object) -> CustomerProfile:
    base: dict[str, object] = {
        "email": "ada@example.com", "name": "Ada", "plan": "Pro", "country": "United Kingdom",
        "tags": ("beta", "VIP"), "lifetime_value_cents": 60_000, "first_seen_at": NOW - timedelta(days=100),
        "last_activity_at": NOW - timedelta(days=10),
    }
    return CustomerProfile.model_validate({**base, **changes})


@pytest.mark.parametrize(
    ("rule", "holds"),
    [
        ({}, True),
        ({"plans": ["pro"]}, True),
        ({"plans": ["Business"]}, False),
        ({"regions": ["EU"]}, True),
        ({"regions": ["NA", "APAC"]}, False),
        ({"tags_any": ["vip", "nope"]}, True),
        ({"tags_any": ["nope"]}, False),
        ({"tags_all": ["vip", "BETA"]}, True),
        ({"tags_all": ["vip", "nope"]}, False),
        ({"active_within_days": 11}, True),
        ({"active_within_days": 10}, False),
        ({"inactive_for_days": 10}, True),
        ({"inactive_for_days": 11}, False),
        ({"min_lifetime_value_cents": 60_000}, True),
        ({"min_lifetime_value_cents": 60_001}, False),
        ({"max_lifetime_value_cents": 60_000}, True),
        ({"max_lifetime_value_cents": 59_999}, False),
        ({"plans": ["Pro"], "regions": ["EU"], "min_lifetime_value_cents": 1}, True),
        ({"plans": ["Pro"], "regions": ["NA"], "min_lifetime_value_cents": 1}, False),
    ],
)
def test_each_condition(rule: dict[str, object], holds: bool) -> None:
    segment = SegmentRule.model_validate({"name": "s", **rule})
    assert segment.holds_for(profile(), NOW) is holds


def test_a_customer_never_active_since_is_measured_from_first_seen() -> None:
    never = profile(last_activity_at=None)
    assert SegmentRule(name="d", inactive_for_days=100).holds_for(never, NOW)
    assert not SegmentRule(name="a", active_within_days=100).holds_for(never, NOW)


@pytest.mark.parametrize(
    ("changes", "region"),
    [({}, Region.EU), ({"country_code": "JP"}, Region.APAC), ({"country": None}, None),
     ({"country": "Atlantis"}, None), ({"country": None, "country_code": "br"}, Region.LATAM)],
)
def test_region_of_the_profile(changes: dict[str, object], region: Region | None) -> None:
    assert region_of(profile(**changes)) == region


def test_default_segments() -> None:
    assert evaluate_segments(profile(), DEFAULT_SEGMENTS, NOW) == ("paying", "vip", "active", "eu")
    idle = profile(lifetime_value_cents=0, country="US", last_activity_at=NOW - timedelta(days=90))
    assert evaluate_segments(idle, DEFAULT_SEGMENTS, NOW) == ("dormant", "na")


def test_a_change_makes_one_event_and_no_change_makes_none() -> None:
    before = profile(segments=("paying", "dormant"))
    after, event = refresh_segments(before, DEFAULT_SEGMENTS, NOW, inbound_id="in_1")
    assert after.segments == ("paying", "vip", "active", "eu")
    assert event is not None
    assert (event.type, event.id, event.inbound_id) == ("customer.segment_changed",
                                                        "in_1:customer.segment_changed", "in_1")
    assert (event.entered, event.left, event.segments) == (["vip", "active", "eu"], ["dormant"],
                                                           ["paying", "vip", "active", "eu"])
    assert event.customer.email == "ada@example.com" and event.occurred_at == NOW
    again, nothing = refresh_segments(after, DEFAULT_SEGMENTS, NOW, inbound_id="in_2")
    assert again is after and nothing is None


def test_the_same_inbound_event_gives_the_same_segment_event() -> None:
    first = refresh_segments(profile(), DEFAULT_SEGMENTS, NOW, inbound_id="in_1")
    second = refresh_segments(profile(), DEFAULT_SEGMENTS, NOW, inbound_id="in_1")
    assert first == second


def test_time_moves_segments() -> None:
    later = NOW + timedelta(days=85)
    assert "dormant" in evaluate_segments(profile(), DEFAULT_SEGMENTS, later)
    assert "active" not in evaluate_segments(profile(), DEFAULT_SEGMENTS, later)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"name": "Has Space"}, "a segment name is 1-63 lower-case letters"),
        ({"name": "x", "min_lifetime_value_cents": 5, "max_lifetime_value_cents": 4}, "greater than"),
        ({"name": "x", "regions": ["MARS"]}, "regions"),
        ({"name": "x", "active_within_days": -1}, "active_within_days"),
        ({"name": "x", "colour": "red"}, "colour"),
    ],
)
def test_invalid_rules_are_refused(rule: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SegmentRule.model_validate(rule)


def test_segment_names_are_unique_and_now_is_aware() -> None:
    with pytest.raises(InvalidInput, match=r"segments\[1\].name: 'a' is already used"):
        check_segments([SegmentRule(name="a"), SegmentRule(name="a")])
    check_segments(DEFAULT_SEGMENTS)
    with pytest.raises(InvalidInput, match="timezone-aware"):
        evaluate_segments(profile(), DEFAULT_SEGMENTS, datetime(2024, 1, 1))
