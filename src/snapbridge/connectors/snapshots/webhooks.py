"""Verifies a Snapshots webhook (Ed25519 over the raw body, freshness, replay) and parses its typed event."""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from snapbridge.connectors.snapshots.models import Customer, Fields, Location
from snapbridge.errors import InvalidInput, WebhookRejected

__all__ = [
    "MAX_AGE",
    "MAX_FUTURE_SKEW",
    "SIGNATURE_HEADER",
    "CustomerUpdateEvent",
    "InMemorySeenIds",
    "LocationCreateEvent",
    "LocationUpdateEvent",
    "SeenIds",
    "SnapshotsWebhookEvent",
    "WebhookType",
    "check_freshness",
    "check_signature",
    "load_public_key",
    "parse_webhook",
    "verify_webhook",
]

SIGNATURE_HEADER = "X-GHL-Signature"
# The contract: reject a timestamp older than 5 minutes.
MAX_AGE = timedelta(minutes=5)
# Our choice: a sender's clock may run ahead of ours by at most one minute. Anything further ahead would
# let a captured body outlive the replay window, since seen ids need only be kept for MAX_AGE + this skew.
MAX_FUTURE_SKEW = timedelta(minutes=1)
_ED25519_SIGNATURE_BYTES = 64
_ED25519_RAW_KEY_BYTES = 32


class WebhookType(StrEnum):
    LOCATION_CREATE = "LocationCreate"
    LOCATION_UPDATE = "LocationUpdate"
    CUSTOMER_UPDATE = "CustomerUpdate"


@dataclass(frozen=True)
class LocationCreateEvent:
    type: ClassVar[WebhookType] = WebhookType.LOCATION_CREATE
    webhook_id: str
    timestamp: datetime
    company_id: str | None
    location: Location


@dataclass(frozen=True)
class LocationUpdateEvent:
    type: ClassVar[WebhookType] = WebhookType.LOCATION_UPDATE
    webhook_id: str
    timestamp: datetime
    company_id: str | None
    location: Location


@dataclass(frozen=True)
class CustomerUpdateEvent:
    type: ClassVar[WebhookType] = WebhookType.CUSTOMER_UPDATE
    webhook_id: str
    timestamp: datetime
    company_id: str | None
    customer: Customer


SnapshotsWebhookEvent = LocationCreateEvent | LocationUpdateEvent | CustomerUpdateEvent


class SeenIds(Protocol):
    """Remembers webhook ids. `seen_before` checks and records in one atomic step."""

    def seen_before(self, webhook_id: str) -> bool: ...


