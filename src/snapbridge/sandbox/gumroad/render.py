"""JSON shapes of the API objects (gumroad-api.md §4): sale, product, subscriber, user and the small ones.

The caller holds the state lock. In the sale object keys whose value is null are dropped, as
`Purchase#as_json` does; the other objects keep their nulls.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from snapbridge.sandbox.gumroad.commerce import format_money, major_units
from snapbridge.sandbox.gumroad.models import (
    CURRENCIES,
    CustomField,
    OfferCode,
    Product,
    ResourceSubscription,
    Sale,
    Subscription,
    Variant,
    VariantCategory,
)
from snapbridge.sandbox.gumroad.payloads import iso, product_url
from snapbridge.sandbox.gumroad.state import SandboxState

__all__ = [
    "custom_field_json",
    "offer_code_json",
    "offer_code_summary",
    "product_json",
    "resource_subscription_json",
    "sale_json",
    "subscriber_json",
    "time_ago",
    "user_json",
    "variant_category_json",
    "variant_json",
    "variants_text",
]


def time_ago(then: datetime, now: datetime) -> str:
    """Rails' time_ago_in_words plus " ago" (the sale's human `timestamp`; never parse it)."""
    minutes = max(int((now - then).total_seconds() // 60), 0)
    if minutes < 1:
        return "less than a minute ago"
    if minutes < 45:
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    if minutes < 90:
        return "about 1 hour ago"
    if minutes < 1440:
        return f"about {round(minutes / 60)} hours ago"
    if minutes < 2520:
        return "1 day ago"
    if minutes < 43200:
        return f"{round(minutes / 1440)} days ago"
    if minutes < 86400:
        return f"about {round(minutes / 43200)} month{'s' if minutes >= 64800 else ''} ago"
    if minutes < 525600:
        return f"{round(minutes / 43200)} months ago"
    return f"about {minutes // 525600} year{'s' if minutes >= 1051200 else ''} ago"


def _daystamp(moment: datetime) -> str:
    return f"{moment.day} {moment:%b %Y} {moment:%l:%M %p}"


def _card(sale: Sale) -> dict[str, Any]:
    return {
        "visual": sale.buyer.card_visual,
        "type": sale.buyer.card_type,
        "bin": None,
        "expiry_month": None,
        "expiry_year": None,
    }


def sale_json(state: SandboxState, sale: Sale) -> dict[str, Any]:
    """`Purchase#as_json(version: 2)`."""
    product = state.products[sale.product_id]
    sub = state.subscriptions.get(sale.subscription_id) if sale.subscription_id else None
    buyer = sale.buyer
    now = state.now()
    recurrence = (sub.recurrence if sub else product.subscription_duration) if product.is_recurring else None
    gift_partner = state.sales.get(sale.gift_partner_id) if sale.gift_partner_id else None
    out: dict[str, Any] = {
        "id": sale.id,
        "email": buyer.email,
        "seller_id": state.seller.id,
        "timestamp": time_ago(sale.created_at, now),
        "daystamp": _daystamp(sale.created_at),
        "created_at": iso(sale.created_at),
        "product_name": product.name,
        "product_has_variants": bool(state.product_variant_categories(product)),
        "price": sale.price_cents,
        "gumroad_fee": sale.fee_cents,
        "subscription_duration": recurrence.value if recurrence else None,
        "formatted_display_price": format_money(sale.displayed_price_cents, sale.currency, recurrence),
        "formatted_total_price": format_money(sale.displayed_price_cents, sale.currency, recurrence),
        "currency_symbol": _symbol(sale.currency),
        "currency": sale.currency,
        "amount_refundable_in_currency": major_units(sale.refundable_cents, sale.currency),
        "product_id": product.id,
        "product_permalink": product.unique_permalink,
        # `refunded` is missing unless a refund happened: the column is null until then.
        "refunded": sale.fully_refunded if sale.ever_refunded else None,
        "partially_refunded": sale.partially_refunded,
        "chargedback": sale.chargedback and not sale.dispute_won,
        "purchase_email": buyer.email,
        "giftee_email": sale.giftee_email if sale.is_gift_sender else None,
        "gifter_email": gift_partner.buyer.email if sale.is_gift_receiver and gift_partner else None,
        "full_name": buyer.full_name or None,
        "street_address": buyer.street_address,
        "city": buyer.city,
        "state": buyer.state,
        "zip_code": buyer.zip_code,
        "country": buyer.country,
        "country_iso2": buyer.country_iso2,
        "paid": sale.price_cents != 0,
        "has_variants": bool(sale.variants),
        "variants": dict(sale.variants) if sale.variants else None,
        "variants_and_quantity": variants_text(sale),
        "has_custom_fields": bool(sale.custom_fields),
        "custom_fields": dict(sale.custom_fields),
        "order_id": sale.order_id,
        "is_product_physical": product.is_physical,
        "purchaser_id": buyer.purchaser_id,
        "is_recurring_billing": product.is_recurring,
        "can_contact": sale.can_contact,
        "is_following": False,
        "disputed": sale.chargedback,
        "dispute_won": sale.dispute_won,
        "is_additional_contribution": False,
        "discover_fee_charged": sale.discover_fee_charged,
        "is_upgrade_purchase": sale.is_upgrade_purchase,
        "is_more_like_this_recommended": False,
        "is_gift_sender_purchase": sale.is_gift_sender,
        "is_gift_receiver_purchase": sale.is_gift_receiver,
        "referrer": sale.referrer,
        "paypal_refund_expired": False,
        "card": _card(sale),
        "product_rating": None,
        "reviews_count": 0,
        "average_rating": 0.0,
        "quantity": sale.quantity,
    }
    if sub is not None:
        over = state.subscription_over(sub, now)
        out.update(
            subscription_id=sub.id,
            cancelled=sub.cancelled_at is not None,
            dead=over,
            ended=sub.ended_at is not None,
            free_trial_ended=(sub.free_trial_ends_at <= now) if sub.free_trial_ends_at else None,
            free_trial_ends_on=f"{sub.free_trial_ends_at:%b} {sub.free_trial_ends_at.day}, "
            f"{sub.free_trial_ends_at:%Y}"
            if sub.free_trial_ends_at
            else None,
            recurring_charge=sale.is_recurring_charge,
        )
    if product.is_physical or sale.shipped:
        out.update(
            shipped=sale.shipped,
            tracking_url=sale.tracking_url,
            formatted_shipping_amount=format_money(product.shipping_cents, product.currency),
        )
    if sale.offer_code_id and sale.offer_code_id in state.offer_codes:
        out["offer_code"] = offer_code_summary(state.offer_codes[sale.offer_code_id])
    if sale.affiliate_email:
        amount = format_money(sale.affiliate_credit_cents or 0, "usd")
        out["affiliate"] = {"email": sale.affiliate_email, "amount": amount}
    license_ = state.sale_license(sale)
    if license_ is not None:
        out.update(
            license_key=license_.serial,
            license_id=license_.id,
            license_disabled=license_.disabled,
            is_multiseat_license=product.is_multiseat_license,
        )
    return {k: v for k, v in out.items() if v is not None}


def _symbol(currency: str) -> str:
    return CURRENCIES[currency].symbol


def variants_text(sale: Sale) -> str:
    names = ", ".join(sale.variants.values())
    text = f"({names})" if names else ""
    return f"{text} × {sale.quantity}".strip() if sale.quantity > 1 else text


def offer_code_summary(code: OfferCode) -> dict[str, Any]:
    if code.percent_off is not None:
        amount = f"{code.percent_off}%"
    else:
        amount = format_money(code.amount_cents or 0, code.currency)
    return {"code": code.code, "name": code.code, "displayed_amount_off": amount}


def custom_field_json(field: CustomField) -> dict[str, Any]:
    return {
        "id": field.id,
        "type": field.type,
        "name": field.name,
        "required": field.required,
        "global": False,
        "collect_per_product": False,
        "products": list(field.product_ids),
    }


def variant_json(variant: Variant) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": variant.id,
        "name": variant.name,
        "description": variant.description,
        "price_difference_cents": variant.price_difference_cents,
        "max_purchase_count": variant.max_purchase_count,
    }
    if variant.recurrence_prices:
        out["is_customizable_price"] = False
        out["recurrence_price_values"] = {
            r: {"enabled": True, "price_cents": cents, "suggested_price_cents": None}
            for r, cents in variant.recurrence_prices.items()
        }
    return out


def variant_category_json(category: VariantCategory) -> dict[str, Any]:
    return {"id": category.id, "title": category.title}


def offer_code_json(code: OfferCode) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": code.id,
        "name": code.code,
        "max_purchase_count": code.max_purchase_count,
        "universal": code.universal,
        "times_used": code.times_used,
    }
    if code.percent_off is not None:
        out["percent_off"] = code.percent_off
    else:
        out["amount_cents"] = code.amount_cents
    return out


def product_json(state: SandboxState, product: Product, scopes: frozenset[str]) -> dict[str, Any]:
    """`Link#as_json_for_api`; the sales figures only for a token that can view sales."""
    categories = state.product_variant_categories(product)
    duration = product.subscription_duration
    recurrences = sorted(
        {r for c in categories for v in state.category_variants(c) for r in v.recurrence_prices}
    ) or ([product.subscription_duration.value] if product.subscription_duration else None)
    out: dict[str, Any] = {
        "custom_permalink": product.custom_permalink,
        "custom_receipt": None,
        "custom_summary": product.custom_summary,
        "custom_fields": [custom_field_json(f) for f in state.product_custom_fields(product)],
        "customizable_price": product.customizable_price,
        "description": product.description,
        "deleted": product.deleted,
        "max_purchase_count": product.max_purchase_count,
        "name": product.name,
        "preview_url": None,
        "require_shipping": product.is_physical,
        "subscription_duration": duration.value if duration else None,
        "published": product.published,
        "url": None,  # deprecated, always null
        "id": product.id,
        "price": product.price_cents,
        "currency": product.currency,
        "short_url": product_url(state, product),
        "thumbnail_url": None,
        "tags": list(product.tags),
        "formatted_price": format_money(product.price_cents, product.currency, product.subscription_duration),
        "file_info": {},
        "is_tiered_membership": product.is_tiered_membership,
        "recurrences": recurrences if product.is_recurring else None,
        "variants": [
            {
                "title": c.title,
                "options": [
                    {
                        "name": v.name,
                        "price_difference": v.price_difference_cents,
                        "is_pay_what_you_want": False,
                        "recurrence_prices": {
                            r: {"price_cents": cents, "suggested_price_cents": None}
                            for r, cents in v.recurrence_prices.items()
                        }
                        or None,
                        "url": None,
                    }
                    for v in state.category_variants(c)
                ],
            }
            for c in categories
        ],
    }
    if scopes & {"view_sales", "account"}:
        sold = [s for s in state.listed_sales() if s.product_id == product.id]
        out["custom_delivery_url"] = None
        out["sales_count"] = len(sold)
        out["sales_usd_cents"] = sum(s.price_cents for s in sold)
    return out


def subscriber_json(state: SandboxState, sub: Subscription) -> dict[str, Any]:
    product = state.products[sub.product_id]
    out: dict[str, Any] = {
        "id": sub.id,
        "email": sub.email,
        "product_id": product.id,
        "product_name": product.name,
        "user_id": sub.user_id,
        "user_email": sub.email if sub.user_id else None,
        "purchase_ids": list(sub.purchase_ids),
        "created_at": iso(sub.created_at),
        "user_requested_cancellation_at": iso(sub.user_requested_cancellation_at),
        "charge_occurrence_count": sub.charge_occurrence_count,
        "recurrence": sub.recurrence.value,
        "cancelled_at": iso(sub.cancelled_at),
        "ended_at": iso(sub.ended_at),
        "failed_at": iso(sub.failed_at),
        "free_trial_ends_at": iso(sub.free_trial_ends_at),
        "status": state.subscription_status(sub, state.now()),
    }
    if sub.license_key:
        out["license_key"] = sub.license_key
    return out


_USER_REAL_SCOPES = frozenset(
    {"edit_products", "view_sales", "revenue_share", "ifttt", "view_profile", "account"}
)


def user_json(state: SandboxState, scopes: frozenset[str]) -> dict[str, Any]:
    """`User::AsJson`: fuller with a "real" scope, `display_name` with view_profile."""
    seller = state.seller
    links = [p.unique_permalink for p in state.listed_products()] or None
    if not scopes & _USER_REAL_SCOPES:
        return {
            "name": seller.name,
            "bio": seller.bio,
            **({"twitter_handle": seller.twitter_handle} if seller.twitter_handle else {}),
            "id": seller.user_id,
            "user_id": seller.id,
            "url": seller.url,
            "links": links,
        }
    out: dict[str, Any] = {
        "name": seller.name,
        "bio": seller.bio,
        "twitter_handle": seller.twitter_handle,
        "currency_type": seller.currency_type,
        "id": seller.user_id,
        "user_id": seller.id,
        "url": seller.url,
        "links": links,
        "profile_url": f"https://public-files.gumroad.com/{seller.username}-avatar.png",
        "email": seller.email,
    }
    if scopes & {"view_profile", "account"}:
        out["display_name"] = seller.name
    return out


def resource_subscription_json(sub: ResourceSubscription) -> dict[str, Any]:
    return {"id": sub.id, "resource_name": sub.resource_name, "post_url": sub.post_url}
