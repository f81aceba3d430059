"""GET /v2/sales paging and filters exactly as gumroad-api.md §3 says, and the single-sale endpoints."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from snapbridge.sandbox import Sandboxes, ServerThread
from snapbridge.sandbox.gumroad import GumroadSandbox
from snapbridge.sandbox.gumroad.models import Sale


@pytest.fixture
def gumroad(sandboxes: Sandboxes) -> Iterator[tuple[GumroadSandbox, httpx.Client]]:
    headers = {"Authorization": f"Bearer {sandboxes.gumroad.access_token}"}
    with httpx.Client(base_url=sandboxes.gumroad_url, headers=headers, timeout=10) as client:
        yield sandboxes.gumroad, client


def _expected(sandbox: GumroadSandbox) -> list[Sale]:
    """What the list must hold, from the documented rules rather than the sandbox's own query."""
    state = sandbox.state
    with state.lock:
        rows = [
            s for s in state.sales.values()
            if s.state.value in ("successful", "not_charged")
            and not s.is_gift_receiver
            and s.state.value != "test_successful"
            and not state.products[s.product_id].foreign
        ]
    return sorted(rows, key=lambda s: (s.created_at, s.pk), reverse=True)


def _walk(client: httpx.Client, first: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    pages = [client.get(first, params=params).json()]
    while "next_page_url" in pages[-1]:
        pages.append(client.get(pages[-1]["next_page_url"]).json())
    return pages


def _day(iso: str) -> date:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).date()


def test_walking_every_page_lists_each_sale_once_newest_first(
    gumroad: tuple[GumroadSandbox, httpx.Client],
) -> None:
    sandbox, client = gumroad
    pages = _walk(client, "/v2/sales")
    assert len(pages) >= 4
    for page in pages[:-1]:
        assert page["success"] is True
        assert len(page["sales"]) == 10
        assert page["next_page_url"].startswith("/v2/sales?page_key=")
        assert page["next_page_url"].endswith(page["next_page_key"])
    last = pages[-1]
    assert 1 <= len(last["sales"]) <= 10
    assert "next_page_key" not in last and "next_page_url" not in last  # missing, never null
    listed = [s for page in pages for s in page["sales"]]
    ids = [s["id"] for s in listed]
    assert len(ids) == len(set(ids)) >= 35
    assert ids == [s.id for s in _expected(sandbox)]
    stamps = [s["created_at"] for s in listed]
    assert stamps == sorted(stamps, reverse=True)


