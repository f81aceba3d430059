"""The Gumroad actions: method, path and scopes from the connector's OPERATIONS table, the rest declared here.

Deriving the HTTP side from the hand-written client means the two cannot disagree; a test checks that every
connector operation has its details here and that no detail is left without an operation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from snapbridge.catalog.model import (
    BodyEncoding,
    Operation,
    Pagination,
    Param,
    ParamIn,
    ParamType,
    TokenKind,
)
from snapbridge.connectors.gumroad import ALL_OPERATIONS as OPERATIONS
from snapbridge.errors import InvalidInput

__all__ = ["API_PREFIX", "GUMROAD_DETAILS", "gumroad_operations"]

APP = "gumroad"
API_PREFIX = "/v2"  # connector paths are relative to /v2; the base URL is the host
RESOURCE_NAMES = (
    "sale", "refund", "dispute", "dispute_won", "cancellation", "subscription_updated", "subscription_ended",
    "subscription_restarted",
)
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

STR, INT, BOOL = ParamType.STRING, ParamType.INTEGER, ParamType.BOOLEAN


@dataclass(frozen=True)
class _Field:
    """A non-path parameter; it travels in the query of a GET and in the form body of a write."""

    name: str
    type: ParamType
    required: bool = False
    description: str = ""
    enum: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Detail:
    name: str
    summary: str
    response_key: str | None
    fields: tuple[_Field, ...] = ()
    pagination: Pagination = Pagination.NONE
    idempotent: bool | None = None  # None: every method but POST
    notes: str = ""


_PAGE_KEY = _Field("page_key", STR, description="cursor from the previous page's next_page_key")
_LICENSE = (_Field("product_id", STR, True), _Field("license_key", STR, True))
_VARIANT = (
    _Field("price_difference_cents", INT, description="minor units of the product currency"),
    _Field("max_purchase_count", INT),
    _Field("description", STR),
)
_DATES = (
    _Field("after", STR, description="YYYY-MM-DD, inclusive"),
    _Field("before", STR, description="YYYY-MM-DD, exclusive"),
)

# Keyed by the connector's method name (its OPERATIONS entries).
GUMROAD_DETAILS: Mapping[str, _Detail] = {
    "list_products": _Detail("gumroad.products.list", "List the seller's visible products", "products",
                             (_PAGE_KEY,), Pagination.PAGE_KEY),
    "get_product": _Detail("gumroad.products.get", "Get one product", "product"),
    "delete_product": _Detail("gumroad.products.delete", "Delete a product", None),
    "enable_product": _Detail("gumroad.products.enable", "Publish a product", "product"),
    "disable_product": _Detail("gumroad.products.disable", "Unpublish a product", "product"),
    "create_variant_category": _Detail("gumroad.variant_categories.create", "Create a variant category",
                                       "variant_category", (_Field("title", STR, True),)),
    "get_variant_category": _Detail("gumroad.variant_categories.get", "Get one variant category",
                                    "variant_category"),
    "update_variant_category": _Detail("gumroad.variant_categories.update", "Rename a variant category",
                                       "variant_category", (_Field("title", STR, True),)),
    "delete_variant_category": _Detail("gumroad.variant_categories.delete", "Delete a variant category",
                                       None),
    "list_variant_categories": _Detail("gumroad.variant_categories.list",
                                       "List a product's variant categories", "variant_categories"),
    "create_variant": _Detail("gumroad.variants.create", "Create a variant", "variant",
                              (_Field("name", STR, True), *_VARIANT)),
    "get_variant": _Detail("gumroad.variants.get", "Get one variant", "variant"),
    "update_variant": _Detail("gumroad.variants.update", "Edit a variant", "variant",
                              (_Field("name", STR), *_VARIANT)),
    "delete_variant": _Detail("gumroad.variants.delete", "Delete a variant", None),
    "list_variants": _Detail("gumroad.variants.list", "List the variants of a category", "variants"),
    "list_offer_codes": _Detail("gumroad.offer_codes.list",
                                "List a product's offer codes (universal included)", "offer_codes"),
    "get_offer_code": _Detail("gumroad.offer_codes.get", "Get one offer code", "offer_code"),
    "create_offer_code": _Detail(
        "gumroad.offer_codes.create", "Create an offer code", "offer_code",
        (
            _Field("name", STR, True, "the code buyers type"),
            _Field("amount_off", INT, True, "cents, or percent with offer_type=percent"),
            _Field("offer_type", STR, enum=("cents", "percent")),
            _Field("max_purchase_count", INT),
            _Field("universal", BOOL, description="applies to every product"),
        ),
    ),
    "update_offer_code": _Detail("gumroad.offer_codes.update", "Change an offer code's purchase limit",
                                 "offer_code", (_Field("max_purchase_count", INT),),
                                 notes="Gumroad applies only max_purchase_count."),
    "delete_offer_code": _Detail("gumroad.offer_codes.delete", "Delete an offer code", None),
    "list_custom_fields": _Detail("gumroad.custom_fields.list", "List a product's checkout custom fields",
                                  "custom_fields"),
    "create_custom_field": _Detail(
        "gumroad.custom_fields.create", "Add a checkout custom field", "custom_field",
        (_Field("name", STR, True), _Field("required", BOOL),
         _Field("type", STR, description="default text")),
    ),
    "update_custom_field": _Detail("gumroad.custom_fields.update",
                                   "Change whether a custom field is required", "custom_field",
                                   (_Field("required", BOOL),),
                                   notes="The path segment is the field's name."),
    "delete_custom_field": _Detail("gumroad.custom_fields.delete", "Remove a custom field", None),
    "get_user": _Detail("gumroad.user.get", "Get the token owner's account", "user"),
    "create_resource_subscription": _Detail(
        "gumroad.resource_subscriptions.create", "Subscribe a URL to a resource's webhooks (PUT)",
        "resource_subscription",
        (_Field("resource_name", STR, True, enum=RESOURCE_NAMES), _Field("post_url", STR, True)),
        idempotent=False, notes="Not de-duplicated: subscribing twice posts twice.",
    ),
    "list_resource_subscriptions": _Detail(
        "gumroad.resource_subscriptions.list", "List the live subscriptions of one resource name",
        "resource_subscriptions", (_Field("resource_name", STR, True, enum=RESOURCE_NAMES),),
    ),
    "delete_resource_subscription": _Detail("gumroad.resource_subscriptions.delete",
                                            "Unsubscribe a resource subscription", None),
    "list_sales": _Detail(
        "gumroad.sales.list", "List sales, newest first, 10 per page", "sales",
        (*_DATES, _Field("product_id", STR), _Field("email", STR), _Field("order_id", INT), _PAGE_KEY),
        Pagination.PAGE_KEY,
    ),
    "get_sale": _Detail("gumroad.sales.get", "Get one sale", "sale"),
    "mark_sale_as_shipped": _Detail("gumroad.sales.mark_as_shipped", "Mark a sale shipped", "sale",
                                    (_Field("tracking_url", STR),)),
    "refund_sale": _Detail("gumroad.sales.refund", "Refund a sale, fully or in part", "sale",
                           (_Field("amount_cents", INT, description="partial refund in the sale currency"),),
                           idempotent=False),
    "resend_receipt": _Detail("gumroad.sales.resend_receipt", "Resend a sale's receipt email", None),
    "list_subscribers": _Detail(
        "gumroad.subscribers.list", "List a product's active subscribers", "subscribers",
        (_Field("email", STR), _Field("paginated", BOOL, description="100 per page when true"), _PAGE_KEY),
        Pagination.PAGE_KEY,
    ),
    "get_subscriber": _Detail("gumroad.subscribers.get", "Get one subscriber", "subscriber"),
    "verify_license": _Detail(
        "gumroad.licenses.verify", "Verify a license key and count a use", None,
        (*_LICENSE, _Field("increment_uses_count", BOOL, description="default true")), idempotent=False,
    ),
    "enable_license": _Detail("gumroad.licenses.enable", "Enable a license key", None, _LICENSE),
    "disable_license": _Detail("gumroad.licenses.disable", "Disable a license key", None, _LICENSE),
    "decrement_license_uses": _Detail("gumroad.licenses.decrement_uses_count",
                                      "Take one use off a license (never below 0)", None, _LICENSE,
                                      idempotent=False),
    "rotate_license": _Detail("gumroad.licenses.rotate", "Issue a new key for a license", None, _LICENSE,
                              idempotent=False),
    "list_payouts": _Detail(
        "gumroad.payouts.list", "List payouts, newest first, 10 per page", "payouts",
        (*_DATES, _Field("include_upcoming", BOOL), _PAGE_KEY), Pagination.PAGE_KEY,
    ),
    "get_payout": _Detail("gumroad.payouts.get", "Get one payout", "payout"),
}


def _operation(
    client_method: str, method: str, path: str, scopes: tuple[str, ...], needs_token: bool
) -> Operation:
    detail = GUMROAD_DETAILS[client_method]
    where = ParamIn.QUERY if method == "GET" else ParamIn.BODY
    params = [Param(name, ParamIn.PATH, STR, required=True) for name in _PATH_PARAM.findall(path)]
    params.extend(Param(f.name, where, f.type, f.required, f.description, f.enum) for f in detail.fields)
    has_body = where is ParamIn.BODY and bool(detail.fields)
    return Operation(
        app=APP,
        name=detail.name,
        method=method,
        path=API_PREFIX + path,
        summary=detail.summary,
        params=tuple(params),
        scopes=scopes,
        response_key=detail.response_key,
        pagination=detail.pagination,
        idempotent=detail.idempotent if detail.idempotent is not None else method != "POST",
        idempotency_header=False,  # Gumroad has no idempotency keys
        token_kinds=(TokenKind.USER,) if needs_token else (),
        # Gumroad's handlers compare form strings ("true"), so writes go form-encoded.
        body_encoding=BodyEncoding.FORM if has_body else BodyEncoding.NONE,
        source=f"GumroadClient.{client_method}",
        notes=detail.notes,
    )


@cache
def gumroad_operations() -> tuple[Operation, ...]:
    """One record per connector operation, in the connector's order."""
    names = [op.name for op in OPERATIONS]
    missing = sorted(set(names) - set(GUMROAD_DETAILS))
    extra = sorted(set(GUMROAD_DETAILS) - set(names))
    if missing or extra:
        raise InvalidInput(f"catalog: Gumroad details lack {missing} and name unknown operations {extra}")
    return tuple(
        _operation(op.name, op.method, op.path, tuple(op.scopes), op.needs_token)
        for op in OPERATIONS
    )
