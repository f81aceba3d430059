"""Typed Gumroad webhook events (the Ping and the eight resource-subscription posts) and their dedupe keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypedDict, TypeVar

from snapbridge.connectors.gumroad.models import Card, Money, Recurrence, ResourceName
from snapbridge.connectors.gumroad.values import Reader
from snapbridge.errors import InvalidInput

__all__ = [
    "CancellationEvent",
    "CancelledBy",
    "EndedReason",
    "FormReader",
    "GumroadEvent",
    "Plan",
    "SaleEvent",
    "ShippingInformation",
    "SubscriptionEndedEvent",
    "SubscriptionEvent",
    "SubscriptionRestartedEvent",
    "SubscriptionUpdatedEvent",
    "UpdateType",
    "event_from_fields",
    "sale_dedupe_key",
]

_E = TypeVar("_E", bound=StrEnum)

SALE_RESOURCES = frozenset(
    {ResourceName.SALE, ResourceName.REFUND, ResourceName.DISPUTE, ResourceName.DISPUTE_WON}
)


class CancelledBy(StrEnum):
    ADMIN = "admin"
    BUYER = "buyer"
    SELLER = "seller"


class UpdateType(StrEnum):
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"


class EndedReason(StrEnum):
    CANCELLED = "cancelled"
    FAILED_PAYMENT = "failed_payment"
    FIXED_SUBSCRIPTION_PERIOD_ENDED = "fixed_subscription_period_ended"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ShippingInformation:
    full_name: str
    street_address: str
    city: str
    state: str
    zip_code: str
    country: str  # an English country name, not an ISO code

    @classmethod
    def from_reader(cls, r: Reader) -> ShippingInformation:
        keys = ("full_name", "street_address", "city", "state", "zip_code", "country")
        return cls(*(r.raw_text(key) for key in keys))


@dataclass(frozen=True, kw_only=True)
class SaleEvent:
    """A sale, refund, dispute or dispute_won post, or a "Send test ping" (no resource name)."""

    resource_name: ResourceName | None  # None only for the test ping sent from Gumroad's settings page
    sale_id: str
    sale_timestamp: datetime
    seller_id: str
    product_id: str
    product_name: str
    email: str
    order_number: int | None
    product_permalink: str | None  # the full product URL here, unlike the sale object's short code
    short_product_id: str | None
    price: Money  # always USD cents, whatever `product_currency` says
    gumroad_fee: Money | None
    product_currency: str | None
    quantity: int
    refunded: bool  # a partial refund arrives as a refund event with refunded=false
    disputed: bool
    dispute_won: bool
    test: bool
    is_recurring_charge: bool
    is_preorder_authorization: bool
    is_gift_receiver_purchase: bool
    discover_fee_charged: bool
    can_contact: bool
    referrer: str
    card: Card
    full_name: str | None = None
    purchaser_id: str | None = None
    subscription_id: str | None = None
    recurrence: Recurrence | None = None
    offer_code: str | None = None
    variants: Mapping[str, str] = field(default_factory=dict)
    custom_fields: Mapping[str, str] = field(default_factory=dict)
    url_params: Mapping[str, str] = field(default_factory=dict)
    shipping_information: ShippingInformation | None = None
    shipping_rate: Money | None = None
    license_key: str | None = None
    is_multiseat_license: bool = False
    ip_country: str | None = None
    affiliate: str | None = None  # the affiliate's email
    affiliate_credit: Money | None = None
    gift_price: Money | None = None
    gifter_email: str | None = None
    sku_id: str | None = None
    original_sku_id: str | None = None
    # Redeliveries add retry_count; it says nothing about the event, so equality and the dedupe key ignore it.
    retry_count: int = field(default=0, compare=False)
    fields: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_test_ping(self) -> bool:
        return self.resource_name is None

    @property
    def occurred_at(self) -> datetime:
        return self.sale_timestamp

    @property
    def dedupe_key(self) -> str:
        # Reference §7: (resource_name, sale_id). The settings-page test ping repeats the latest real sale, so
        # it gets its own namespace rather than being swallowed as a duplicate of that sale.
        name = self.resource_name.value if self.resource_name is not None else "test_ping"
        return sale_dedupe_key(name, self.sale_id, partial_refund=self.partial_refund)

    @property
    def partial_refund(self) -> bool:
        """A partial refund's ping: byte-identical for two partial refunds of one sale, so the receiver keeps each
        delivery and the deriver keys it by the sale's refundable amount read back from the API."""
        return self.resource_name is ResourceName.REFUND and not self.refunded

    @classmethod
    def from_reader(cls, r: Reader, resource_name: ResourceName | None, retry_count: int) -> SaleEvent:
        shipping = r.sub("shipping_information")
        shipping_rate = r.opt_integer("shipping_rate")
        affiliate_credit = r.opt_integer("affiliate_credit_amount_cents")
        gift_price = r.opt_integer("gift_price")
        gumroad_fee = r.opt_integer("gumroad_fee")
        recurrence = r.opt_text("recurrence")
        return cls(
            resource_name=resource_name,
            sale_id=r.text("sale_id"),
            sale_timestamp=r.time("sale_timestamp"),
            seller_id=r.text("seller_id"),
            product_id=r.text("product_id"),
            product_name=r.raw_text("product_name"),
            email=r.raw_text("email"),
            order_number=r.opt_integer("order_number"),
            product_permalink=r.opt_text("product_permalink"),
            short_product_id=r.opt_text("short_product_id"),
            price=Money.usd(r.opt_integer("price") or 0),
            gumroad_fee=None if gumroad_fee is None else Money.usd(gumroad_fee),
            product_currency=(r.opt_text("currency") or "").lower() or None,
            quantity=r.opt_integer("quantity") or 1,
            refunded=r.flag("refunded"),
            disputed=r.flag("disputed"),
            dispute_won=r.flag("dispute_won"),
            test=r.flag("test"),
            is_recurring_charge=r.flag("is_recurring_charge"),
            is_preorder_authorization=r.flag("is_preorder_authorization"),
            is_gift_receiver_purchase=r.flag("is_gift_receiver_purchase"),
            discover_fee_charged=r.flag("discover_fee_charged"),
            can_contact=r.flag("can_contact"),
            referrer=r.raw_text("referrer"),
            card=Card.from_reader(r.sub("card")) or Card(visual="", type=""),
            full_name=r.opt_text("full_name"),
            purchaser_id=r.opt_text("purchaser_id"),
            subscription_id=r.opt_text("subscription_id"),
            recurrence=None if recurrence is None else Recurrence(recurrence),
            offer_code=r.opt_text("offer_code"),
            variants=r.text_map("variants"),
            custom_fields=r.text_map("custom_fields"),
            url_params=r.text_map("url_params"),
            shipping_information=None if shipping is None else ShippingInformation.from_reader(shipping),
            shipping_rate=None if shipping_rate is None else Money.usd(shipping_rate),
            license_key=r.opt_text("license_key"),
            is_multiseat_license=r.flag("is_multiseat_license"),
            ip_country=r.opt_text("ip_country"),
            affiliate=r.opt_text("affiliate"),
            affiliate_credit=None if affiliate_credit is None else Money.usd(affiliate_credit),
            gift_price=None if gift_price is None else Money.usd(gift_price),
            gifter_email=r.opt_text("gifter_email"),
            sku_id=r.opt_text("sku_id"),
            original_sku_id=r.opt_text("original_sku_id"),
            retry_count=retry_count,
            fields=dict(r.data),
        )


