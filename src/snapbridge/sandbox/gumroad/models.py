"""The sandbox's in-memory records: products and their parts, buyers, sales, subscriptions, licenses, hooks.

These rows are mutable on purpose: they are the fake's database, changed by the API and the scenarios
under the state lock. Nothing outside the sandbox package sees them; the API renders them to JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "CURRENCIES",
    "RESOURCE_NAMES",
    "Buyer",
    "CancelledBy",
    "Currency",
    "CustomField",
    "License",
    "OfferCode",
    "Payout",
    "Product",
    "Recurrence",
    "ResourceSubscription",
    "Sale",
    "SaleState",
    "Seller",
    "Subscription",
    "Token",
    "Variant",
    "VariantCategory",
    "WebhookEvent",
]

# The eight resource names of ResourceSubscription::VALID_RESOURCE_NAMES (gumroad-api.md §6).
RESOURCE_NAMES = (
    "sale",
    "refund",
    "dispute",
    "dispute_won",
    "cancellation",
    "subscription_updated",
    "subscription_ended",
    "subscription_restarted",
)


@dataclass(frozen=True)
class Currency:
    code: str  # lowercase ISO code, as Gumroad writes it
    symbol: str
    usd_rate: float  # USD per one major unit; sale `price` is always USD cents
    single_unit: bool = False  # JPY has no minor unit ("single_unit" in config/currencies.json)


CURRENCIES = {
    "usd": Currency("usd", "$", 1.0),
    "eur": Currency("eur", "€", 1.08),
    "gbp": Currency("gbp", "£", 1.27),
    "jpy": Currency("jpy", "¥", 0.0067, single_unit=True),
}


class Recurrence(StrEnum):
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    BIANNUALLY = "biannually"
    YEARLY = "yearly"
    EVERY_TWO_YEARS = "every_two_years"


class SaleState(StrEnum):
    SUCCESSFUL = "successful"
    NOT_CHARGED = "not_charged"  # a free-trial sign-up; listed by /v2/sales
    TEST_SUCCESSFUL = "test_successful"  # the seller bought their own product; never listed
    GIFT_RECEIVER = "gift_receiver_purchase_successful"  # the giftee side of a gift; never listed
    PREORDER_AUTHORIZATION = "preorder_authorization_successful"
    FAILED = "failed"  # a renewal charge that failed; never listed, never pinged


class CancelledBy(StrEnum):
    BUYER = "buyer"
    SELLER = "seller"
    ADMIN = "admin"


@dataclass
class Seller:
    id: str  # external id (base64 form), the `seller_id` everywhere
    user_id: str  # numeric string form
    name: str
    username: str
    email: str
    bio: str
    twitter_handle: str
    currency_type: str = "usd"

    @property
    def url(self) -> str:
        return f"https://{self.username}.gumroad.com"


@dataclass
class Token:
    value: str
    scopes: frozenset[str]
    application_id: str
    revoked: bool = False


@dataclass
class VariantCategory:
    id: str
    product_id: str
    title: str | None
    deleted: bool = False
    variant_ids: list[str] = field(default_factory=list)


@dataclass
class Variant:
    id: str
    category_id: str
    name: str
    description: str = ""
    price_difference_cents: int = 0
    max_purchase_count: int | None = None
    deleted: bool = False
    # Tiers of a membership: recurrence → price in cents.
    recurrence_prices: dict[str, int] = field(default_factory=dict)


@dataclass
class OfferCode:
    id: str
    code: str
    universal: bool
    product_ids: list[str]
    amount_cents: int | None = None
    percent_off: int | None = None
    max_purchase_count: int | None = None
    times_used: int = 0
    currency: str = "usd"
    deleted: bool = False


@dataclass
class CustomField:
    id: str
    name: str
    type: str = "text"
    required: bool = False
    product_ids: list[str] = field(default_factory=list)
    deleted: bool = False


@dataclass
class Product:
    pk: int
    id: str
    name: str
    unique_permalink: str
    price_cents: int  # in the product's own currency
    currency: str
    created_at: datetime
    description: str = ""
    custom_permalink: str | None = None
    custom_summary: str | None = None
    published: bool = True
    deleted: bool = False
    is_physical: bool = False
    subscription_duration: Recurrence | None = None  # non-null for memberships
    is_tiered_membership: bool = False
    tags: list[str] = field(default_factory=list)
    is_licensed: bool = False
    is_multiseat_license: bool = False
    customizable_price: bool | None = None
    max_purchase_count: int | None = None
    variant_category_ids: list[str] = field(default_factory=list)
    custom_field_ids: list[str] = field(default_factory=list)
    shipping_cents: int = 0
    foreign: bool = False  # owned by another seller: invisible to the API except license lookups

    @property
    def is_recurring(self) -> bool:
        return self.subscription_duration is not None


@dataclass
class Buyer:
    email: str
    full_name: str
    purchaser_id: str | None  # numeric user id when the buyer has a Gumroad account
    country: str
    country_iso2: str
    street_address: str | None = None
    city: str | None = None
    state: str | None = None
    zip_code: str | None = None
    card_visual: str | None = "**** **** **** 4242"
    card_type: str | None = "visa"


@dataclass
class Sale:
    pk: int
    id: str
    order_id: int
    product_id: str
    buyer: Buyer
    created_at: datetime
    state: SaleState
    price_cents: int  # USD cents, shipping included
    displayed_price_cents: int  # in the product's currency
    fee_cents: int
    currency: str
    quantity: int = 1
    referrer: str = "direct"
    can_contact: bool = True
    discover_fee_charged: bool = False
    variants: dict[str, str] = field(default_factory=dict)  # category title → option name
    variant_ids: list[str] = field(default_factory=list)
    custom_fields: dict[str, str] = field(default_factory=dict)
    offer_code_id: str | None = None
    subscription_id: str | None = None
    is_recurring_charge: bool = False
    is_upgrade_purchase: bool = False
    is_gift_sender: bool = False
    is_gift_receiver: bool = False
    gift_partner_id: str | None = None  # the other purchase of a gift pair
    giftee_email: str | None = None
    license_id: str | None = None
    refunded_cents: int = 0  # in the product's currency
    ever_refunded: bool = False
    chargedback: bool = False  # any chargeback ever
    dispute_won: bool = False
    shipped: bool = False
    tracking_url: str | None = None
    affiliate_email: str | None = None
    affiliate_credit_cents: int | None = None
    access_revoked: bool = False
    receipts_sent: int = 1

    @property
    def fully_refunded(self) -> bool:
        return self.ever_refunded and self.refunded_cents >= self.displayed_price_cents

    @property
    def partially_refunded(self) -> bool:
        return 0 < self.refunded_cents < self.displayed_price_cents

    @property
    def refundable_cents(self) -> int:
        return max(self.displayed_price_cents - self.refunded_cents, 0)

    @property
    def is_test(self) -> bool:
        return self.state is SaleState.TEST_SUCCESSFUL


@dataclass
class Subscription:
    pk: int
    id: str
    numeric_id: int
    product_id: str
    email: str
    user_id: str | None
    recurrence: Recurrence
    created_at: datetime
    purchase_ids: list[str] = field(default_factory=list)
    tier_id: str | None = None
    price_cents: int = 0
    quantity: int = 1
    charge_occurrence_count: int | None = None
    free_trial_ends_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancelled_by: CancelledBy | None = None
    user_requested_cancellation_at: datetime | None = None
    failed_at: datetime | None = None
    ended_at: datetime | None = None
    deactivated_at: datetime | None = None
    pending_failure: bool = False
    is_test: bool = False
    custom_fields: dict[str, str] = field(default_factory=dict)
    license_key: str | None = None


@dataclass
class License:
    id: str
    serial: str
    product_id: str
    sale_id: str
    uses: int = 0
    disabled: bool = False


@dataclass
class ResourceSubscription:
    id: str
    resource_name: str
    post_url: str
    application_id: str
    created_at: datetime
    deleted: bool = False


@dataclass
class Payout:
    pk: int
    id: str
    numeric_id: int
    amount_cents: int
    currency: str
    status: str
    created_at: datetime
    processed_at: datetime | None
    payment_processor: str
    bank_account_visual: str | None = None
    paypal_email: str | None = None
    sale_ids: list[str] = field(default_factory=list)
    refunded_sale_ids: list[str] = field(default_factory=list)
    disputed_sale_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WebhookEvent:
    """Something that happened and is to be posted; the payload is built when the post is due (§5.2)."""

    resource_name: str
    occurred_at: datetime
    sale_id: str | None = None
    subscription_id: str | None = None
    url_params: dict[str, str] = field(default_factory=dict)  # only on the original sale ping
    additional: dict[str, Any] = field(default_factory=dict)  # subscription_updated/restarted fields
