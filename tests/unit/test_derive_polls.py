"""What a poll turns into: API sales and locations as inbound events keyed like their webhooks, derived alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from snapbridge.connectors.gumroad import Sale, parse_webhook, refund_state_key
from snapbridge.connectors.snapshots import Location, SnapshotsWebhookEvent
from snapbridge.connectors.snapshots import parse_webhook as parse_snapshots_webhook
from snapbridge.runtime import (
    derive,
    location_dedupe_key,
    location_inbound_event,
    parse_inbound,
    sale_inbound_events,
    sale_payload,
    snapshots_dedupe_key,
)
from snapbridge.store import EventSource

NOW = datetime(2024, 6, 1, tzinfo=UTC)
PING = Path(__file__).resolve().parents[1] / "data" / "gumroad_webhooks" / "sale.txt"


def api_sale(**over: object) -> Sale:
    """A sale as GET /v2/sales returns it (keys with no value left out, as Gumroad does)."""
    data: dict[str, object] = {
        "id": "FO8TXN-dbxYaBdahG97Y-Q==", "order_id": 524459935, "seller_id": "hN7pZkQwT3xVbJ9sLmR2cA==",
        "product_id": "32-nPAicqbLj8B_WswVlMw==", "product_name": "Café Guide", "product_permalink": "xkqzw",
        "created_at": "2021-01-05T19:38:56Z", "email": "account@example.com",
        "purchase_email": "jose.nunez@example.com", "full_name": "José Ñúñez", "purchaser_id": "5530311507811",
        "price": 2500, "gumroad_fee": 300, "quantity": 2, "currency": "eur", "country": "Spain",
        "country_iso2": "ES", "referrer": "https://twitter.com/", "variants": {"Size": "Large"},
        "partially_refunded": False, "chargedback": False, "disputed": False, "dispute_won": False,
    }
    data.update(over)
    return Sale.from_json(data)


def test_a_polled_sale_has_the_key_its_ping_has() -> None:
    ping = parse_webhook(PING.read_bytes(), "application/x-www-form-urlencoded")
    [event] = sale_inbound_events(api_sale(), connection="gumroad", now=NOW)
    assert event.dedupe_key == ping.dedupe_key == "gumroad:sale:FO8TXN-dbxYaBdahG97Y-Q=="
    assert (event.kind, event.source, event.connection) == ("sale", EventSource.POLLER, "gumroad")


def test_a_polled_sale_derives_like_its_ping() -> None:
    ping = parse_webhook(PING.read_bytes(), "application/x-www-form-urlencoded")
    by_ping = derive("1", parse_inbound("sale", ping.fields), None, NOW, segments=())
    by_poll = derive("1", parse_inbound("sale", sale_payload(api_sale())), None, NOW, segments=())
    assert [e.type for e in by_poll.events] == [e.type for e in by_ping.events] == ["customer.created", "purchase"]
    assert by_poll.state is not None and by_ping.state is not None
    poll, hook = by_poll.state.profile, by_ping.state.profile
    # The ping's email is the checkout email: the API's `purchase_email`, not its account `email`.
    assert poll.email == hook.email == "jose.nunez@example.com"
    assert (poll.name, poll.lifetime_value_cents, poll.first_seen_at) == (hook.name, 2500, hook.first_seen_at)
    assert poll.country_code == "ES"  # the API knows the ISO code the ping leaves out


@pytest.mark.parametrize(("flags", "kinds"), [
    ({}, ["sale"]),
    ({"refunded": True}, ["sale", "refund"]),
    ({"partially_refunded": True}, ["sale", "refund"]),
    ({"disputed": True, "chargedback": True}, ["sale", "dispute"]),
    ({"disputed": True, "dispute_won": True}, ["sale", "dispute", "dispute_won"]),
])
def test_refunds_and_disputes_a_poll_sees(flags: dict[str, object], kinds: list[str]) -> None:
    events = sale_inbound_events(api_sale(**flags), connection="gumroad", now=NOW)
    assert [e.kind for e in events] == kinds
    # A partial refund is keyed by what is still refundable, as the deriver re-keys its ping's delivery.
    partial = ":partial:refundable:unknown" if flags.get("partially_refunded") else ""
    assert [e.dedupe_key for e in events] == [
        f"gumroad:{k}:FO8TXN-dbxYaBdahG97Y-Q==" + (partial if k == "refund" else "") for k in kinds
    ]
    for event in events:  # each reads back as the webhook of its kind
        parse_inbound(event.kind, event.payload)


@pytest.mark.parametrize(("flags", "ping"), [
    ({"partially_refunded": True}, "refund_partial.txt"),
    ({"refunded": True}, "refund.txt"),
])
def test_a_polled_refund_has_the_key_of_the_ping_for_the_same_refund_state(flags: dict[str, object],
                                                                           ping: str) -> None:
    body = (PING.parent / ping).read_bytes().strip()
    sale = api_sale(**flags, amount_refundable_in_currency="12")
    [_, refund] = sale_inbound_events(sale, connection="gumroad", now=NOW)
    key = parse_webhook(body, "application/x-www-form-urlencoded").dedupe_key
    # A partial refund's ping is re-keyed by the deriver with the sale read back: the same key as the poll's.
    assert refund.dedupe_key == (refund_state_key(key, sale) if flags.get("partially_refunded") else key)


def test_a_full_refund_seen_by_a_poll_is_full() -> None:
    refund = sale_inbound_events(api_sale(refunded=True), connection="gumroad", now=NOW)[1]
    result = derive("2", parse_inbound("refund", refund.payload), None, NOW, segments=())
    assert [e.type for e in result.events] == ["refund"]
    assert result.events[0].model_dump()["full_refund"] is True


def location(**over: object) -> Location:
    data: dict[str, object] = {
        "location_id": "loc-1", "name": "Shop", "timezone": "Europe/Paris", "external_id": "ada@example.com",
        "tier": "gold", "created_at": "2024-05-01T10:00:00.000Z", "updated_at": "2024-05-01T10:00:00.000Z",
    }
    data.update(over)
    return Location.from_json(data)


def test_polled_locations_read_as_webhooks() -> None:
    new = location_inbound_event(location(), connection="snapshots", now=NOW)
    changed = location_inbound_event(location(updated_at="2024-05-02T10:00:00.250Z"), connection="snapshots",
                                     now=NOW)
    assert (new.kind, changed.kind) == ("LocationCreate", "LocationUpdate")
    assert new.dedupe_key != changed.dedupe_key
    derived = derive("3", parse_inbound(changed.kind, changed.payload), None, NOW, segments=())
    assert [e.type for e in derived.events] == ["location.updated"]


def _webhook_of(kind: str, loc: Location, webhook_id: str) -> SnapshotsWebhookEvent:
    """The signed-body side of a location: the API object's fields under the webhook envelope (contract)."""
    fields = {"location_id": loc.location_id, "name": loc.name, "timezone": loc.timezone,
              "external_id": loc.external_id, "tier": loc.tier,
              "created_at": loc.created_at.isoformat() if loc.created_at else None,
              "updated_at": loc.updated_at.isoformat() if loc.updated_at else None}
    body = {"type": kind, "webhookId": webhook_id, "timestamp": NOW.isoformat(), "companyId": "comp-1", **fields}
    return parse_snapshots_webhook(json.dumps(body).encode())


