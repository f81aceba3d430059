"""Snapshots webhook verification: signature vectors, freshness, replay, and parsing into typed events."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from snapbridge.connectors.snapshots import (
    CustomerUpdateEvent,
    InMemorySeenIds,
    LocationCreateEvent,
    LocationUpdateEvent,
    OnboardingStatus,
    check_freshness,
    load_public_key,
    parse_webhook,
    verify_webhook,
)
from snapbridge.errors import InvalidInput, WebhookRejected

DATA = Path(__file__).resolve().parents[1] / "data" / "snapshots_webhooks"
NOW = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)
PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC_RAW = PRIVATE.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
PUBLIC_B64 = base64.b64encode(PUBLIC_RAW).decode()
PUBLIC_DER = PRIVATE.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def body_of(**overrides: object) -> bytes:
    data: dict[str, object] = {
        "type": "LocationUpdate",
        "webhookId": "wh_1",
        "timestamp": "2026-07-01T11:59:00Z",
        "companyId": "comp_1",
        "location_id": "loc_1",
        "name": "Ada's Studio — Zürich",
        "timezone": "Europe/Zurich",
        "onboarding_status": "active",
    }
    data.update(overrides)
    return json.dumps(data, ensure_ascii=False).encode()


def sign(body: bytes, key: Ed25519PrivateKey = PRIVATE) -> dict[str, str]:
    return {"X-GHL-Signature": base64.b64encode(key.sign(body)).decode(), "Content-Type": "application/json"}


def test_a_valid_body_verifies_into_a_typed_event() -> None:
    body = body_of()
    event = verify_webhook(body, sign(body), PUBLIC_B64, NOW, InMemorySeenIds())
    assert isinstance(event, LocationUpdateEvent)
    assert event.webhook_id == "wh_1" and event.company_id == "comp_1"
    assert event.timestamp == datetime(2026, 7, 1, 11, 59, tzinfo=UTC)
    assert event.location.name == "Ada's Studio — Zürich"
    assert event.location.onboarding_status is OnboardingStatus.ACTIVE


def _tampered(body: bytes) -> bytes:
    return body.replace(b"loc_1", b"loc_2")


def _whitespace(body: bytes) -> bytes:
    # The same JSON value with different bytes: the signature covers bytes, not the parsed value.
    return json.dumps(json.loads(body), ensure_ascii=False, indent=1).encode()


def _trailing_newline(body: bytes) -> bytes:
    return body + b"\n"


@pytest.mark.parametrize("alter", [_tampered, _whitespace, _trailing_newline], ids=lambda f: f.__name__)
def test_a_body_changed_after_signing_is_rejected(alter: Callable[[bytes], bytes]) -> None:
    body = body_of()
    headers = sign(body)
    changed = alter(body)
    assert changed != body
    with pytest.raises(WebhookRejected, match="does not match the body"):
        verify_webhook(changed, headers, PUBLIC_B64, NOW, InMemorySeenIds())


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing X-GHL-Signature"),
        ({"X-GHL-Signature": ""}, "missing X-GHL-Signature"),
        ({"X-GHL-Signature": "not base64!!"}, "not valid base64"),
        ({"X-GHL-Signature": base64.b64encode(b"short").decode()}, "decodes to 5 bytes"),
        ({"X-GHL-Signature": base64.b64encode(bytes(64)).decode()}, "does not match"),
        # The legacy RSA header alone is not accepted: we only hold the Ed25519 key.
        ({"X-WH-Signature": base64.b64encode(bytes(512)).decode()}, "missing X-GHL-Signature"),
    ],
    ids=["no-header", "empty", "undecodable", "wrong-length", "zero-signature", "legacy-header-only"],
)
def test_a_missing_or_malformed_signature_is_rejected(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(WebhookRejected, match=reason):
        verify_webhook(body_of(), headers, PUBLIC_B64, NOW, InMemorySeenIds())


def test_a_signature_by_another_key_is_rejected() -> None:
    body = body_of()
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_webhook(body, sign(body, OTHER), PUBLIC_B64, NOW, InMemorySeenIds())


def test_the_header_name_is_case_insensitive() -> None:
    body = body_of()
    headers = {"x-ghl-signature": sign(body)["X-GHL-Signature"]}
    assert verify_webhook(body, headers, PUBLIC_B64, NOW, InMemorySeenIds()).webhook_id == "wh_1"


@pytest.mark.parametrize(
    ("timestamp", "accepted"),
    [
        ("2026-07-01T11:55:00Z", True),  # exactly 5 minutes old: the limit
        ("2026-07-01T11:54:59Z", False),  # one second past it
        ("2026-07-01T11:00:00Z", False),
        ("2026-07-01T12:01:00Z", True),  # one minute ahead: the allowed clock skew
        ("2026-07-01T12:01:01Z", False),
        ("2026-07-01T14:00:00+02:00", True),  # the same instant as NOW, another offset
    ],
)
def test_freshness_window(timestamp: str, accepted: bool) -> None:
    body = body_of(timestamp=timestamp)
    if accepted:
        verify_webhook(body, sign(body), PUBLIC_B64, NOW, InMemorySeenIds())
    else:
        with pytest.raises(WebhookRejected, match=r"old|future"):
            verify_webhook(body, sign(body), PUBLIC_B64, NOW, InMemorySeenIds())


def test_a_replayed_webhook_id_is_rejected_and_a_rejected_body_spends_no_id() -> None:
    seen = InMemorySeenIds()
    stale = body_of(webhookId="wh_9", timestamp="2026-07-01T10:00:00Z")
    with pytest.raises(WebhookRejected, match="old"):
        verify_webhook(stale, sign(stale), PUBLIC_B64, NOW, seen)
    assert len(seen) == 0
    body = body_of(webhookId="wh_9")
    verify_webhook(body, sign(body), PUBLIC_B64, NOW, seen)
    with pytest.raises(WebhookRejected, match=r"wh_9 was already received \(replay\)"):
        verify_webhook(body, sign(body), PUBLIC_B64, NOW, seen)


def test_in_memory_seen_ids_forgets_the_oldest_past_its_capacity() -> None:
    seen = InMemorySeenIds(max_entries=2)
    # "c" pushes out "a" (the oldest), so "a" is new again and in turn pushes out "b".
    assert [seen.seen_before(i) for i in ("a", "b", "a", "c", "a", "b", "a")] == [
        False, False, True, False, False, False, True,
    ]
    assert len(seen) == 2
    with pytest.raises(InvalidInput):
        InMemorySeenIds(max_entries=0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "expected an object"),
        (body_of(type="ContactCreate"), "'ContactCreate' is not one of LocationCreate, LocationUpdate"),
        (body_of(webhookId=None), "webhook.webhookId"),
        (body_of(timestamp="yesterday"), "not an ISO 8601 timestamp"),
        (body_of(timestamp="2026-07-01T11:59:00"), "has no timezone"),
        (body_of(location_id=None), "webhook.location_id"),
        (body_of(onboarding_status="frozen"), "'frozen' is not one of pending"),
    ],
    ids=["broken", "not-utf8", "array", "unknown-type", "no-id", "bad-time", "naive-time", "no-location",
         "bad-status"],
)
def test_a_signed_but_malformed_body_is_invalid_input(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        verify_webhook(body, sign(body), PUBLIC_B64, NOW, InMemorySeenIds())


def test_each_type_parses_into_its_class() -> None:
    create = parse_webhook(body_of(type="LocationCreate"))
    assert isinstance(create, LocationCreateEvent) and create.location.location_id == "loc_1"
    customer = parse_webhook(json.dumps({
        "type": "CustomerUpdate", "webhookId": "wh_c", "timestamp": "2026-07-01T11:59:00Z",
        "companyId": "comp_1", "customer_id": "cus_1", "email": "ada@example.com", "tags": ["vip", "ü"],
    }).encode())
    assert isinstance(customer, CustomerUpdateEvent)
    assert customer.customer.tags == ("vip", "ü") and customer.customer.email == "ada@example.com"


@pytest.mark.parametrize(
    "form",
    [
        PUBLIC_RAW,
        PUBLIC_B64,
        PUBLIC_B64.encode(),
        PRIVATE.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode(),
        PUBLIC_DER,
        base64.b64encode(PUBLIC_DER).decode(),
    ],
    ids=["raw", "base64", "base64-bytes", "pem", "der", "der-base64"],
)
def test_the_public_key_is_accepted_in_every_common_form(form: bytes | str) -> None:
    assert load_public_key(form).public_bytes(Encoding.Raw, PublicFormat.Raw) == PUBLIC_RAW


@pytest.mark.parametrize(
    "form", ["", "not a key", b"\x00" * 31, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END"]
)
def test_a_key_that_is_not_ed25519_is_invalid_input(form: bytes | str) -> None:
    with pytest.raises(InvalidInput, match="not an Ed25519 key"):
        load_public_key(form)


def test_freshness_needs_an_aware_clock() -> None:
    with pytest.raises(InvalidInput):
        check_freshness(NOW, datetime(2026, 7, 1, 12, 0), max_age=timedelta(minutes=5))


def _recorded() -> list[Path]:
    return sorted(DATA.glob("*.body.json"))


@pytest.mark.parametrize("body_path", _recorded(), ids=lambda p: p.name)
def test_bodies_recorded_from_the_sandbox_verify_with_its_key(body_path: Path) -> None:
    meta = json.loads(body_path.with_name(body_path.name.replace(".body.json", ".meta.json")).read_text())
    raw = body_path.read_bytes()
    event = parse_webhook(raw)
    # The recording's own delivery time stands in for "now", so the file never goes stale.
    event2 = verify_webhook(raw, meta["headers"], meta["public_key"], event.timestamp, InMemorySeenIds())
    assert event2 == event
    assert event.type.value == meta["type"]
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_webhook(raw.replace(b'"', b' "', 1), meta["headers"], meta["public_key"], event.timestamp,
                       InMemorySeenIds())


def test_recorded_bodies_cover_every_type() -> None:
    types = {json.loads(p.read_bytes())["type"] for p in _recorded()}
    assert types == {"LocationCreate", "LocationUpdate", "CustomerUpdate"}