def test_paging_through_thousands_of_sales_lists_each_listed_sale_once_newest_first() -> None:
    """3,000 new sales in a sandbox of its own, dozens sharing each created_at and some not listed."""
    start = datetime(2024, 3, 1, tzinfo=UTC)
    ticks = itertools.count()
    # Every 25 sales share one created_at, three hours after the previous 25: about 15 days in all.
    sandbox = GumroadSandbox(
        seed=41, time_factor=0.001, clock=lambda: start + timedelta(hours=3 * (next(ticks) // 25))
    )
    for i in range(3_000):
        if i % 100 == 7:
            sandbox.emit("test_purchase")  # never listed
        elif i % 100 == 53:
            sandbox.emit("gift_purchase", {"email": f"gifter{i}@example.net"})  # the giftee's sale is not listed
        else:
            sandbox.emit("first_purchase", {"email": f"paging{i}@example.net"})
    expected = _expected(sandbox)
    assert len({s.created_at for s in expected}) < len(expected) / 10  # ties straddle page boundaries
    server = ServerThread(sandbox.app, "127.0.0.1", 0).start()
    headers = {"Authorization": f"Bearer {sandbox.access_token}"}
    try:
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as client:
            walked = [s["id"] for page in _walk(client, "/v2/sales") for s in page["sales"]]
            after, before = start.date() + timedelta(days=3), start.date() + timedelta(days=9)
            window = _walk(client, "/v2/sales", {"after": after.isoformat(), "before": before.isoformat()})
    finally:
        server.stop()
    assert len(walked) > 3_000
    assert walked == [s.id for s in expected]
    in_window = [s.id for s in expected if after <= s.created_at.date() < before]
    assert len(in_window) > 500
    assert [s["id"] for page in window for s in page["sales"]] == in_window


def test_test_and_gift_receiver_purchases_are_not_listed_but_can_be_fetched(
    gumroad: tuple[GumroadSandbox, httpx.Client],
) -> None:
    sandbox, client = gumroad
    listed = {s["id"] for page in _walk(client, "/v2/sales") for s in page["sales"]}
    with sandbox.state.lock:
        hidden = [s for s in sandbox.state.sales.values() if s.is_test or s.is_gift_receiver]
        senders = [s.id for s in sandbox.state.sales.values() if s.is_gift_sender]
    assert {s.is_test for s in hidden} == {True, False}  # both kinds are seeded
    assert senders and set(senders) <= listed  # the gift sender's purchase is listed
    for sale in hidden:
        assert sale.id not in listed
        body = client.get(f"/v2/sales/{sale.id}").json()
        assert body["success"] is True and body["sale"]["id"] == sale.id


def test_next_page_url_is_relative_keeps_filters_and_drops_the_token(
    gumroad: tuple[GumroadSandbox, httpx.Client],
) -> None:
    sandbox, client = gumroad
    after = (date.today() - timedelta(days=120)).isoformat()
    body = client.get(
        "/v2/sales",
        params={"after": after, "access_token": sandbox.access_token},
        headers={"Authorization": ""},
    ).json()
    url = body["next_page_url"]
    parts = urlsplit(url)
    assert parts.scheme == "" and parts.netloc == "" and parts.path == "/v2/sales"
    assert parse_qs(parts.query) == {"after": [after], "page_key": [body["next_page_key"]]}
    assert url.index("after=") < url.index("page_key=")  # keys in sorted order
    second = client.get("/v2/sales", params={"after": after, "page_key": body["next_page_key"]}).json()
    assert second == client.get(url).json()
    assert {s["id"] for s in second["sales"]}.isdisjoint({s["id"] for s in body["sales"]})


@pytest.mark.parametrize(
    "page_key",
    ["garbage", "2024-01-01", "20240101000000000000", "20240101000000000000-0", "20241301000000000000-5",
     "20240101000000000000-abc", "20240101000000000000-123456789"],
)
def test_an_undecodable_page_key_is_400(gumroad: tuple[GumroadSandbox, httpx.Client], page_key: str) -> None:
    _, client = gumroad
    response = client.get("/v2/sales", params={"page_key": page_key})
    assert response.status_code == 400
    assert response.json() == {"status": 400, "error": "Invalid page_key."}


def test_after_is_inclusive_and_before_is_exclusive_at_utc_midnight(
    gumroad: tuple[GumroadSandbox, httpx.Client],
) -> None:
    _, client = gumroad
    everything = [s for page in _walk(client, "/v2/sales") for s in page["sales"]]
    midnight = [s for s in everything if s["created_at"].endswith("T00:00:00Z")]
    assert midnight, "the seed places a sale at exactly 00:00:00 UTC"
    day = _day(midnight[0]["created_at"])
    next_day = (day + timedelta(days=1)).isoformat()

    def ids(**params: str) -> list[str]:
        return [s["id"] for page in _walk(client, "/v2/sales", params) for s in page["sales"]]

    assert midnight[0]["id"] in ids(after=day.isoformat())
    assert midnight[0]["id"] not in ids(before=day.isoformat())
    assert midnight[0]["id"] in ids(before=next_day)
    on_day = ids(after=day.isoformat(), before=next_day)
    assert on_day == [s["id"] for s in everything if _day(s["created_at"]) == day]
    assert ids(after=next_day, before=day.isoformat()) == []


BAD_DATE = "Invalid date format provided in field '{}'. Dates must be in the format YYYY-MM-DD."


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"before": "2024/01/01"}, BAD_DATE.format("before")),
        ({"before": ""}, BAD_DATE.format("before")),
        ({"after": "2024-13-01"}, BAD_DATE.format("after")),
        ({"after": "2024-01-01T00:00:00Z"}, BAD_DATE.format("after")),
        ({"product_id": "not-an-id"}, "Invalid product ID."),
        ({"order_id": "12x"}, "Invalid order ID."),
        ({"order_id": "007"}, "Invalid order ID."),
        ({"page": "0"}, "Invalid page number. Page numbers start at 1."),
        ({"page": "abc"}, "Invalid page number. Page numbers start at 1."),
    ],
)
def test_bad_list_parameters_get_the_400_shape(
    gumroad: tuple[GumroadSandbox, httpx.Client], params: dict[str, str], error: str
) -> None:
    _, client = gumroad
    response = client.get("/v2/sales", params=params)
    assert response.status_code == 400
    assert response.json() == {"status": 400, "error": error}


def test_one_digit_month_and_day_are_valid_dates(gumroad: tuple[GumroadSandbox, httpx.Client]) -> None:
    _, client = gumroad
    assert client.get("/v2/sales", params={"after": "2020-1-5"}).status_code == 200


