"""The bodies Gumroad posts: the sale-family ping (§5.2) and the subscription payloads (§6).

Key order follows Gumroad's `Purchase::PingNotification` and `Subscription::PingNotification`, so the
form-encoded bytes match the real ones. The caller holds the state lock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from snapbridge.sandbox.gumroad.commerce import to_usd_cents
from snapbridge.sandbox.gumroad.formencode import FormValue
from snapbridge.sandbox.gumroad.models import Product, Sale, SaleState, Subscription
from snapbridge.sandbox.gumroad.state import SandboxState

__all__ = ["iso", "product_url", "sale_ping_payload", "subscription_payload"]


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 UTC at whole seconds with a `Z`, as Gumroad's JSON time precision 0 produces."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def product_url(state: SandboxState, product: Product) -> str:
    """The product's long URL; the ping's `product_permalink` is this, not the short code."""
    return f"{state.seller.url}/l/{product.custom_permalink or product.unique_permalink}"


def _shipping_information(sale: Sale) -> dict[str, FormValue]:
    buyer = sale.buyer
    return {
        "full_name": buyer.full_name or "",
        "street_address": buyer.street_address or "",
        "country": buyer.country or "",
        "state": buyer.state or "",
        "zip_code": buyer.zip_code or "",
        "city": buyer.city or "",
    }


def sale_ping_payload(
    state: SandboxState,
    sale: Sale,
    *,
    resource_name: str | None,
    url_params: dict[str, str] | None = None,
) -> dict[str, FormValue]:
    """`Purchase#payload_for_ping_notification`: every §5.2 field, flags only when true."""
    product = state.products[sale.product_id]
    sub = state.subscriptions.get(sale.subscription_id) if sale.subscription_id else None
    buyer = sale.buyer
    payload: dict[str, FormValue] = {
        "seller_id": state.seller.id,
        "product_id": product.id,
        "product_name": product.name,
        "permalink": product.custom_permalink or product.unique_permalink,
        "product_permalink": product_url(state, product),
        "short_product_id": product.unique_permalink,
        "email": buyer.email,
        "price": sale.price_cents,
        "gumroad_fee": sale.fee_cents,
        "currency": product.currency,
        "quantity": sale.quantity,
        "discover_fee_charged": sale.discover_fee_charged,
        "can_contact": sale.can_contact,
        "referrer": sale.referrer,
        "card": {
            "visual": buyer.card_visual,
            "type": buyer.card_type,
            "bin": None,
            "expiry_month": None,
            "expiry_year": None,
        },
    }
    payload["order_number"] = sale.order_id
    payload["sale_id"] = sale.id
    payload["sale_timestamp"] = iso(sale.created_at)
    if buyer.full_name:
        payload["full_name"] = buyer.full_name
    if buyer.purchaser_id:
        payload["purchaser_id"] = buyer.purchaser_id
    if sub is not None:
        payload["subscription_id"] = sub.id
    if sale.affiliate_credit_cents is not None:
        payload["affiliate_credit_amount_cents"] = sale.affiliate_credit_cents
    if url_params:
        payload["url_params"] = dict(url_params)
    if sale.variants:
        payload["variants"] = dict(sale.variants)
    if sale.offer_code_id and sale.offer_code_id in state.offer_codes:
        payload["offer_code"] = state.offer_codes[sale.offer_code_id].code
    if sale.is_test:
        payload["test"] = True
    if sale.is_recurring_charge:
        payload["is_recurring_charge"] = True
    if sale.state is SaleState.PREORDER_AUTHORIZATION:
        payload["is_preorder_authorization"] = True
    if product.is_physical:
        shipping = _shipping_information(sale)
        payload.update(shipping)  # duplicated top-level; an existing key keeps its place, as Hash#merge!
        payload["shipping_information"] = shipping
    for name, value in sale.custom_fields.items():
        payload[name] = value  # every custom field also top-level; a clash overwrites in place
    custom_fields = sale.custom_fields or (sub.custom_fields if sub is not None else {})
    if custom_fields:
        payload["custom_fields"] = dict(custom_fields)
    license_ = state.sale_license(sale)
    if license_ is not None:
        payload["license_key"] = license_.serial
        if sub is not None:
            payload["is_multiseat_license"] = product.is_multiseat_license
    if buyer.country:
        payload["ip_country"] = buyer.country
    if product.is_physical:
        payload["shipping_rate"] = _shipping_usd_cents(product)
    if sub is not None:
        payload["recurrence"] = sub.recurrence.value
    if sale.affiliate_email:
        payload["affiliate"] = sale.affiliate_email
    payload["is_gift_receiver_purchase"] = sale.is_gift_receiver
    if sale.is_gift_receiver and sale.gift_partner_id in state.sales:
        gifter = state.sales[sale.gift_partner_id or ""]
        payload["gift_price"] = gifter.price_cents
        payload["gifter_email"] = gifter.buyer.email
    if product.is_physical:
        payload["sku_id"] = f"pid_{product.id}"
    payload["refunded"] = sale.fully_refunded
    if resource_name:
        payload["resource_name"] = resource_name
    payload["disputed"] = sale.chargedback
    payload["dispute_won"] = sale.dispute_won
    return payload


def _shipping_usd_cents(product: Product) -> int:
    return to_usd_cents(product.shipping_cents, product.currency)


def subscription_payload(
    state: SandboxState,
    sub: Subscription,
    *,
    resource_name: str,
    additional: dict[str, Any] | None = None,
) -> dict[str, FormValue]:
    """`Subscription#payload_for_ping_notification` for cancellation, subscription_updated/ended/restarted."""
    product = state.products[sub.product_id]
    payload: dict[str, FormValue] = {
        "subscription_id": sub.id,
        "product_id": product.id,
        "product_name": product.name,
        "user_id": sub.user_id,
        "user_email": sub.email,
        "purchase_ids": list(sub.purchase_ids),
        "created_at": iso(sub.created_at),
        "charge_occurrence_count": sub.charge_occurrence_count,
        "recurrence": sub.recurrence.value,
        "free_trial_ends_at": iso(sub.free_trial_ends_at),
        "resource_name": resource_name,
    }
    payload.update(additional or {})
    if sub.custom_fields:
        payload["custom_fields"] = dict(sub.custom_fields)
    if sub.license_key:
        payload["license_key"] = sub.license_key
    if resource_name == "cancellation":
        payload["cancelled"] = True
        if sub.cancelled_at is not None:
            payload["cancelled_at"] = iso(sub.cancelled_at)
            by = sub.cancelled_by.value if sub.cancelled_by else "seller"
            payload[f"cancelled_by_{by}"] = True
        elif sub.failed_at is not None:
            payload["cancelled_at"] = iso(sub.failed_at)
            payload["cancelled_due_to_payment_failures"] = True
    if resource_name == "subscription_ended":
        payload["ended_at"] = iso(sub.deactivated_at)
        payload["ended_reason"] = state.termination_reason(sub) if sub.deactivated_at else None
    return payload
