"""Every Gumroad API v2 endpoint the client covers: its method name, HTTP method, path and scopes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ALL_OPERATIONS", "ANY_SCOPE", "CATCH_ALL_SCOPE", "OPERATIONS", "Operation", "Source", "operation"]

ANY_SCOPE: tuple[str, ...] = ()
# Newer Gumroad code also accepts `account` on every v2 endpoint; it is left out of the lists below, which
# name what the endpoints document, so a missing-scope message suggests the narrow scope.
CATCH_ALL_SCOPE = "account"

_EDIT = ("edit_products",)
_SALES = ("view_sales",)
_PAYOUTS = ("view_payouts",)


class Source(StrEnum):
    """Where an endpoint is documented (reference §2)."""

    CLASSIC = "classic"  # the 38 of the classic docs
    LATER = "later"  # added by a later docs revision
    CURL = "curl"  # only a docs curl example, a route and a controller action


@dataclass(frozen=True)
class Operation:
    """One endpoint. `scopes` are any-of (Doorkeeper); empty means any token will do."""

    name: str  # the GumroadClient method, e.g. "list_sales"
    method: str
    path: str  # relative to /v2, with {placeholders}
    scopes: tuple[str, ...]
    needs_token: bool = True
    source: Source = Source.CLASSIC

    @property
    def is_write(self) -> bool:
        return self.method != "GET"


_P = "/products/{product_id}"
_VC = _P + "/variant_categories"
_V = _VC + "/{variant_category_id}/variants"

OPERATIONS: tuple[Operation, ...] = (
    Operation("list_products", "GET", "/products", ANY_SCOPE),
    Operation("get_product", "GET", _P, ANY_SCOPE),
    Operation("delete_product", "DELETE", _P, _EDIT),
    Operation("enable_product", "PUT", _P + "/enable", _EDIT),
    Operation("disable_product", "PUT", _P + "/disable", _EDIT),
    Operation("create_variant_category", "POST", _VC, _EDIT),
    Operation("get_variant_category", "GET", _VC + "/{variant_category_id}", ANY_SCOPE),
    Operation("update_variant_category", "PUT", _VC + "/{variant_category_id}", _EDIT),
    Operation("delete_variant_category", "DELETE", _VC + "/{variant_category_id}", _EDIT),
    Operation("list_variant_categories", "GET", _VC, ANY_SCOPE),
    Operation("create_variant", "POST", _V, _EDIT),
    Operation("get_variant", "GET", _V + "/{variant_id}", ANY_SCOPE),
    Operation("update_variant", "PUT", _V + "/{variant_id}", _EDIT),
    Operation("delete_variant", "DELETE", _V + "/{variant_id}", _EDIT),
    Operation("list_variants", "GET", _V, ANY_SCOPE),
    Operation("list_offer_codes", "GET", _P + "/offer_codes", ANY_SCOPE),
    Operation("get_offer_code", "GET", _P + "/offer_codes/{offer_code_id}", ANY_SCOPE),
    Operation("create_offer_code", "POST", _P + "/offer_codes", _EDIT),
    Operation("update_offer_code", "PUT", _P + "/offer_codes/{offer_code_id}", _EDIT),
    Operation("delete_offer_code", "DELETE", _P + "/offer_codes/{offer_code_id}", _EDIT),
    Operation("list_custom_fields", "GET", _P + "/custom_fields", ANY_SCOPE),
    Operation("create_custom_field", "POST", _P + "/custom_fields", _EDIT),
    Operation("update_custom_field", "PUT", _P + "/custom_fields/{name}", _EDIT),
    Operation("delete_custom_field", "DELETE", _P + "/custom_fields/{name}", _EDIT),
    Operation("get_user", "GET", "/user", ANY_SCOPE),
    Operation("create_resource_subscription", "PUT", "/resource_subscriptions", _SALES),
    Operation("list_resource_subscriptions", "GET", "/resource_subscriptions", _SALES),
    Operation(
        "delete_resource_subscription", "DELETE", "/resource_subscriptions/{resource_subscription_id}", _SALES
    ),
    Operation("list_sales", "GET", "/sales", _SALES),
    Operation("get_sale", "GET", "/sales/{sale_id}", _SALES),
    Operation("mark_sale_as_shipped", "PUT", "/sales/{sale_id}/mark_as_shipped", ("mark_sales_as_shipped",)),
    # refund_sales is the classic scope; newer code also accepts edit_sales.
    Operation("refund_sale", "PUT", "/sales/{sale_id}/refund", ("refund_sales", "edit_sales")),
    Operation("list_subscribers", "GET", _P + "/subscribers", _SALES),
    Operation("get_subscriber", "GET", "/subscribers/{subscriber_id}", _SALES),
    Operation("verify_license", "POST", "/licenses/verify", ANY_SCOPE, needs_token=False),
    Operation("enable_license", "PUT", "/licenses/enable", _EDIT),
    Operation("disable_license", "PUT", "/licenses/disable", _EDIT),
    Operation("decrement_license_uses", "PUT", "/licenses/decrement_uses_count", _EDIT),
    # The code checks edit_sales; the later docs text says view_sales. The code is what answers.
    Operation(
        "resend_receipt", "POST", "/sales/{sale_id}/resend_receipt", ("edit_sales",), source=Source.LATER
    ),
    Operation("list_payouts", "GET", "/payouts", _PAYOUTS, source=Source.LATER),
    Operation("get_payout", "GET", "/payouts/{payout_id}", _PAYOUTS, source=Source.LATER),
    Operation("rotate_license", "PUT", "/licenses/rotate", _EDIT, source=Source.CURL),
)

# An alias kept for the catalog, which imports it under this name.
ALL_OPERATIONS = OPERATIONS

_BY_NAME = {op.name: op for op in OPERATIONS}


def operation(name: str) -> Operation:
    """The operation called `name`; a KeyError lists the known names."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no Gumroad operation {name!r}; known: {sorted(_BY_NAME)}") from None
