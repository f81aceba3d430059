"""How the sandbox makes a purchase: prices in the product's currency and in USD cents, fees, licenses.

Used by the seeder and by the scenarios, so seeded and emitted sales follow the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from snapbridge.sandbox.gumroad.models import (
    CURRENCIES,
    Buyer,
    License,
    OfferCode,
    Product,
    Recurrence,
    Sale,
    SaleState,
    Subscription,
    Variant,
)
from snapbridge.sandbox.gumroad.state import SandboxState

__all__ = ["Purchase", "apply_refund", "format_money", "major_units", "record_sale", "to_usd_cents"]

_RECURRENCE_TEXT = {
    Recurrence.MONTHLY: "a month",
    Recurrence.QUARTERLY: "every 3 months",
    Recurrence.BIANNUALLY: "every 6 months",
    Recurrence.YEARLY: "a year",
    Recurrence.EVERY_TWO_YEARS: "every 2 years",
}


def to_usd_cents(amount: int, currency: str) -> int:
    """Minor units of `currency` → USD cents (sale and ping `price` are always USD cents, §8)."""
    info = CURRENCIES[currency]
    major = amount if info.single_unit else amount / 100
    return round(major * info.usd_rate * 100)


def major_units(amount: int, currency: str) -> str:
    """`amount_refundable_in_currency`: major units as a string, "8" or "8.5"."""
    if CURRENCIES[currency].single_unit:
        return str(amount)
    whole, cents = divmod(amount, 100)
    return str(whole) if cents == 0 else f"{amount / 100:.2f}".rstrip("0")


def format_money(amount: int, currency: str, recurrence: Recurrence | None = None) -> str:
    """Display price such as "$10", "€9.50" or "$10 a month"."""
    info = CURRENCIES[currency]
    if info.single_unit:
        text = f"{info.symbol}{amount:,}"
    else:
        whole, cents = divmod(amount, 100)
        text = f"{info.symbol}{whole:,}" if cents == 0 else f"{info.symbol}{amount / 100:,.2f}"
    return f"{text} {_RECURRENCE_TEXT[recurrence]}" if recurrence is not None else text


def gumroad_fee(usd_cents: int) -> int:
    """10% plus 50¢ on a paid sale, nothing on a free one."""
    return 0 if usd_cents == 0 else round(usd_cents * 0.10) + 50


@dataclass
class Purchase:
    """What a buyer chose; `record_sale` turns it into a Sale row."""

    product: Product
    buyer: Buyer
    created_at: datetime
    state: SaleState = SaleState.SUCCESSFUL
    variants: list[Variant] = field(default_factory=list)
    offer_code: OfferCode | None = None
    quantity: int = 1
    custom_fields: dict[str, str] = field(default_factory=dict)
    subscription: Subscription | None = None
    recurring_charge: bool = False
    referrer: str = "direct"
    can_contact: bool = True
    affiliate_email: str | None = None
    price_override_cents: int | None = None  # e.g. a membership tier price or pay-what-you-want


def _unit_price(state: SandboxState, purchase: Purchase) -> int:
    if purchase.price_override_cents is not None:
        return purchase.price_override_cents
    price = purchase.product.price_cents
    for variant in purchase.variants:
        price += variant.price_difference_cents
    return price


def _discounted(price: int, code: OfferCode | None) -> int:
    if code is None:
        return price
    if code.percent_off is not None:
        return max(price - round(price * code.percent_off / 100), 0)
    return max(price - (code.amount_cents or 0), 0)


def record_sale(state: SandboxState, purchase: Purchase) -> Sale:
    """Add one sale (and its license, for a licensed product) to the state; the caller holds the lock."""
    product = purchase.product
    displayed = _discounted(_unit_price(state, purchase), purchase.offer_code) * purchase.quantity
    shipping = product.shipping_cents if product.is_physical else 0
    displayed += shipping
    if purchase.state is SaleState.NOT_CHARGED:
        displayed = 0  # a free-trial sign-up charges nothing yet
    usd = to_usd_cents(displayed, product.currency)
    categories = {c.id: c for c in state.product_variant_categories(product)}
    sale = Sale(
        pk=state.next_pk(),
        id=state.ids.external_id(),
        order_id=state.ids.numeric_id(),
        product_id=product.id,
        buyer=purchase.buyer,
        created_at=purchase.created_at,
        state=purchase.state,
        price_cents=usd,
        displayed_price_cents=displayed,
        fee_cents=gumroad_fee(usd),
        currency=product.currency,
        quantity=purchase.quantity,
        referrer=purchase.referrer,
        can_contact=purchase.can_contact,
        variants={
            (categories[v.category_id].title or ""): v.name
            for v in purchase.variants
            if v.category_id in categories
        },
        variant_ids=[v.id for v in purchase.variants],
        custom_fields=dict(purchase.custom_fields),
        offer_code_id=purchase.offer_code.id if purchase.offer_code else None,
        subscription_id=purchase.subscription.id if purchase.subscription else None,
        is_recurring_charge=purchase.recurring_charge,
        affiliate_email=purchase.affiliate_email,
        affiliate_credit_cents=round(usd * 0.1) if purchase.affiliate_email else None,
    )
    if purchase.offer_code is not None and purchase.state is not SaleState.FAILED:
        purchase.offer_code.times_used += 1
    if product.is_licensed and purchase.state is not SaleState.FAILED:
        existing = _subscription_license(state, purchase.subscription)
        if existing is not None:
            sale.license_id = existing.id  # renewals carry the membership's original license
        else:
            license_ = License(state.ids.external_id(), state.ids.license_key(), product.id, sale.id)
            state.licenses[license_.id] = license_
            sale.license_id = license_.id
            if purchase.subscription is not None:
                purchase.subscription.license_key = license_.serial
    state.add_sale(sale)
    if purchase.subscription is not None and purchase.state is not SaleState.FAILED:
        purchase.subscription.purchase_ids.append(sale.id)
    return sale


def apply_refund(sale: Sale, amount: int | None) -> str | None:
    """Refund `amount` (minor units of the sale's currency; None: all that is left); a message on failure."""
    if sale.fully_refunded:
        return "Purchase is already refunded."
    amount = sale.refundable_cents if amount is None else amount
    if amount <= 0 or sale.refundable_cents <= 0:
        return "The sale was unable to be modified."
    if amount > sale.refundable_cents:
        return "Refund amount cannot be greater than the purchase price."
    sale.refunded_cents += amount
    sale.ever_refunded = True
    return None


def _subscription_license(state: SandboxState, subscription: Subscription | None) -> License | None:
    if subscription is None or subscription.license_key is None:
        return None
    return next((lic for lic in state.licenses.values() if lic.serial == subscription.license_key), None)
