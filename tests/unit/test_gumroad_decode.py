"""Gumroad answers → our errors (a table over the three error shapes), and API JSON → typed models."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from snapbridge.connectors.gumroad import (
    OPERATIONS,
    CustomField,
    LicenseResponse,
    Money,
    OfferCode,
    OfferType,
    Payout,
    PayoutStatus,
    Product,
    Recurrence,
    Sale,
    Subscriber,
    SubscriberStatus,
    User,
    decode_response,
    error_for_response,
)
from snapbridge.errors import (
    AuthFailed,
    DeliveryError,
    InvalidInput,
    NotFound,
    Permanent,
    Retryable,
    ScopeMissing,
)
from snapbridge.security import Secret

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
TOKEN = Secret("tok_canary_8d9f7a6b5c4d3e2f")


def body(value: object) -> bytes:
    return json.dumps(value).encode()


ERROR_CASES: list[tuple[str, int, dict[str, str], bytes, type[DeliveryError], str]] = [
    # 200 with success:false is how Gumroad says "not found" and "could not do it".
    ("200 not found", 200, {}, body({"success": False, "message": "The sale was not found."}),
     NotFound, "The sale was not found."),
    ("200 not modified", 200, {},
     body({"success": False, "message": "The product was unable to be modified."}),
     Permanent, "The product was unable to be modified."),
    ("200 already refunded", 200, {}, body({"success": False, "message": "Purchase is already refunded."}),
     Permanent, "Purchase is already refunded."),
    ("200 no message", 200, {}, body({"success": False}), Permanent, "success:false with no message"),
    ("200 no success key", 200, {}, body({"sale": {}}), Permanent, "no boolean `success`"),
    ("200 not JSON", 200, {}, b"<html>maintenance</html>", Permanent, "other than a JSON object"),
    ("200 JSON list", 200, {}, b"[]", Permanent, "other than a JSON object"),
    # 400 {status, error}: bad list parameters.
    ("400 bad page_key", 400, {}, body({"status": 400, "error": "Invalid page_key."}),
     Permanent, "Invalid page_key."),
    ("400 timeout", 400, {}, body({"status": 400, "error": "Query timed out. Try narrowing your date range"}),
     Permanent, "Query timed out"),
    ("400 empty", 400, {}, b"", Permanent, "HTTP 400"),
    # Doorkeeper: empty bodies and a WWW-Authenticate header.
    ("401 empty", 401, {"WWW-Authenticate": 'Bearer realm="Doorkeeper", error="invalid_token"'}, b"",
     AuthFailed, "refused the access token (invalid_token)"),
    ("401 no header", 401, {}, b"", AuthFailed, "refused the access token"),
    ("403 scope", 403, {"www-authenticate": 'Bearer error="insufficient_scope"'}, b"",
     ScopeMissing, "lacks the scope gumroad.get_sale needs: view_sales or account"),
    # License endpoints use real 404s, with `message` or `error`.
    ("404 license", 404, {},
     body({"success": False, "message": "That license does not exist for the provided product."}),
     NotFound, "That license does not exist"),
    ("404 disabled", 404, {}, body({"success": False, "message": "This license key has been disabled."}),
     NotFound, "has been disabled"),
    ("404 other seller", 404, {}, body({"success": False, "error": "Not found"}), NotFound, "Not found"),
    ("404 route", 404, {}, b"", NotFound, "no such object or route"),
    ("429 plain", 429, {"Retry-After": "7"}, b"Retry later\n", Retryable, "rate limiting"),
    ("500 json", 500, {}, body({"success": False, "message": "boom"}), Retryable, "boom"),
    ("502", 502, {}, b"bad gateway", Retryable, "could not answer now"),
    ("503 date", 503, {"Retry-After": "Fri, 01 Mar 2024 12:00:30 GMT"}, b"", Retryable, "could not answer"),
    ("408", 408, {}, b"", Retryable, "could not answer now"),
    ("302", 302, {"Location": "https://evil.example/"}, b"", Permanent, "redirect"),
    ("422", 422, {}, body({"success": False, "message": "Name can't be blank"}),
     Permanent, "Name can't be blank"),
]


@pytest.mark.parametrize(
    ("status", "headers", "content", "kind", "text"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_error_table(
    status: int, headers: dict[str, str], content: bytes, kind: type[DeliveryError], text: str
) -> None:
    error = error_for_response(
        status, headers, content, operation="gumroad.get_sale", scopes=("view_sales", "account"), now=NOW
    )
    assert type(error) is kind
    assert error is not None
    assert text in error.message
    assert error.status == status
    assert error.operation == "gumroad.get_sale"


def test_scope_missing_names_the_accepted_scopes() -> None:
    error = error_for_response(403, {}, b"", operation="gumroad.refund_sale",
                               scopes=("refund_sales", "edit_sales"), now=NOW)
    assert isinstance(error, ScopeMissing)
    assert error.scopes == ("refund_sales", "edit_sales")


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [({"Retry-After": "7"}, 7.0), ({"retry-after": "Fri, 01 Mar 2024 12:00:30 GMT"}, 30.0), ({}, None),
     ({"Retry-After": "soon"}, None)],
)
def test_retry_after_is_carried(headers: dict[str, str], retry_after: float | None) -> None:
    error = error_for_response(429, headers, b"", operation="gumroad.list_sales", scopes=(), now=NOW)
    assert isinstance(error, Retryable)
    assert error.retry_after == retry_after


def test_request_id_is_kept() -> None:
    error = error_for_response(500, {"X-Request-Id": "req-123"}, b"", operation="op", scopes=(), now=NOW)
    assert error is not None and error.request_id == "req-123"


def test_success_envelope_is_returned() -> None:
    content = body({"success": True, "sale": {"id": "s1"}})
    decoded = decode_response(200, {}, content, operation="gumroad.get_sale", scopes=(), now=NOW)
    assert decoded == {"success": True, "sale": {"id": "s1"}}
    assert error_for_response(200, {}, content, operation="op", scopes=(), now=NOW) is None


def test_decode_raises_the_error() -> None:
    with pytest.raises(NotFound):
        decode_response(200, {}, body({"success": False, "message": "The sale was not found."}),
                        operation="gumroad.get_sale", scopes=(), now=NOW)


def test_messages_and_excerpts_never_hold_the_token_or_other_secrets() -> None:
    secret_url = "https://hooks.example.com/hooks/gumroad/s3cr3t-path-token"
    content = body({"success": False, "message": f"Invalid post URL '{secret_url}' for {TOKEN.reveal()}"})
    error = error_for_response(200, {}, content, operation="op", scopes=(), now=NOW,
                               secrets=(TOKEN, Secret(secret_url)))
    assert error is not None
    for text in (error.message, error.excerpt, str(error)):
        assert TOKEN.reveal() not in text
        assert "s3cr3t-path-token" not in text


def test_operations_cover_all_42_endpoints_once() -> None:
    assert len(OPERATIONS) == 42
    assert len({op.name for op in OPERATIONS}) == 42
    assert len({(op.method, op.path) for op in OPERATIONS}) == 42
    assert sum(op.source == "classic" for op in OPERATIONS) == 38
    verify = next(op for op in OPERATIONS if op.name == "verify_license")
    assert not verify.needs_token


# Models from API JSON.

SALE = {
    "id": "FO8TXN-dbxYaBdahG97Y-Q==", "email": "ada@example.com", "seller_id": "sel==",
    "timestamp": "2 days ago",
    "daystamp": " 5 Jan 2021 11:38 AM", "created_at": "2021-01-05T19:38:56Z", "product_name": "Guide",
    "product_has_variants": True, "price": 1234, "gumroad_fee": 160, "subscription_duration": None,
    "formatted_display_price": "$12.34", "formatted_total_price": "$12.34", "currency_symbol": "$",
    "amount_refundable_in_currency": "12.34", "product_id": "prod==", "product_permalink": "XCBbJ",
    "partially_refunded": False, "chargedback": False, "purchase_email": "ada@example.com",
    "zip_code": "94107", "paid": True, "has_variants": True, "variants": {"Size": "L"},
    "variants_and_quantity": "(L)", "has_custom_fields": True,
    "custom_fields": {"Accept terms": True, "Nick": "ada"},
    "order_id": 524459935, "is_product_physical": False, "purchaser_id": "5530311507811",
    "is_recurring_billing": False, "can_contact": True, "is_following": False, "disputed": False,
    "dispute_won": False, "is_additional_contribution": False, "discover_fee_charged": False,
    "is_upgrade_purchase": False, "is_more_like_this_recommended": False, "is_gift_sender_purchase": False,
    "is_gift_receiver_purchase": False, "referrer": "direct", "card": {"visual": None, "type": None},
    "product_rating": None, "reviews_count": 0, "average_rating": 0,
    "offer_code": {"code": "TEN", "name": "TEN", "displayed_amount_off": "$1"},
    "affiliate": {"email": "aff@example.com", "amount": "$2.50"}, "quantity": 1,
}


def test_sale_from_json() -> None:
    sale = Sale.from_json(SALE)
    assert sale.price == Money(1234, "usd") and sale.gumroad_fee == Money(160, "usd")
    assert sale.refunded is False  # the key is missing unless refunded
    assert sale.order_id == 524459935
    assert sale.created_at == datetime(2021, 1, 5, 19, 38, 56, tzinfo=UTC)
    assert sale.custom_fields == {"Accept terms": "true", "Nick": "ada"}
    assert sale.variants == {"Size": "L"}
    assert sale.offer_code is not None and sale.offer_code.code == "TEN"
    assert sale.affiliate is not None and sale.affiliate.amount == "$2.50"
    assert sale.card is not None and sale.card.visual == ""
    assert sale.raw["daystamp"] == " 5 Jan 2021 11:38 AM"
    assert Sale.from_json({**SALE, "refunded": True}).refunded is True


def test_sale_missing_id_is_invalid_input_naming_the_path() -> None:
    with pytest.raises(InvalidInput, match=r"^sale\.id is missing$"):
        Sale.from_json({k: v for k, v in SALE.items() if k != "id"})


def test_subscriber_from_json_and_is_over() -> None:
    subscriber = Subscriber.from_json({
        "id": "sub==", "product_id": "prod==", "product_name": "Club", "user_id": None, "user_email": None,
        "purchase_ids": ["p1", "p2"], "created_at": "2024-01-01T00:00:00Z",
        "user_requested_cancellation_at": None,
        "charge_occurrence_count": None, "recurrence": "monthly", "cancelled_at": "2024-02-01T00:00:00Z",
        "ended_at": None, "failed_at": None, "free_trial_ends_at": None, "status": "pending_cancellation",
    })
    assert subscriber.status is SubscriberStatus.PENDING_CANCELLATION
    assert subscriber.recurrence is Recurrence.MONTHLY
    assert subscriber.purchase_ids == ("p1", "p2")
    assert subscriber.is_over(NOW) is True
    assert subscriber.is_over(datetime(2024, 1, 15, tzinfo=UTC)) is False


def test_unknown_statuses_read_as_unknown() -> None:
    subscriber = Subscriber.from_json({
        "id": "s", "product_id": "p", "product_name": "", "created_at": "2024-01-01T00:00:00Z",
        "status": "frozen", "recurrence": "every_decade",
    })
    assert subscriber.status is SubscriberStatus.UNKNOWN and subscriber.recurrence is Recurrence.UNKNOWN


def test_product_from_json_with_counts_as_strings() -> None:
    option = {
        "name": "Pro", "price_difference": 500, "is_pay_what_you_want": False, "url": None,
        "recurrence_prices": {"monthly": {"price_cents": 1500, "suggested_price_cents": None}},
    }
    product = Product.from_json({
        "id": "prod==", "name": "Guide", "price": 1000, "currency": "EUR", "published": True,
        "deleted": False, "tags": ["a"], "sales_count": "3", "sales_usd_cents": "3300",
        "customizable_price": None, "variants": [{"title": "Tier", "options": [option]}],
        "custom_fields": [{"name": "Nick", "required": "false", "type": "text"}],
    })
    assert product.price == Money(1000, "eur")
    assert product.sales_count == 3 and product.sales_usd_cents == Money(3300, "usd")
    assert product.variants[0].options[0].price_difference == 500
    assert product.variants[0].options[0].recurrence_prices == {
        "monthly": {"price_cents": 1500, "suggested_price_cents": None}
    }
    assert product.custom_fields == (CustomField(name="Nick", type="text", required=False),)


def test_offer_code_kinds() -> None:
    cents = OfferCode.from_json({"id": "o", "name": "TEN", "amount_cents": 1000, "universal": "false",
                                 "times_used": 0, "max_purchase_count": None})
    percent = OfferCode.from_json(
        {"id": "o", "name": "HALF", "percent_off": 50, "universal": True, "times_used": 2}
    )
    assert cents.offer_type is OfferType.CENTS and cents.universal is False
    assert percent.offer_type is OfferType.PERCENT and percent.percent_off == 50


@pytest.mark.parametrize(
    ("amount", "currency", "cents"),
    [("150.00", "USD", 15000), ("8", "usd", 800), ("0.5", "eur", 50), ("1500", "JPY", 1500)],
)
def test_payout_amount_to_minor_units(amount: str, currency: str, cents: int) -> None:
    payout = Payout.from_json({"id": "pay", "amount": amount, "currency": currency, "status": "completed",
                               "created_at": "2024-01-01T00:00:00Z", "processed_at": None})
    assert payout.amount == Money(cents, currency.lower())
    assert payout.status is PayoutStatus.COMPLETED


def test_upcoming_payout_has_no_id() -> None:
    payout = Payout.from_json({"id": None, "amount": "12.00", "currency": "USD", "status": "payable"})
    assert payout.is_upcoming


@pytest.mark.parametrize("amount", ["1.234", "abc", "NaN"])
def test_unreadable_payout_amounts(amount: str) -> None:
    with pytest.raises(InvalidInput, match=r"payout\.amount"):
        Payout.from_json({"id": "p", "amount": amount, "currency": "usd", "status": "paid"})


def test_user_and_license_shapes() -> None:
    user = User.from_json({"id": "5530311507811", "user_id": "abc==", "name": "Kayla", "links": None})
    assert user.id == "5530311507811" and user.links is None
    license_response = LicenseResponse.from_json({
        "success": True, "uses": 3,
        "purchase": {"id": "s==", "product_id": "p==", "product_name": "App", "email": "a@b.c",
                     "created_at": "2024-01-01T00:00:00Z", "refunded": False, "chargebacked": False,
                     "variants": "(Large)", "custom_fields": ["Nick: ada"], "license_key": "K-1",
                     "price": 500, "test": False, "quantity": 1},
    })
    assert license_response.uses == 3
    assert license_response.purchase is not None
    assert license_response.purchase.variants == "(Large)"
    assert license_response.purchase.custom_fields == ("Nick: ada",)
    assert license_response.purchase.price == Money(500, "usd")