def test_a_location_webhook_and_a_poll_of_the_same_state_share_a_key() -> None:
    created = location()
    updated = location(updated_at="2024-05-02T10:00:00.250Z", tier="platinum")
    for kind, state in (("LocationCreate", created), ("LocationUpdate", updated)):
        polled = location_inbound_event(state, connection="snapshots", now=NOW)
        by_webhook = snapshots_dedupe_key(_webhook_of(kind, state, f"wh-{kind}"))
        assert by_webhook == polled.dedupe_key == location_dedupe_key(state)
        # The poll's payload, read back as a webhook, keys the same way too.
        assert snapshots_dedupe_key(parse_snapshots_webhook(json.dumps(polled.payload).encode())) == by_webhook
    # A replay (the same webhook again) keeps its key; the next state gets a new one.
    assert snapshots_dedupe_key(_webhook_of("LocationUpdate", updated, "wh-1")) == \
        snapshots_dedupe_key(_webhook_of("LocationUpdate", updated, "wh-1"))
    assert location_dedupe_key(created) != location_dedupe_key(updated)


def test_a_location_webhook_without_updated_at_and_a_customer_webhook_are_keyed_by_webhook_id() -> None:
    unversioned = _webhook_of("LocationUpdate", location(updated_at=None), "wh-7")
    assert snapshots_dedupe_key(unversioned) == "snapshots:webhook:wh-7"
    customer = {"type": "CustomerUpdate", "webhookId": "wh-8", "timestamp": NOW.isoformat(),
                "customer_id": "c-1", "email": "ada@example.com", "updated_at": "2024-05-01T10:00:00.000Z"}
    assert snapshots_dedupe_key(parse_snapshots_webhook(json.dumps(customer).encode())) == "snapshots:webhook:wh-8"


def test_two_updates_in_one_second_are_two_states() -> None:
    at = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)
    first = location(updated_at=at.isoformat())
    second = location(updated_at=(at + timedelta(milliseconds=300)).isoformat())
    assert location_dedupe_key(first) != location_dedupe_key(second)
    assert location_dedupe_key(location(updated_at=None)) == "snapshots:location:loc-1:unversioned"
