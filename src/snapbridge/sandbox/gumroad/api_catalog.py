"""The 15 catalogue endpoints of products, variant categories and variants.

Handlers mirror Gumroad's controllers (links, variant_categories, variants): not found and validation
failures answer 200 with success false. Offer codes and custom fields are in api_offers.py.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response

from snapbridge.sandbox.gumroad.ids import InvalidPageKey
from snapbridge.sandbox.gumroad.models import Product, Variant, VariantCategory
from snapbridge.sandbox.gumroad.pagination import apply_cursor, paginate
from snapbridge.sandbox.gumroad.protocol import ANY_SCOPE, ApiContext, error_400, fail, ok, ruby_to_i
from snapbridge.sandbox.gumroad.render import product_json, variant_category_json, variant_json

__all__ = ["CATALOG_ROUTES", "EDIT", "RouteSpec", "deleted", "find_product", "not_found"]

EDIT = frozenset({"edit_products"})
RouteSpec = tuple[str, str, frozenset[str] | None, Callable[[ApiContext], Response]]


def deleted(kind: str) -> Response:
    return ok({"message": f"The {kind} was deleted successfully."})


def not_found(kind: str) -> Response:
    return fail(f"The {kind} was not found.")


def find_product(ctx: ApiContext, name: str = "link_id") -> Product | None:
    ref = ctx.params.text(name)
    return ctx.state.find_product(ref) if ref else None


# ---- products -----------------------------------------------------------------------------------------


def list_products(ctx: ApiContext) -> Response:
    products = ctx.state.listed_products()
    if not ctx.state.settings.paginate_products:
        return ok({"products": [product_json(ctx.state, p, ctx.scopes) for p in products]})
    page_key = ctx.params.present("page_key")
    if page_key:
        by_pk = {p.pk for p in products}
        try:
            products = apply_cursor(
                products, page_key, created_at=lambda p: p.created_at, pk=lambda p: p.pk,
                resolve=lambda n: n if n in by_pk else None,
            )
        except InvalidPageKey:
            return error_400("Invalid page_key.")
    page = paginate(products, 10, created_at=lambda p: p.created_at, numeric_id=lambda p: p.pk)
    body = {"products": [product_json(ctx.state, p, ctx.scopes) for p in page.rows]}
    return ok({**body, **page.links(ctx.request.url.path, ctx.request.url.query)})


def get_product(ctx: ApiContext) -> Response:
    product = find_product(ctx, "id")
    return ok({"product": product_json(ctx.state, product, ctx.scopes)}) if product else not_found("product")


def delete_product(ctx: ApiContext) -> Response:
    product = find_product(ctx, "id")
    if product is None:
        return not_found("product")
    product.deleted = True
    return deleted("product")


def _publish(ctx: ApiContext, published: bool) -> Response:
    product = find_product(ctx, "id")
    if product is None:
        return not_found("product")
    product.published = published
    return ok({"product": product_json(ctx.state, product, ctx.scopes)})


def enable_product(ctx: ApiContext) -> Response:
    return _publish(ctx, True)


def disable_product(ctx: ApiContext) -> Response:
    return _publish(ctx, False)


# ---- variant categories -------------------------------------------------------------------------------


def _category(ctx: ApiContext, product: Product, name: str) -> VariantCategory | None:
    ref = ctx.params.text(name)
    found = next((c for c in ctx.state.product_variant_categories(product) if c.id == ref), None)
    return found


def create_category(ctx: ApiContext) -> Response:
    product = find_product(ctx)
    if product is None:
        return not_found("product")
    category = VariantCategory(ctx.state.ids.external_id(), product.id, ctx.params.text("title"))
    ctx.state.variant_categories[category.id] = category
    product.variant_category_ids.append(category.id)
    return ok({"variant_category": variant_category_json(category)})


def get_category(ctx: ApiContext) -> Response:
    product = find_product(ctx)
    if product is None:
        return not_found("product")
    category = _category(ctx, product, "id")
    return ok({"variant_category": variant_category_json(category)}) if category else not_found(
        "variant_category"
    )


def update_category(ctx: ApiContext) -> Response:
    product = find_product(ctx)
    category = _category(ctx, product, "id") if product else None
    if product is None or category is None:
        return not_found("product" if product is None else "variant_category")
    if ctx.params.has("title"):
        category.title = ctx.params.text("title")
    return ok({"variant_category": variant_category_json(category)})


def delete_category(ctx: ApiContext) -> Response:
    product = find_product(ctx)
    category = _category(ctx, product, "id") if product else None
    if product is None or category is None:
        return not_found("product" if product is None else "variant_category")
    category.deleted = True
    return deleted("variant_category")


def list_categories(ctx: ApiContext) -> Response:
    product = find_product(ctx)
    if product is None:
        return not_found("product")
    rows = ctx.state.product_variant_categories(product)
    return ok({"variant_categories": [variant_category_json(c) for c in rows]})


# ---- variants -----------------------------------------------------------------------------------------


def _variant_scope(ctx: ApiContext) -> tuple[VariantCategory | None, Response | None]:
    product = find_product(ctx)
    if product is None:
        return None, not_found("product")
    category = _category(ctx, product, "variant_category_id")
    if category is None:
        return None, not_found("variant_category")
    return category, None


def _variant(ctx: ApiContext, category: VariantCategory) -> Variant | None:
    ref = ctx.params.text("id")
    return next((v for v in ctx.state.category_variants(category) if v.id == ref), None)


def _apply_variant_params(ctx: ApiContext, variant: Variant) -> None:
    params = ctx.params
    if params.has("name"):
        variant.name = params.text("name") or ""
    if params.has("description"):
        variant.description = params.text("description") or ""
    if params.has("price_difference_cents"):
        variant.price_difference_cents = ruby_to_i(params.text("price_difference_cents"))
    if params.has("max_purchase_count"):
        count = params.present("max_purchase_count")
        variant.max_purchase_count = ruby_to_i(count) if count is not None else None


def create_variant(ctx: ApiContext) -> Response:
    category, error = _variant_scope(ctx)
    if category is None:
        return error or not_found("variant_category")
    variant = Variant(ctx.state.ids.external_id(), category.id, "")
    _apply_variant_params(ctx, variant)
    if not variant.name.strip():
        return fail("Name can't be blank")
    ctx.state.variants[variant.id] = variant
    category.variant_ids.append(variant.id)
    return ok({"variant": variant_json(variant)})


def get_variant(ctx: ApiContext) -> Response:
    category, error = _variant_scope(ctx)
    if category is None:
        return error or not_found("variant_category")
    variant = _variant(ctx, category)
    return ok({"variant": variant_json(variant)}) if variant else not_found("variant")


def update_variant(ctx: ApiContext) -> Response:
    category, error = _variant_scope(ctx)
    if category is None:
        return error or not_found("variant_category")
    variant = _variant(ctx, category)
    if variant is None:
        return not_found("variant")
    before = variant.name
    _apply_variant_params(ctx, variant)
    if not variant.name.strip():
        variant.name = before
        return fail("Name can't be blank")
    return ok({"variant": variant_json(variant)})


def delete_variant(ctx: ApiContext) -> Response:
    category, error = _variant_scope(ctx)
    if category is None:
        return error or not_found("variant_category")
    variant = _variant(ctx, category)
    if variant is None:
        return not_found("variant")
    variant.deleted = True
    return deleted("variant")


def list_variants(ctx: ApiContext) -> Response:
    category, error = _variant_scope(ctx)
    if category is None:
        return error or not_found("variant_category")
    return ok({"variants": [variant_json(v) for v in ctx.state.category_variants(category)]})


_P = "/v2/products/{link_id}"
_VC = _P + "/variant_categories"
_V = _VC + "/{variant_category_id}/variants"
CATALOG_ROUTES: list[RouteSpec] = [
    ("GET", "/v2/products", ANY_SCOPE, list_products),
    ("GET", "/v2/products/{id}", ANY_SCOPE, get_product),
    ("DELETE", "/v2/products/{id}", EDIT, delete_product),
    ("PUT", "/v2/products/{id}/enable", EDIT, enable_product),
    ("PUT", "/v2/products/{id}/disable", EDIT, disable_product),
    ("POST", _VC, EDIT, create_category),
    ("GET", _VC + "/{id}", ANY_SCOPE, get_category),
    ("PUT", _VC + "/{id}", EDIT, update_category),
    ("DELETE", _VC + "/{id}", EDIT, delete_category),
    ("GET", _VC, ANY_SCOPE, list_categories),
    ("POST", _V, EDIT, create_variant),
    ("GET", _V + "/{id}", ANY_SCOPE, get_variant),
    ("PUT", _V + "/{id}", EDIT, update_variant),
    ("DELETE", _V + "/{id}", EDIT, delete_variant),
    ("GET", _V, ANY_SCOPE, list_variants),
]
