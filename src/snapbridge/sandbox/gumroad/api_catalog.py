"""The 24 catalogue endpoints: products, variant categories, variants, offer codes and custom fields.

Handlers mirror Gumroad's controllers (links, variant_categories, variants, offer_codes, custom_fields):
not found and validation failures answer 200 with success false; the path segment of a custom field is
its name.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response

from snapbridge.sandbox.gumroad.ids import InvalidPageKey
from snapbridge.sandbox.gumroad.models import CustomField, OfferCode, Product, Variant, VariantCategory
from snapbridge.sandbox.gumroad.pagination import apply_cursor, paginate
from snapbridge.sandbox.gumroad.protocol import ANY_SCOPE, ApiContext, error_400, fail, ok, ruby_to_i
from snapbridge.sandbox.gumroad.render import (
    custom_field_json,
    offer_code_json,
    product_json,
    variant_category_json,
    variant_json,
)

__all__ = ["CATALOG_ROUTES", "RouteSpec"]

EDIT = frozenset({"edit_products"})
RouteSpec = tuple[str, str, frozenset[str] | None, Callable[[ApiContext], Response]]
_OFFER_PARAMS_MISSING = (
    "You are missing required offer code parameters. Please refer to "
    "https://gumroad.com/api#offer-codes for the correct parameters."
)


def _deleted(kind: str) -> Response:
    return ok({"message": f"The {kind} was deleted successfully."})


def _not_found(kind: str) -> Response:
    return fail(f"The {kind} was not found.")


def _product(ctx: ApiContext, name: str = "link_id") -> Product | None:
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
    product = _product(ctx, "id")
    return ok({"product": product_json(ctx.state, product, ctx.scopes)}) if product else _not_found("product")


def delete_product(ctx: ApiContext) -> Response:
    product = _product(ctx, "id")
    if product is None:
        return _not_found("product")
    product.deleted = True
    return _deleted("product")


def _publish(ctx: ApiContext, published: bool) -> Response:
    product = _product(ctx, "id")
    if product is None:
        return _not_found("product")
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
    product = _product(ctx)
    if product is None:
        return _not_found("product")
    category = VariantCategory(ctx.state.ids.external_id(), product.id, ctx.params.text("title"))
    ctx.state.variant_categories[category.id] = category
    product.variant_category_ids.append(category.id)
    return ok({"variant_category": variant_category_json(category)})


def get_category(ctx: ApiContext) -> Response:
    product = _product(ctx)
    if product is None:
        return _not_found("product")
    category = _category(ctx, product, "id")
    return ok({"variant_category": variant_category_json(category)}) if category else _not_found(
        "variant_category"
    )


def update_category(ctx: ApiContext) -> Response:
    product = _product(ctx)
    category = _category(ctx, product, "id") if product else None
    if product is None or category is None:
        return _not_found("product" if product is None else "variant_category")
    if ctx.params.has("title"):
        category.title = ctx.params.text("title")
    return ok({"variant_category": variant_category_json(category)})


def delete_category(ctx: ApiContext) -> Response:
    product = _product(ctx)
    category = _category(ctx, product, "id") if product else None
    if product is None or category is None:
        return _not_found("product" if product is None else "variant_category")
    category.deleted = True
    return _deleted("variant_category")


def list_categories(ctx: ApiContext) -> Response:
    product = _product(ctx)
    if product is None:
        return _not_found("product")
    rows = ctx.state.product_variant_categories(product)
    return ok({"variant_categories": [variant_category_json(c) for c in rows]})


# ---- variants -----------------------------------------------------------------------------------------


def _variant_scope(ctx: ApiContext) -> tuple[VariantCategory | None, Response | None]:
    product = _product(ctx)
    if product is None:
        return None, _not_found("product")
    category = _category(ctx, product, "variant_category_id")
    if category is None:
        return None, _not_found("variant_category")
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
        return error or _not_found("variant_category")
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
        return error or _not_found("variant_category")
    variant = _variant(ctx, category)
    return ok({"variant": variant_json(variant)}) if variant else _not_found("variant")


def update_variant(ctx: ApiContext) -> Response:
    category, error = _variant_scope(ctx)
    if category is None:
        return error or _not_found("variant_category")
    variant = _variant(ctx, category)
    if variant is None:
        return _not_found("variant")
    before = variant.name
    _apply_variant_params(ctx, variant)
    if not variant.name.strip():
        variant.name = before
        return fail("Name can't be blank")
    return ok({"variant": variant_json(variant)})


def delete_variant(ctx: ApiContext) -> Response:
    category, error = _variant_scope(ctx)
    if category is None:
        return error or _not_found("variant_category")
    variant = _variant(ctx, category)
    if variant is None:
        return _not_found("variant")
    variant.deleted = True
    return _deleted("variant")


def list_variants(ctx: ApiContext) -> Response:
    category, error = _variant_scope(ctx)
    if category is None:
        return error or _not_found("variant_category")
    return ok({"variants": [variant_json(v) for v in ctx.state.category_variants(category)]})


# ---- offer codes --------------------------------------------------------------------------------------


def list_offer_codes(ctx: ApiContext) -> Response:
    product = _product(ctx)
    if product is None:
        return _not_found("product")
    return ok({"offer_codes": [offer_code_json(c) for c in ctx.state.product_offer_codes(product)]})


def _offer_code(ctx: ApiContext, product: Product) -> OfferCode | None:
    ref = ctx.params.text("id")
    return next((c for c in ctx.state.product_offer_codes(product) if c.id == ref), None)


def get_offer_code(ctx: ApiContext) -> Response:
    product = _product(ctx)
    if product is None:
        return _not_found("product")
    code = _offer_code(ctx, product)
    return ok({"offer_code": offer_code_json(code)}) if code else _not_found("offer_code")


def create_offer_code(ctx: ApiContext) -> Response:
    params = ctx.params
    # The parameter check runs before the product is looked up, as in the controller.
    if not (params.present("amount_off") or params.present("amount_cents")):
        return fail(_OFFER_PARAMS_MISSING)
    product = _product(ctx)
    if product is None:
        return _not_found("product")
    universal = params.raw("universal") == "true"  # a JSON `true` is not "true" (gumroad-api.md §1)
    name = (params.text("name") or "").strip()
    max_count = params.present("max_purchase_count")
    code = OfferCode(
        id=ctx.state.ids.external_id(),
        code=name,
        universal=universal,
        product_ids=[] if universal else [product.id],
        max_purchase_count=ruby_to_i(max_count) if max_count is not None else None,
        currency=product.currency,
    )
    if params.raw("offer_type") == "percent":
        code.percent_off = ruby_to_i(params.text("amount_off"))
    else:
        code.amount_cents = ruby_to_i(params.present("amount_cents") or params.present("amount_off"))
    problem = _offer_code_problem(ctx, code)
    if problem:
        return fail(problem)
    ctx.state.offer_codes[code.id] = code
    return ok({"offer_code": offer_code_json(code)})


def _offer_code_problem(ctx: ApiContext, code: OfferCode) -> str | None:
    if not code.code:
        return "Discount code can't be blank"
    taken = any(c.code.lower() == code.code.lower() for c in ctx.state.offer_codes.values() if not c.deleted)
    if taken:
        return "Discount code must be unique."
    if code.percent_off is not None and not 0 < code.percent_off <= 100:
        return "Please enter a discount amount that is 100% or less."
    if code.amount_cents is not None and code.amount_cents <= 0:
        return "Please enter a discount amount greater than zero."
    return None


def update_offer_code(ctx: ApiContext) -> Response:
    product = _product(ctx)
    if product is None:
        return _not_found("product")
    code = _offer_code(ctx, product)
    if code is None:
        return _not_found("offer_code")
    if ctx.params.has("max_purchase_count"):  # the only attribute the controller permits
        count = ctx.params.present("max_purchase_count")
        code.max_purchase_count = ruby_to_i(count) if count is not None else None
    return ok({"offer_code": offer_code_json(code)})


def delete_offer_code(ctx: ApiContext) -> Response:
    product = _product(ctx)
    if product is None:
        return _not_found("product")
    code = _offer_code(ctx, product)
    if code is None:
        return _not_found("offer_code")
    code.deleted = True
    return _deleted("offer_code")


# ---- custom fields ------------------------------------------------------------------------------------

_FIELD_TYPES = frozenset({"text", "checkbox", "terms", "long_text", "file"})


def list_custom_fields(ctx: ApiContext) -> Response:
    product = _product(ctx)
    if product is None:
        return _not_found("product")
    return ok({"custom_fields": [custom_field_json(f) for f in ctx.state.product_custom_fields(product)]})


def create_custom_field(ctx: ApiContext) -> Response:
    product = _product(ctx)
    if product is None:
        return _not_found("product")
    params = ctx.params
    name = params.present("name") or params.present("url") or params.present("label")
    kind = params.text("type") or "text"
    if name is None or kind not in _FIELD_TYPES:
        return fail("The custom_field was unable to be created.")
    required = params.raw("required") == "true"
    field = CustomField(ctx.state.ids.external_id(), name, kind, required, [product.id])
    ctx.state.custom_fields[field.id] = field
    product.custom_field_ids.append(field.id)
    return ok({"custom_field": custom_field_json(field)})


def _custom_field(ctx: ApiContext, product: Product) -> CustomField | None:
    name = ctx.params.text("name")
    matches = [f for f in ctx.state.product_custom_fields(product) if f.name == name]
    return matches[-1] if matches else None  # `where(name:).last`


def update_custom_field(ctx: ApiContext) -> Response:
    product = _product(ctx)
    if product is None:
        return _not_found("product")
    field = _custom_field(ctx, product)
    if field is None:
        return _not_found("custom_field")
    if ctx.params.raw("required") is not None:
        field.required = ctx.params.raw("required") == "true"
    return ok({"custom_field": custom_field_json(field)})


def delete_custom_field(ctx: ApiContext) -> Response:
    product = _product(ctx)
    if product is None:
        return _not_found("product")
    field = _custom_field(ctx, product)
    if field is None:
        return _not_found("custom_field")
    if len(field.product_ids) > 1:  # shared by several products: only detach it from this one
        field.product_ids.remove(product.id)
    else:
        field.deleted = True
    product.custom_field_ids.remove(field.id)
    return _deleted("custom_field")


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
    ("GET", _P + "/offer_codes", ANY_SCOPE, list_offer_codes),
    ("GET", _P + "/offer_codes/{id}", ANY_SCOPE, get_offer_code),
    ("POST", _P + "/offer_codes", EDIT, create_offer_code),
    ("PUT", _P + "/offer_codes/{id}", EDIT, update_offer_code),
    ("DELETE", _P + "/offer_codes/{id}", EDIT, delete_offer_code),
    ("GET", _P + "/custom_fields", ANY_SCOPE, list_custom_fields),
    ("POST", _P + "/custom_fields", EDIT, create_custom_field),
    ("PUT", _P + "/custom_fields/{name:path}", EDIT, update_custom_field),
    ("DELETE", _P + "/custom_fields/{name:path}", EDIT, delete_custom_field),
]