class _Common(TypedDict):
    resource_name: ResourceName
    subscription_id: str
    product_id: str
    product_name: str
    created_at: datetime
    purchase_ids: tuple[str, ...]
    user_id: str | None
    user_email: str | None
    recurrence: Recurrence | None
    charge_occurrence_count: int | None
    free_trial_ends_at: datetime | None
    custom_fields: Mapping[str, str]
    license_key: str | None
    retry_count: int
    fields: Mapping[str, object]


@dataclass(frozen=True, kw_only=True)
class SubscriptionEvent:
    """The payload the four subscription posts share; it has no seller_id, sale_id, price or email."""

    resource_name: ResourceName
    subscription_id: str
    product_id: str
    product_name: str
    created_at: datetime
    purchase_ids: tuple[str, ...]
    user_id: str | None = None
    user_email: str | None = None
    recurrence: Recurrence | None = None
    charge_occurrence_count: int | None = None
    free_trial_ends_at: datetime | None = None
    custom_fields: Mapping[str, str] = field(default_factory=dict)
    license_key: str | None = None
    retry_count: int = field(default=0, compare=False)
    fields: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def occurred_at(self) -> datetime:
        return self.created_at

    @property
    def dedupe_key(self) -> str:
        # Reference §7: (resource_name, subscription_id, event timestamp).
        return f"gumroad:{self.resource_name.value}:{self.subscription_id}:{_stamp(self.occurred_at)}"

    @staticmethod
    def common(r: Reader, resource_name: ResourceName, retry_count: int) -> _Common:
        recurrence = r.opt_text("recurrence")
        return _Common(
            resource_name=resource_name,
            subscription_id=r.text("subscription_id"),
            product_id=r.text("product_id"),
            product_name=r.raw_text("product_name"),
            created_at=r.time("created_at"),
            purchase_ids=r.text_list("purchase_ids"),
            user_id=r.opt_text("user_id"),
            user_email=r.opt_text("user_email"),
            recurrence=None if recurrence is None else Recurrence(recurrence),
            charge_occurrence_count=r.opt_integer("charge_occurrence_count"),
            free_trial_ends_at=r.opt_time("free_trial_ends_at"),
            custom_fields=r.text_map("custom_fields"),
            license_key=r.opt_text("license_key"),
            retry_count=retry_count,
            fields=dict(r.data),
        )


