"""The Gumroad API v2 client: one async method per endpoint (42), plus iterators over the paged lists."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import date

from snapbridge.connectors.gumroad.account import (
    LicenseResponse,
    Payout,
    ResourceSubscription,
    User,
)
from snapbridge.connectors.gumroad.decode import payload_list
from snapbridge.connectors.gumroad.models import ResourceName, Sale, Subscriber
from snapbridge.connectors.gumroad.operations import OPERATIONS
from snapbridge.connectors.gumroad.pagination import next_page_params
from snapbridge.connectors.gumroad.products_api import ProductsApi
from snapbridge.connectors.gumroad.transport import Page, ParamValue, form_value, parse_model
from snapbridge.errors import InvalidInput, Permanent, Retryable
from snapbridge.security import Secret

__all__ = ["GumroadClient", "OPERATIONS"]

# Loop turns a new request task takes to put its request on the wire (httpx over anyio takes three: pool, lock,
# send). Fewer and the next page is only asked for once this one is handed on; more cost a loop turn each.
_TURNS_TO_SEND = 3

# (the error, failures of this page so far: 1, 2, …) → seconds to wait before asking again, or None to give up.
PageRetryPolicy = Callable[[Retryable, int], float | None]


def _resource_name(value: ResourceName | str) -> ResourceName:
    try:
        return ResourceName(value)
    except ValueError:
        known = ", ".join(name.value for name in ResourceName)
        raise InvalidInput(f"resource_name {value!r} is not one of {known}") from None


class GumroadClient(ProductsApi):
    """Every Gumroad API v2 endpoint. Base URL, HTTP client and token come in through the constructor.

    Writes take `idempotency_key` from the caller like every connector; Gumroad has no such header, so the key
    is logged rather than sent (see `Transport._call`).
    """

    # User and resource subscriptions (webhooks)

    async def get_user(self) -> User:
        return await self._one("get_user", "user", User.from_json)

    async def create_resource_subscription(
        self, resource_name: ResourceName | str, post_url: str | Secret, *, idempotency_key: str
    ) -> ResourceSubscription:
        """Subscribe `post_url` to one resource. Gumroad does not dedupe: subscribing twice posts twice.

        Pass the URL as a Secret when it carries the webhook secret, so error messages never show it.
        """
        return await self._one(
            "create_resource_subscription", "resource_subscription", ResourceSubscription.from_json,
            data={"resource_name": _resource_name(resource_name).value, "post_url": post_url},
            idempotency_key=idempotency_key,
            secrets=(post_url,) if isinstance(post_url, Secret) else (),
        )

    async def list_resource_subscriptions(
        self, resource_name: ResourceName | str
    ) -> tuple[ResourceSubscription, ...]:
        """Every app's live subscriptions for one resource name (Gumroad requires the name)."""
        return await self._many(
            "list_resource_subscriptions", "resource_subscriptions", ResourceSubscription.from_json,
            params={"resource_name": _resource_name(resource_name).value},
        )

    async def delete_resource_subscription(
        self, resource_subscription_id: str, *, idempotency_key: str
    ) -> None:
        """Only subscriptions made by the calling app can be deleted; others read as not found."""
        await self._delete(
            "delete_resource_subscription",
            path_params={"resource_subscription_id": resource_subscription_id},
            idempotency_key=idempotency_key,
        )

    # Sales

    async def list_sales(
        self,
        *,
        after: date | None = None,
        before: date | None = None,
        product_id: str | None = None,
        email: str | None = None,
        order_id: int | None = None,
        page_key: str | None = None,
    ) -> Page[Sale]:
        """One page (10) of sales, newest first. `after` is inclusive, `before` exclusive (dates, UTC)."""
        params: dict[str, ParamValue] = {
            "after": after, "before": before, "product_id": product_id, "email": email, "order_id": order_id,
            "page_key": page_key,
        }
        return await self._page("list_sales", "sales", Sale.from_json, params=params)

    async def iter_sales(
        self,
        *,
        after: date | None = None,
        before: date | None = None,
        product_id: str | None = None,
        email: str | None = None,
        order_id: int | None = None,
        retry: PageRetryPolicy | None = None,
    ) -> AsyncIterator[Sale]:
        """Every matching sale, page after page by `page_key` (test purchases are never listed).

        Each next page is asked for as soon as the page before it arrives, before that page's sales are parsed
        and handed on, so the API works on it while the caller works on these: a backfill of 100,000 sales
        reads 10,000 pages one after the other. Still one request at a time; one page may be read past a
        caller that stops early (its request is cancelled).

        `retry` decides, for a page that failed transiently (Retryable), how long to wait before asking for
        that same page again, or None to give up; without it the first failure is raised. A cursor that leads
        back to a page already read is refused (Permanent), so a faulty server cannot make the walk endless.
        """
        params: dict[str, str] = {
            name: text for name, value in {
                "after": after, "before": before, "product_id": product_id, "email": email, "order_id": order_id,
            }.items() if (text := form_value(value)) is not None
        }
        read: set[frozenset[tuple[str, str]]] = {frozenset(params.items())}
        failures = 0
        asked: asyncio.Future[tuple[dict[str, object], str]] | None = asyncio.ensure_future(
            self._call("list_sales", params=params))
        try:
            while asked is not None:
                try:
                    body, path = await asked
                except Retryable as exc:
                    failures += 1
                    wait = retry(exc, failures) if retry is not None else None
                    if wait is None:
                        raise
                    await asyncio.sleep(wait)
                    asked = asyncio.ensure_future(self._call("list_sales", params=params))
                    continue
                failures = 0
                asked = None
                following = next_page_params(body, params, path=path, operation="gumroad.list_sales")
                if following is not None:
                    page = frozenset(following.items())
                    if page in read:
                        raise Permanent(f"the next page_key {following.get('page_key', '')!r} leads back to a "
                                        "page already read; stopping", operation="gumroad.list_sales")
                    read.add(page)
                    params = following
                    asked = asyncio.ensure_future(self._call("list_sales", params=params))
                    for _ in range(_TURNS_TO_SEND):
                        await asyncio.sleep(0)
                for index, item in enumerate(payload_list(body, "sales", operation="gumroad.list_sales")):
                    yield parse_model(Sale.from_json, item, f"sales[{index}]", "list_sales")
        finally:
            if asked is not None:  # the caller stopped early, or a page could not be read
                asked.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):  # nobody wants that page
                    await asked

    async def get_sale(self, sale_id: str) -> Sale:
        """Any of the seller's purchases, whatever its state (test and gift purchases included)."""
        return await self._one("get_sale", "sale", Sale.from_json, path_params={"sale_id": sale_id})

    async def mark_sale_as_shipped(
        self, sale_id: str, *, tracking_url: str | None = None, idempotency_key: str
    ) -> Sale:
        """Harmless to repeat: the shipment is created once and updated after."""
        return await self._one(
            "mark_sale_as_shipped", "sale", Sale.from_json,
            path_params={"sale_id": sale_id},
            data={"tracking_url": tracking_url},
            idempotency_key=idempotency_key,
        )

    async def refund_sale(
        self, sale_id: str, *, amount_cents: int | None = None, idempotency_key: str
    ) -> Sale:
        """A full refund, or a partial one of `amount_cents` in the sale's currency (several are allowed)."""
        if amount_cents is not None and amount_cents <= 0:
            raise InvalidInput(f"amount_cents must be positive, got {amount_cents}")
        return await self._one(
            "refund_sale", "sale", Sale.from_json,
            path_params={"sale_id": sale_id},
            data={"amount_cents": amount_cents},
            idempotency_key=idempotency_key,
        )

    async def resend_receipt(self, sale_id: str, *, idempotency_key: str) -> Sale | None:
        """Gumroad's code answers a bare success; the docs example shows the sale, returned when present."""
        body, _ = await self._call(
            "resend_receipt", path_params={"sale_id": sale_id}, idempotency_key=idempotency_key
        )
        sale = body.get("sale")
        if not isinstance(sale, Mapping):
            return None
        return parse_model(Sale.from_json, sale, "sale", "resend_receipt")

    # Subscribers

    async def list_subscribers(
        self,
        product_id: str,
        *,
        email: str | None = None,
        paginated: bool = False,
        page_key: str | None = None,
    ) -> Page[Subscriber]:
        """Active subscribers: all in one answer by default, or 100 a page with `paginated=True`."""
        params: dict[str, ParamValue] = {
            "email": email, "paginated": True if paginated else None, "page_key": page_key,
        }
        return await self._page(
            "list_subscribers", "subscribers", Subscriber.from_json,
            path_params={"product_id": product_id}, params=params,
        )

    async def iter_subscribers(
        self, product_id: str, *, email: str | None = None
    ) -> AsyncIterator[Subscriber]:
        """Every active subscriber, 100 a page (paginated=true keeps large products from one huge answer)."""
        params: Mapping[str, ParamValue] = {"email": email, "paginated": True}
        async for subscriber in self._iterate(
            "list_subscribers", "subscribers", Subscriber.from_json, params,
            path_params={"product_id": product_id},
        ):
            yield subscriber

    async def get_subscriber(self, subscriber_id: str) -> Subscriber:
        return await self._one(
            "get_subscriber", "subscriber", Subscriber.from_json, path_params={"subscriber_id": subscriber_id}
        )

    # Licenses

    async def _license(
        self,
        name: str,
        product_id: str,
        license_key: str | Secret,
        idempotency_key: str,
        extra: Mapping[str, ParamValue] | None = None,
    ) -> LicenseResponse:
        body, _ = await self._call(
            name,
            # product_id is always sent: newer products require it, and without it Gumroad answers HTTP 500.
            data={"product_id": product_id, "license_key": license_key, **(extra or {})},
            idempotency_key=idempotency_key,
            secrets=(license_key,),
        )
        return parse_model(LicenseResponse.from_json, body, "license", name)

    async def verify_license(
        self,
        product_id: str,
        license_key: str | Secret,
        *,
        increment_uses_count: bool = True,
        idempotency_key: str,
    ) -> LicenseResponse:
        """Needs no token (none is sent). Counts one use unless `increment_uses_count` is False."""
        return await self._license(
            "verify_license", product_id, license_key, idempotency_key,
            {"increment_uses_count": increment_uses_count},
        )

    async def enable_license(
        self, product_id: str, license_key: str | Secret, *, idempotency_key: str
    ) -> LicenseResponse:
        return await self._license("enable_license", product_id, license_key, idempotency_key)

    async def disable_license(
        self, product_id: str, license_key: str | Secret, *, idempotency_key: str
    ) -> LicenseResponse:
        return await self._license("disable_license", product_id, license_key, idempotency_key)

    async def decrement_license_uses(
        self, product_id: str, license_key: str | Secret, *, idempotency_key: str
    ) -> LicenseResponse:
        """Uses minus one, never below zero."""
        return await self._license("decrement_license_uses", product_id, license_key, idempotency_key)

    async def rotate_license(
        self, product_id: str, license_key: str | Secret, *, idempotency_key: str
    ) -> LicenseResponse:
        """Issues a new key for the license; the answer's purchase carries it."""
        return await self._license("rotate_license", product_id, license_key, idempotency_key)

    # Payouts

    async def list_payouts(
        self,
        *,
        after: date | None = None,
        before: date | None = None,
        include_upcoming: bool = True,
        page_key: str | None = None,
    ) -> Page[Payout]:
        """One page (10) of payouts, newest first; the first may be the upcoming one, which has no id."""
        params: dict[str, ParamValue] = {
            "after": after, "before": before, "include_upcoming": None if include_upcoming else False,
            "page_key": page_key,
        }
        return await self._page("list_payouts", "payouts", Payout.from_json, params=params)

    async def iter_payouts(
        self, *, after: date | None = None, before: date | None = None, include_upcoming: bool = True
    ) -> AsyncIterator[Payout]:
        params: Mapping[str, ParamValue] = {
            "after": after, "before": before, "include_upcoming": None if include_upcoming else False,
        }
        async for payout in self._iterate("list_payouts", "payouts", Payout.from_json, params):
            yield payout

    async def get_payout(self, payout_id: str) -> Payout:
        """With view_sales as well, the payout lists its sales, refunded sales and disputed sales."""
        return await self._one("get_payout", "payout", Payout.from_json, path_params={"payout_id": payout_id})
