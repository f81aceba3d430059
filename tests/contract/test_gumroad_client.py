"""The Gumroad client against the Gumroad sandbox over real HTTP: user, products and their parts, errors."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from itertools import count
from pathlib import Path

import httpx
import pytest

from snapbridge.connectors.gumroad import (
    OPERATIONS,
    GumroadClient,
    OfferType,
    Product,
)
from snapbridge.errors import AuthFailed, InvalidInput, NotFound, Permanent, ScopeMissing
from snapbridge.http import create_client
from snapbridge.sandbox import GumroadSandbox, JournalEntry, Sandboxes, ServerThread
from snapbridge.security import Secret

LOCAL = ("127.0.0.1",)
_keys = count(1)


def key(label: str) -> str:
    """A caller-made idempotency key, as a job would derive it (event id and step)."""
    return f"contract:{label}:{next(_keys)}"


@pytest.fixture
async def http(sandboxes: Sandboxes) -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(sandboxes.gumroad_url, allowed_hosts=LOCAL) as client:
        yield client


@pytest.fixture
def gumroad(sandboxes: Sandboxes, http: httpx.AsyncClient) -> GumroadClient:
    return GumroadClient(http, Secret(sandboxes.gumroad.access_token), base_url=sandboxes.gumroad_url)


def client_with_scopes(sandboxes: Sandboxes, http: httpx.AsyncClient, *scopes: str) -> GumroadClient:
    token = sandboxes.gumroad.create_token(scopes)
    return GumroadClient(http, Secret(token), base_url=sandboxes.gumroad_url)


async def product_named(gumroad: GumroadClient, name: str) -> Product:
    products = await gumroad.list_products()
    found = [p for p in products if p.name == name]
    assert found, f"seeded product {name!r} missing; have {[p.name for p in products]}"
    return found[0]


async def journal_after(
    sandbox: GumroadSandbox, before: int, at_least: int, *, method: str | None = None, path: str | None = None
) -> list[JournalEntry]:
    """The sandbox's journal entries past `before`, once `at_least` have arrived (the server writes an entry
    after it has answered, so a test can see the answer first)."""
    deadline = time.monotonic() + 5.0
    while True:
        found = sandbox.journal.entries(method=method, path=path)[before:]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def private_gumroad() -> Iterator[tuple[GumroadSandbox, str]]:
    """A sandbox of our own for the one change that cannot be undone (deleting a seeded product)."""
    sandbox = GumroadSandbox(seed=11, time_factor=0.001)
    server = ServerThread(sandbox.app, "127.0.0.1", 0).start()
    sandbox.base_url = server.base_url
    try:
        yield sandbox, server.base_url
    finally:
        server.stop()


# The user


async def test_get_user_names_the_seller(gumroad: GumroadClient) -> None:
    user = await gumroad.get_user()
    assert user.name == "Sandbox Studio"
    assert user.id.isdigit()
    assert user.email is not None and "@" in user.email


# Products


async def test_list_and_get_products(gumroad: GumroadClient) -> None:
    products = await gumroad.list_products()
    assert len(products) >= 5
    assert all(not p.deleted for p in products)
    assert [p.name for p in products if p.name == "Old Product"] == []  # deleted products are not listed
    font = next(p for p in products if p.name == "Retro Font")
    assert font.price.currency == "jpy"
    fetched = await gumroad.get_product(font.id)
    assert (fetched.id, fetched.name, fetched.price) == (font.id, font.name, font.price)
    assert fetched.custom_fields and fetched.custom_fields[0].required is True


async def test_products_read_the_same_when_gumroad_paginates(
    sandboxes: Sandboxes, gumroad: GumroadClient
) -> None:
    # The seeded catalogue lists fewer than 10 products and the API cannot create one, so this shows the paged
    # answer is read the same; following next_page_url itself is covered by test_gumroad_pagination.py.
    start = len(sandboxes.gumroad.journal.entries(method="GET", path="/v2/products"))
    everything = await gumroad.list_products()
    # The sandbox journals a request after answering it: wait for this one's entry, or it could land after
    # `before` and be counted as a page.
    first = await journal_after(sandboxes.gumroad, start, 1, method="GET", path="/v2/products")
    sandboxes.gumroad.configure(paginate_products=True)
    try:
        before = start + len(first)
        paged = await gumroad.list_products()
    finally:
        sandboxes.gumroad.configure(paginate_products=False)
    pages = (len(everything) + 9) // 10
    requests = await journal_after(sandboxes.gumroad, before, pages, method="GET", path="/v2/products")
    assert [p.id for p in paged] == [p.id for p in everything]
    assert len(requests) == pages


async def test_disable_and_enable_a_product(gumroad: GumroadClient) -> None:
    product = await product_named(gumroad, "Monthly Newsletter")
    assert product.published
    try:
        disabled = await gumroad.disable_product(product.id, idempotency_key=key("disable"))
        assert disabled.published is False
        assert (await gumroad.get_product(product.id)).published is False
    finally:
        enabled = await gumroad.enable_product(product.id, idempotency_key=key("enable"))
    assert enabled.published is True


async def test_delete_a_product(private_gumroad: tuple[GumroadSandbox, str]) -> None:
    sandbox, base_url = private_gumroad
    async with create_client(base_url, allowed_hosts=LOCAL) as http:
        client = GumroadClient(http, Secret(sandbox.access_token), base_url=base_url)
        draft = next(p for p in await client.list_products() if p.name == "Draft Template")
        await client.delete_product(draft.id, idempotency_key=key("delete-product"))
        assert draft.id not in {p.id for p in await client.list_products()}


async def test_a_product_that_does_not_exist(gumroad: GumroadClient) -> None:
    with pytest.raises(NotFound, match="not found") as caught:
        await gumroad.get_product("AAAAAAAAAAAAAAAAAAAAAA==")
    assert caught.value.status == 200  # Gumroad says "not found" with HTTP 200 and success:false
    assert caught.value.operation == "gumroad.get_product"


# Variant categories and variants


async def test_variant_category_and_variant_lifecycle(gumroad: GumroadClient) -> None:
    product = await product_named(gumroad, "Kochbuch für Anfänger")
    category = await gumroad.create_variant_category(product.id, title="Größe ✓", idempotency_key=key("vc"))
    assert category.title == "Größe ✓"
    try:
        assert await gumroad.get_variant_category(product.id, category.id) == category
        renamed = await gumroad.update_variant_category(
            product.id, category.id, title="Format", idempotency_key=key("vc-rename")
        )
        assert renamed.title == "Format"
        assert category.id in {c.id for c in await gumroad.list_variant_categories(product.id)}

        variant = await gumroad.create_variant(
            product.id, category.id, name="Hardcover", price_difference_cents=250, max_purchase_count=5,
            description="Gebunden", idempotency_key=key("variant"),
        )
        assert (variant.name, variant.price_difference_cents) == ("Hardcover", 250)
        assert variant.max_purchase_count == 5
        assert await gumroad.get_variant(product.id, category.id, variant.id) == variant
        changed = await gumroad.update_variant(
            product.id, category.id, variant.id, price_difference_cents=300,
            idempotency_key=key("variant-edit"),
        )
        assert (changed.name, changed.price_difference_cents) == ("Hardcover", 300)
        assert [v.id for v in await gumroad.list_variants(product.id, category.id)] == [variant.id]
        await gumroad.delete_variant(product.id, category.id, variant.id, idempotency_key=key("variant-del"))
        assert await gumroad.list_variants(product.id, category.id) == ()
        with pytest.raises(NotFound):
            await gumroad.get_variant(product.id, category.id, variant.id)
    finally:
        await gumroad.delete_variant_category(product.id, category.id, idempotency_key=key("vc-del"))
    with pytest.raises(NotFound):
        await gumroad.get_variant_category(product.id, category.id)


# Offer codes


async def test_offer_code_lifecycle(gumroad: GumroadClient) -> None:
    product = await product_named(gumroad, "Kochbuch für Anfänger")
    cents = await gumroad.create_offer_code(
        product.id, name="CONTRACT5", amount_off=500, max_purchase_count=3, idempotency_key=key("offer")
    )
    percent = await gumroad.create_offer_code(
        product.id, name="CONTRACT25", amount_off=25, offer_type=OfferType.PERCENT, universal=True,
        idempotency_key=key("offer-pct"),
    )
    try:
        assert (cents.name, cents.amount_cents, cents.offer_type, cents.universal) == (
            "CONTRACT5", 500, OfferType.CENTS, False,
        )
        assert (percent.percent_off, percent.offer_type, percent.universal) == (25, OfferType.PERCENT, True)
        assert await gumroad.get_offer_code(product.id, cents.id) == cents
        listed = {code.id for code in await gumroad.list_offer_codes(product.id)}
        assert {cents.id, percent.id} <= listed
        updated = await gumroad.update_offer_code(
            product.id, cents.id, max_purchase_count=10, idempotency_key=key("offer-edit")
        )
        assert updated.max_purchase_count == 10
    finally:
        await gumroad.delete_offer_code(product.id, cents.id, idempotency_key=key("offer-del"))
        await gumroad.delete_offer_code(product.id, percent.id, idempotency_key=key("offer-del"))
    with pytest.raises(NotFound):
        await gumroad.get_offer_code(product.id, cents.id)


# Custom fields


async def test_custom_field_lifecycle_with_a_name_that_needs_encoding(gumroad: GumroadClient) -> None:
    product = await product_named(gumroad, "Kochbuch für Anfänger")
    name = "Lieblings Rezept & Größe ✓"
    created = await gumroad.create_custom_field(product.id, name=name, idempotency_key=key("field"))
    try:
        assert (created.name, created.required, created.type) == (name, False, "text")
        updated = await gumroad.update_custom_field(
            product.id, name, required=True, idempotency_key=key("field-edit")
        )
        assert updated.required is True
        listed = {field.name: field for field in await gumroad.list_custom_fields(product.id)}
        assert listed[name].required is True
    finally:
        await gumroad.delete_custom_field(product.id, name, idempotency_key=key("field-del"))
    assert name not in {field.name for field in await gumroad.list_custom_fields(product.id)}


# Auth, scopes and the idempotency key


async def test_a_wrong_token_is_auth_failed_and_never_shown(
    sandboxes: Sandboxes, http: httpx.AsyncClient
) -> None:
    bogus = Secret("not-a-real-token-canary-4711")
    client = GumroadClient(http, bogus, base_url=sandboxes.gumroad_url)
    with pytest.raises(AuthFailed) as caught:
        await client.get_user()
    assert caught.value.status == 401
    assert "invalid_token" in caught.value.message
    assert "canary-4711" not in str(caught.value) + caught.value.excerpt


async def test_a_revoked_token_is_auth_failed(sandboxes: Sandboxes, http: httpx.AsyncClient) -> None:
    token = sandboxes.gumroad.create_token(["view_sales"])
    client = GumroadClient(http, Secret(token), base_url=sandboxes.gumroad_url)
    await client.get_user()
    sandboxes.gumroad.revoke_token(token)
    with pytest.raises(AuthFailed):
        await client.get_user()


async def test_public_reads_work_with_the_default_scope(
    sandboxes: Sandboxes, http: httpx.AsyncClient
) -> None:
    client = client_with_scopes(sandboxes, http)  # no scopes: Doorkeeper's default, view_public
    assert await client.list_products()
    assert (await client.get_user()).name == "Sandbox Studio"


async def test_product_writes_need_edit_products(sandboxes: Sandboxes, http: httpx.AsyncClient) -> None:
    client = client_with_scopes(sandboxes, http, "view_sales")
    product = await product_named(client, "Monthly Newsletter")
    with pytest.raises(ScopeMissing) as caught:
        await client.disable_product(product.id, idempotency_key=key("scope"))
    assert caught.value.scopes == ("edit_products",)
    assert caught.value.status == 403
    assert "edit_products" in str(caught.value)


async def test_the_catch_all_account_scope_is_accepted(sandboxes: Sandboxes, http: httpx.AsyncClient) -> None:
    client = client_with_scopes(sandboxes, http, "account")
    product = await product_named(client, "Kochbuch für Anfänger")
    assert await client.list_custom_fields(product.id) is not None
    assert (await client.list_sales()).items


async def test_the_idempotency_key_is_logged_not_sent(
    sandboxes: Sandboxes, gumroad: GumroadClient, caplog: pytest.LogCaptureFixture
) -> None:
    product = await product_named(gumroad, "Monthly Newsletter")
    caplog.set_level(logging.INFO, logger="snapbridge.connectors.gumroad")
    path = f"/v2/products/{product.id}/enable"
    before = len(sandboxes.gumroad.journal.entries(path=path))
    await gumroad.enable_product(product.id, idempotency_key="evt_42:step_1")
    assert any("idempotency_key=evt_42:step_1" in r.getMessage() for r in caplog.records)
    [entry] = await journal_after(sandboxes.gumroad, before, 1, path=path)
    assert entry.method == "PUT" and entry.idempotency_key is None


async def test_a_write_without_an_idempotency_key_is_refused_before_sending(
    sandboxes: Sandboxes, gumroad: GumroadClient
) -> None:
    before = len(sandboxes.gumroad.journal.entries())
    users_before = len(sandboxes.gumroad.journal.entries(path="/v2/user"))
    with pytest.raises(InvalidInput, match="needs an idempotency_key"):
        await gumroad.enable_product("whatever", idempotency_key="")
    await gumroad.get_user()  # a marker: once it is journaled, anything sent before it would be too
    arrived = await journal_after(sandboxes.gumroad, users_before, 1, path="/v2/user")
    # An earlier test's last request may be journaled late, so look only for what this test could have sent.
    assert arrived and not any("whatever" in e.path for e in sandboxes.gumroad.journal.entries()[before:])


async def test_an_oversized_answer_is_refused(sandboxes: Sandboxes, http: httpx.AsyncClient) -> None:
    client = GumroadClient(
        http, Secret(sandboxes.gumroad.access_token), base_url=sandboxes.gumroad_url, max_response_bytes=200
    )
    with pytest.raises(Permanent, match="larger than 200 bytes"):
        await client.list_products()


# Coverage: every one of the 42 operations is a client method, and the contract tests call each one.


def test_every_operation_is_a_client_method() -> None:
    assert len(OPERATIONS) == 42
    for op in OPERATIONS:
        method = getattr(GumroadClient, op.name, None)
        assert method is not None and inspect.iscoroutinefunction(method), op.name
        parameters = inspect.signature(method).parameters
        assert ("idempotency_key" in parameters) == op.is_write, op.name


def test_every_operation_is_exercised_by_the_contract_tests() -> None:
    here = Path(__file__).parent
    source = "".join(p.read_text(encoding="utf-8") for p in sorted(here.glob("test_gumroad_client*.py")))
    called = set(re.findall(r"\.(\w+)\(", source))
    missing = sorted(op.name for op in OPERATIONS if op.name not in called)
    assert not missing, f"no contract test calls {missing}"
