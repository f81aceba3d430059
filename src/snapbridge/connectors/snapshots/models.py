"""Typed records of the Snapshots API: output shapes parsed from JSON, input shapes rendered to JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Generic, TypeVar

from snapbridge.errors import InvalidInput
from snapbridge.http import RateLimitState

__all__ = [
    "MAX_EVENT_DATA_BYTES",
    "BatchItemResult",
    "BatchItemStatus",
    "BatchResult",
    "Customer",
    "CustomerChanges",
    "CustomerUpsert",
    "Event",
    "EventInput",
    "EventReceipt",
    "Location",
    "LocationChanges",
    "LocationCreate",
    "LocationUpsert",
    "OnboardingStatus",
    "Page",
    "Probe",
    "format_timestamp",
]

# The contract caps `data` at 16 KiB; we measure compact UTF-8 JSON, the smallest honest rendering.
MAX_EVENT_DATA_BYTES = 16 * 1024

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)


class OnboardingStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, the form the contract uses."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"timestamp {value.isoformat()} has no timezone")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_timestamp(raw: object, where: str) -> datetime:
    """An ISO 8601 string with an offset → an aware datetime in UTC; InvalidInput names `where`."""
    if not isinstance(raw, str):
        raise InvalidInput(f"{where}: expected an ISO 8601 string, got {type(raw).__name__}")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidInput(f"{where}: {raw!r} is not an ISO 8601 timestamp") from exc
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{where}: {raw!r} has no timezone")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past the last moment a datetime holds
        raise InvalidInput(f"{where}: {raw!r} is out of the range of dates") from None


class Fields:
    """Reads one JSON object field by field; every message names the path of the bad field."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{path}: expected an object, got {type(data).__name__}")
        self.data: Mapping[str, object] = data
        self.path = path

    def _where(self, name: str) -> str:
        return f"{self.path}.{name}"

    def text(self, name: str) -> str:
        value = self.data.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"{self._where(name)}: expected a non-empty string, got {value!r}")
        return value

    def opt_text(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidInput(f"{self._where(name)}: expected a string, got {type(value).__name__}")
        return value

    def opt_int(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{self._where(name)}: expected an integer, got {value!r}")
        return value

    def when(self, name: str) -> datetime:
        return parse_timestamp(self.data.get(name), self._where(name))

    def opt_when(self, name: str) -> datetime | None:
        value = self.data.get(name)
        return None if value is None else parse_timestamp(value, self._where(name))

    def texts(self, name: str) -> tuple[str, ...]:
        value = self.data.get(name)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidInput(f"{self._where(name)}: expected a list of strings, got {value!r}")
        return tuple(value)

    def obj(self, name: str) -> Mapping[str, object]:
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise InvalidInput(f"{self._where(name)}: expected an object, got {type(value).__name__}")
        return dict(value)

    def opt_enum(self, name: str, kind: type[E]) -> E | None:
        value = self.data.get(name)
        if value is None:
            return None
        known = [m.value for m in kind]
        if not isinstance(value, str) or value not in known:
            raise InvalidInput(f"{self._where(name)}: {value!r} is not one of {', '.join(known)}")
        return kind(value)


def _drop_none(data: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in data.items() if v is not None}


# ---- output shapes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    location_id: str
    name: str
    timezone: str | None = None
    email: str | None = None
    region: str | None = None
    onboarding_status: OnboardingStatus | None = None
    tier: str | None = None
    snapshot_id: str | None = None
    external_id: str | None = None
    company_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # The rate-limit headers of the response this record came in; not part of the record's identity.
    rate_limit: RateLimitState | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: object, *, path: str = "location", rate_limit: RateLimitState | None = None
                  ) -> Location:
        f = Fields(data, path)
        # The contract names the owner nowhere on a location; HighLevel's webhook bodies call it companyId.
        company = f.opt_text("company_id") if "company_id" in f.data else f.opt_text("companyId")
        return cls(
            location_id=f.text("location_id"),
            name=f.text("name"),
            timezone=f.opt_text("timezone"),
            email=f.opt_text("email"),
            region=f.opt_text("region"),
            onboarding_status=f.opt_enum("onboarding_status", OnboardingStatus),
            tier=f.opt_text("tier"),
            snapshot_id=f.opt_text("snapshot_id"),
            external_id=f.opt_text("external_id"),
            company_id=company,
            created_at=f.opt_when("created_at"),
            updated_at=f.opt_when("updated_at"),
            rate_limit=rate_limit,
        )


@dataclass(frozen=True)
class Event:
    event_id: str
    type: str
    timestamp: datetime
    location_id: str | None = None
    customer_id: str | None = None
    data: Mapping[str, object] = field(default_factory=dict)
    rate_limit: RateLimitState | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: object, *, path: str = "event", rate_limit: RateLimitState | None = None
                  ) -> Event:
        f = Fields(data, path)
        return cls(
            event_id=f.text("event_id"),
            type=f.text("type"),
            timestamp=f.when("timestamp"),
            location_id=f.opt_text("location_id"),
            customer_id=f.opt_text("customer_id"),
            data=f.obj("data"),
            rate_limit=rate_limit,
        )


