"""Sales and subscribers endpoints (7): list with cursor paging and filters, show, ship, refund, resend.

Follows Gumroad's SalesController and SubscribersController, including their exact 400 messages and the
order in which parameters are checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from itertools import islice

from starlette.responses import Response

from snapbridge.sandbox.gumroad.commerce import apply_refund
from snapbridge.sandbox.gumroad.ids import InvalidPageKey, looks_like_external_id
from snapbridge.sandbox.gumroad.models import Sale, WebhookEvent
from snapbridge.sandbox.gumroad.pagination import Cursor, Page, apply_cursor, paginate, read_cursor
from snapbridge.sandbox.gumroad.protocol import ApiContext, error_400, fail, ok, ruby_to_i
from snapbridge.sandbox.gumroad.render import sale_json, subscriber_json

__all__ = ["SALES_ROUTES", "parse_date_param"]

VIEW = frozenset({"view_sales"})
SALES_PER_PAGE = 10
SUBSCRIBERS_PER_PAGE = 100
_DATE = re.compile(r"^[+-]?(\d+)-(\d{1,2})-(\d{1,2})$")


def parse_date_param(value: object) -> date:
    """Ruby's Date.strptime(value, "%Y-%m-%d"): one- or two-digit month and day, nothing left over."""
    if not isinstance(value, str):
        raise ValueError(value)
    match = _DATE.match(value)
    if match is None:
        raise ValueError(value)
    year, month, day = (int(g) for g in match.groups())
    return date(year, month, day)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _date_filter(ctx: ApiContext, name: str) -> tuple[date | None, Response | None]:
    raw = ctx.params.raw(name)
    if raw is None:
        return None, None
    try:
        return parse_date_param(raw), None
    except ValueError:
        return None, error_400(
            f"Invalid date format provided in field '{name}'. Dates must be in the format YYYY-MM-DD."
        )


def list_sales(ctx: ApiContext) -> Response:
    params = ctx.params
    raw_page = params.raw("page")
    page_number = ruby_to_i(raw_page) if raw_page is not None else 1
    if page_number <= 0:  # `set_page` runs first, on every call
        return error_400("Invalid page number. Page numbers start at 1.")
    before, problem = _date_filter(ctx, "before")
    if problem:
        return problem
    after, problem = _date_filter(ctx, "after")
    if problem:
        return problem
    email = params.present("email")
    name = params.present("name")
    license_key = params.present("license_key")
    product_id = params.present("product_id")
    if product_id is not None and not looks_like_external_id(product_id):
        return error_400("Invalid product ID.")
    order_raw = params.raw("order_id")
    order_id: int | None = None
    if order_raw not in (None, ""):
        # `params[:order_id].to_i.to_s != params[:order_id]`: a JSON number fails this too.
        if not isinstance(order_raw, str) or str(ruby_to_i(order_raw)) != order_raw:
            return error_400("Invalid order ID.")
        order_id = int(order_raw)

    cursor: Cursor | None = None
    page_key = params.present("page_key")
    if raw_page is None and page_key:  # the deprecated `page` wins over a page_key
        try:
            cursor = read_cursor(page_key, lambda n: _sale_pk(ctx, n))
        except InvalidPageKey:
            return error_400("Invalid page_key.")

    # Walk newest first from the cursor and the date bounds, filtering as it goes; stop one row past the page.
    rows: Iterable[Sale] = ctx.state.walk_listed_sales(
        up_to=cursor.moment if cursor else None,
        before=_midnight(before) if before is not None else None,
        since=_midnight(after) if after is not None else None,
    )
    checks: list[Callable[[Sale], bool]] = []
    if cursor is not None:
        checks.append(lambda s: s.pk < cursor.last_pk)
    if email is not None:
        checks.append(lambda s: s.buyer.email == email.strip())
    if name is not None:
        checks.append(lambda s: name.strip().lower() in (s.buyer.full_name or "").lower())
    if license_key is not None:
        checks.append(lambda s: _license_serial(ctx, s) == license_key.strip().upper())
    if product_id is not None:
        checks.append(lambda s: s.product_id == product_id)
    if order_id is not None:
        checks.append(lambda s: s.order_id == order_id)
    rows = (s for s in rows if all(check(s) for check in checks))
    if raw_page is not None:  # the deprecated offset path
        rows = islice(rows, (page_number - 1) * SALES_PER_PAGE, None)
    page: Page[Sale] = paginate(
        list(islice(rows, SALES_PER_PAGE + 1)), SALES_PER_PAGE,
        created_at=lambda s: s.created_at, numeric_id=lambda s: s.order_id,
    )
    body = {"sales": [sale_json(ctx.state, s) for s in page.rows]}
    return ok({**body, **page.links(ctx.request.url.path, ctx.request.url.query)})


