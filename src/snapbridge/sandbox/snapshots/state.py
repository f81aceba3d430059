"""The Snapshots sandbox's data: API keys, locations, customers, events and stored idempotent answers."""

from __future__ import annotations

import hashlib
import random
import string
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from snapbridge.sandbox.snapshots.bodies import ApiResult, format_time

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_BURST_LIMIT",
    "DEFAULT_BURST_WINDOW_MS",
    "DEFAULT_DAILY_LIMIT",
    "Customer",
    "Event",
    "Location",
    "OnboardingStatus",
    "SandboxKey",
    "SandboxState",
    "Scope",
    "StoredAnswer",
    "fingerprint",
]

DEFAULT_BURST_LIMIT = 100
DEFAULT_BURST_WINDOW_MS = 10_000
DEFAULT_DAILY_LIMIT = 200_000


class Scope(StrEnum):
    LOCATION_READ = "saas/location.read"
    LOCATION_WRITE = "saas/location.write"
    EVENTS_WRITE = "events.write"
    EVENTS_READ = "events.readonly"
    CUSTOMERS_WRITE = "customers.write"
    CUSTOMERS_READ = "customers.readonly"


ALL_SCOPES = frozenset(s.value for s in Scope)


class OnboardingStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"


def fingerprint(secret: str) -> str:
    """A short, stable, one-way name for a credential, safe to log and to show in the journal."""
    return "key_" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class SandboxKey:
    """An API key: its scopes, its company, the location it may be bound to, and its plan's limits."""

    key: str = field(repr=False)
    scopes: frozenset[str]
    company_id: str
    location_id: str | None
    burst_limit: int
    burst_window_ms: int
    daily_limit: int

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)

    def reaches(self, location_id: str | None) -> bool:
        """A company key reaches every location of its company; a bound key only its own."""
        return self.location_id is None or self.location_id == location_id

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "scopes": sorted(self.scopes),
            "company_id": self.company_id,
            "location_id": self.location_id,
            "burst_limit": self.burst_limit,
            "burst_window_ms": self.burst_window_ms,
            "daily_limit": self.daily_limit,
        }


@dataclass(frozen=True)
class Location:
    location_id: str
    company_id: str
    name: str
    timezone: str
    created_at: datetime
    updated_at: datetime
    email: str | None = None
    region: str | None = None
    onboarding_status: OnboardingStatus = OnboardingStatus.PENDING
    tier: str | None = None
    snapshot_id: str | None = None
    external_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "location_id": self.location_id,
            # HighLevel's location object carries its agency (companyId, snapshots-api.md §4.1); a client
            # probing a key reads the company it reached from here.
            "company_id": self.company_id,
            "name": self.name,
            "timezone": self.timezone,
            "email": self.email,
            "region": self.region,
            "onboarding_status": self.onboarding_status.value,
            "tier": self.tier,
            "snapshot_id": self.snapshot_id,
            "external_id": self.external_id,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
        }


@dataclass(frozen=True)
class Customer:
    company_id: str
    customer_id: str
    updated_at: datetime
    email: str | None = None
    name: str | None = None
    plan: str | None = None
    location_id: str | None = None
    tags: tuple[str, ...] = ()
    last_activity_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "email": self.email,
            "name": self.name,
            "plan": self.plan,
            "location_id": self.location_id,
            "tags": list(self.tags),
            "last_activity_at": format_time(self.last_activity_at) if self.last_activity_at else None,
            "updated_at": format_time(self.updated_at),
        }


@dataclass(frozen=True)
class Event:
    company_id: str
    event_id: str
    type: str
    timestamp: datetime
    location_id: str | None
    customer_id: str | None
    data: dict[str, Any]
    body_fingerprint: str  # the normalised input, to tell a repeat from a different event with the same id

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "timestamp": format_time(self.timestamp),
            "location_id": self.location_id,
            "customer_id": self.customer_id,
            "data": self.data,
        }


@dataclass(frozen=True)
class StoredAnswer:
    """The first answer given under an Idempotency-Key, and what the request that got it looked like."""

    request_fingerprint: str
    result: ApiResult


class SandboxState:
    """Every object of every company the sandbox knows; callers hold `lock` while they read or change it."""

    def __init__(self, seed: int) -> None:
        self.lock = threading.RLock()
        self._ids = random.Random(f"snapshots-ids:{seed}")
        self._secrets = random.Random(f"snapshots-keys:{seed}")
        self.company_id = self.new_object_id()
        self.keys: dict[str, SandboxKey] = {}
        self.locations: dict[str, Location] = {}  # location ids are global, so a foreign one is recognisable
        self.customers: dict[tuple[str, str], Customer] = {}
        self.events: dict[tuple[str, str], Event] = {}
        self.answers: dict[tuple[str, str], StoredAnswer] = {}  # (company, Idempotency-Key)

    def new_object_id(self) -> str:
        """A 20-character id in HighLevel's style, from the seeded generator."""
        alphabet = string.ascii_letters + string.digits
        return "".join(self._ids.choice(alphabet) for _ in range(20))

    def add_key(
        self,
        scopes: frozenset[str],
        company_id: str,
        location_id: str | None,
        burst_limit: int,
        burst_window_ms: int,
        daily_limit: int,
    ) -> SandboxKey:
        unknown = sorted(scopes - ALL_SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; known: {sorted(ALL_SCOPES)}")
        if min(burst_limit, burst_window_ms, daily_limit) < 1:
            raise ValueError("burst_limit, burst_window_ms and daily_limit must be at least 1")
        with self.lock:
            # Shaped like a Private Integration Token, the nearest real thing to a "Snapshots API key".
            secret = f"pit-{uuid.UUID(int=self._secrets.getrandbits(128), version=4)}"
            key = SandboxKey(secret, scopes, company_id, location_id, burst_limit, burst_window_ms,
                             daily_limit)
            self.keys[secret] = key
            return key

    def locations_of(self, company_id: str) -> list[Location]:
        return sorted((x for x in self.locations.values() if x.company_id == company_id),
                      key=lambda x: x.location_id)

    def location_with_external_id(self, company_id: str, external_id: str) -> Location | None:
        return next(
            (x for x in self.locations.values()
             if x.company_id == company_id and x.external_id == external_id),
            None,
        )

    def customers_of(self, company_id: str) -> list[Customer]:
        return sorted((c for (co, _), c in self.customers.items() if co == company_id),
                      key=lambda c: c.customer_id)

    def events_of(self, company_id: str) -> list[Event]:
        return sorted((e for (co, _), e in self.events.items() if co == company_id), key=lambda e: e.event_id)
