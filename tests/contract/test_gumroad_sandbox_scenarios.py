"""Scenarios change what the API shows and post what Gumroad would; the /_sandbox control API around them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from test_gumroad_sandbox_support import Receiver, private_sandbox

from snapbridge.errors import InvalidInput
from snapbridge.sandbox.gumroad import GumroadSandbox
from snapbridge.sandbox.gumroad.models import RESOURCE_NAMES

Box = tuple[GumroadSandbox, httpx.Client]


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    with private_sandbox(0.001, seed=41) as pair:
        yield pair


def _run(client: httpx.Client, name: str, **params: Any) -> dict[str, Any]:
    response = client.post(f"/_sandbox/scenarios/{name}", json=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["scenario"] == name
    return body


def _sale(client: httpx.Client, sale_id: str) -> dict[str, Any]:
    body = client.get(f"/v2/sales/{sale_id}").json()
    assert body["success"] is True
    sale: dict[str, Any] = body["sale"]
    return sale


def _subscriber(client: httpx.Client, sub_id: str) -> dict[str, Any]:
    subscriber: dict[str, Any] = client.get(f"/v2/subscribers/{sub_id}").json()["subscriber"]
    return subscriber


def _listed(client: httpx.Client) -> list[str]:
    ids: list[str] = []
    url: str | None = "/v2/sales"
    while url:
        body = client.get(url).json()
        ids += [s["id"] for s in body["sales"]]
        url = body.get("next_page_url")
    return ids


def test_first_and_repeat_purchase(box: Box) -> None:
    _, client = box
    first = _run(client, "first_purchase", email="nouvelle@example.net", full_name="Amélie Nouvelle")
    assert first["events"] == [{"event_id": first["events"][0]["event_id"], "resource_name": "sale",
                                "sale_id": first["sale_id"]}]
    assert client.get("/v2/sales").json()["sales"][0]["id"] == first["sale_id"]  # newest first
    again = client.post("/_sandbox/scenarios/first_purchase", json={"email": "nouvelle@example.net"})
    assert again.status_code == 400 and "repeat_purchase" in again.json()["error"]
    repeat = _run(client, "repeat_purchase", email="nouvelle@example.net")
    mine = client.get("/v2/sales", params={"email": "nouvelle@example.net"}).json()["sales"]
    assert {s["id"] for s in mine} == {first["sale_id"], repeat["sale_id"]}
    assert mine[0]["full_name"] == "Amélie Nouvelle"


def test_membership_lifecycle(box: Box) -> None:
    _, client = box
    started = _run(client, "subscription_start", tier="Basic", recurrence="yearly")
    sub_id = started["subscription_id"]
    assert _sale(client, started["sale_id"])["subscription_id"] == sub_id
    product = _sale(client, started["sale_id"])["product_id"]
    active = client.get(f"/v2/products/{product}/subscribers").json()["subscribers"]
    assert sub_id in [s["id"] for s in active]
    assert _subscriber(client, sub_id)["recurrence"] == "yearly"

    renewal = _run(client, "renewal", subscription_id=sub_id)
    assert _sale(client, renewal["sale_id"])["recurring_charge"] is True
    assert _subscriber(client, sub_id)["purchase_ids"] == [started["sale_id"], renewal["sale_id"]]

    down = _run(client, "plan_change", subscription_id=sub_id, tier="Basic", recurrence="monthly")
    assert down["type"] == "downgrade" and down["events"][0]["resource_name"] == "subscription_updated"
    assert down["effective_as_of"] > datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # at the period's end

    cancelled = _run(client, "cancellation", subscription_id=sub_id, by="seller")
    sub = _subscriber(client, sub_id)
    assert sub["status"] == "pending_cancellation" and sub["cancelled_at"] == cancelled["cancelled_at"]
    assert sub["user_requested_cancellation_at"]

    ended = _run(client, "subscription_end", subscription_id=sub_id)
    assert _subscriber(client, sub_id)["status"] == "cancelled" and ended["ended_reason"] == "cancelled"
    active = client.get(f"/v2/products/{product}/subscribers").json()["subscribers"]
    assert sub_id not in [s["id"] for s in active]

    restarted = _run(client, "subscription_restart", subscription_id=sub_id)
    assert _subscriber(client, sub_id)["status"] == "alive"
    assert [e["resource_name"] for e in restarted["events"]] == ["subscription_restarted", "sale"]


@pytest.mark.parametrize(
    ("params", "status"),
    [({"by": "payment_failure"}, "failed_payment"), ({"reason": "failed_payment"}, "failed_payment"),
     ({"reason": "fixed_subscription_period_ended"}, "fixed_subscription_period_ended")],
)
def test_other_ways_a_membership_ends(box: Box, params: dict[str, str], status: str) -> None:
    _, client = box
    sub_id = _run(client, "subscription_start")["subscription_id"]
    name = "cancellation" if "by" in params else "subscription_end"
    _run(client, name, subscription_id=sub_id, **params)
    assert _subscriber(client, sub_id)["status"] == status


def test_refunds_and_disputes(box: Box) -> None:
    _, client = box
    sale_id = _run(client, "first_purchase", product_id="brushes")["sale_id"]
    partial = _run(client, "refund", sale_id=sale_id, amount_cents=250)
    assert partial["partially_refunded"] is True and partial["refunded"] is False
    assert _sale(client, sale_id)["partially_refunded"] is True
    full = _run(client, "refund", sale_id=sale_id)
    assert full["refunded"] is True and _sale(client, sale_id)["refunded"] is True
    refused = client.post("/_sandbox/scenarios/refund", json={"sale_id": sale_id})
    assert refused.status_code == 400 and refused.json() == {"error": "Purchase is already refunded."}

    other = _run(client, "first_purchase")["sale_id"]
    not_open = client.post("/_sandbox/scenarios/dispute_won", json={"sale_id": other})
    assert not_open.status_code == 400
    _run(client, "dispute", sale_id=other)
    sale = _sale(client, other)
    assert sale["disputed"] is True and sale["chargedback"] is True
    _run(client, "dispute_won", sale_id=other)
    sale = _sale(client, other)
    assert sale["disputed"] is True and sale["chargedback"] is False and sale["dispute_won"] is True


def test_test_and_gift_purchases_are_fetched_but_not_listed(box: Box) -> None:
    _, client = box
    test = _run(client, "test_purchase")
    gift = _run(client, "gift_purchase", giftee_email="lucky@example.net")
    listed = _listed(client)
    assert test["sale_id"] not in listed and gift["giftee_sale_id"] not in listed
    assert gift["sale_id"] in listed
    assert _sale(client, gift["giftee_sale_id"])["is_gift_receiver_purchase"] is True
    # Only the giftee's side is pinged.
    assert [e["sale_id"] for e in gift["events"]] == [gift["giftee_sale_id"]]


def test_bulk_emits_n_events_each_posted_once() -> None:
    receiver = Receiver().start()
    try:
        with private_sandbox(0.001, seed=42) as (sandbox, client):
            for name in RESOURCE_NAMES:
                data = {"resource_name": name, "post_url": receiver.url("bulk")}
                client.put("/v2/resource_subscriptions", data=data)
            made = _run(client, "bulk", count=40)
            assert made["count"] == 40 and len(made["events"]) == 40
            kinds = {e["resource_name"] for e in made["events"]}
            assert {"sale", "refund"} <= kinds and len(kinds) >= 4
            assert sandbox.wait_idle(10)
            assert len(receiver.received("bulk")) == 40
            log = client.get("/_sandbox/deliveries", params={"resource_name": "sale"}).json()
            assert log["outstanding"] == 0
            assert {d["resource_name"] for d in log["deliveries"]} == {"sale"}
            assert all(d["body"].startswith("seller_id=") and d["status"] == 200 for d in log["deliveries"])
    finally:
        receiver.stop()


@pytest.mark.parametrize(
    ("name", "params", "status"),
    [
        ("nope", {}, 404),
        ("first_purchase", {"product_id": "nope"}, 400),
        ("first_purchase", {"quantity": "two"}, 400),
        ("first_purchase", {"variants": {"Format": "Krita"}, "product_id": "brushes"}, 400),
        ("refund", {"sale_id": "nope"}, 400),
        ("plan_change", {"direction": "sideways"}, 400),
        ("subscription_end", {"reason": "boredom"}, 400),
        ("bulk", {"count": 0}, 400),
        ("bulk", {"count": 501}, 400),
    ],
)
def test_bad_scenario_requests(box: Box, name: str, params: dict[str, Any], status: int) -> None:
    sandbox, client = box
    response = client.post(f"/_sandbox/scenarios/{name}", json=params)
    assert response.status_code == status
    assert response.json()["error"]
    if status == 404:
        assert "first_purchase" in response.json()["known"]
    with pytest.raises(InvalidInput):
        sandbox.emit(name, params)


def test_the_scenario_body_must_be_a_json_object(box: Box) -> None:
    _, client = box
    for content in (b"[1]", b"{oops"):
        response = client.post("/_sandbox/scenarios/first_purchase", content=content)
        assert response.status_code == 400


def test_settings_ping_url_tokens_journal_and_info() -> None:
    with private_sandbox(0.001, seed=43) as (sandbox, client):
        assert client.get("/_sandbox/settings").json()["allow_local_post_urls"] is True
        wanted = {"duplicate_deliveries": True, "retry_delays_seconds": [1, 2]}
        changed = client.post("/_sandbox/settings", json=wanted).json()
        assert changed["duplicate_deliveries"] is True and changed["retry_delays_seconds"] == [1.0, 2.0]
        assert sandbox.settings.duplicate_deliveries is True
        assert client.post("/_sandbox/settings", json={"no_such_switch": True}).status_code == 400
        assert client.post("/_sandbox/settings", json={"out_of_order": "yes"}).status_code == 400

        assert client.post("/_sandbox/ping_url", json={"url": "https://seller.example/ping"}).json() == {
            "url": "https://seller.example/ping"}
        assert sandbox.ping_url == "https://seller.example/ping"
        assert client.post("/_sandbox/ping_url", json={"url": "nope"}).status_code == 400
        assert client.post("/_sandbox/ping_url", json={"url": None}).json() == {"url": None}

        token = client.post("/_sandbox/tokens", json={"scopes": ["view_sales"]}).json()
        assert token["scopes"] == ["view_sales"]
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert client.get("/v2/sales", headers=headers).status_code == 200
        assert client.get("/v2/payouts", headers=headers).status_code == 403
        revoked = client.post("/_sandbox/tokens/revoke", json={"access_token": token["access_token"]})
        assert revoked.json() == {"revoked": True}
        assert client.get("/v2/sales", headers=headers).status_code == 401

        entries = client.get("/_sandbox/journal").json()["entries"]
        assert [(e["method"], e["path"], e["status"]) for e in entries[-3:]] == [
            ("GET", "/v2/sales", 200), ("GET", "/v2/payouts", 403), ("GET", "/v2/sales", 401)]
        info = client.get("/_sandbox/info").json()
        assert info["seller_id"] == sandbox.seller_id and info["base_url"] == sandbox.base_url
        assert client.get("/_sandbox/scenarios").json()["scenarios"][0] == "bulk"