def _sale_pk(ctx: ApiContext, order_id: int) -> int | None:
    sale = ctx.state.sale_by_order_id(order_id)
    return sale.pk if sale is not None else None


def _license_serial(ctx: ApiContext, sale: Sale) -> str | None:
    license_ = ctx.state.sale_license(sale)
    return license_.serial if license_ else None


def _sale(ctx: ApiContext) -> Sale | None:
    return ctx.state.own_sale(ctx.params.text("id"))


def get_sale(ctx: ApiContext) -> Response:
    sale = _sale(ctx)
    return ok({"sale": sale_json(ctx.state, sale)}) if sale else fail("The sale was not found.")


def mark_as_shipped(ctx: ApiContext) -> Response:
    sale = _sale(ctx)
    if sale is None:
        return fail("The sale was not found.")
    if ctx.params.raw("tracking_url") is not None:
        sale.tracking_url = ctx.params.text("tracking_url")
    sale.shipped = True  # calling it again is harmless
    return ok({"sale": sale_json(ctx.state, sale)})


def refund_sale(ctx: ApiContext) -> Response:
    """Full refund, or partial with `amount_cents` in the sale's currency; every refund posts `refund`."""
    sale = _sale(ctx)
    if sale is None:
        return fail("The sale was not found.")
    problem = refund(ctx, sale, ctx.params.present("amount_cents"))
    return fail(problem) if problem else ok({"sale": sale_json(ctx.state, sale)})


def refund(ctx: ApiContext, sale: Sale, amount_text: str | None) -> str | None:
    problem = apply_refund(sale, ruby_to_i(amount_text) if amount_text is not None else None)
    if problem is None:
        ctx.state.notify([WebhookEvent("refund", ctx.state.now(), sale_id=sale.id)])
    return problem


def resend_receipt(ctx: ApiContext) -> Response:
    sale = _sale(ctx)
    if sale is None:
        return fail("The sale was not found.")
    sale.receipts_sent += 1
    return ok()  # the code answers a bare {"success": true}; the docs example shows a sale


def list_subscribers(ctx: ApiContext) -> Response:
    ref = ctx.params.text("link_id")
    product = ctx.state.find_product(ref) if ref else None
    if product is None:
        return fail("The product was not found.")
    rows = ctx.state.active_subscribers(product, ctx.state.now())
    email = ctx.params.present("email")
    if email is not None:
        rows = [s for s in rows if s.email == email.strip()]
    page_key = ctx.params.present("page_key")
    if page_key:
        try:
            rows = apply_cursor(
                rows, page_key, created_at=lambda s: s.created_at, pk=lambda s: s.pk,
                resolve=lambda n: getattr(ctx.state.subscription_by_numeric_id(n), "pk", None),
            )
        except InvalidPageKey:
            return error_400("Invalid page_key.")
    if ctx.params.raw("paginated") in ("1", "true") or page_key:
        page = paginate(
            rows, SUBSCRIBERS_PER_PAGE, created_at=lambda s: s.created_at, numeric_id=lambda s: s.numeric_id
        )
        body = {"subscribers": [subscriber_json(ctx.state, s) for s in page.rows]}
        return ok({**body, **page.links(ctx.request.url.path, ctx.request.url.query)})
    return ok({"subscribers": [subscriber_json(ctx.state, s) for s in rows]})


def get_subscriber(ctx: ApiContext) -> Response:
    sub = ctx.state.subscriptions.get(ctx.params.text("id") or "")
    if sub is None or ctx.state.products[sub.product_id].foreign:
        return fail("The subscriber was not found.")
    return ok({"subscriber": subscriber_json(ctx.state, sub)})


SALES_ROUTES = [
    ("GET", "/v2/sales", VIEW, list_sales),
    ("GET", "/v2/sales/{id}", VIEW, get_sale),
    ("PUT", "/v2/sales/{id}/mark_as_shipped", frozenset({"mark_sales_as_shipped"}), mark_as_shipped),
    ("PUT", "/v2/sales/{id}/refund", frozenset({"refund_sales", "edit_sales"}), refund_sale),
    ("POST", "/v2/sales/{id}/resend_receipt", frozenset({"edit_sales"}), resend_receipt),
    ("GET", "/v2/products/{link_id}/subscribers", VIEW, list_subscribers),
    ("GET", "/v2/subscribers/{id}", VIEW, get_subscriber),
]
