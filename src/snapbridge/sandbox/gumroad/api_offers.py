"""The 9 endpoints of offer codes and custom fields; a custom field's path segment is its (encoded) name."""

from __future__ import annotations

from starlette.responses import Response

from snapbridge.sandbox.gumroad.api_catalog import EDIT, RouteSpec, deleted, find_product, not_found
from snapbridge.sandbox.gumroad.models import CustomField, OfferCode, Product
from snapbridge.sandbox.gumroad.protocol import ANY_SCOPE, ApiContext, fail, ok, ruby_to_i
from snapbridge.sandbox.gumroad.render import custom_field_json, offer_code_json

__all__ = ["OFFER_ROUTES"]

_OFFER_PARAMS_MISSING = (
    "You are missing required offer code parameters. Please refer to "
    "https://gumroad.com/api#offer-codes for the correct parameters."
)
_P = "/v2/products/{link_id}"


# ---- offer codes --------------------------------------------------------------------------------------


def list_offer_codes(ctx: ApiContext) -> Response:
    product = find_product(ctx)
    if product is None:
        return not_found("product")
    return ok({"offer_codes": [offer_code_json(c) for c in ctx.state.product_offer_codes(product)]})


def _offer_code(ctx: ApiContext, product: Product) -> OfferCode | None:
    ref = ctx.params.text("id")
    return next((c for c in ctx.state.product_offer_codes(product) if c.id == ref), None)


def get_offer_code(ctx: ApiContext) -> Response:
    product = find_product(ctx)
    if product is None:
        return not_found("product")
    code = _offer_code(ctx, product)
    return ok({"offer_code": offer_code_json(code)}) if code else not_found("offer_code")


def create_offer_code(ctx: ApiContext) -> Response:
    params = ctx.params
    # The parameter check runs before the product is looked up, as in the controller.
    if not (params.present("amount_off") or params.present("amount_cents")):
        return fail(_OFFER_PARAMS_MISSING)
    product = find_product(ctx)
    if product is None:
        return not_found("product")
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
    product = find_product(ctx)
    if product is None:
        return not_found("product")
    code = _offer_code(ctx, product)
    if code is None:
        return not_found("offer_code")
    if ctx.params.has("max_purchase_count"):  # the only attribute the controller permits
        count = ctx.params.present("max_purchase_count")
        code.max_purchase_count = ruby_to_i(count) if count is not None else None
    return ok({"offer_code": offer_code_json(code)})


def delete_offer_code(ctx: ApiContext) -> Response:
    product = find_product(ctx)
    if product is None:
        return not_found("product")
    code = _offer_code(ctx, product)
    if code is None:
        return not_found("offer_code")
    code.deleted = True
    return deleted("offer_code")


# ---- custom fields ------------------------------------------------------------------------------------

_FIELD_TYPES = frozenset({"text", "checkbox", "terms", "long_text", "file"})


def list_custom_fields(ctx: ApiContext) -> Response:
    product = find_product(ctx)
    if product is None:
        return not_found("product")
    return ok({"custom_fields": [custom_field_json(f) for f in ctx.state.product_custom_fields(product)]})


def create_custom_field(ctx: ApiContext) -> Response:
    product = find_product(ctx)
    if product is None:
        return not_found("product")
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
    product = find_product(ctx)
    if product is None:
        return not_found("product")
    field = _custom_field(ctx, product)
    if field is None:
        return not_found("custom_field")
    if ctx.params.raw("required") is not None:
        field.required = ctx.params.raw("required") == "true"
    return ok({"custom_field": custom_field_json(field)})


def delete_custom_field(ctx: ApiContext) -> Response:
    product = find_product(ctx)
    if product is None:
        return not_found("product")
    field = _custom_field(ctx, product)
    if field is None:
        return not_found("custom_field")
    if len(field.product_ids) > 1:  # shared by several products: only detach it from this one
        field.product_ids.remove(product.id)
    else:
        field.deleted = True
    product.custom_field_ids.remove(field.id)
    return deleted("custom_field")


OFFER_ROUTES: list[RouteSpec] = [
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
