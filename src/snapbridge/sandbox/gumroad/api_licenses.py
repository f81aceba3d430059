"""License endpoints (5): verify (no token), enable, disable, decrement_uses_count and rotate.

These use real HTTP statuses, unlike the rest of the API: 404 for an unknown, disabled or revoked license,
404 {"success": false, "error": "Not found"} for another seller's license, 400 for a non-string key.
The HTTP 500 for a missing product_id after Gumroad's cutover date is not modelled: every product here
still accepts the legacy product_permalink.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from snapbridge.sandbox.gumroad.models import License
from snapbridge.sandbox.gumroad.payloads import iso, sale_ping_payload
from snapbridge.sandbox.gumroad.protocol import ApiContext
from snapbridge.sandbox.gumroad.render import offer_code_summary, variants_text
from snapbridge.sandbox.gumroad.state import SandboxState

__all__ = ["LICENSE_ROUTES", "license_response"]

EDIT = frozenset({"edit_products"})
_CHECKED_PARAMS = ("license_key", "product_id", "product_permalink", "id", "link_id")


def _not_found(message: str) -> JSONResponse:
    return JSONResponse({"success": False, "message": message}, status_code=404)


def license_response(state: SandboxState, license_: License) -> dict[str, Any]:
    """{success, uses, purchase}: the ping payload overlaid with a few `as_json_for_license` fields (§4.6)."""
    sale = state.sales[license_.sale_id]
    product = state.products[sale.product_id]
    sub = state.subscriptions.get(sale.subscription_id) if sale.subscription_id else None
    purchase: dict[str, Any] = dict(sale_ping_payload(state, sale, resource_name=None))
    purchase["id"] = sale.id
    purchase["created_at"] = iso(sale.created_at)
    purchase["variants"] = variants_text(sale)  # the old display string, e.g. "(Large)" or ""
    purchase["custom_fields"] = [f"{k}: {v}" for k, v in sale.custom_fields.items()]
    if sale.offer_code_id and sale.offer_code_id in state.offer_codes:
        purchase["offer_code"] = offer_code_summary(state.offer_codes[sale.offer_code_id])
    purchase["refunded"] = sale.fully_refunded
    if product.is_recurring and sub is not None:
        purchase["subscription_ended_at"] = iso(sub.ended_at or sub.deactivated_at)
        purchase["subscription_cancelled_at"] = iso(sub.cancelled_at)
        purchase["subscription_failed_at"] = iso(sub.failed_at)
    else:
        purchase["chargebacked"] = sale.chargedback and not sale.dispute_won
    return {"success": True, "uses": license_.uses, "purchase": purchase}



def _find(ctx: ApiContext, product_permalink: Any) -> License | JSONResponse:
    """`fetch_valid_license`: by product_id (any seller's product) or by key alone plus the permalink."""
    state = ctx.state
    serial = ctx.params.raw("license_key")
    product_id = ctx.params.raw("product_id")
    license_: License | None = None
    if isinstance(product_id, str) and product_id.strip():
        product = state.products.get(product_id)
        if product is not None:
            license_ = next(
                (lic for lic in state.licenses.values()
                 if lic.product_id == product.id and lic.serial == serial),
                None,
            )
        matches = True
    else:
        license_ = next((lic for lic in state.licenses.values() if lic.serial == serial), None)
        product = state.products[license_.product_id] if license_ else None
        names = (product.unique_permalink, product.custom_permalink) if product else ()
        matches = product is not None and product_permalink in names
    if license_ is None or not matches:
        return _not_found("That license does not exist for the provided product.")
    if state.sales[license_.sale_id].access_revoked:
        return _not_found("Access to the purchase associated with this license has expired.")
    return license_


def verify(ctx: ApiContext) -> Response:
    for key in _CHECKED_PARAMS:
        value = ctx.params.raw(key)
        if value not in (None, "") and not isinstance(value, str):
            return JSONResponse(
                {"success": False, "message": f"The '{key}' parameter must be a string."}, status_code=400
            )
    # Legacy ways to name the product: `id`, then `link_id`, then `product_permalink`.
    legacy = ("id", "link_id", "product_permalink")
    permalink = next((ctx.params.raw(k) for k in legacy if ctx.params.raw(k)), None)
    found = _find(ctx, permalink)
    if isinstance(found, JSONResponse):
        return found
    if found.disabled:
        return _not_found("This license key has been disabled.")
    if ctx.params.raw("increment_uses_count") not in ("false", False):
        found.uses += 1
    return JSONResponse(license_response(ctx.state, found))


def _owned(ctx: ApiContext) -> License | JSONResponse:
    found = _find(ctx, ctx.params.raw("product_permalink"))
    if isinstance(found, JSONResponse):
        return found
    if ctx.state.products[found.product_id].foreign:
        return JSONResponse({"success": False, "error": "Not found"}, status_code=404)
    return found


def enable(ctx: ApiContext) -> Response:
    found = _owned(ctx)
    if isinstance(found, JSONResponse):
        return found
    found.disabled = False
    return JSONResponse(license_response(ctx.state, found))


def disable(ctx: ApiContext) -> Response:
    found = _owned(ctx)
    if isinstance(found, JSONResponse):
        return found
    found.disabled = True
    return JSONResponse(license_response(ctx.state, found))


def decrement_uses_count(ctx: ApiContext) -> Response:
    found = _owned(ctx)
    if isinstance(found, JSONResponse):
        return found
    found.uses = max(found.uses - 1, 0)
    return JSONResponse(license_response(ctx.state, found))


def rotate(ctx: ApiContext) -> Response:
    found = _owned(ctx)
    if isinstance(found, JSONResponse):
        return found
    old = found.serial
    found.serial = ctx.state.ids.license_key()
    for sub in ctx.state.subscriptions.values():
        if sub.license_key == old:
            sub.license_key = found.serial
    return JSONResponse(license_response(ctx.state, found))


LICENSE_ROUTES = [
    ("POST", "/v2/licenses/verify", None, verify),
    ("PUT", "/v2/licenses/enable", EDIT, enable),
    ("PUT", "/v2/licenses/disable", EDIT, disable),
    ("PUT", "/v2/licenses/decrement_uses_count", EDIT, decrement_uses_count),
    ("PUT", "/v2/licenses/rotate", EDIT, rotate),
]
