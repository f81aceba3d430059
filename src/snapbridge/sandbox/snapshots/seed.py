"""The Snapshots sandbox's starting data: a company, locations with unicode names, customers, events, keys."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from snapbridge.sandbox.snapshots.state import (
    ALL_SCOPES,
    DEFAULT_BURST_LIMIT,
    DEFAULT_BURST_WINDOW_MS,
    DEFAULT_DAILY_LIMIT,
    Customer,
    Event,
    Location,
    OnboardingStatus,
    SandboxState,
    Scope,
)
from snapbridge.sandbox.snapshots.validation import canonical

__all__ = ["READ_ONLY_SCOPES", "SEED_EPOCH", "seed_state"]

SEED_EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # fixed, so two runs with one seed are identical
READ_ONLY_SCOPES = frozenset({Scope.LOCATION_READ.value, Scope.EVENTS_READ.value, Scope.CUSTOMERS_READ.value})

# name, timezone, region, status, tier
_LOCATIONS = (
    ("Café Zürich Wellness", "Europe/Zurich", "eu", OnboardingStatus.ACTIVE, "pro"),
    ("東京スタジオ", "Asia/Tokyo", "apac", OnboardingStatus.ACTIVE, "starter"),
    ("Łódź Fitness Klub", "Europe/Warsaw", "eu", OnboardingStatus.PENDING, "starter"),
    ("São Paulo Yoga & Pilates", "America/Sao_Paulo", "latam", OnboardingStatus.ACTIVE, "unlimited"),
    ("Ålesund Tannlege 🦷", "Europe/Oslo", "eu", OnboardingStatus.PAUSED, "pro"),
    ("Δελφοί Design Studio", "Europe/Athens", "eu", OnboardingStatus.ACTIVE, None),
    ("Zoë's Bakery", "America/New_York", "us", OnboardingStatus.CANCELLED, "starter"),
    ("مرکز آموزش تهران", "Asia/Tehran", "mena", OnboardingStatus.PENDING, None),
)
_CUSTOMERS = (
    ("cus_0001", "Ada Lovelace", "ada@example.com", "pro-monthly", ("vip", "early-adopter")),
    ("cus_0002", "José Martínez Ñúñez", "jose@example.es", "starter", ("newsletter",)),
    ("cus_0003", "Zoë Ångström", "zoe@example.se", None, ()),
    ("cus_0004", "李小龍", "bruce@example.cn", "unlimited-yearly", ("vip",)),
    ("cus_0005", "Ørjan Ødegård", "orjan@example.no", "pro-monthly", ("churn-risk", "newsletter")),
)
_EVENT_TYPES = ("purchase", "subscription.started", "signup", "purchase", "refund", "subscription.ended")


def seed_state(state: SandboxState, seed: int) -> None:
    """Fill an empty state; ids and keys come from the state's seeded generators, the rest from `seed`."""
    rng = random.Random(f"snapshots-seed-data:{seed}")
    company = state.company_id
    locations = []
    for n, (name, zone, region, status, tier) in enumerate(_LOCATIONS):
        at = SEED_EPOCH + timedelta(days=n, minutes=rng.randrange(600))
        location = Location(
            location_id=state.new_object_id(), company_id=company, name=name, timezone=zone,
            created_at=at, updated_at=at + timedelta(hours=rng.randrange(1, 48)),
            email=f"owner{n + 1}@locations.example", region=region, onboarding_status=status, tier=tier,
            snapshot_id=f"snap_{rng.randrange(10_000):04d}", external_id=f"gumroad:seller-{n + 1:02d}",
        )
        state.locations[location.location_id] = location
        locations.append(location)
    for n, (customer_id, name, email, plan, tags) in enumerate(_CUSTOMERS):
        home = locations[n % 3]
        state.customers[(company, customer_id)] = Customer(
            company_id=company, customer_id=customer_id, email=email, name=name, plan=plan,
            location_id=home.location_id, tags=tags,
            last_activity_at=SEED_EPOCH + timedelta(days=20, hours=n),
            updated_at=SEED_EPOCH + timedelta(days=21, hours=n),
        )
    for n in range(12):
        customer_id, _, _, plan, _ = _CUSTOMERS[n % len(_CUSTOMERS)]
        customer = state.customers[(company, customer_id)]
        data = {"product": "Snapbridge Pro", "price_cents": rng.choice((900, 1900, 4900)), "plan": plan}
        event = Event(
            company_id=company, event_id=f"evt_seed_{n + 1:04d}", type=_EVENT_TYPES[n % len(_EVENT_TYPES)],
            timestamp=SEED_EPOCH + timedelta(days=10, minutes=37 * n), location_id=customer.location_id,
            customer_id=customer_id, data=data, body_fingerprint="",
        )
        state.events[(company, event.event_id)] = replace(event, body_fingerprint=canonical(event.to_json()))
    limits = (DEFAULT_BURST_LIMIT, DEFAULT_BURST_WINDOW_MS, DEFAULT_DAILY_LIMIT)
    state.add_key(ALL_SCOPES, company, None, *limits)  # first key: every scope (the demo's key)
    state.add_key(READ_ONLY_SCOPES, company, None, *limits)
    state.add_key(ALL_SCOPES - {Scope.LOCATION_READ.value}, company, None, *limits)
    state.add_key(ALL_SCOPES, company, locations[0].location_id, *limits)  # a sub-account key