class InMemorySeenIds:
    """SeenIds for tests and one embedded process: thread-safe, keeps the newest `max_entries` ids.

    Ids only need to outlive the freshness window (MAX_AGE + MAX_FUTURE_SKEW): an older body is refused
    for its timestamp anyway. Eviction matters only if more than `max_entries` arrive within that window.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise InvalidInput(f"max_entries must be at least 1, got {max_entries}")
        self._max = max_entries
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def seen_before(self, webhook_id: str) -> bool:
        with self._lock:
            if webhook_id in self._ids:
                return True
            self._ids[webhook_id] = None
            while len(self._ids) > self._max:
                self._ids.popitem(last=False)
            return False

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)


def load_public_key(key: bytes | str | Ed25519PublicKey) -> Ed25519PublicKey:
    """An Ed25519 public key from raw 32 bytes, PEM, DER, or base64 of raw or DER; InvalidInput otherwise."""
    if isinstance(key, Ed25519PublicKey):
        return key
    data = (key.encode("ascii", "replace") if isinstance(key, str) else key).strip()
    loaded = _load_key_bytes(data)
    if loaded is None and not data.startswith(b"-----BEGIN"):
        try:
            loaded = _load_key_bytes(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            loaded = None
    if loaded is None:
        raise InvalidInput("the webhook public key is not an Ed25519 key (raw, base64, PEM or DER)")
    if not isinstance(loaded, Ed25519PublicKey):
        raise InvalidInput(f"the webhook public key is a {type(loaded).__name__}, not an Ed25519 key")
    return loaded


def _load_key_bytes(data: bytes) -> object | None:
    try:
        if data.startswith(b"-----BEGIN"):
            return load_pem_public_key(data)
        if len(data) == _ED25519_RAW_KEY_BYTES:
            return Ed25519PublicKey.from_public_bytes(data)
        return load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # A plain dict is case-sensitive; HTTP header names are not.
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def check_signature(raw_body: bytes, headers: Mapping[str, str], public_key: bytes | str | Ed25519PublicKey
                    ) -> None:
    """Raises WebhookRejected unless X-GHL-Signature is a valid Ed25519 signature of exactly `raw_body`."""
    key = load_public_key(public_key)
    value = _header(headers, SIGNATURE_HEADER)
    if value is None or not value.strip():
        raise WebhookRejected(f"missing {SIGNATURE_HEADER} header")
    try:
        signature = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookRejected(f"{SIGNATURE_HEADER} is not valid base64") from exc
    if len(signature) != _ED25519_SIGNATURE_BYTES:
        raise WebhookRejected(
            f"{SIGNATURE_HEADER} decodes to {len(signature)} bytes, not a {_ED25519_SIGNATURE_BYTES}-byte "
            "Ed25519 signature"
        )
    try:
        key.verify(signature, raw_body)
    except InvalidSignature as exc:
        raise WebhookRejected(
            f"{SIGNATURE_HEADER} does not match the body (wrong key or altered body)"
        ) from exc


def parse_webhook(raw_body: bytes) -> SnapshotsWebhookEvent:
    """The typed event in a (verified) body; InvalidInput names what is wrong."""
    try:
        data = json.loads(raw_body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"webhook body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InvalidInput("webhook body is nested too deeply") from None
    f = Fields(data, "webhook")
    raw_type = f.data.get("type")
    try:
        if not isinstance(raw_type, str):
            raise ValueError(raw_type)
        kind = WebhookType(raw_type)
    except ValueError as exc:
        known = ", ".join(t.value for t in WebhookType)
        raise InvalidInput(f"webhook.type: {raw_type!r} is not one of {known}") from exc
    webhook_id = f.text("webhookId")
    timestamp = f.when("timestamp")
    company_id = f.opt_text("companyId")
    if kind is WebhookType.CUSTOMER_UPDATE:
        return CustomerUpdateEvent(webhook_id=webhook_id, timestamp=timestamp, company_id=company_id,
                                   customer=Customer.from_json(data, path="webhook"))
    location = Location.from_json(data, path="webhook")
    if kind is WebhookType.LOCATION_CREATE:
        return LocationCreateEvent(webhook_id=webhook_id, timestamp=timestamp, company_id=company_id,
                                   location=location)
    return LocationUpdateEvent(webhook_id=webhook_id, timestamp=timestamp, company_id=company_id,
                               location=location)


def check_freshness(timestamp: datetime, now: datetime, *, max_age: timedelta = MAX_AGE,
                    max_future_skew: timedelta = MAX_FUTURE_SKEW) -> None:
    """Raises WebhookRejected for a timestamp older than `max_age` or further ahead than `max_future_skew`."""
    if now.tzinfo is None:
        raise InvalidInput("now must be timezone-aware")
    age = now - timestamp
    if age > max_age:
        raise WebhookRejected(
            f"webhook timestamp {timestamp.isoformat()} is {age.total_seconds():.0f}s old, "
            f"more than {max_age.total_seconds():.0f}s"
        )
    if -age > max_future_skew:
        raise WebhookRejected(
            f"webhook timestamp {timestamp.isoformat()} is {(-age).total_seconds():.0f}s in the future, "
            f"more than the {max_future_skew.total_seconds():.0f}s allowed for clock skew"
        )


def verify_webhook(
    raw_body: bytes,
    headers: Mapping[str, str],
    public_key: bytes | str | Ed25519PublicKey,
    now: datetime,
    seen: SeenIds,
    *,
    max_age: timedelta = MAX_AGE,
    max_future_skew: timedelta = MAX_FUTURE_SKEW,
) -> SnapshotsWebhookEvent:
    """Signature, then body, then freshness, then replay; the first failure raises.

    WebhookRejected: the body cannot be trusted (missing/bad signature, stale, replayed).
    InvalidInput: the body is signed but malformed, or the key is not an Ed25519 key.
    The webhook id is recorded in `seen` only once everything else passed, so a rejected body never
    spends an id. A receiver that records ids inside its own store transaction can call the steps
    (check_signature, parse_webhook, check_freshness) itself and dedupe on `event.webhook_id`.
    """
    check_signature(raw_body, headers, public_key)
    event = parse_webhook(raw_body)
    check_freshness(event.timestamp, now, max_age=max_age, max_future_skew=max_future_skew)
    if seen.seen_before(event.webhook_id):
        raise WebhookRejected(f"webhook {event.webhook_id} was already received (replay)")
    return event
