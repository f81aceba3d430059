"""The product half of the Gumroad client: products, variant categories, variants, offers, custom fields."""

from __future__ import annotations

from collections.abc import AsyncIterator

from snapbridge.connectors.gumroad.products import (
    CustomField,
    OfferCode,
    OfferType,
    Product,
    Variant,
    VariantCategory,
)
from snapbridge.connectors.gumroad.transport import Transport

__all__ = ["ProductsApi"]


class ProductsApi(Transport):
    """Endpoints 1-24 of the reference (§2.1), one method each."""

    # Products

    async def iter_products(self) -> AsyncIterator[Product]:
        """Every visible product, newest first, following `next_page_url` where Gumroad paginates."""
        async for product in self._iterate("list_products", "products", Product.from_json, {}):
            yield product

    async def list_products(self) -> tuple[Product, ...]:
        """All visible products; older Gumroad answers in one page, newer code pages by 10."""
        return tuple([product async for product in self.iter_products()])

    async def get_product(self, product_id: str) -> Product:
        return await self._one(
            "get_product", "product", Product.from_json, path_params={"product_id": product_id}
        )

    async def delete_product(self, product_id: str, *, idempotency_key: str) -> None:
        await self._delete(
            "delete_product", path_params={"product_id": product_id}, idempotency_key=idempotency_key
        )

    async def enable_product(self, product_id: str, *, idempotency_key: str) -> Product:
        return await self._one(
            "enable_product", "product", Product.from_json,
            path_params={"product_id": product_id}, idempotency_key=idempotency_key,
        )

    async def disable_product(self, product_id: str, *, idempotency_key: str) -> Product:
        return await self._one(
            "disable_product", "product", Product.from_json,
            path_params={"product_id": product_id}, idempotency_key=idempotency_key,
        )

    # Variant categories

    async def create_variant_category(
        self, product_id: str, *, title: str, idempotency_key: str
    ) -> VariantCategory:
        return await self._one(
            "create_variant_category", "variant_category", VariantCategory.from_json,
            path_params={"product_id": product_id}, data={"title": title}, idempotency_key=idempotency_key,
        )

    async def get_variant_category(self, product_id: str, variant_category_id: str) -> VariantCategory:
        return await self._one(
            "get_variant_category", "variant_category", VariantCategory.from_json,
            path_params={"product_id": product_id, "variant_category_id": variant_category_id},
        )

    async def update_variant_category(
        self, product_id: str, variant_category_id: str, *, title: str, idempotency_key: str
    ) -> VariantCategory:
        return await self._one(
            "update_variant_category", "variant_category", VariantCategory.from_json,
            path_params={"product_id": product_id, "variant_category_id": variant_category_id},
            data={"title": title}, idempotency_key=idempotency_key,
        )

    async def delete_variant_category(
        self, product_id: str, variant_category_id: str, *, idempotency_key: str
    ) -> None:
        await self._delete(
            "delete_variant_category",
            path_params={"product_id": product_id, "variant_category_id": variant_category_id},
            idempotency_key=idempotency_key,
        )

    async def list_variant_categories(self, product_id: str) -> tuple[VariantCategory, ...]:
        return await self._many(
            "list_variant_categories", "variant_categories", VariantCategory.from_json,
            path_params={"product_id": product_id},
        )

    # Variants

    async def create_variant(
        self,
        product_id: str,
        variant_category_id: str,
        *,
        name: str,
        price_difference_cents: int | None = None,
        max_purchase_count: int | None = None,
        description: str | None = None,
        idempotency_key: str,
    ) -> Variant:
        return await self._one(
            "create_variant", "variant", Variant.from_json,
            path_params={"product_id": product_id, "variant_category_id": variant_category_id},
            data={
                "name": name,
                "price_difference_cents": price_difference_cents,
                "max_purchase_count": max_purchase_count,
                "description": description,
            },
            idempotency_key=idempotency_key,
        )

    async def get_variant(self, product_id: str, variant_category_id: str, variant_id: str) -> Variant:
        return await self._one(
            "get_variant", "variant", Variant.from_json,
            path_params={
                "product_id": product_id, "variant_category_id": variant_category_id, "variant_id": variant_id
            },
        )

    async def update_variant(
        self,
        product_id: str,
        variant_category_id: str,
        variant_id: str,
        *,
        name: str | None = None,
        price_difference_cents: int | None = None,
        max_purchase_count: int | None = None,
        description: str | None = None,
        idempotency_key: str,
    ) -> Variant:
        """Only the given fields are sent; the others keep their values."""
        return await self._one(
            "update_variant", "variant", Variant.from_json,
            path_params={
                "product_id": product_id, "variant_category_id": variant_category_id, "variant_id": variant_id
            },
            data={
                "name": name,
                "price_difference_cents": price_difference_cents,
                "max_purchase_count": max_purchase_count,
                "description": description,
            },
            idempotency_key=idempotency_key,
        )

    async def delete_variant(
        self, product_id: str, variant_category_id: str, variant_id: str, *, idempotency_key: str
    ) -> None:
        await self._delete(
            "delete_variant",
            path_params={
                "product_id": product_id, "variant_category_id": variant_category_id, "variant_id": variant_id
            },
            idempotency_key=idempotency_key,
        )

    async def list_variants(self, product_id: str, variant_category_id: str) -> tuple[Variant, ...]:
        return await self._many(
            "list_variants", "variants", Variant.from_json,
            path_params={"product_id": product_id, "variant_category_id": variant_category_id},
        )

    # Offer codes

    async def list_offer_codes(self, product_id: str) -> tuple[OfferCode, ...]:
        """The product's codes, universal ones included."""
        return await self._many(
            "list_offer_codes", "offer_codes", OfferCode.from_json, path_params={"product_id": product_id}
        )

    async def get_offer_code(self, product_id: str, offer_code_id: str) -> OfferCode:
        return await self._one(
            "get_offer_code", "offer_code", OfferCode.from_json,
            path_params={"product_id": product_id, "offer_code_id": offer_code_id},
        )

    async def create_offer_code(
        self,
        product_id: str,
        *,
        name: str,
        amount_off: int,
        offer_type: OfferType = OfferType.CENTS,
        max_purchase_count: int | None = None,
        universal: bool = False,
        idempotency_key: str,
    ) -> OfferCode:
        """`amount_off` is cents of the product's currency, or a percentage when `offer_type` is PERCENT."""
        return await self._one(
            "create_offer_code", "offer_code", OfferCode.from_json,
            path_params={"product_id": product_id},
            data={
                "name": name,
                "amount_off": amount_off,
                "offer_type": offer_type.value,
                "max_purchase_count": max_purchase_count,
                "universal": universal,
            },
            idempotency_key=idempotency_key,
        )

    async def update_offer_code(
        self, product_id: str, offer_code_id: str, *, max_purchase_count: int | None, idempotency_key: str
    ) -> OfferCode:
        """Gumroad applies only `max_purchase_count` here (the docs' `offer_code` is ignored by its code)."""
        return await self._one(
            "update_offer_code", "offer_code", OfferCode.from_json,
            path_params={"product_id": product_id, "offer_code_id": offer_code_id},
            # An empty value clears the limit, as a null does in Rails.
            data={"max_purchase_count": "" if max_purchase_count is None else max_purchase_count},
            idempotency_key=idempotency_key,
        )

    async def delete_offer_code(self, product_id: str, offer_code_id: str, *, idempotency_key: str) -> None:
        await self._delete(
            "delete_offer_code",
            path_params={"product_id": product_id, "offer_code_id": offer_code_id},
            idempotency_key=idempotency_key,
        )

    # Custom fields

    async def list_custom_fields(self, product_id: str) -> tuple[CustomField, ...]:
        return await self._many(
            "list_custom_fields", "custom_fields", CustomField.from_json,
            path_params={"product_id": product_id},
        )

    async def create_custom_field(
        self, product_id: str, *, name: str, required: bool = False, type: str = "text", idempotency_key: str
    ) -> CustomField:
        return await self._one(
            "create_custom_field", "custom_field", CustomField.from_json,
            path_params={"product_id": product_id},
            data={"name": name, "required": required, "type": type},
            idempotency_key=idempotency_key,
        )

    async def update_custom_field(
        self, product_id: str, name: str, *, required: bool, idempotency_key: str
    ) -> CustomField:
        """The field is addressed by its name, which goes into the path URL-encoded."""
        return await self._one(
            "update_custom_field", "custom_field", CustomField.from_json,
            path_params={"product_id": product_id, "name": name},
            data={"required": required},
            idempotency_key=idempotency_key,
        )

    async def delete_custom_field(self, product_id: str, name: str, *, idempotency_key: str) -> None:
        """Detaches the field when other products share it."""
        await self._delete(
            "delete_custom_field", path_params={"product_id": product_id, "name": name},
            idempotency_key=idempotency_key,
        )
