"""The receiver's pure part: secrets, Gumroad and Snapshots bodies into rows to store, and their refusals."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from snapbridge.errors import InvalidInput, WebhookRejected
from snapbridge.runtime import (
    GumroadHook,
    ReceiverConfig,
    ReceiverLimits,
    find_gumroad_hook,
    gumroad_inbound,
    new_webhook_secret,
    snapshots_inbound,
)
from snapbridge.security import Secret
from snapbridge.store import EventSource, EventStatus

DATA = Path(__file__).resolve().parents[1] / "data"
GUMROAD = DATA / "gumroad_webhooks"
SNAPSHOTS = DATA / "snapshots_webhooks"
SELLER = "hN7pZkQwT3xVbJ9sLmR2cA=="  # the seller of the recorded Gumroad bodies
SECRET_A = "a" * 32 + "-_A1"
SECRET_B = "b" * 43
NOW = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)
PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
FORM = "application/x-www-form-urlencoded"


def public_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def config(**snapshots: Ed25519PrivateKey) -> ReceiverConfig:
    return ReceiverConfig.from_values(
        gumroad={SECRET_A: ("shop-a", SELLER), SECRET_B: ("shop-b", "other-seller")},
        snapshots={name: public_b64(key) for name, key in snapshots.items()},
    )


# ---- secrets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "connection"),
    [
        (SECRET_A, "shop-a"),
        (SECRET_B, "shop-b"),
        (SECRET_A[:-1], None),  # a prefix
        (SECRET_A + "x", None),  # an extension
        (SECRET_A.upper(), None),
        ("", None),
        ("é" * 36, None),  # non-ASCII must not raise (hmac.compare_digest refuses non-ASCII str)
    ],
)
def test_a_secret_finds_its_connection_and_nothing_else_does(token: str, connection: str | None) -> None:
    found = find_gumroad_hook(config(), token)
    assert (found.connection if found else None) == connection


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({"short-secret": ("c", "s")}, "at least 32 URL-safe characters"),
        ({"x" * 31 + "/" * 2: ("c", "s")}, "at least 32 URL-safe characters"),
        ({"x" * 40 + "=": ("c", "s")}, "at least 32 URL-safe characters"),
    ],
)
def test_weak_secrets_are_refused_without_showing_them(
    secrets: dict[str, tuple[str, str]], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        ReceiverConfig.from_values(gumroad=secrets)
    (secret,) = secrets
    assert secret not in str(caught.value)


def test_one_connection_one_secret_and_no_shared_secrets() -> None:
    with pytest.raises(InvalidInput, match="share a webhook secret"):
        ReceiverConfig(gumroad=(GumroadHook(Secret(SECRET_A), "a", "s"),
                                GumroadHook(Secret(SECRET_A), "b", "s")))
    with pytest.raises(InvalidInput, match="only one webhook secret"):
        ReceiverConfig(gumroad=(GumroadHook(Secret(SECRET_A), "a", "s"),
                                GumroadHook(Secret(SECRET_B), "a", "s")))


def test_the_config_never_shows_a_secret_or_key() -> None:
    made = config(snap=PRIVATE)
    assert SECRET_A not in repr(made) and SECRET_B not in repr(made)
    assert public_b64(PRIVATE) not in repr(made)


def test_new_secrets_are_long_url_safe_and_different() -> None:
    made = {new_webhook_secret().reveal() for _ in range(50)}
    assert len(made) == 50
    assert all(len(s) >= 43 for s in made)
    ReceiverConfig.from_values(gumroad={s: (f"c{i}", "seller") for i, s in enumerate(made)})


def test_limits_are_checked() -> None:
    with pytest.raises(InvalidInput):
        ReceiverLimits(max_batch=0)
    with pytest.raises(InvalidInput):
        ReceiverLimits(commit_timeout_seconds=0)


# ---- Gumroad --------------------------------------------------------------------------------------------


def _body(name: str) -> tuple[bytes, str]:
    path = GUMROAD / name
    raw = path.read_bytes()
    return (raw, "application/json") if name.endswith(".json") else (raw.strip(), FORM)


@pytest.mark.parametrize(
    ("name", "kind", "key"),
    [
        ("sale.txt", "sale", "gumroad:sale:FO8TXN-dbxYaBdahG97Y-Q=="),
        ("sale.json", "sale", "gumroad:sale:FO8TXN-dbxYaBdahG97Y-Q=="),
        ("sale_retry_2.txt", "sale", "gumroad:sale:FO8TXN-dbxYaBdahG97Y-Q=="),
        ("test_ping.txt", "test_ping", "gumroad:test_ping:FO8TXN-dbxYaBdahG97Y-Q=="),
        ("refund.txt", "refund", "gumroad:refund:FO8TXN-dbxYaBdahG97Y-Q=="),
        ("dispute_won.txt", "dispute_won", "gumroad:dispute_won:FO8TXN-dbxYaBdahG97Y-Q=="),
        ("cancellation.txt", "cancellation",
         "gumroad:cancellation:sUb-1dX9aQ2wE3rT4yU5iO6==:2024-03-01T09:15:00Z"),
        ("cancellation.json", "cancellation",
         "gumroad:cancellation:sUb-1dX9aQ2wE3rT4yU5iO6==:2024-03-01T09:15:00Z"),
        ("subscription_updated.txt", "subscription_updated",
         "gumroad:subscription_updated:sUb-1dX9aQ2wE3rT4yU5iO6==:2024-02-10T12:00:00Z"),
        ("subscription_ended.txt", "subscription_ended",
         "gumroad:subscription_ended:sUb-1dX9aQ2wE3rT4yU5iO6==:2024-03-01T09:15:00Z"),
        ("subscription_restarted.txt", "subscription_restarted",
         "gumroad:subscription_restarted:sUb-1dX9aQ2wE3rT4yU5iO6==:2024-03-05T16:20:00Z"),
    ],
)
def test_recorded_gumroad_bodies_become_rows(name: str, kind: str, key: str) -> None:
    body, content_type = _body(name)
    hook = find_gumroad_hook(config(), SECRET_A)
    assert hook is not None
    _event, row = gumroad_inbound(hook, body, content_type, now=NOW, max_body_bytes=1 << 20)
    assert (row.source, row.connection) == (EventSource.GUMROAD, "shop-a")
    assert (row.kind, row.dedupe_key) == (kind, key)
    assert row.status is EventStatus.RECEIVED and row.received_at == NOW
    json.dumps(row.payload)  # storable as JSON
    assert row.payload.get("resource_name", "test_ping") in {kind, "test_ping"}


def test_the_form_and_json_forms_of_one_ping_store_the_same_key_and_fields() -> None:
    hook = find_gumroad_hook(config(), SECRET_A)
    assert hook is not None
    _e1, form = gumroad_inbound(hook, *_body("sale.txt"), now=NOW, max_body_bytes=1 << 20)
    _e2, as_json = gumroad_inbound(hook, *_body("sale.json"), now=NOW, max_body_bytes=1 << 20)
    assert form.dedupe_key == as_json.dedupe_key
    assert form.payload["email"] == as_json.payload["email"] == "jose.nunez@example.com"


def test_a_sale_for_another_seller_is_rejected() -> None:
    hook = find_gumroad_hook(config(), SECRET_B)  # shop-b sells as "other-seller"
    assert hook is not None
    with pytest.raises(WebhookRejected, match="names another seller"):
        gumroad_inbound(hook, *_body("sale.txt"), now=NOW, max_body_bytes=1 << 20)
    # Subscription posts carry no seller id, so there is nothing to check.
    gumroad_inbound(hook, *_body("cancellation.txt"), now=NOW, max_body_bytes=1 << 20)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"", FORM, "empty"),
        (b"resource_name=sale", FORM, "sale_id"),
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "must be an object"),
        (b"a=%ff", FORM, "not UTF-8"),
        (b"resource_name=nonsense&sale_id=1", FORM, "unknown value"),
        (b"x" * 101, FORM, "more than the 100 allowed"),
    ],
)
def test_malformed_gumroad_bodies_are_invalid_input(body: bytes, content_type: str, message: str) -> None:
    hook = find_gumroad_hook(config(), SECRET_A)
    assert hook is not None
    with pytest.raises(InvalidInput, match=message):
        gumroad_inbound(hook, body, content_type, now=NOW, max_body_bytes=100)


def test_an_overlong_id_is_bad_input_not_an_outage() -> None:
    hook = find_gumroad_hook(config(), SECRET_A)
    assert hook is not None
    body, content_type = _body("sale.txt")
    body = body.replace(b"sale_id=FO8TXN", b"sale_id=" + b"F" * 600)
    with pytest.raises(InvalidInput, match="too long"):
        gumroad_inbound(hook, body, content_type, now=NOW, max_body_bytes=1 << 20)


# ---- Snapshots ------------------------------------------------------------------------------------------


def signed(key: Ed25519PrivateKey = PRIVATE, /, **fields: object) -> tuple[bytes, dict[str, str]]:
    data: dict[str, object] = {
        "type": "LocationUpdate", "webhookId": "wh_1", "timestamp": "2026-07-01T11:59:00Z",
        "companyId": "comp_1", "location_id": "loc_1", "name": "Studio", "timezone": "Europe/Zurich",
    }
    data.update(fields)
    body = json.dumps(data, ensure_ascii=False).encode()
    return body, {"X-GHL-Signature": base64.b64encode(key.sign(body)).decode()}


@pytest.mark.parametrize("name", ["location_create", "location_update", "customer_update"])
def test_recorded_snapshots_webhooks_become_rows(name: str) -> None:
    body = (SNAPSHOTS / f"{name}.body.json").read_bytes()
    meta = json.loads((SNAPSHOTS / f"{name}.meta.json").read_text())
    sent = json.loads(body)
    now = datetime.fromisoformat(sent["timestamp"]) + timedelta(seconds=3)
    made = ReceiverConfig.from_values(snapshots={"snap": meta["public_key"]})
    event, row = snapshots_inbound(made, body, meta["headers"], now=now)
    if meta["type"] == "CustomerUpdate":
        assert row.dedupe_key == f"snapshots:webhook:{sent['webhookId']}"
    else:  # a location webhook is keyed by the state it shows, as the locations poller keys it
        version = datetime.fromisoformat(sent["updated_at"]).isoformat()
        assert row.dedupe_key == f"snapshots:location:{sent['location_id']}:{version}"
    assert (row.source, row.connection, row.kind) == (EventSource.SNAPSHOTS, "snap", meta["type"])
    assert row.payload == sent and event.webhook_id == sent["webhookId"]


def test_each_configured_key_is_tried_and_names_its_connection() -> None:
    made = config(old=OTHER, new=PRIVATE)
    _event, row = snapshots_inbound(made, *signed(PRIVATE), now=NOW)
    assert row.connection == "new"
    _event, row = snapshots_inbound(made, *signed(OTHER), now=NOW)
    assert row.connection == "old"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong key", "does not match"),
        ("altered body", "does not match"),
        ("no header", "missing X-GHL-Signature"),
        ("not base64", "not valid base64"),
        ("short signature", "not a 64-byte"),
        ("stale", "old, more than 4500s"),
        ("future", "in the future"),
        ("no key configured", "no Snapshots webhook key"),
    ],
)
def test_untrusted_snapshots_webhooks_are_rejected(case: str, message: str) -> None:
    made = config(snap=PRIVATE)
    body, headers = signed()
    if case == "wrong key":
        body, headers = signed(OTHER)
    elif case == "altered body":
        body = body.replace(b"Studio", b"Studi0")
    elif case == "no header":
        headers = {}
    elif case == "not base64":
        headers = {"X-GHL-Signature": "***"}
    elif case == "short signature":
        headers = {"x-ghl-signature": base64.b64encode(b"x" * 10).decode()}
    elif case == "stale":
        body, headers = signed(timestamp="2026-07-01T10:44:59Z")
    elif case == "future":
        body, headers = signed(timestamp="2026-07-01T12:01:01Z")
    elif case == "no key configured":
        made = config()
    with pytest.raises(WebhookRejected, match=message):
        snapshots_inbound(made, body, headers, now=NOW)


def test_the_freshness_window_is_a_limit() -> None:
    made = ReceiverConfig.from_values(snapshots={"snap": public_b64(PRIVATE)},
                                      limits=ReceiverLimits(max_age=timedelta(minutes=30)))
    snapshots_inbound(made, *signed(timestamp="2026-07-01T11:31:00Z"), now=NOW)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "Nonsense"}, "is not one of"),
        ({"webhookId": None}, "webhookId"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"webhookId": "w" * 600}, "too long"),
    ],
)
def test_a_signed_but_malformed_body_is_invalid_input(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        snapshots_inbound(config(snap=PRIVATE), *signed(**fields), now=NOW)


def test_signed_bytes_that_are_not_json_are_invalid_input() -> None:
    body = b"\xff not json"
    headers = {"X-GHL-Signature": base64.b64encode(PRIVATE.sign(body)).decode()}
    with pytest.raises(InvalidInput, match="not valid JSON"):
        snapshots_inbound(config(snap=PRIVATE), body, headers, now=NOW)
