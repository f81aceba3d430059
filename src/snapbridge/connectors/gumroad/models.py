"""Typed Gumroad money, sales and subscribers, built from the API's JSON with `from_json`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from snapbridge.connectors.gumroad.values import Reader

__all__ = [
    "Affiliate",
    "Card",
    "Money",
    "Recurrence",
    "ResourceName",
    "Sale",
    "SaleOfferCode",
    "Subscriber",
    "SubscriberStatus",
]


@dataclass(frozen=True)
class Money:
    """An amount in minor units of `currency` (cents; whole units for zero-decimal currencies such as JPY)."""

    cents: int
    currency: str  # lowercase ISO code, as Gumroad writes it

    @classmethod
    def usd(cls, cents: int) -> Money:
        return cls(cents, "usd")


class ResourceName(StrEnum):
    """The eight resource names a resource subscription can listen to."""

    SALE = "sale"
    REFUND = "refund"
    DISPUTE = "dispute"
    DISPUTE_WON = "dispute_won"
    CANCELLATION = "cancellation"
    SUBSCRIPTION_UPDATED = "subscription_updated"
    SUBSCRIPTION_ENDED = "subscription_ended"
    SUBSCRIPTION_RESTARTED = "subscription_restarted"


class Recurrence(StrEnum):
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    BIANNUALLY = "biannually"
    YEARLY = "yearly"
    EVERY_TWO_YEARS = "every_two_years"
    UNKNOWN = "unknown"  # a value Gumroad added after this was written; the raw text stays in `raw`

    @classmethod
    def _missing_(cls, value: object) -> Recurrence:
        return cls.UNKNOWN


class SubscriberStatus(StrEnum):
    ALIVE = "alive"
    PENDING_CANCELLATION = "pending_cancellation"
    PENDING_FAILURE = "pending_failure"
    FAILED_PAYMENT = "failed_payment"
    FIXED_SUBSCRIPTION_PERIOD_ENDED = "fixed_subscription_period_ended"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @classmethod
    def _missing_(cls, value: object) -> SubscriberStatus:
        return cls.UNKNOWN


def _recurrence(reader: Reader, key: str) -> Recurrence | None:
    text = reader.opt_text(key)
    return None if text is None else Recurrence(text)


@dataclass(frozen=True)
class Card:
    visual: str  # e.g. "**** **** **** 4242"; may be empty
    type: str  # e.g. "visa"; may be empty

    @classmethod
    def from_reader(cls, reader: Reader | None) -> Card | None:
        if reader is None:
            return None
        return cls(visual=reader.raw_text("visual"), type=reader.raw_text("type"))


@dataclass(frozen=True)
class SaleOfferCode:
    code: str
    displayed_amount_off: str | None

    @classmethod
    def from_reader(cls, reader: Reader) -> SaleOfferCode:
        return cls(
            code=reader.opt_text("code") or reader.text("name"),
            displayed_amount_off=reader.opt_text("displayed_amount_off"),
        )


@dataclass(frozen=True)
class Affiliate:
    email: str
    amount: str | None  # a formatted string such as "$2.50", never parsed as money


@dataclass(frozen=True)
class Sale:
    """One purchase as `GET /v2/sales/:id` describes it."""

    id: str
    order_id: int | None
    seller_id: str
    product_id: str
    product_name: str
    product_permalink: str | None  # the short code (e.g. "XCBbJ"), unlike the Ping's full URL
    created_at: datetime
    email: str
    price: Money  # USD cents whatever the product currency; includes shipping and seller-added tax
    gumroad_fee: Money | None
    quantity: int
    product_currency: str | None  # only sent by newer Gumroad code
    amount_refundable_in_currency: str | None  # major units of the sale currency, e.g. "8"
    refunded: bool  # Gumroad leaves the key out unless the sale was refunded
    partially_refunded: bool
    chargedback: bool
    disputed: bool
    dispute_won: bool
    purchase_email: str | None = None
    purchaser_id: str | None = None
    full_name: str | None = None
    street_address: str | None = None
    city: str | None = None
    state: str | None = None
    zip_code: str | None = None
    country: str | None = None  # an English country name
    country_iso2: str | None = None
    referrer: str | None = None
    variants: Mapping[str, str] = field(default_factory=dict)
    custom_fields: Mapping[str, str] = field(default_factory=dict)
    subscription_id: str | None = None
    recurring_charge: bool = False  # true for renewals only
    is_recurring_billing: bool = False
    cancelled: bool | None = None
    ended: bool | None = None
    is_product_physical: bool = False
    shipped: bool | None = None
    tracking_url: str | None = None
    license_key: str | None = None
    offer_code: SaleOfferCode | None = None
    affiliate: Affiliate | None = None
    card: Card | None = None
    is_gift_sender_purchase: bool = False
    is_gift_receiver_purchase: bool = False
    giftee_email: str | None = None
    gifter_email: str | None = None
    is_preorder_authorization: bool = False
    can_contact: bool | None = None
    raw: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, object], where: str = "sale") -> Sale:
        r = Reader(data, where)
        offer = r.sub("offer_code")
        affiliate = r.sub("affiliate")
        gumroad_fee = r.opt_integer("gumroad_fee")
        return cls(
            id=r.text("id"),
            order_id=r.opt_integer("order_id"),
            seller_id=r.text("seller_id"),
            product_id=r.text("product_id"),
            product_name=r.raw_text("product_name"),
            product_permalink=r.opt_text("product_permalink"),
            created_at=r.time("created_at"),
            email=r.raw_text("email"),
            price=Money.usd(r.opt_integer("price") or 0),
            gumroad_fee=None if gumroad_fee is None else Money.usd(gumroad_fee),
            quantity=r.opt_integer("quantity") or 1,
            product_currency=(r.opt_text("currency") or "").lower() or None,
            amount_refundable_in_currency=r.opt_text("amount_refundable_in_currency"),
            refunded=r.flag("refunded"),
            partially_refunded=r.flag("partially_refunded"),
            chargedback=r.flag("chargedback"),
            disputed=r.flag("disputed"),
            dispute_won=r.flag("dispute_won"),
            purchase_email=r.opt_text("purchase_email"),
            purchaser_id=r.opt_text("purchaser_id"),
            full_name=r.opt_text("full_name"),
            street_address=r.opt_text("street_address"),
            city=r.opt_text("city"),
            state=r.opt_text("state"),
            zip_code=r.opt_text("zip_code"),
            country=r.opt_text("country"),
            country_iso2=r.opt_text("country_iso2"),
            referrer=r.opt_text("referrer"),
            variants=r.text_map("variants"),
            custom_fields=r.text_map("custom_fields"),
            subscription_id=r.opt_text("subscription_id"),
            recurring_charge=r.flag("recurring_charge"),
            is_recurring_billing=r.flag("is_recurring_billing"),
            cancelled=r.opt_flag("cancelled"),
            ended=r.opt_flag("ended"),
            is_product_physical=r.flag("is_product_physical"),
            shipped=r.opt_flag("shipped"),
            tracking_url=r.opt_text("tracking_url"),
            license_key=r.opt_text("license_key"),
            offer_code=None if offer is None else SaleOfferCode.from_reader(offer),
            affiliate=(
                None
                if affiliate is None
                else Affiliate(email=affiliate.raw_text("email"), amount=affiliate.opt_text("amount"))
            ),
            card=Card.from_reader(r.sub("card")),
            is_gift_sender_purchase=r.flag("is_gift_sender_purchase"),
            is_gift_receiver_purchase=r.flag("is_gift_receiver_purchase"),
            giftee_email=r.opt_text("giftee_email"),
            gifter_email=r.opt_text("gifter_email"),
            is_preorder_authorization=r.flag("is_preorder_authorization"),
            can_contact=r.opt_flag("can_contact"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Subscriber:
    """One membership subscription (`GET /v2/subscribers/:id`)."""

    id: str
    product_id: str
    product_name: str
    created_at: datetime
    status: SubscriberStatus
    purchase_ids: tuple[str, ...]
    email: str | None = None
    user_id: str | None = None
    user_email: str | None = None
    recurrence: Recurrence | None = None
    charge_occurrence_count: int | None = None
    user_requested_cancellation_at: datetime | None = None
    cancelled_at: datetime | None = None
    ended_at: datetime | None = None
    failed_at: datetime | None = None
    free_trial_ends_at: datetime | None = None
    license_key: str | None = None
    raw: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, object], where: str = "subscriber") -> Subscriber:
        r = Reader(data, where)
        return cls(
            id=r.text("id"),
            product_id=r.text("product_id"),
            product_name=r.raw_text("product_name"),
            created_at=r.time("created_at"),
            status=SubscriberStatus(r.text("status")),
            purchase_ids=r.text_list("purchase_ids"),
            email=r.opt_text("email"),
            user_id=r.opt_text("user_id"),
            user_email=r.opt_text("user_email"),
            recurrence=_recurrence(r, "recurrence"),
            charge_occurrence_count=r.opt_integer("charge_occurrence_count"),
            user_requested_cancellation_at=r.opt_time("user_requested_cancellation_at"),
            cancelled_at=r.opt_time("cancelled_at"),
            ended_at=r.opt_time("ended_at"),
            failed_at=r.opt_time("failed_at"),
            free_trial_ends_at=r.opt_time("free_trial_ends_at"),
            license_key=r.opt_text("license_key"),
            raw=dict(data),
        )

    def is_over(self, now: datetime) -> bool:
        """The docs' rule: over once `failed_at`, `ended_at` or `cancelled_at` is set and in the past."""
        ends = (self.failed_at, self.ended_at, self.cancelled_at)
        return any(moment is not None and moment <= now for moment in ends)
