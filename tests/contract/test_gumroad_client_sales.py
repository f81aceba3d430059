"""The Gumroad client against the sandbox: sales, subscribers, licenses, payouts, resource subscriptions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import count

import httpx
import pytest

from snapbridge.connectors.gumroad import (
    GumroadClient,
    Product,
    ResourceName,
    Sale,
    Subscriber,
    SubscriberStatus,
    event_from_fields,
    verify_by_fetch,
)
from snapbridge.errors import InvalidInput, NotFound, Permanent, ScopeMissing, WebhookRejected
from snapbridge.http import create_client
from snapbridge.sandbox import GumroadSandbox, ServerThread
from snapbridge.security import Secret

LOCAL = ("127.0.0.1",)
_keys = count(1)


def key(label: str) -> str:
    return f"contract-sales:{label}:{next(_keys)}"


@dataclass
class Box:
    gumroad: GumroadSandbox
    gumroad_url: str


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    """A Gumroad sandbox of this module's own: these tests add purchases, refunds and rotated licenses,
    which must not change what other tests see in the shared sandbox."""
    sandbox = GumroadSandbox(seed=31, time_factor=0.001)
    server = ServerThread(sandbox.app, "127.0.0.1", 0).start()
    sandbox.base_url = server.base_url
    try:
        yield Box(sandbox, server.base_url)
    finally:
        server.stop()


@pytest.fixture
async def http(box: Box) -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(box.gumroad_url, allowed_hosts=LOCAL) as client:
        yield client


@pytest.fixture
def gumroad(box: Box, http: httpx.AsyncClient) -> GumroadClient:
    return GumroadClient(http, Secret(box.gumroad.access_token), base_url=box.gumroad_url)


def client_with_scopes(box: Box, http: httpx.AsyncClient, *scopes: str) -> GumroadClient:
    return GumroadClient(http, Secret(box.gumroad.create_token(scopes)), base_url=box.gumroad_url)


async def product_named(gumroad: GumroadClient, name: str) -> Product:
    return next(p for p in await gumroad.list_products() if p.name == name)


async def new_sale(box: Box, gumroad: GumroadClient, product_name: str) -> Sale:
    """A purchase made for this test alone, so changing it disturbs no other test."""
    product = await product_named(gumroad, product_name)
    outcome = box.gumroad.emit("first_purchase", {"product_id": product.id})
    return await gumroad.get_sale(str(outcome["sale_id"]))


# Sales


async def test_list_sales_pages_by_ten_and_iter_sales_reads_them_all(gumroad: GumroadClient) -> None:
    first = await gumroad.list_sales()
    assert len(first.items) == 10 and first.next_page_key and not first.is_last
    second = await gumroad.list_sales(page_key=first.next_page_key)
    assert not {s.id for s in first.items} & {s.id for s in second.items}
    everything = [sale async for sale in gumroad.iter_sales()]
    assert len(everything) > 10
    assert len({s.id for s in everything}) == len(everything)
    assert [s.id for s in everything[:20]] == [s.id for s in (*first.items, *second.items)][:20]
    stamps = [s.created_at for s in everything]
    assert stamps == sorted(stamps, reverse=True)
    assert all(s.created_at.tzinfo is not None for s in everything)


async def test_list_sales_filters(gumroad: GumroadClient) -> None:
    everything = [sale async for sale in gumroad.iter_sales()]
    sample = everything[len(everything) // 2]
    by_email = [s async for s in gumroad.iter_sales(email=sample.email)]
    assert by_email and all(s.email == sample.email for s in by_email)
    by_product = [s async for s in gumroad.iter_sales(product_id=sample.product_id)]
    assert by_product and {s.product_id for s in by_product} == {sample.product_id}
    assert sample.order_id is not None
    by_order = await gumroad.list_sales(order_id=sample.order_id)
    assert [s.id for s in by_order.items] == [sample.id]
    day = sample.created_at.date()
    in_range = [s async for s in gumroad.iter_sales(after=day, before=day + timedelta(days=1))]
    assert sample.id in {s.id for s in in_range}
    assert all(s.created_at.date() == day for s in in_range)


@pytest.mark.parametrize(
    ("filters", "message"),
    [({"product_id": "not-an-id"}, "Invalid product ID."), ({"page_key": "garbage"}, "Invalid page_key.")],
)
async def test_bad_list_parameters_are_permanent_with_gumroads_message(
    gumroad: GumroadClient, filters: dict[str, str], message: str
) -> None:
    with pytest.raises(Permanent) as caught:
        await gumroad.list_sales(**filters)  # type: ignore[arg-type]
    assert caught.value.status == 400
    assert caught.value.message == message


async def test_get_sale(gumroad: GumroadClient) -> None:
    listed = (await gumroad.list_sales()).items[0]
    sale = await gumroad.get_sale(listed.id)
    assert sale == listed
    assert sale.price.currency == "usd"
    with pytest.raises(NotFound, match=r"The sale was not found\."):
        await gumroad.get_sale("AAAAAAAAAAAAAAAAAAAAAA==")


async def test_mark_a_physical_sale_as_shipped(box: Box, gumroad: GumroadClient) -> None:
    sale = await new_sale(box, gumroad, "Hand-bound Notebook")
    assert sale.is_product_physical and not sale.shipped
    shipped = await gumroad.mark_sale_as_shipped(
        sale.id, tracking_url="https://track.example/ZX9", idempotency_key=key("ship")
    )
    assert shipped.shipped is True and shipped.tracking_url == "https://track.example/ZX9"
    again = await gumroad.mark_sale_as_shipped(sale.id, idempotency_key=key("ship-again"))
    assert again.shipped is True


async def test_partial_then_full_refund(box: Box, gumroad: GumroadClient) -> None:
    sale = await new_sale(box, gumroad, "Pixel Brushes Pack")
    assert not sale.refunded
    partial = await gumroad.refund_sale(sale.id, amount_cents=100, idempotency_key=key("refund-part"))
    assert partial.partially_refunded and not partial.refunded
    full = await gumroad.refund_sale(sale.id, idempotency_key=key("refund-full"))
    assert full.refunded
    with pytest.raises(Permanent, match="already refunded") as caught:
        await gumroad.refund_sale(sale.id, idempotency_key=key("refund-twice"))
    assert not isinstance(caught.value, NotFound)


async def test_refund_accepts_either_refund_scope(box: Box, http: httpx.AsyncClient) -> None:
    for scope in ("refund_sales", "edit_sales"):
        client = client_with_scopes(box, http, scope, "view_sales")
        sale = await new_sale(box, client, "Pixel Brushes Pack")
        assert (await client.refund_sale(sale.id, idempotency_key=key(scope))).refunded


async def test_resend_receipt(box: Box, gumroad: GumroadClient, http: httpx.AsyncClient) -> None:
    sale = (await gumroad.list_sales()).items[0]
    resent = await gumroad.resend_receipt(sale.id, idempotency_key=key("receipt"))
    assert resent is None or resent.id == sale.id
    reader = client_with_scopes(box, http, "view_sales")
    with pytest.raises(ScopeMissing) as caught:
        await reader.resend_receipt(sale.id, idempotency_key=key("receipt-scope"))
    assert caught.value.scopes == ("edit_sales",)


@pytest.mark.parametrize(
    ("scopes", "call", "needed"),
    [
        (("view_public",), "get_sale", ("view_sales",)),
        (("edit_products",), "list_sales", ("view_sales",)),
        (("view_sales",), "mark_sale_as_shipped", ("mark_sales_as_shipped",)),
        (("view_sales",), "refund_sale", ("refund_sales", "edit_sales")),
        (("view_sales",), "list_payouts", ("view_payouts",)),
        (("edit_products",), "list_resource_subscriptions", ("view_sales",)),
    ],
)
async def test_scope_failures_name_the_scopes_the_operation_accepts(
    box: Box, http: httpx.AsyncClient, gumroad: GumroadClient,
    scopes: tuple[str, ...], call: str, needed: tuple[str, ...],
) -> None:
    sale_id = (await gumroad.list_sales()).items[0].id
    client = client_with_scopes(box, http, *scopes)
    with pytest.raises(ScopeMissing) as caught:
        if call == "get_sale":
            await client.get_sale(sale_id)
        elif call == "list_sales":
            await client.list_sales()
        elif call == "mark_sale_as_shipped":
            await client.mark_sale_as_shipped(sale_id, idempotency_key=key(call))
        elif call == "refund_sale":
            await client.refund_sale(sale_id, idempotency_key=key(call))
        elif call == "list_payouts":
            await client.list_payouts()
        else:
            await client.list_resource_subscriptions(ResourceName.SALE)
    assert caught.value.scopes == needed
    assert caught.value.operation == f"gumroad.{call}"


# Subscribers


async def test_subscribers_all_at_once_paged_and_one_by_one(gumroad: GumroadClient) -> None:
    course = await product_named(gumroad, "Ultimate Course")
    everyone = await gumroad.list_subscribers(course.id)
    assert everyone.items and everyone.is_last
    assert all(s.product_id == course.id for s in everyone.items)
    assert all(s.status in {SubscriberStatus.ALIVE, SubscriberStatus.PENDING_CANCELLATION,
                            SubscriberStatus.PENDING_FAILURE} for s in everyone.items)
    paged = [s async for s in gumroad.iter_subscribers(course.id)]
    assert [s.id for s in paged] == [s.id for s in everyone.items]
    one_page = await gumroad.list_subscribers(course.id, paginated=True)
    assert [s.id for s in one_page.items] == [s.id for s in everyone.items][:100]
    first = everyone.items[0]
    fetched = await gumroad.get_subscriber(first.id)
    assert fetched.id == first.id and fetched.purchase_ids == first.purchase_ids
    assert first.email is not None
    by_email = await gumroad.list_subscribers(course.id, email=first.email)
    assert first.id in {s.id for s in by_email.items}
    with pytest.raises(NotFound):
        await gumroad.get_subscriber("AAAAAAAAAAAAAAAAAAAAAA==")


# Licenses


async def test_license_lifecycle(
    box: Box, gumroad: GumroadClient, http: httpx.AsyncClient
) -> None:
    sale = await new_sale(box, gumroad, "Pixel Brushes Pack")
    assert sale.license_key
    product_id, license_key = sale.product_id, Secret(sale.license_key)
    # verify needs no token: a client holding a revoked-looking token still verifies.
    anonymous = GumroadClient(http, Secret("no-token-needed"), base_url=box.gumroad_url)
    verified = await anonymous.verify_license(product_id, license_key, idempotency_key=key("verify"))
    assert verified.purchase is not None and verified.purchase.id == sale.id
    uses = verified.uses
    peek = await gumroad.verify_license(
        product_id, license_key, increment_uses_count=False, idempotency_key=key("peek")
    )
    assert peek.uses == uses
    decremented = await gumroad.decrement_license_uses(product_id, license_key, idempotency_key=key("dec"))
    assert decremented.uses == uses - 1

    await gumroad.disable_license(product_id, license_key, idempotency_key=key("disable"))
    with pytest.raises(NotFound, match="disabled") as caught:
        await gumroad.verify_license(product_id, license_key, idempotency_key=key("verify-off"))
    assert caught.value.status == 404
    assert sale.license_key not in str(caught.value) + caught.value.excerpt
    await gumroad.enable_license(product_id, license_key, idempotency_key=key("enable"))
    assert (await gumroad.verify_license(product_id, license_key, idempotency_key=key("verify-on"))).purchase

    rotated = await gumroad.rotate_license(product_id, license_key, idempotency_key=key("rotate"))
    assert rotated.purchase is not None
    new_key = rotated.purchase.license_key
    assert new_key and new_key != sale.license_key
    with pytest.raises(NotFound):
        await gumroad.verify_license(product_id, license_key, idempotency_key=key("verify-old"))
    assert (await gumroad.verify_license(product_id, new_key, idempotency_key=key("verify-new"))).purchase


async def test_an_unknown_license_is_not_found(gumroad: GumroadClient) -> None:
    product = await product_named(gumroad, "Pixel Brushes Pack")
    with pytest.raises(NotFound, match="does not exist"):
        await gumroad.verify_license(product.id, "0000-NOPE", idempotency_key=key("verify-unknown"))


# Payouts


async def test_payouts(gumroad: GumroadClient) -> None:
    first = await gumroad.list_payouts()
    assert first.items
    everything = [p async for p in gumroad.iter_payouts()]
    assert [p.id for p in everything[: len(first.items)]] == [p.id for p in first.items]
    real = [p async for p in gumroad.iter_payouts(include_upcoming=False)]
    assert real and all(not p.is_upcoming for p in real)
    assert all(p.amount.cents >= 0 and p.amount.currency for p in real)
    payout = real[0]
    assert payout.id is not None
    fetched = await gumroad.get_payout(payout.id)
    assert fetched.id == payout.id and fetched.amount == payout.amount
    assert fetched.sales is not None  # the full token also holds view_sales
    with pytest.raises(NotFound):
        await gumroad.get_payout("AAAAAAAAAAAAAAAAAAAAAA==")


# Resource subscriptions


async def test_resource_subscription_lifecycle(gumroad: GumroadClient) -> None:
    post_url = "https://hooks.example.com/hooks/gumroad/contract-secret"
    created = await gumroad.create_resource_subscription(
        ResourceName.REFUND, Secret(post_url), idempotency_key=key("subscribe")
    )
    assert (created.resource_name, created.post_url) == (ResourceName.REFUND, post_url)
    try:
        listed = await gumroad.list_resource_subscriptions("refund")
        assert created.id in {s.id for s in listed}
        assert created.id not in {s.id for s in await gumroad.list_resource_subscriptions(ResourceName.SALE)}
    finally:
        await gumroad.delete_resource_subscription(created.id, idempotency_key=key("unsubscribe"))
    assert created.id not in {s.id for s in await gumroad.list_resource_subscriptions("refund")}
    with pytest.raises(NotFound):
        await gumroad.delete_resource_subscription(created.id, idempotency_key=key("unsubscribe-again"))


async def test_a_refused_post_url_never_shows_the_secret(gumroad: GumroadClient) -> None:
    secret_url = "ftp://hooks.example.com/hooks/gumroad/very-secret-path-123"
    with pytest.raises(Permanent, match="Invalid post URL") as caught:
        await gumroad.create_resource_subscription("sale", Secret(secret_url), idempotency_key=key("bad-url"))
    assert "very-secret-path-123" not in str(caught.value) + caught.value.excerpt


async def test_an_unknown_resource_name_is_refused_before_sending(gumroad: GumroadClient) -> None:
    with pytest.raises(InvalidInput, match="not one of sale, refund"):
        await gumroad.list_resource_subscriptions("purchase")


# Verify-by-fetch


def sale_event_fields(sale: Sale, **changes: str) -> dict[str, object]:
    fields: dict[str, object] = {
        "resource_name": "sale", "sale_id": sale.id, "seller_id": sale.seller_id,
        "product_id": sale.product_id,
        "sale_timestamp": sale.created_at.isoformat(), "email": sale.email, "price": str(sale.price.cents),
    }
    return {**fields, **changes}


async def test_verify_by_fetch_returns_the_sale(box: Box, gumroad: GumroadClient) -> None:
    sale = (await gumroad.list_sales()).items[0]
    truth = await verify_by_fetch(
        gumroad, event_from_fields(sale_event_fields(sale)), expected_seller_id=box.gumroad.seller_id
    )
    assert isinstance(truth, Sale) and truth == sale


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"sale_id": "AAAAAAAAAAAAAAAAAAAAAA=="}, "has no sale"),
        ({"product_id": "BBBBBBBBBBBBBBBBBBBBBB=="}, "belongs to product"),
    ],
)
async def test_verify_by_fetch_rejects_a_forged_sale(
    gumroad: GumroadClient, changes: dict[str, str], reason: str
) -> None:
    sale = (await gumroad.list_sales()).items[0]
    with pytest.raises(WebhookRejected, match=reason):
        await verify_by_fetch(gumroad, event_from_fields(sale_event_fields(sale, **changes)))


async def test_verify_by_fetch_rejects_another_seller(gumroad: GumroadClient) -> None:
    sale = (await gumroad.list_sales()).items[0]
    event = event_from_fields(sale_event_fields(sale))
    with pytest.raises(WebhookRejected, match="another seller"):
        await verify_by_fetch(gumroad, event, expected_seller_id="CCCCCCCCCCCCCCCCCCCCCC==")


async def test_verify_by_fetch_reads_the_subscriber(gumroad: GumroadClient) -> None:
    course = await product_named(gumroad, "Ultimate Course")
    subscriber = (await gumroad.list_subscribers(course.id)).items[0]
    event = event_from_fields({
        "resource_name": "cancellation", "subscription_id": subscriber.id, "product_id": course.id,
        "product_name": course.name, "created_at": subscriber.created_at.isoformat(),
        "cancelled_at": "2030-01-01T00:00:00Z", "cancelled_by_buyer": "true",
    })
    truth = await verify_by_fetch(gumroad, event)
    assert isinstance(truth, Subscriber) and truth.id == subscriber.id
