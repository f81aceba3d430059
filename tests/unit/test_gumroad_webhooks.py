"""Gumroad webhook parsing, dedupe keys and the seller check, replayed from the bodies in tests/data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from snapbridge.connectors.gumroad import (
    CancellationEvent,
    CancelledBy,
    Card,
    EndedReason,
    FetchPlan,
    FetchTarget,
    GumroadConnectionOptions,
    GumroadEvent,
    Money,
    Plan,
    Recurrence,
    ResourceName,
    SaleEvent,
    ShippingInformation,
    SubscriptionEndedEvent,
    SubscriptionRestartedEvent,
    SubscriptionUpdatedEvent,
    UpdateType,
    check_seller,
    dedupe_key,
    fold_form,
    needs_fetch,
    parse_webhook,
)
from snapbridge.errors import InvalidInput, WebhookRejected

DATA = Path(__file__).resolve().parents[1] / "data" / "gumroad_webhooks"
INVALID = DATA / "invalid"
SELLER = "hN7pZkQwT3xVbJ9sLmR2cA=="
FORM = "application/x-www-form-urlencoded"


def load(name: str) -> GumroadEvent:
    content_type = "application/json" if name.endswith(".json") else FORM
    return parse_webhook((DATA / name).read_bytes(), content_type)


def sale(name: str) -> SaleEvent:
    event = load(name)
    assert isinstance(event, SaleEvent)
    return event


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_every_recorded_body_parses() -> None:
    names = sorted(p.name for p in DATA.iterdir() if p.is_file())
    assert len(names) >= 20
    kinds = {type(load(name)).__name__ for name in names}
    assert kinds == {
        "SaleEvent", "CancellationEvent", "SubscriptionUpdatedEvent", "SubscriptionEndedEvent",
        "SubscriptionRestartedEvent",
    }
    resources = {load(name).resource_name for name in names}
    assert resources == {*ResourceName, None}  # all eight, plus the test ping's absent name


def test_full_sale_has_nested_values_unicode_and_usd_cents() -> None:
    event = sale("sale.txt")
    assert event.resource_name is ResourceName.SALE
    assert event.sale_id == "FO8TXN-dbxYaBdahG97Y-Q=="
    assert event.seller_id == SELLER
    assert event.sale_timestamp == datetime(2021, 1, 5, 19, 38, 56, tzinfo=UTC)
    assert event.sale_timestamp.tzinfo is not None
    assert event.order_number == 524459935
    assert event.product_name == "Café ☕ Guide — 2nd édition"
    assert event.full_name == "José Ñúñez"
    # price is USD cents whatever the product currency says (reference §8.2).
    assert event.price == Money(2500, "usd")
    assert event.gumroad_fee == Money(300, "usd")
    assert event.product_currency == "eur"
    assert event.quantity == 2
    assert event.variants == {"Size": "Large", "Color": "Blue-green"}
    assert event.custom_fields == {"Spouse name": "Zoë Ångström", "Company": "Ünïcødé GmbH 日本"}
    assert event.url_params == {"utm_source": "newsletter", "campaignid": "c123"}
    assert event.card == Card(visual="**** **** **** 4242", type="visa")
    assert event.offer_code == "LAUNCH20"
    assert event.affiliate == "aff@example.com"
    assert event.affiliate_credit == Money(250, "usd")
    assert event.ip_country == "United States"
    assert event.can_contact is True
    assert event.discover_fee_charged is False
    assert (event.test, event.is_recurring_charge, event.is_preorder_authorization) == (False, False, False)
    assert event.retry_count == 0
    assert event.shipping_information is None
    # The top-level duplicate of a custom field is kept in the raw fields, not confused with standard keys.
    assert event.fields["Spouse name"] == "Zoë Ångström"


def test_minimal_sale_reads_missing_optionals_as_absent() -> None:
    event = sale("sale_minimal.txt")
    assert event.price == Money(0, "usd")
    assert event.referrer == ""
    assert event.card == Card(visual="", type="")
    assert event.variants == {} and event.custom_fields == {} and event.url_params == {}
    assert event.full_name is None and event.purchaser_id is None and event.subscription_id is None
    assert event.offer_code is None and event.license_key is None and event.shipping_rate is None
    assert event.affiliate_credit is None and event.gift_price is None
    assert event.test is False and event.is_recurring_charge is False


def test_recurring_charge_and_membership_fields() -> None:
    event = sale("sale_recurring.txt")
    assert event.is_recurring_charge is True
    assert event.subscription_id == "sUb-1dX9aQ2wE3rT4yU5iO6=="
    assert event.recurrence is Recurrence.MONTHLY
    assert event.variants == {"Tier": "Pro"}
    assert event.custom_fields == {"Discord handle": "ada#1815"}
    assert event.license_key == "FFFF0000-11112222-33334444-55556666"
    assert event.is_multiseat_license is False


def test_gift_receiver_and_preorder_test_purchase() -> None:
    gift = sale("sale_gift_receiver.txt")
    assert gift.is_gift_receiver_purchase is True
    assert gift.gift_price == Money(2500, "usd")
    assert gift.gifter_email == "aunt.may@example.com"
    preorder = sale("sale_preorder_test.txt")
    assert preorder.is_preorder_authorization is True and preorder.test is True


def test_bracket_escaped_field_names_and_reserved_characters_in_values() -> None:
    event = sale("sale_bracket_names.txt")
    assert event.email == "ada+shop@example.com"  # %2B stays a plus, never a space
    assert event.custom_fields == {"Size [cm]": "42", "Notes": "a=b&c=d; 100% [sure]"}


def test_physical_sale_has_shipping_and_sku() -> None:
    event = sale("sale_physical.txt")
    assert event.shipping_information == ShippingInformation(
        full_name="Ada Lovelace", street_address="12 St James's Square", city="London", state="",
        zip_code="SW1Y 4JH", country="United Kingdom",
    )
    assert event.shipping_rate == Money(599, "usd")
    assert event.sku_id == event.original_sku_id == "sKu-aBcDeFgHiJkLmNoPq=="
    assert event.variants == {"Cover": "Red", "Paper": "Dotted"}


@pytest.mark.parametrize(
    ("name", "resource", "refunded", "disputed", "dispute_won"),
    [
        ("refund.txt", ResourceName.REFUND, True, False, False),
        ("refund_partial.txt", ResourceName.REFUND, False, False, False),
        ("dispute.txt", ResourceName.DISPUTE, False, True, False),
        ("dispute_won.txt", ResourceName.DISPUTE_WON, False, True, True),
    ],
)
def test_refund_and_dispute_flags(
    name: str, resource: ResourceName, refunded: bool, disputed: bool, dispute_won: bool
) -> None:
    event = sale(name)
    assert (event.resource_name, event.refunded, event.disputed, event.dispute_won) == (
        resource, refunded, disputed, dispute_won,
    )


def test_test_ping_has_no_resource_name_and_its_own_dedupe_namespace() -> None:
    ping = sale("test_ping.txt")
    assert ping.is_test_ping and ping.resource_name is None and ping.test is True
    assert ping.dedupe_key == "gumroad:test_ping:FO8TXN-dbxYaBdahG97Y-Q=="
    assert ping.dedupe_key != sale("sale.txt").dedupe_key


def test_cancellation_by_buyer() -> None:
    event = load("cancellation.txt")
    assert isinstance(event, CancellationEvent)
    assert event.cancelled_by is CancelledBy.BUYER and event.due_to_payment_failures is False
    assert event.cancelled_at == at("2024-03-01T09:15:00Z")
    assert event.purchase_ids == ("rC1uR2rI3nG4sA5lE6xY7z==", "fIrStChArGe0123456789a==")
    assert event.user_id == "5530311507811" and event.user_email == "ada@example.com"
    assert event.charge_occurrence_count == 4
    assert event.free_trial_ends_at is None
    assert event.custom_fields == {"Discord handle": "ada#1815"}
    assert event.license_key == "FFFF0000-11112222-33334444-55556666"


def test_cancellation_for_payment_failure_with_empty_values() -> None:
    event = load("cancellation_payment_failure.txt")
    assert isinstance(event, CancellationEvent)
    assert event.cancelled_by is None and event.due_to_payment_failures is True
    assert event.user_id is None and event.user_email is None and event.charge_occurrence_count is None
    assert event.purchase_ids == ()  # `purchase_ids[]=` is an empty array


def test_cancellation_by_seller_with_free_trial() -> None:
    event = load("cancellation_by_seller.txt")
    assert isinstance(event, CancellationEvent)
    assert event.cancelled_by is CancelledBy.SELLER
    assert event.free_trial_ends_at == at("2023-11-08T09:15:00Z")


def test_cancellation_rendered_after_a_restart_has_no_cancelled_at() -> None:
    # Gumroad renders subscription posts when it sends them; a restart in between clears cancelled_at.
    event = load("cancellation_after_restart.txt")
    assert isinstance(event, CancellationEvent)
    assert event.cancelled_at is None and event.cancelled_by is CancelledBy.BUYER
    assert event.occurred_at == event.created_at
    assert event.dedupe_key == "gumroad:cancellation:sUb-1dX9aQ2wE3rT4yU5iO6==:2023-11-01T09:15:00Z"


@pytest.mark.parametrize("name", ["subscription_updated.txt", "subscription_updated.json"])
def test_subscription_updated_folds_old_and_new_plans(name: str) -> None:
    event = load(name)
    assert isinstance(event, SubscriptionUpdatedEvent)
    assert event.type is UpdateType.UPGRADE
    assert event.effective_as_of == at("2024-02-10T12:00:00Z")
    assert event.old_plan == Plan("tIeR-bAsIc0123456789ab==", "Basic", Recurrence.MONTHLY, 500, 1)
    assert event.new_plan == Plan("tIeR-pRo0123456789abcd==", "Pro ✨", Recurrence.YEARLY, 10000, 1)


def test_subscription_ended_and_restarted() -> None:
    ended = load("subscription_ended.txt")
    assert isinstance(ended, SubscriptionEndedEvent)
    assert ended.ended_reason is EndedReason.CANCELLED and ended.ended_at == at("2024-03-01T09:15:00Z")
    restarted = load("subscription_restarted.txt")
    assert isinstance(restarted, SubscriptionRestartedEvent)
    assert restarted.restarted_at == at("2024-03-05T16:20:00Z")


@pytest.mark.parametrize(("form_name", "json_name"), [
    ("sale.txt", "sale.json"), ("cancellation.txt", "cancellation.json"),
    ("subscription_updated.txt", "subscription_updated.json"),
])
def test_json_form_gives_the_same_event_as_the_form_body(form_name: str, json_name: str) -> None:
    assert load(json_name) == load(form_name)
    assert load(json_name).dedupe_key == load(form_name).dedupe_key


def test_json_is_sniffed_without_a_content_type() -> None:
    assert parse_webhook((DATA / "sale.json").read_bytes()) == load("sale.txt")
    assert parse_webhook((DATA / "sale.txt").read_bytes()) == load("sale.txt")
    assert parse_webhook((DATA / "sale.txt").read_bytes(), f"{FORM}; charset=utf-8") == load("sale.txt")


def test_retry_count_does_not_change_identity() -> None:
    first, retried = sale("sale.txt"), sale("sale_retry_2.txt")
    assert retried.retry_count == 2
    assert first == retried
    assert dedupe_key(first) == dedupe_key(retried) == "gumroad:sale:FO8TXN-dbxYaBdahG97Y-Q=="
    body = (DATA / "subscription_ended.txt").read_bytes().strip()
    assert dedupe_key(parse_webhook(body + b"&retry_count=3", FORM)) == dedupe_key(parse_webhook(body, FORM))


def test_a_partial_refund_and_the_final_refund_of_one_sale_are_two_events() -> None:
    partial, full = sale("refund_partial.txt"), sale("refund.txt")
    assert partial.sale_id == full.sale_id
    assert dedupe_key(partial) == "gumroad:refund:FO8TXN-dbxYaBdahG97Y-Q==:partial"
    assert dedupe_key(full) == "gumroad:refund:FO8TXN-dbxYaBdahG97Y-Q=="
    for name in ("refund_partial.txt", "refund.txt"):  # a redelivery is still the same refund
        body = (DATA / name).read_bytes().strip()
        assert dedupe_key(parse_webhook(body + b"&retry_count=1", FORM)) == dedupe_key(parse_webhook(body, FORM))


def test_dedupe_key_does_not_come_from_the_body_bytes() -> None:
    body = (DATA / "cancellation.txt").read_bytes().strip()
    pairs = body.split(b"&")
    reordered = b"&".join(reversed(pairs))
    assert reordered != body
    assert dedupe_key(parse_webhook(reordered, FORM)) == dedupe_key(parse_webhook(body, FORM))
    assert dedupe_key(parse_webhook(body, FORM)) == (
        "gumroad:cancellation:sUb-1dX9aQ2wE3rT4yU5iO6==:2024-03-01T09:15:00Z"
    )


def test_dedupe_keys_differ_between_resources_and_events() -> None:
    names = [
        "sale.txt", "refund.txt", "refund_partial.txt", "dispute.txt", "dispute_won.txt", "test_ping.txt",
        "sale_minimal.txt",
        "cancellation.txt", "cancellation_payment_failure.txt", "subscription_updated.txt",
        "subscription_ended.txt", "subscription_restarted.txt",
    ]
    keys = [dedupe_key(load(name)) for name in names]
    assert len(set(keys)) == len(keys)


def test_subscription_event_timestamp_in_the_key_is_normalised_to_utc() -> None:
    body = (DATA / "subscription_restarted.txt").read_bytes().strip()
    shifted = body.replace(b"2024-03-05T16%3A20%3A00Z", b"2024-03-05T17%3A20%3A00%2B01%3A00")
    assert shifted != body
    assert dedupe_key(parse_webhook(shifted, FORM)) == dedupe_key(parse_webhook(body, FORM))


def test_check_seller_accepts_the_connection_seller_and_rejects_another() -> None:
    event = load("sale.txt")
    check_seller(event, SELLER)
    with pytest.raises(WebhookRejected, match="names another seller"):
        check_seller(event, "someone-else==")


def test_check_seller_passes_subscription_events_which_carry_no_seller() -> None:
    check_seller(load("cancellation.txt"), "anyone")


def test_needs_fetch_describes_the_read_and_honours_the_setting() -> None:
    assert needs_fetch(load("refund.txt")) == FetchPlan(
        FetchTarget.SALE, "FO8TXN-dbxYaBdahG97Y-Q==", "32-nPAicqbLj8B_WswVlMw=="
    )
    assert needs_fetch(load("subscription_ended.txt")) == FetchPlan(
        FetchTarget.SUBSCRIBER, "sUb-1dX9aQ2wE3rT4yU5iO6==", "Qx9_mT2kLpV7nR4sWbJ8eA=="
    )
    assert GumroadConnectionOptions().verify_by_fetch is True
    assert needs_fetch(load("sale.txt"), GumroadConnectionOptions(verify_by_fetch=False)) is None


INVALID_CASES = sorted(p for p in INVALID.iterdir() if p.suffix != ".expected")


@pytest.mark.parametrize("path", INVALID_CASES, ids=lambda p: p.name)
def test_malformed_body_is_invalid_input_with_its_message(path: Path) -> None:
    content_type = "application/json" if path.suffix == ".json" else FORM
    with pytest.raises(InvalidInput) as caught:
        parse_webhook(path.read_bytes(), content_type)
    expected = path.with_suffix(".expected")
    if expected.exists():
        assert str(caught.value) == expected.read_text(encoding="utf-8").strip()
    else:
        assert str(caught.value).startswith("webhook body is not valid JSON")


def test_body_size_limit_at_and_past_the_limit() -> None:
    body = (DATA / "sale.txt").read_bytes()
    assert isinstance(parse_webhook(body, FORM, max_body_bytes=len(body)), SaleEvent)
    with pytest.raises(InvalidInput, match="more than the"):
        parse_webhook(body, FORM, max_body_bytes=len(body) - 1)


def test_field_count_limit() -> None:
    body = (DATA / "sale.txt").read_bytes().strip()
    count = body.count(b"&") + 1
    assert isinstance(parse_webhook(body, FORM, max_fields=count), SaleEvent)
    with pytest.raises(InvalidInput, match="Max number of fields exceeded"):
        parse_webhook(body, FORM, max_fields=count - 1)


def test_unsupported_content_type() -> None:
    with pytest.raises(InvalidInput, match="'text/plain' is not supported"):
        parse_webhook(b"sale_id=1", "text/plain")


@pytest.mark.parametrize(
    ("body", "folded"),
    [
        (b"a=1", {"a": "1"}),
        (b"a=", {"a": ""}),
        (b"a=1&a=2", {"a": "2"}),
        (b"a%5Bb%5D=1&a%5Bc%5D=2", {"a": {"b": "1", "c": "2"}}),
        (b"old_plan%5Btier%5D%5Bid%5D=t1", {"old_plan": {"tier": {"id": "t1"}}}),
        (b"ids%5B%5D=x&ids%5B%5D=y", {"ids": ["x", "y"]}),
        (b"ids%5B%5D=", {"ids": [""]}),
        (b"f%5BA%20%255Bb%255D%5D=1", {"f": {"A [b]": "1"}}),
        (b"name=a%20b%2Bc", {"name": "a b+c"}),
    ],
)
def test_fold_form_table(body: bytes, folded: dict[str, object]) -> None:
    assert fold_form(body) == folded


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"ids%5B%5D%5Bx%5D=1", "nests inside a list"),
        (b"ids%5B%5D=1&ids=2", "both a list and a value"),
        (b"a%5Bb%5D=1&a%5Bb%5D%5Bc%5D=2", "both a group and a value"),
        (b"a%5Bb%5D%5Bc%5D=2&a%5Bb%5D=1", "both a group and a value"),
        (b"%5Bb%5D=1", "is malformed"),
    ],
)
def test_fold_form_refuses_contradictions(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        fold_form(body)
