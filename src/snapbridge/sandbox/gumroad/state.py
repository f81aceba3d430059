"""The sandbox's whole world in memory: the seller, tokens, catalogue, sales, subscriptions and hooks.

One re-entrant lock guards it, because the API (on the server's event loop) and `GumroadSandbox.emit`
(on a test's thread) both change it. Queries here encode Gumroad's rules of what is listed and when a
subscription counts as active; rendering lives in render.py. Sales also sit in one list ordered by
(created_at, pk), both fixed at creation, so listing a page bisects into it instead of sorting every sale.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from snapbridge.sandbox.gumroad.ids import IdFactory
from snapbridge.sandbox.gumroad.models import (
    CustomField,
    License,
    OfferCode,
    Payout,
    Product,
    ResourceSubscription,
    Sale,
    SaleState,
    Seller,
    Subscription,
    Token,
    Variant,
    VariantCategory,
    WebhookEvent,
)

__all__ = ["PingTarget", "SandboxState", "Settings", "utc_now"]

# Scopes that give a resource subscription a live token (gumroad-api.md §6, "Delivery condition").
_DELIVERY_SCOPES = frozenset({"view_sales", "account"})
_LISTED_STATES = frozenset({SaleState.SUCCESSFUL, SaleState.NOT_CHARGED})


def utc_now() -> datetime:
    return datetime.now(UTC)


def _listing_order(sale: Sale) -> tuple[datetime, int]:
    return sale.created_at, sale.pk


def _created_at(sale: Sale) -> datetime:
    return sale.created_at


@dataclass
class Settings:
    """Switches settable at run time through POST /_sandbox/settings or `GumroadSandbox.configure`."""

    allow_local_post_urls: bool = True  # real Gumroad refuses localhost/127.0.0.1/0.0.0.0 post_urls
    duplicate_deliveries: bool = False  # every post is sent twice
    out_of_order: bool = False  # the posts of one emitted batch go out in reverse order
    paginate_products: bool = False  # GET /v2/products: [GR] returns all at once, [GR+] pages by 10
    delivery_timeout_seconds: float = 5.0  # real seconds, not scaled by the time factor
    retry_delays_seconds: tuple[float, ...] = (60.0, 180.0, 600.0)  # scaled by the time factor
    sale_delay_seconds: float = 10.0  # a sale ping is queued 10 s after the purchase (scaled)
    event_delay_seconds: float = 5.0  # every other post 5 s after its event (scaled)


@dataclass(frozen=True)
class PingTarget:
    url: str
    content_type: str
    resource_subscription_id: str | None  # None for the seller's Ping URL


class SandboxState:
    def __init__(self, seed: int, clock: Callable[[], datetime] = utc_now) -> None:
        self.lock = threading.RLock()
        self.seed = seed
        self.ids = IdFactory(seed)
        self.clock = clock
        self.settings = Settings()
        self.seller = Seller(
            id=self.ids.external_id(),
            user_id=self.ids.user_id(),
            name="Sandbox Studio",
            username="sandboxstudio",
            email="seller@sandbox-studio.example",
            bio="Brushes, fonts, courses and notebooks — a seeded Gumroad seller.",
            twitter_handle="sandboxstudio",
        )
        self.default_application_id = "sandbox-app"
        self.tokens: dict[str, Token] = {}
        self.products: dict[str, Product] = {}
        self.variant_categories: dict[str, VariantCategory] = {}
        self.variants: dict[str, Variant] = {}
        self.offer_codes: dict[str, OfferCode] = {}
        self.custom_fields: dict[str, CustomField] = {}
        self.sales: dict[str, Sale] = {}  # written only by add_sale, which keeps the indexes below in step
        self.buyer_emails: set[str] = set()  # every buyer's email, so "bought before?" is not a scan of all sales
        self._sales_in_order: list[Sale] = []  # oldest first by (created_at, pk); only add_sale changes it
        self._sales_by_order_id: dict[int, Sale] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.licenses: dict[str, License] = {}
        self.resource_subscriptions: dict[str, ResourceSubscription] = {}
        self.payouts: dict[str, Payout] = {}
        self.ping_url: str | None = None
        # Set by GumroadSandbox: hands events to the webhook sender (API refunds post like scenarios do).
        self.notify: Callable[[list[WebhookEvent]], None] = lambda events: None
        self._pk = 0
        self._last_stamp = datetime.min.replace(tzinfo=UTC)

    def now(self) -> datetime:
        return self.clock()

    def stamp(self) -> datetime:
        """`created_at` for a new row: now, but never before the previous stamp, so keys grow with time."""
        moment = max(self.clock(), self._last_stamp)
        self._last_stamp = moment
        return moment

    def next_pk(self) -> int:
        self._pk += 1
        return self._pk

    # ---- tokens -------------------------------------------------------------------------------------

    def add_token(self, label: str, scopes: frozenset[str], application_id: str | None = None) -> Token:
        token = Token(self.ids.token(label), scopes, application_id or self.default_application_id)
        self.tokens[token.value] = token
        return token

    # ---- products -----------------------------------------------------------------------------------

    def find_product(self, ref: str) -> Product | None:
        """By external id or short permalink, as `fetch_product` does; deleted products are still found."""
        product = self.products.get(ref)
        if product is not None:
            return None if product.foreign else product
        for candidate in self.products.values():
            if not candidate.foreign and ref in (candidate.unique_permalink, candidate.custom_permalink):
                return candidate
        return None

    def listed_products(self) -> list[Product]:
        alive = [p for p in self.products.values() if not p.deleted and not p.foreign]
        return sorted(alive, key=lambda p: (p.created_at, p.pk), reverse=True)

    def product_custom_fields(self, product: Product) -> list[CustomField]:
        return [
            self.custom_fields[i]
            for i in product.custom_field_ids
            if i in self.custom_fields and not self.custom_fields[i].deleted
        ]

    def product_variant_categories(self, product: Product) -> list[VariantCategory]:
        return [
            self.variant_categories[i]
            for i in product.variant_category_ids
            if not self.variant_categories[i].deleted
        ]

    def category_variants(self, category: VariantCategory) -> list[Variant]:
        return [self.variants[i] for i in category.variant_ids if not self.variants[i].deleted]

    def product_offer_codes(self, product: Product) -> list[OfferCode]:
        """The product's own codes plus the seller's universal ones (`product_and_universal_offer_codes`)."""
        return [
            code
            for code in self.offer_codes.values()
            if not code.deleted and (code.universal or product.id in code.product_ids)
        ]

    # ---- sales --------------------------------------------------------------------------------------

    def add_sale(self, sale: Sale) -> None:
        """The one way a sale enters the state; the caller holds the lock."""
        self.sales[sale.id] = sale
        self.buyer_emails.add(sale.buyer.email)
        self._sales_by_order_id.setdefault(sale.order_id, sale)
        insort(self._sales_in_order, sale, key=_listing_order)  # new sales are the newest: an append, in practice

    def is_listed(self, sale: Sale) -> bool:
        """Whether GET /v2/sales can list it: successful sales and free-trial sign-ups (§3)."""
        return (
            sale.state in _LISTED_STATES
            and not sale.is_gift_receiver
            and not sale.is_test
            and not self.products[sale.product_id].foreign
        )

    def listed_sales(self) -> list[Sale]:
        """What GET /v2/sales can list, newest first."""
        return list(self.walk_listed_sales())

    def walk_listed_sales(
        self, *, up_to: datetime | None = None, before: datetime | None = None, since: datetime | None = None
    ) -> Iterator[Sale]:
        """Listed sales newest first, created at or before `up_to`, before `before` and at or after `since`.

        Lazy: it bisects to the newest candidate and checks the listing rules only on the rows it walks,
        so a page costs O(log n + rows walked). Consume it under the lock.
        """
        order = self._sales_in_order
        end = len(order)
        if up_to is not None:
            end = bisect_right(order, up_to, hi=end, key=_created_at)
        if before is not None:
            end = bisect_left(order, before, hi=end, key=_created_at)
        for index in range(end - 1, -1, -1):
            sale = order[index]
            if since is not None and sale.created_at < since:
                return
            if self.is_listed(sale):
                yield sale

    def own_sale(self, sale_id: str | None) -> Sale | None:
        """Any of the seller's purchases, whatever its state (`current_resource_owner.sales`)."""
        sale = self.sales.get(sale_id) if sale_id else None
        return sale if sale is not None and not self.products[sale.product_id].foreign else None

    def sale_by_order_id(self, order_id: int) -> Sale | None:
        return self._sales_by_order_id.get(order_id)

    def sale_license(self, sale: Sale) -> License | None:
        return self.licenses.get(sale.license_id) if sale.license_id else None

    # ---- subscriptions ------------------------------------------------------------------------------

    def subscription_over(self, sub: Subscription, now: datetime) -> bool:
        """The docs rule: over once failed_at, ended_at or cancelled_at is set and in the past."""
        if sub.deactivated_at is not None:
            return True
        return any(t is not None and t <= now for t in (sub.failed_at, sub.ended_at, sub.cancelled_at))

    def termination_reason(self, sub: Subscription) -> str:
        if sub.failed_at is not None:
            return "failed_payment"
        if sub.ended_at is not None:
            return "fixed_subscription_period_ended"
        return "cancelled"

    def subscription_status(self, sub: Subscription, now: datetime) -> str:
        if self.subscription_over(sub, now):
            return self.termination_reason(sub)
        if sub.pending_failure:
            return "pending_failure"
        if sub.cancelled_at is not None:
            return "pending_cancellation"
        return "alive"

    def active_subscribers(self, product: Product, now: datetime) -> list[Subscription]:
        rows = [
            s
            for s in self.subscriptions.values()
            if s.product_id == product.id and not s.is_test and not self.subscription_over(s, now)
        ]
        return sorted(rows, key=lambda s: (s.created_at, s.pk), reverse=True)

    def subscription_by_numeric_id(self, numeric_id: int) -> Subscription | None:
        return next((s for s in self.subscriptions.values() if s.numeric_id == numeric_id), None)

    # ---- webhooks -----------------------------------------------------------------------------------

    def application_has_live_token(self, application_id: str) -> bool:
        return any(
            t.application_id == application_id and not t.revoked and t.scopes & _DELIVERY_SCOPES
            for t in self.tokens.values()
        )

    def ping_targets(self, resource_name: str) -> list[PingTarget]:
        """Where one event goes: the seller's Ping URL (sales only) and every live matching subscription."""
        targets: list[PingTarget] = []
        if resource_name == "sale" and self.ping_url:
            targets.append(PingTarget(self.ping_url, "application/x-www-form-urlencoded", None))
        subs = sorted(self.resource_subscriptions.values(), key=lambda r: (r.created_at, r.id))
        for sub in subs:
            if sub.deleted or sub.resource_name != resource_name:
                continue
            if not self.application_has_live_token(sub.application_id):
                continue  # a revoked app's subscriptions go silent, as on Gumroad
            targets.append(PingTarget(sub.post_url, content_type_for(sub.post_url), sub.id))
        return targets


def content_type_for(post_url: str) -> str:
    """Form encoding, except JSON for subscriptions whose host ends in zapier.com (§5.1)."""
    host = (urlsplit(post_url).hostname or "").lower()
    return "application/json" if host.endswith("zapier.com") else "application/x-www-form-urlencoded"