@dataclass(frozen=True)
class Customer:
    customer_id: str
    email: str | None = None
    name: str | None = None
    plan: str | None = None
    location_id: str | None = None
    tags: tuple[str, ...] = ()
    last_activity_at: datetime | None = None
    updated_at: datetime | None = None
    rate_limit: RateLimitState | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: object, *, path: str = "customer", rate_limit: RateLimitState | None = None
                  ) -> Customer:
        f = Fields(data, path)
        return cls(
            customer_id=f.text("customer_id"),
            email=f.opt_text("email"),
            name=f.opt_text("name"),
            plan=f.opt_text("plan"),
            location_id=f.opt_text("location_id"),
            tags=f.texts("tags"),
            last_activity_at=f.opt_when("last_activity_at"),
            updated_at=f.opt_when("updated_at"),
            rate_limit=rate_limit,
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its items, the cursor for the next page (None on the last) and the total."""

    items: tuple[T, ...]
    next_cursor: str | None
    total: int | None = None
    rate_limit: RateLimitState | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_json(
        cls,
        body: object,
        *,
        key: str,
        parse: Callable[[object, str], T],
        rate_limit: RateLimitState | None = None,
    ) -> Page[T]:
        f = Fields(body, "body")
        raw_items = f.data.get(key)
        if not isinstance(raw_items, list):
            raise InvalidInput(f"body.{key}: expected a list, got {type(raw_items).__name__}")
        meta = Fields(f.obj("meta"), "body.meta")
        items = tuple(parse(item, f"body.{key}[{i}]") for i, item in enumerate(raw_items))
        return cls(items=items, next_cursor=meta.opt_text("startAfterId") or None,
                   total=meta.opt_int("total"), rate_limit=rate_limit)


@dataclass(frozen=True)
class LocationUpsert:
    location: Location
    created: bool
    rate_limit: RateLimitState | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class CustomerUpsert:
    customer: Customer
    created: bool
    rate_limit: RateLimitState | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class EventReceipt:
    """The stored event; `replayed` is true when the API answered with an earlier copy (same id or key)."""

    event: Event
    replayed: bool
    rate_limit: RateLimitState | None = field(default=None, compare=False, repr=False)


class BatchItemStatus(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    ERROR = "error"


@dataclass(frozen=True)
class BatchItemResult:
    event_id: str | None  # None when the item sent had no usable event_id
    status: BatchItemStatus
    error: str | None = None

    @classmethod
    def from_json(cls, data: object, path: str) -> BatchItemResult:
        f = Fields(data, path)
        status = f.opt_enum("status", BatchItemStatus)
        if status is None:
            raise InvalidInput(f"{path}.status: missing")
        raw_error = f.data.get("error")
        # The contract leaves the error's shape open: keep a string, render anything else as JSON.
        error = raw_error if isinstance(raw_error, str) or raw_error is None else json.dumps(raw_error)
        return cls(event_id=f.opt_text("event_id"), status=status, error=error)


@dataclass(frozen=True)
class BatchResult:
    results: tuple[BatchItemResult, ...]
    replayed: bool = False
    rate_limit: RateLimitState | None = field(default=None, compare=False, repr=False)

    @property
    def errors(self) -> tuple[BatchItemResult, ...]:
        return tuple(r for r in self.results if r.status is BatchItemStatus.ERROR)


@dataclass(frozen=True)
class Probe:
    """What a cheap "connect" call learned: the company the key reaches and how many locations it sees."""

    company_id: str | None
    location_count: int | None
    sample_location: Location | None
    rate_limit: RateLimitState | None = field(default=None, compare=False, repr=False)


# ---- input shapes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocationCreate:
    name: str
    timezone: str
    email: str | None = None
    region: str | None = None
    onboarding_status: OnboardingStatus | None = None
    tier: str | None = None
    snapshot_id: str | None = None
    external_id: str | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise InvalidInput("location name must not be empty")
        if not self.timezone.strip():
            raise InvalidInput("location timezone must not be empty")

    def to_json(self) -> dict[str, object]:
        return _drop_none({
            "name": self.name,
            "timezone": self.timezone,
            "email": self.email,
            "region": self.region,
            "onboarding_status": None if self.onboarding_status is None else self.onboarding_status.value,
            "tier": self.tier,
            "snapshot_id": self.snapshot_id,
            "external_id": self.external_id,
        })

    def as_changes(self) -> LocationChanges:
        """The same fields as a partial update; `external_id` stays, since it already matches."""
        return LocationChanges(
            name=self.name, timezone=self.timezone, email=self.email, region=self.region,
            onboarding_status=self.onboarding_status, tier=self.tier, snapshot_id=self.snapshot_id,
        )


@dataclass(frozen=True)
class LocationChanges:
    """A partial update: only fields that are not None are sent (the API cannot clear a field)."""

    name: str | None = None
    timezone: str | None = None
    email: str | None = None
    region: str | None = None
    onboarding_status: OnboardingStatus | None = None
    tier: str | None = None
    snapshot_id: str | None = None
    external_id: str | None = None

    def to_json(self) -> dict[str, object]:
        return _drop_none({
            "name": self.name,
            "timezone": self.timezone,
            "email": self.email,
            "region": self.region,
            "onboarding_status": None if self.onboarding_status is None else self.onboarding_status.value,
            "tier": self.tier,
            "snapshot_id": self.snapshot_id,
            "external_id": self.external_id,
        })


@dataclass(frozen=True)
class EventInput:
    event_id: str
    type: str
    timestamp: datetime
    location_id: str | None = None
    customer_id: str | None = None
    data: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.event_id:
            raise InvalidInput("event_id must not be empty")
        if not self.type:
            raise InvalidInput(f"event {self.event_id}: type must not be empty")
        format_timestamp(self.timestamp)  # raises on a naive datetime
        try:
            size = len(json.dumps(dict(self.data), separators=(",", ":"), ensure_ascii=False).encode())
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"event {self.event_id}: data is not JSON-serialisable: {exc}") from exc
        if size > MAX_EVENT_DATA_BYTES:
            raise InvalidInput(
                f"event {self.event_id}: data is {size} bytes of JSON, more than {MAX_EVENT_DATA_BYTES}"
            )

    def to_json(self) -> dict[str, object]:
        return _drop_none({
            "event_id": self.event_id,
            "type": self.type,
            "timestamp": format_timestamp(self.timestamp),
            "location_id": self.location_id,
            "customer_id": self.customer_id,
            "data": dict(self.data),
        })


@dataclass(frozen=True)
class CustomerChanges:
    """Fields to set on a customer; None leaves a field as it is, and `tags` replaces the whole list."""

    email: str | None = None
    name: str | None = None
    plan: str | None = None
    location_id: str | None = None
    tags: tuple[str, ...] | None = None
    last_activity_at: datetime | None = None

    def to_json(self) -> dict[str, object]:
        return _drop_none({
            "email": self.email,
            "name": self.name,
            "plan": self.plan,
            "location_id": self.location_id,
            "tags": None if self.tags is None else list(self.tags),
            "last_activity_at": (
                None if self.last_activity_at is None else format_timestamp(self.last_activity_at)
            ),
        })