def test_filters_by_email_product_and_order(gumroad: tuple[GumroadSandbox, httpx.Client]) -> None:
    sandbox, client = gumroad
    expected = _expected(sandbox)
    sale = next(s for s in expected if s.subscription_id is None)
    padded = {"email": f"  {sale.buyer.email} "}  # trimmed before the exact match
    by_email = [s["id"] for p in _walk(client, "/v2/sales", padded) for s in p["sales"]]
    assert by_email == [s.id for s in expected if s.buyer.email == sale.buyer.email]
    pages = _walk(client, "/v2/sales", {"product_id": sale.product_id})
    by_product = [s["id"] for p in pages for s in p["sales"]]
    assert by_product == [s.id for s in expected if s.product_id == sale.product_id]
    by_order = client.get("/v2/sales", params={"order_id": str(sale.order_id)}).json()["sales"]
    assert [s["id"] for s in by_order] == [sale.id]
    unknown = client.get("/v2/sales", params={"product_id": "AAAAAAAAAAAAAAAAAAAAAA=="}).json()
    assert unknown == {"success": True, "sales": []}


def test_deprecated_page_parameter_offsets_by_ten(gumroad: tuple[GumroadSandbox, httpx.Client]) -> None:
    sandbox, client = gumroad
    expected = [s.id for s in _expected(sandbox)]
    body = client.get("/v2/sales", params={"page": "2"}).json()
    assert [s["id"] for s in body["sales"]] == expected[10:20]
    assert "page=" not in body["next_page_url"]


def test_a_sale_object_has_the_documented_shape(gumroad: tuple[GumroadSandbox, httpx.Client]) -> None:
    sandbox, client = gumroad
    sale = next(s for s in _expected(sandbox) if not s.ever_refunded and s.variants and s.license_id)
    body = client.get(f"/v2/sales/{sale.id}").json()
    assert body["success"] is True
    data = body["sale"]
    assert data["id"] == sale.id and data["order_id"] == sale.order_id and isinstance(data["order_id"], int)
    assert data["seller_id"] == sandbox.seller_id
    assert isinstance(data["price"], int) and isinstance(data["gumroad_fee"], int)
    assert "refunded" not in data  # missing until a refund happens
    assert data["partially_refunded"] is False
    assert data["variants"] == sale.variants
    assert data["license_key"] and data["license_id"]
    assert len(data["product_permalink"]) == 5  # the short code, not a URL
    assert data["created_at"].endswith("Z") and len(data["created_at"]) == 20
    assert data["card"].keys() == {"visual", "type", "bin", "expiry_month", "expiry_year"}
    assert None not in data.values()  # nulls are dropped


def test_an_unknown_sale_is_200_with_success_false(gumroad: tuple[GumroadSandbox, httpx.Client]) -> None:
    _, client = gumroad
    calls = [("GET", "/v2/sales/nope"), ("PUT", "/v2/sales/nope/refund"),
             ("PUT", "/v2/sales/nope/mark_as_shipped"), ("POST", "/v2/sales/nope/resend_receipt")]
    for method, path in calls:
        response = client.request(method, path)
        assert response.status_code == 200
        assert response.json() == {"success": False, "message": "The sale was not found."}


def test_partial_then_full_refund(gumroad: tuple[GumroadSandbox, httpx.Client]) -> None:
    sandbox, client = gumroad
    created = sandbox.emit("first_purchase", {"product_id": "brushes", "variants": {"Format": "Procreate"}})
    sale_id = created["sale_id"]
    partial = client.put(f"/v2/sales/{sale_id}/refund", data={"amount_cents": "200"}).json()["sale"]
    assert partial["refunded"] is False and partial["partially_refunded"] is True
    assert partial["amount_refundable_in_currency"] == "10"
    listed = client.get("/v2/sales", params={"order_id": str(created["order_id"])}).json()["sales"][0]
    assert listed["partially_refunded"] is True  # refunded sales stay listed
    too_much = client.put(f"/v2/sales/{sale_id}/refund", data={"amount_cents": "5000"}).json()
    assert too_much["success"] is False
    full = client.put(f"/v2/sales/{sale_id}/refund").json()["sale"]
    assert full["refunded"] is True and full["partially_refunded"] is False
    again = client.put(f"/v2/sales/{sale_id}/refund").json()
    assert again == {"success": False, "message": "Purchase is already refunded."}


def test_mark_as_shipped_and_resend_receipt(gumroad: tuple[GumroadSandbox, httpx.Client]) -> None:
    sandbox, client = gumroad
    sale_id = sandbox.emit("first_purchase", {"product_id": "brushes"})["sale_id"]
    shipped = client.put(f"/v2/sales/{sale_id}/mark_as_shipped", data={"tracking_url": "https://t.example/1"})
    assert shipped.json()["sale"]["shipped"] is True
    assert shipped.json()["sale"]["tracking_url"] == "https://t.example/1"
    assert client.put(f"/v2/sales/{sale_id}/mark_as_shipped").json()["success"] is True  # harmless again
    assert client.post(f"/v2/sales/{sale_id}/resend_receipt").json() == {"success": True}
