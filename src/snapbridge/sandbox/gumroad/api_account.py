"""The account endpoints (6): the user, resource subscriptions (PUT/GET/DELETE) and payouts (list, show)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.responses import Response

from snapbridge.sandbox.gumroad.api_sales import parse_date_param
from snapbridge.sandbox.gumroad.ids import InvalidPageKey
from snapbridge.sandbox.gumroad.models import RESOURCE_NAMES, Payout, ResourceSubscription
from snapbridge.sandbox.gumroad.pagination import apply_cursor, paginate
from snapbridge.sandbox.gumroad.payloads import iso
from snapbridge.sandbox.gumroad.protocol import ANY_SCOPE, ApiContext, error_400, fail, ok
from snapbridge.sandbox.gumroad.render import resource_subscription_json, user_json
from snapbridge.sandbox.gumroad.state import SandboxState

__all__ = ["ACCOUNT_ROUTES", "payout_json", "valid_post_url"]

VIEW_SALES = frozenset({"view_sales"})
VIEW_PAYOUTS = frozenset({"view_payouts"})
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "0.0.0.0"})
_FALSE_WORDS = frozenset({"", "0", "f", "false", "off", "F", "FALSE", "OFF"})


def valid_post_url(post_url: object, *, allow_local: bool) -> bool:
    """`ResourceSubscription.valid_post_url?`: http(s) with a host that is not exactly a loopback name."""
    if not isinstance(post_url, str) or not post_url:
        return False
    try:
        parts = urlsplit(post_url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    # A host that merely contains "localhost" is allowed; only these exact hosts are refused.
    return allow_local or host.lower() not in _LOCAL_HOSTS


def payout_json(payout: Payout | None, state: SandboxState, *, with_sales: bool) -> dict[str, Any]:
    """`Payment#as_json`; `payout` None is the synthetic upcoming row."""
    if payout is None:
        paid = {i for p in state.payouts.values() for i in p.sale_ids}
        pending = [s for s in state.listed_sales() if s.id not in paid]
        amount = sum(s.price_cents - s.fee_cents for s in pending)
        return {
            "id": None,
            "amount": f"{amount / 100:.2f}",
            "currency": "USD",
            "status": "payable",
            "created_at": None,
            "processed_at": None,
            "payment_processor": "stripe",
            "bank_account_visual": "******6789",
            "paypal_email": None,
        }
    out: dict[str, Any] = {
        "id": payout.id,
        "amount": f"{payout.amount_cents / 100:.2f}",
        "currency": payout.currency.upper(),
        "status": payout.status,
        "created_at": iso(payout.created_at),
        "processed_at": iso(payout.processed_at),
        "payment_processor": payout.payment_processor,
        "bank_account_visual": payout.bank_account_visual,
        "paypal_email": payout.paypal_email,
    }
    if with_sales:
        out["sales"] = list(payout.sale_ids)
        out["refunded_sales"] = list(payout.refunded_sale_ids)
        out["disputed_sales"] = list(payout.disputed_sale_ids)
    return out



def get_user(ctx: ApiContext) -> Response:
    return ok({"user": user_json(ctx.state, ctx.scopes)})


def create_resource_subscription(ctx: ApiContext) -> Response:
    post_url = ctx.params.raw("post_url")
    resource_name = ctx.params.raw("resource_name")
    # The URL is checked before the resource name, as in the controller.
    if not valid_post_url(post_url, allow_local=ctx.state.settings.allow_local_post_urls):
        shown = post_url if isinstance(post_url, str) else ("" if post_url is None else str(post_url))
        return fail(f"Invalid post URL '{shown}'")
    if resource_name not in RESOURCE_NAMES:
        return fail("Unable to subscribe to ''.")  # the name is left blank by a small bug in Gumroad
    assert ctx.token is not None and isinstance(post_url, str) and isinstance(resource_name, str)
    sub = ResourceSubscription(
        ctx.state.ids.external_id(), resource_name, post_url, ctx.token.application_id, ctx.state.now()
    )
    ctx.state.resource_subscriptions[sub.id] = sub  # no de-duplication: twice means two posts
    return ok({"resource_subscription": resource_subscription_json(sub)})


def list_resource_subscriptions(ctx: ApiContext) -> Response:
    resource_name = ctx.params.raw("resource_name")
    if resource_name not in RESOURCE_NAMES:
        return fail("Valid resource_name parameter required")
    rows = [
        r
        for r in sorted(ctx.state.resource_subscriptions.values(), key=lambda r: (r.created_at, r.id))
        if not r.deleted and r.resource_name == resource_name
    ]
    only_mine = ctx.params.raw("current_oauth_application_only")
    if only_mine is not None and str(only_mine) not in _FALSE_WORDS and ctx.token is not None:
        rows = [r for r in rows if r.application_id == ctx.token.application_id]
    return ok({"resource_subscriptions": [resource_subscription_json(r) for r in rows]})


def delete_resource_subscription(ctx: ApiContext) -> Response:
    sub = ctx.state.resource_subscriptions.get(ctx.params.text("resource_subscription_id") or "")
    # Only the app that created a subscription may delete it; anything else looks like "not found".
    if sub is None or sub.deleted or ctx.token is None or sub.application_id != ctx.token.application_id:
        return fail("The resource_subscription was not found.")
    sub.deleted = True
    return ok({"message": "The resource_subscription was deleted successfully."})


def list_payouts(ctx: ApiContext) -> Response:
    bounds: dict[str, Any] = {}
    for name in ("before", "after"):
        raw = ctx.params.raw(name)
        if raw is None:
            continue
        try:
            bounds[name] = parse_date_param(raw)
        except ValueError:
            return error_400(
                f"Invalid date format provided in field '{name}'. Dates must be in the format YYYY-MM-DD."
            )
    rows = sorted(ctx.state.payouts.values(), key=lambda p: (p.created_at, p.pk), reverse=True)
    if "after" in bounds:
        rows = [p for p in rows if p.created_at.date() >= bounds["after"]]
    if "before" in bounds:
        rows = [p for p in rows if p.created_at.date() < bounds["before"]]
    page_key = ctx.params.present("page_key")
    if page_key:
        known = {p.numeric_id: p.pk for p in ctx.state.payouts.values()}
        try:
            rows = apply_cursor(
                rows, page_key, created_at=lambda p: p.created_at, pk=lambda p: p.pk, resolve=known.get
            )
        except InvalidPageKey:
            return error_400("Invalid page_key.")
    page = paginate(rows, 10, created_at=lambda p: p.created_at, numeric_id=lambda p: p.numeric_id)
    listed: list[dict[str, Any]] = [payout_json(p, ctx.state, with_sales=False) for p in page.rows]
    if not page_key and ctx.params.raw("include_upcoming") not in ("false", False):
        listed.insert(0, payout_json(None, ctx.state, with_sales=False))
    return ok({"payouts": listed, **page.links(ctx.request.url.path, ctx.request.url.query)})


def get_payout(ctx: ApiContext) -> Response:
    payout: Payout | None = ctx.state.payouts.get(ctx.params.text("id") or "")
    if payout is None:
        return fail("The payout was not found.")
    with_sales = bool(ctx.scopes & {"view_sales", "account"})
    return ok({"payout": payout_json(payout, ctx.state, with_sales=with_sales)})


ACCOUNT_ROUTES = [
    ("GET", "/v2/user", ANY_SCOPE, get_user),
    ("PUT", "/v2/resource_subscriptions", VIEW_SALES, create_resource_subscription),
    ("GET", "/v2/resource_subscriptions", VIEW_SALES, list_resource_subscriptions),
    ("DELETE", "/v2/resource_subscriptions/{resource_subscription_id}", VIEW_SALES,
     delete_resource_subscription),
    ("GET", "/v2/payouts", VIEW_PAYOUTS, list_payouts),
    ("GET", "/v2/payouts/{id}", VIEW_PAYOUTS, get_payout),
]
