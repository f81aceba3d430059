"""Typed Gumroad account objects: the user, webhook subscriptions, payouts and license responses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from snapbridge.connectors.gumroad.models import Money, ResourceName
from snapbridge.connectors.gumroad.values import Reader, major_to_minor

__all__ = [
    "LicensePurchase",
    "LicenseResponse",
    "Payout",
    "PayoutStatus",
    "ResourceSubscription",
    "User",
]


class PayoutStatus(StrEnum):
    # The reference lists these as examples ("e.g."), so an unseen status reads as UNKNOWN instead of failing.
    PAYABLE = "payable"
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RETURNED = "returned"
    REVERSED = "reversed"
    UNKNOWN = "unknown"

    @classmethod
    def _missing_(cls, value: object) -> PayoutStatus:
        return cls.UNKNOWN


@dataclass(frozen=True)
class User:
    """The token owner (`GET /v2/user`); which fields appear depends on the token's scopes."""

    id: str  # numeric string
    user_id: str | None  # the base64 external id
    name: str | None = None
    email: str | None = None
    display_name: str | None = None
    bio: str | None = None
    twitter_handle: str | None = None
    currency_type: str | None = None
    url: str | None = None
    profile_url: str | None = None
    links: tuple[str, ...] | None = None
    raw: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, object], where: str = "user") -> User:
        r = Reader(data, where)
        return cls(
            id=r.text("id"),
            user_id=r.opt_text("user_id"),
            name=r.opt_text("name"),
            email=r.opt_text("email"),
            display_name=r.opt_text("display_name"),
            bio=r.opt_text("bio"),
            twitter_handle=r.opt_text("twitter_handle"),
            currency_type=r.opt_text("currency_type"),
            url=r.opt_text("url"),
            profile_url=r.opt_text("profile_url"),
            links=r.opt_text_list("links"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class ResourceSubscription:
    id: str
    resource_name: ResourceName
    post_url: str

    @classmethod
    def from_json(
        cls, data: Mapping[str, object], where: str = "resource_subscription"
    ) -> ResourceSubscription:
        r = Reader(data, where)
        return cls(
            id=r.text("id"), resource_name=ResourceName(r.text("resource_name")), post_url=r.text("post_url")
        )


@dataclass(frozen=True)
class Payout:
    """One payout; the upcoming (not yet created) payout has no id."""

    id: str | None
    amount: Money  # Gumroad sends a decimal string in major units ("150.00"); converted to minor units
    status: PayoutStatus
    created_at: datetime | None = None
    processed_at: datetime | None = None
    payment_processor: str | None = None
    bank_account_visual: str | None = None
    paypal_email: str | None = None
    sales: tuple[str, ...] | None = None  # only with view_sales as well as view_payouts
    refunded_sales: tuple[str, ...] | None = None
    disputed_sales: tuple[str, ...] | None = None
    raw: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_upcoming(self) -> bool:
        return self.id is None

    @classmethod
    def from_json(cls, data: Mapping[str, object], where: str = "payout") -> Payout:
        r = Reader(data, where)
        currency = (r.opt_text("currency") or "usd").lower()
        return cls(
            id=r.opt_text("id"),
            amount=Money(major_to_minor(r.text("amount"), currency, f"{where}.amount"), currency),
            status=PayoutStatus(r.text("status")),
            created_at=r.opt_time("created_at"),
            processed_at=r.opt_time("processed_at"),
            payment_processor=r.opt_text("payment_processor"),
            bank_account_visual=r.opt_text("bank_account_visual"),
            paypal_email=r.opt_text("paypal_email"),
            sales=r.opt_text_list("sales"),
            refunded_sales=r.opt_text_list("refunded_sales"),
            disputed_sales=r.opt_text_list("disputed_sales"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class LicensePurchase:
    """The `purchase` of a license response: the Ping payload overlaid with `id`, `created_at`, `refunded`."""

    id: str
    product_id: str | None
    product_name: str | None
    email: str | None
    created_at: datetime | None
    refunded: bool
    chargebacked: bool  # sic; non-subscription products only
    disputed: bool
    test: bool
    license_key: str | None
    quantity: int | None
    price: Money | None  # USD cents, like the Ping
    variants: str  # the old display string such as "(Large)", not a mapping
    custom_fields: tuple[str, ...]  # "name: value" strings, not a mapping
    subscription_id: str | None = None
    subscription_ended_at: datetime | None = None
    subscription_cancelled_at: datetime | None = None
    subscription_failed_at: datetime | None = None
    raw: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, object], where: str = "purchase") -> LicensePurchase:
        r = Reader(data, where)
        price = r.opt_integer("price")
        return cls(
            id=r.opt_text("id") or r.text("sale_id"),
            product_id=r.opt_text("product_id"),
            product_name=r.opt_text("product_name"),
            email=r.opt_text("email"),
            created_at=r.opt_time("created_at") or r.opt_time("sale_timestamp"),
            refunded=r.flag("refunded"),
            chargebacked=r.flag("chargebacked"),
            disputed=r.flag("disputed"),
            test=r.flag("test"),
            license_key=r.opt_text("license_key"),
            quantity=r.opt_integer("quantity"),
            price=None if price is None else Money.usd(price),
            variants=r.raw_text("variants") if not isinstance(data.get("variants"), Mapping) else "",
            custom_fields=r.text_list("custom_fields") if isinstance(data.get("custom_fields"), list) else (),
            subscription_id=r.opt_text("subscription_id"),
            subscription_ended_at=r.opt_time("subscription_ended_at"),
            subscription_cancelled_at=r.opt_time("subscription_cancelled_at"),
            subscription_failed_at=r.opt_time("subscription_failed_at"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class LicenseResponse:
    """What verify/enable/disable/decrement/rotate return: the use count and the purchase behind the key."""

    uses: int
    purchase: LicensePurchase | None
    imported_customer: Mapping[str, object] | None = None  # in place of `purchase` for imported customers

    @classmethod
    def from_json(cls, data: Mapping[str, object], where: str = "license") -> LicenseResponse:
        r = Reader(data, where)
        purchase = r.sub("purchase")
        imported = r.sub("imported_customer")
        return cls(
            uses=r.opt_integer("uses") or 0,
            purchase=None if purchase is None else LicensePurchase.from_json(purchase.data, purchase.where),
            imported_customer=None if imported is None else dict(imported.data),
        )