@dataclass(frozen=True, kw_only=True)
class CancellationEvent(SubscriptionEvent):
    # When access ends, or the failure time for payment failures. Gumroad renders the post when it sends it,
    # so a subscription restarted in the meantime arrives with an empty cancelled_at.
    cancelled_at: datetime | None
    cancelled_by: CancelledBy | None
    due_to_payment_failures: bool

    @property
    def occurred_at(self) -> datetime:
        return self.cancelled_at or self.created_at


@dataclass(frozen=True)
class Plan:
    """One side of a tier or recurrence change; `price_cents` is in the product's currency."""

    tier_id: str | None
    tier_name: str | None
    recurrence: Recurrence | None
    price_cents: int | None
    quantity: int | None

    @classmethod
    def from_reader(cls, r: Reader) -> Plan:
        tier = r.sub("tier")
        recurrence = r.opt_text("recurrence")
        return cls(
            tier_id=None if tier is None else tier.opt_text("id"),
            tier_name=None if tier is None else tier.opt_text("name"),
            recurrence=None if recurrence is None else Recurrence(recurrence),
            price_cents=r.opt_integer("price_cents"),
            quantity=r.opt_integer("quantity"),
        )


@dataclass(frozen=True, kw_only=True)
class SubscriptionUpdatedEvent(SubscriptionEvent):
    type: UpdateType
    effective_as_of: datetime  # downgrades take effect at the end of the billing period
    old_plan: Plan
    new_plan: Plan

    @property
    def occurred_at(self) -> datetime:
        return self.effective_as_of


@dataclass(frozen=True, kw_only=True)
class SubscriptionEndedEvent(SubscriptionEvent):
    ended_at: datetime
    ended_reason: EndedReason

    @property
    def occurred_at(self) -> datetime:
        return self.ended_at


@dataclass(frozen=True, kw_only=True)
class SubscriptionRestartedEvent(SubscriptionEvent):
    restarted_at: datetime

    @property
    def occurred_at(self) -> datetime:
        return self.restarted_at


GumroadEvent = (
    SaleEvent
    | CancellationEvent
    | SubscriptionUpdatedEvent
    | SubscriptionEndedEvent
    | SubscriptionRestartedEvent
)

_CANCELLERS = {
    "cancelled_by_admin": CancelledBy.ADMIN,
    "cancelled_by_buyer": CancelledBy.BUYER,
    "cancelled_by_seller": CancelledBy.SELLER,
}


