"""Subscribers (with and without paging), payouts, the user object and resource subscription CRUD."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from test_gumroad_sandbox_support import private_sandbox

from snapbridge.sandbox import Sandboxes
from snapbridge.sandbox.gumroad import GumroadSandbox
from snapbridge.sandbox.gumroad.models import RESOURCE_NAMES


@pytest.fixture
def gumroad(sandboxes: Sandboxes) -> Iterator[tuple[GumroadSandbox, httpx.Client]]:
    headers = {"Authorization": f"Bearer {sandboxes.gumroad.access_token}"}
    with httpx.Client(base_url=sandboxes.gumroad_url, headers=headers, timeout=10) as client:
        yield sandboxes.gumroad, client


def _product_id(sandbox: GumroadSandbox, name: str) -> str:
    return next(p.id for p in sandbox.state.products.values() if p.name == name)


# ---- subscribers ---------------------------------------------------------------------------------------


def test_subscribers_lists_only_active_ones_without_paging(
    gumroad: tuple[GumroadSandbox, httpx.Client],
) -> None:
    sandbox, client = gumroad
    for name in ("Ultimate Course", "Monthly Newsletter"):
        product_id = _product_id(sandbox, name)
        body = client.get(f"/v2/products/{product_id}/subscribers").json()
        assert body["success"] is True and "next_page_url" not in body
        statuses = {s["status"] for s in body["subscribers"]}
        assert statuses <= {"alive", "pending_cancellation", "pending_failure"}
        with sandbox.state.lock:
            expected = [
                s.id for s in sorted(sandbox.state.subscriptions.values(), key=lambda s: (s.created_at, s.pk))
                if s.product_id == product_id and not s.is_test and s.deactivated_at is None
                and not (s.cancelled_at and s.cancelled_at <= sandbox.state.now())
            ]
        assert [s["id"] for s in body["subscribers"]] == expected[::-1]


def test_every_subscription_status_is_seeded_and_single_lookup_finds_ended_ones(
    gumroad: tuple[GumroadSandbox, httpx.Client],
) -> None:
    sandbox, client = gumroad
    seen = {}
    for sub_id in list(sandbox.state.subscriptions):
        body = client.get(f"/v2/subscribers/{sub_id}").json()
        assert body["success"] is True
        seen[body["subscriber"]["status"]] = body["subscriber"]
    assert {"alive", "pending_cancellation", "pending_failure", "failed_payment",
            "fixed_subscription_period_ended", "cancelled"} <= set(seen)
    ended = seen["cancelled"]
    assert ended["cancelled_at"] and ended["ended_at"] is None and ended["recurrence"] == "monthly"
    assert isinstance(ended["purchase_ids"], list) and ended["purchase_ids"]
    missing = client.get("/v2/subscribers/nope").json()
    assert missing == {"success": False, "message": "The subscriber was not found."}


def test_subscriber_email_filter(gumroad: tuple[GumroadSandbox, httpx.Client]) -> None:
    sandbox, client = gumroad
    product_id = _product_id(sandbox, "Ultimate Course")
    first = client.get(f"/v2/products/{product_id}/subscribers").json()["subscribers"][0]
    body = client.get(f"/v2/products/{product_id}/subscribers", params={"email": first["email"]}).json()
    assert [s["id"] for s in body["subscribers"]] == [first["id"]]


def test_subscribers_page_by_100_with_paginated_true() -> None:
    with private_sandbox(0.001, seed=11) as (sandbox, client):
        product_id = _product_id(sandbox, "Monthly Newsletter")
        for _ in range(103):
            sandbox.emit("subscription_start", {"product_id": product_id})
        everything = client.get(f"/v2/products/{product_id}/subscribers").json()
        assert len(everything["subscribers"]) > 100 and "next_page_key" not in everything
        for flag in ("true", "1"):
            first = client.get(f"/v2/products/{product_id}/subscribers", params={"paginated": flag}).json()
            assert len(first["subscribers"]) == 100
            assert first["next_page_url"].startswith(f"/v2/products/{product_id}/subscribers?")
            second = client.get(first["next_page_url"]).json()
            assert "next_page_url" not in second
            walked = [s["id"] for s in first["subscribers"] + second["subscribers"]]
            assert walked == [s["id"] for s in everything["subscribers"]]
        json_true = client.get(f"/v2/products/{product_id}/subscribers", params={"paginated": "yes"}).json()
        assert "next_page_key" not in json_true  # only "1" and "true" switch paging on
        bad = client.get(f"/v2/products/{product_id}/subscribers", params={"page_key": "x"})
        assert bad.status_code == 400 and bad.json() == {"status": 400, "error": "Invalid page_key."}
        missing = client.get("/v2/products/nope/subscribers").json()
        assert missing == {"success": False, "message": "The product was not found."}


# ---- payouts and user ------------------------------------------------------------------------------------


def test_payouts_page_by_ten_with_an_upcoming_row_first(gumroad: tuple[GumroadSandbox, httpx.Client]) -> None:
    sandbox, client = gumroad
    first = client.get("/v2/payouts").json()
    assert first["payouts"][0]["id"] is None  # the upcoming payout
    assert len(first["payouts"]) == 11 and "next_page_url" in first
    second = client.get(first["next_page_url"]).json()
    assert "next_page_url" not in second and all(p["id"] for p in second["payouts"])
    ids = [p["id"] for p in first["payouts"][1:] + second["payouts"]]
    assert len(ids) == len(set(ids)) == len(sandbox.state.payouts)
    created = [p["created_at"] for p in first["payouts"][1:] + second["payouts"]]
    assert created == sorted(created, reverse=True)
    without = client.get("/v2/payouts", params={"include_upcoming": "false"}).json()
    assert all(p["id"] for p in without["payouts"])
    assert isinstance(first["payouts"][1]["amount"], str) and "." in first["payouts"][1]["amount"]


def test_payout_sales_need_view_sales_too(gumroad: tuple[GumroadSandbox, httpx.Client]) -> None:
    sandbox, client = gumroad
    payout_id = next(iter(sandbox.state.payouts))
    only_payouts = sandbox.create_token(["view_payouts"])
    plain = client.get(f"/v2/payouts/{payout_id}", headers={"Authorization": f"Bearer {only_payouts}"}).json()
    assert plain["success"] is True and "sales" not in plain["payout"]
    full = client.get(f"/v2/payouts/{payout_id}").json()["payout"]
    assert {"sales", "refunded_sales", "disputed_sales"} <= full.keys()
    assert client.get("/v2/payouts/nope").json() == {"success": False, "message": "The payout was not found."}


def test_user_fields_depend_on_scopes(gumroad: tuple[GumroadSandbox, httpx.Client]) -> None:
    sandbox, client = gumroad
    full = client.get("/v2/user").json()["user"]
    assert full["user_id"] == sandbox.seller_id and full["id"].isdigit() and len(full["id"]) == 13
    assert full["email"] and full["display_name"]
    public = sandbox.create_token(["view_public"])
    slim = client.get("/v2/user", headers={"Authorization": f"Bearer {public}"}).json()["user"]
    assert "email" not in slim and "display_name" not in slim and slim["user_id"] == sandbox.seller_id


# ---- resource subscriptions ----------------------------------------------------------------------------


def test_resource_subscription_crud_for_all_eight_names() -> None:
    with private_sandbox(0.001, seed=12) as (_, client):
        made = {}
        for name in RESOURCE_NAMES:
            body = client.put("/v2/resource_subscriptions", data={"resource_name": name, "post_url": f"https://h.example/{name}"}).json()
            assert body["success"] is True
            assert body["resource_subscription"].keys() == {"id", "resource_name", "post_url"}
            made[name] = body["resource_subscription"]
        assert len(RESOURCE_NAMES) == 8
        for name in RESOURCE_NAMES:
            listed = client.get("/v2/resource_subscriptions", params={"resource_name": name}).json()
            assert listed == {"success": True, "resource_subscriptions": [made[name]]}
        gone = client.delete(f"/v2/resource_subscriptions/{made['sale']['id']}").json()
        assert gone == {"success": True, "message": "The resource_subscription was deleted successfully."}
        left = client.get("/v2/resource_subscriptions", params={"resource_name": "sale"}).json()
        assert left["resource_subscriptions"] == []
        again = client.delete(f"/v2/resource_subscriptions/{made['sale']['id']}").json()
        assert again == {"success": False, "message": "The resource_subscription was not found."}


def test_subscribing_twice_makes_two_subscriptions() -> None:
    with private_sandbox(0.001, seed=12) as (_, client):
        data = {"resource_name": "refund", "post_url": "https://h.example/r"}
        first = client.put("/v2/resource_subscriptions", data=data).json()["resource_subscription"]
        second = client.put("/v2/resource_subscriptions", data=data).json()["resource_subscription"]
        assert first["id"] != second["id"]
        listed = client.get("/v2/resource_subscriptions", params={"resource_name": "refund"}).json()
        assert len(listed["resource_subscriptions"]) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"resource_name": "sale", "post_url": "ftp://h.example/x"}, "Invalid post URL 'ftp://h.example/x'"),
        ({"resource_name": "sale", "post_url": "not a url"}, "Invalid post URL 'not a url'"),
        ({"resource_name": "sale"}, "Invalid post URL ''"),
        ({"resource_name": "sales", "post_url": "https://h.example/x"}, "Unable to subscribe to ''."),
        ({"post_url": "https://h.example/x"}, "Unable to subscribe to ''."),
        ({"resource_name": "nope", "post_url": "bad"}, "Invalid post URL 'bad'"),  # the URL is checked first
    ],
)
def test_invalid_subscriptions_are_200_with_success_false(
    gumroad: tuple[GumroadSandbox, httpx.Client], data: dict[str, str], message: str
) -> None:
    _, client = gumroad
    response = client.put("/v2/resource_subscriptions", data=data)
    assert response.status_code == 200
    assert response.json() == {"success": False, "message": message}


def test_listing_needs_a_valid_resource_name(gumroad: tuple[GumroadSandbox, httpx.Client]) -> None:
    _, client = gumroad
    for params in ({}, {"resource_name": "everything"}):
        body = client.get("/v2/resource_subscriptions", params=params).json()
        assert body == {"success": False, "message": "Valid resource_name parameter required"}


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://localhost:9000/h", False),
        ("http://127.0.0.1:9000/h", False),
        ("http://0.0.0.0/h", False),
        ("https://LOCALHOST/h", False),
        ("https://my-localhost.example/h", True),  # merely containing "localhost" is fine
        ("https://hooks.example.com/h", True),
    ],
)
def test_the_real_localhost_rule_is_available_behind_a_setting(url: str, allowed: bool) -> None:
    with private_sandbox(0.001, seed=13) as (sandbox, client):
        data = {"resource_name": "sale", "post_url": url}
        # Allowed by default: tests and the demo run on loopback.
        assert client.put("/v2/resource_subscriptions", data=data).json()["success"] is True
        sandbox.configure(allow_local_post_urls=False)
        body = client.put("/v2/resource_subscriptions", data=data).json()
        assert body["success"] is allowed
        if not allowed:
            assert body["message"] == f"Invalid post URL '{url}'"


def test_only_the_creating_app_may_delete_but_every_app_is_listed() -> None:
    with private_sandbox(0.001, seed=14) as (sandbox, client):
        other = sandbox.create_token(["view_sales"], application_id="other-app")
        mine = client.put("/v2/resource_subscriptions", data={"resource_name": "sale", "post_url": "https://a.example/"}).json()
        headers = {"Authorization": f"Bearer {other}"}
        theirs = client.put("/v2/resource_subscriptions", data={"resource_name": "sale", "post_url": "https://b.example/"},
                            headers=headers).json()
        listed = client.get("/v2/resource_subscriptions", params={"resource_name": "sale"},
                            headers=headers).json()
        assert len(listed["resource_subscriptions"]) == 2
        only = client.get("/v2/resource_subscriptions", headers=headers,
                          params={"resource_name": "sale", "current_oauth_application_only": "true"}).json()
        assert only["resource_subscriptions"] == [theirs["resource_subscription"]]
        sub_id = mine["resource_subscription"]["id"]
        refused = client.delete(f"/v2/resource_subscriptions/{sub_id}", headers=headers).json()
        assert refused == {"success": False, "message": "The resource_subscription was not found."}
        assert client.delete(f"/v2/resource_subscriptions/{sub_id}").json()["success"] is True
