"""Typed Gumroad products and their parts: variant categories, variants, offer codes and custom fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from snapbridge.connectors.gumroad.models import Money
from snapbridge.connectors.gumroad.values import Reader

__all__ = [
    "CustomField",
    "OfferCode",
    "OfferType",
    "Product",
    "ProductVariantCategory",
    "Variant",
    "VariantCategory",
    "VariantOption",
]


@dataclass(frozen=True)
class VariantCategory:
    id: str
    title: str

    @classmethod
    def from_json(cls, data: Mapping[str, object], where: str = "variant_category") -> VariantCategory:
        r = Reader(data, where)
        return cls(id=r.text("id"), title=r.raw_text("title"))


@dataclass(frozen=True)
class Variant:
    """One option of a variant category; `price_difference_cents` is in the product's currency."""

    id: str
    name: str
    description: str | None
    price_difference_cents: int
    max_purchase_count: int | None
    raw: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, object], where: str = "variant") -> Variant:
        r = Reader(data, where)
        return cls(
            id=r.text("id"),
            name=r.raw_text("name"),
            description=r.opt_text("description"),
            price_difference_cents=r.opt_integer("price_difference_cents") or 0,
            max_purchase_count=r.opt_integer("max_purchase_count"),
            raw=dict(data),
        )


class OfferType(StrEnum):
    CENTS = "cents"
    PERCENT = "percent"


@dataclass(frozen=True)
class OfferCode:
    """A discount code; exactly one of `amount_cents` (product currency) and `percent_off` is set."""

    id: str
    name: str  # the code buyers type
    universal: bool
    times_used: int
    max_purchase_count: int | None
    amount_cents: int | None
    percent_off: int | None

    @property
    def offer_type(self) -> OfferType:
        return OfferType.PERCENT if self.percent_off is not None else OfferType.CENTS

    @classmethod
    def from_json(cls, data: Mapping[str, object], where: str = "offer_code") -> OfferCode:
        r = Reader(data, where)
        return cls(
            id=r.text("id"),
            name=r.text("name"),
            universal=r.flag("universal"),
            times_used=r.opt_integer("times_used") or 0,
            max_purchase_count=r.opt_integer("max_purchase_count"),
            amount_cents=r.opt_integer("amount_cents"),
            percent_off=r.opt_integer("percent_off"),
        )


@dataclass(frozen=True)
class CustomField:
    """A checkout field; `required` arrives as a bool or as the string "false" (the docs example)."""

    name: str
    type: str
    required: bool
    id: str | None = None
    global_: bool = False
    collect_per_product: bool = False
    products: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, object], where: str = "custom_field") -> CustomField:
        r = Reader(data, where)
        return cls(
            name=r.raw_text("name"),
            type=r.opt_text("type") or "text",
            required=r.flag("required"),
            id=r.opt_text("id"),
            global_=r.flag("global"),
            collect_per_product=r.flag("collect_per_product"),
            products=r.text_list("products"),
        )


@dataclass(frozen=True)
class VariantOption:
    """An option as listed inside a product; the price difference is in the product's currency."""

    name: str
    price_difference: int
    is_pay_what_you_want: bool
    recurrence_prices: Mapping[str, Mapping[str, int | None]] | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> VariantOption:
        prices = r.sub("recurrence_prices")
        recurrence_prices: dict[str, Mapping[str, int | None]] | None = None
        if prices is not None:
            recurrence_prices = {}
            for recurrence in prices.data:
                entry = prices.sub(str(recurrence))
                if entry is not None:
                    recurrence_prices[str(recurrence)] = {
                        "price_cents": entry.opt_integer("price_cents"),
                        "suggested_price_cents": entry.opt_integer("suggested_price_cents"),
                    }
        return cls(
            name=r.raw_text("name"),
            price_difference=(
                r.opt_integer("price_difference") or r.opt_integer("price_difference_cents") or 0
            ),
            is_pay_what_you_want=r.flag("is_pay_what_you_want"),
            recurrence_prices=recurrence_prices,
        )


@dataclass(frozen=True)
class ProductVariantCategory:
    title: str
    options: tuple[VariantOption, ...]


@dataclass(frozen=True)
class Product:
    """One product (`GET /v2/products/:id`). `price` is in the product's own currency, unlike sale prices."""

    id: str
    name: str
    price: Money
    published: bool
    deleted: bool
    description: str | None = None
    custom_permalink: str | None = None
    custom_summary: str | None = None
    short_url: str | None = None
    thumbnail_url: str | None = None
    preview_url: str | None = None
    formatted_price: str | None = None
    customizable_price: bool | None = None
    require_shipping: bool = False
    max_purchase_count: int | None = None
    subscription_duration: str | None = None
    is_tiered_membership: bool = False
    recurrences: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()
    variants: tuple[ProductVariantCategory, ...] = ()
    custom_fields: tuple[CustomField, ...] = ()
    is_preorder: bool = False
    release_at: datetime | None = None
    sales_count: int | None = None  # only with view_sales; a number in the code, a string in the docs
    sales_usd_cents: Money | None = None
    raw: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, object], where: str = "product") -> Product:
        r = Reader(data, where)
        currency = (r.opt_text("currency") or "usd").lower()
        sales_usd = r.opt_integer("sales_usd_cents")
        return cls(
            id=r.text("id"),
            name=r.raw_text("name"),
            price=Money(r.opt_integer("price") or 0, currency),
            published=r.flag("published"),
            deleted=r.flag("deleted"),
            description=r.opt_text("description"),
            custom_permalink=r.opt_text("custom_permalink"),
            custom_summary=r.opt_text("custom_summary"),
            short_url=r.opt_text("short_url"),
            thumbnail_url=r.opt_text("thumbnail_url"),
            preview_url=r.opt_text("preview_url"),
            formatted_price=r.opt_text("formatted_price"),
            customizable_price=r.opt_flag("customizable_price"),
            require_shipping=r.flag("require_shipping"),
            max_purchase_count=r.opt_integer("max_purchase_count"),
            subscription_duration=r.opt_text("subscription_duration"),
            is_tiered_membership=r.flag("is_tiered_membership"),
            recurrences=r.opt_text_list("recurrences"),
            tags=r.text_list("tags"),
            variants=tuple(
                ProductVariantCategory(
                    title=category.raw_text("title"),
                    options=tuple(VariantOption.from_reader(o) for o in category.objects("options")),
                )
                for category in r.objects("variants")
            ),
            custom_fields=tuple(CustomField.from_json(f.data, f.where) for f in r.objects("custom_fields")),
            is_preorder=r.flag("is_preorder"),
            release_at=r.opt_time("release_at"),
            sales_count=r.opt_integer("sales_count"),
            sales_usd_cents=None if sales_usd is None else Money.usd(sales_usd),
            raw=dict(data),
        )