def _enum_value(kind: type[_E], r: Reader, key: str) -> _E:
    text = r.text(key)
    try:
        return kind(text)
    except ValueError as exc:
        known = ", ".join(member.value for member in kind)
        raise InvalidInput(f"{r.where}.{key}: unknown value {text!r}; known: {known}") from exc


def _cancellation(r: Reader, common: _Common) -> CancellationEvent:
    by = [who for flag, who in _CANCELLERS.items() if r.flag(flag)]
    if len(by) > 1:
        raise InvalidInput(f"{r.where}: more than one of {', '.join(_CANCELLERS)} is true")
    return CancellationEvent(
        **common,
        cancelled_at=r.opt_time("cancelled_at"),
        cancelled_by=by[0] if by else None,
        due_to_payment_failures=r.flag("cancelled_due_to_payment_failures"),
    )


def _updated(r: Reader, common: _Common) -> SubscriptionUpdatedEvent:
    old_plan, new_plan = r.sub("old_plan"), r.sub("new_plan")
    if old_plan is None or new_plan is None:
        raise InvalidInput(f"{r.where}: subscription_updated needs both old_plan and new_plan")
    return SubscriptionUpdatedEvent(
        **common,
        type=_enum_value(UpdateType, r, "type"),
        effective_as_of=r.time("effective_as_of"),
        old_plan=Plan.from_reader(old_plan),
        new_plan=Plan.from_reader(new_plan),
    )


class FormReader(Reader):
    """A Reader that answers the usual case of a folded form body, a plain string, without Reader's general
    checks (a ping reads ~50 values; this takes a quarter off building its event). Anything else is Reader's
    to decide, so the values and the errors are the same."""

    def opt_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value.__class__ is str:
            return value or None
        return super().opt_text(key)

    def opt_integer(self, key: str) -> int | None:
        value = self.data.get(key)
        if value.__class__ is str and value.isascii() and value.isdigit():
            return int(value)
        return super().opt_integer(key)

    def flag(self, key: str) -> bool:
        value = self.data.get(key)
        if value is None or value == "" or value == "false":
            return False
        if value == "true":
            return True
        return super().flag(key)

    def sub(self, key: str) -> Reader | None:
        value = self.data.get(key)
        if value.__class__ is dict:
            return FormReader(value, self._path(key))
        return super().sub(key)


def sale_dedupe_key(resource_name: str, sale_id: str, *, partial_refund: bool) -> str:
    """The inbound key of a sale's ping of `resource_name` (the poller keys what it reads the same way)."""
    key = f"gumroad:{resource_name}:{sale_id}"
    # One sale can ping `refund` several times. The ping has no amount or refund id, only `refunded` (true once
    # refunded in full; §5.2), so a partial refund and the final one are two keys, as a poll sees them. Two
    # partial refunds send identical pings: see `SaleEvent.partial_refund` for how they are told apart.
    return f"{key}:partial" if partial_refund else key


def event_from_fields(fields: Mapping[str, object], where: str = "webhook") -> GumroadEvent:
    """The typed event for a folded Ping or resource-subscription body."""
    r = FormReader(fields, where)
    retry_count = r.opt_integer("retry_count") or 0
    name = r.opt_text("resource_name")
    if name is None:
        if not r.has("sale_id"):
            raise InvalidInput(f"{where}: resource_name is missing and there is no sale_id (not a test ping)")
        return SaleEvent.from_reader(r, None, retry_count)
    resource = _enum_value(ResourceName, r, "resource_name")
    if resource in SALE_RESOURCES:
        return SaleEvent.from_reader(r, resource, retry_count)
    common = SubscriptionEvent.common(r, resource, retry_count)
    if resource is ResourceName.CANCELLATION:
        return _cancellation(r, common)
    if resource is ResourceName.SUBSCRIPTION_UPDATED:
        return _updated(r, common)
    if resource is ResourceName.SUBSCRIPTION_ENDED:
        return SubscriptionEndedEvent(
            **common,
            ended_at=r.time("ended_at"),
            ended_reason=_enum_value(EndedReason, r, "ended_reason"),
        )
    return SubscriptionRestartedEvent(**common, restarted_at=r.time("restarted_at"))
