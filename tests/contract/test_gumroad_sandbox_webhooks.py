"""The webhook sender: byte-exact form bodies, who gets which post, retries, timeouts and the switches."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from urllib.parse import parse_qsl

import httpx
import pytest
from test_gumroad_sandbox_support import Receiver, private_sandbox

from snapbridge.sandbox.gumroad import GumroadSandbox
from snapbridge.sandbox.gumroad.models import RESOURCE_NAMES

FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


def _subscribe(client: httpx.Client, name: str, url: str) -> str:
    body = client.put("/v2/resource_subscriptions", data={"resource_name": name, "post_url": url}).json()
    assert body["success"] is True, body
    return str(body["resource_subscription"]["id"])


def _id(value: str) -> str:
    """An external id in a form body: URL-safe base64, so only the `==` needs encoding."""
    return value.replace("=", "%3D")


def _stamp(value: str) -> str:
    return value.replace(":", "%3A")


def test_a_sale_ping_is_byte_exact(receiver: Receiver) -> None:
    with private_sandbox(0.001) as (sandbox, client):
        _subscribe(client, "sale", receiver.url("exact-sale"))
        sandbox.set_ping_url(receiver.url("exact-ping"))
        made = sandbox.emit("first_purchase", {
            "product_id": "brushes", "variants": {"Format": "Photoshop"}, "offer_code": "LAUNCH10",
            "custom_fields": {"Company": "Zoë & Co."},
            "url_params": {"utm_source": "news letter", "ref": "a+b"},
            "email": "byte.exact@example.net", "full_name": "Zoë Exact", "has_account": True,
            "referrer": "https://t.co/x",
        })
        assert sandbox.wait_idle(10)
        sale = client.get(f"/v2/sales/{made['sale_id']}").json()["sale"]
    card = sale["card"]
    # Keys in the order of Purchase#payload_for_ping_notification; flags that are false and absent
    # optional fields (subscription, shipping, gift, test...) do not appear at all.
    expected = "&".join([
        f"seller_id={_id(sale['seller_id'])}",
        f"product_id={_id(sale['product_id'])}",
        "product_name=Pixel%20Brushes%20Pack",
        "permalink=brushes",
        "product_permalink=https%3A%2F%2Fsandboxstudio.gumroad.com%2Fl%2Fbrushes",
        f"short_product_id={sale['product_permalink']}",
        "email=byte.exact%40example.net",
        "price=1350",  # (1200 + 300 Photoshop) - 10% LAUNCH10, USD cents
        "gumroad_fee=185",
        "currency=usd",
        "quantity=1",
        "discover_fee_charged=false",
        "can_contact=true",
        "referrer=https%3A%2F%2Ft.co%2Fx",
        "card%5Bvisual%5D=" + card["visual"].replace("*", "%2A").replace(" ", "%20"),
        f"card%5Btype%5D={card['type']}",
        "card%5Bbin%5D=",
        "card%5Bexpiry_month%5D=",
        "card%5Bexpiry_year%5D=",
        f"order_number={sale['order_id']}",
        f"sale_id={_id(sale['id'])}",
        f"sale_timestamp={_stamp(sale['created_at'])}",
        "full_name=Zo%C3%AB%20Exact",
        f"purchaser_id={sale['purchaser_id']}",
        "url_params%5Butm_source%5D=news%20letter",
        "url_params%5Bref%5D=a%2Bb",
        "variants%5BFormat%5D=Photoshop",
        "offer_code=LAUNCH10",
        "Company=Zo%C3%AB%20%26%20Co.",
        "custom_fields%5BCompany%5D=Zo%C3%AB%20%26%20Co.",
        f"license_key={sale['license_key']}",
        "ip_country=" + sale["country"].replace(" ", "%20"),
        "is_gift_receiver_purchase=false",
        "refunded=false",
        "resource_name=sale",
        "disputed=false",
        "dispute_won=false",
    ]).encode()
    for name in ("exact-sale", "exact-ping"):
        (got,) = receiver.received(name)
        assert got.content_type == FORM
        assert got.body == expected
    logged = [d for d in sandbox.deliveries() if d.url.endswith("exact-sale")]
    assert [d.body for d in logged] == [expected] and logged[0].status == 200


def test_a_subscription_updated_post_is_byte_exact(receiver: Receiver) -> None:
    with private_sandbox(0.001) as (sandbox, client):
        _subscribe(client, "subscription_updated", receiver.url("exact-updated"))
        started = sandbox.emit("subscription_start", {
            "tier": "Basic", "recurrence": "monthly", "email": "tier.change@example.net",
            "has_account": False,
            "custom_fields": {"Discord handle": "@tier_change"},
        })
        changed = sandbox.emit("plan_change", {"subscription_id": started["subscription_id"], "tier": "Pro"})
        assert changed["type"] == "upgrade"
        assert sandbox.wait_idle(10)
        sub = client.get(f"/v2/subscribers/{started['subscription_id']}").json()["subscriber"]
        course = sub["product_id"]
        category = client.get(f"/v2/products/{course}/variant_categories").json()["variant_categories"][0]
        variants = f"/v2/products/{course}/variant_categories/{category['id']}/variants"
        tiers = client.get(variants).json()["variants"]
    tier = {t["name"]: t["id"] for t in tiers}
    expected = "&".join([
        f"subscription_id={_id(sub['id'])}",
        f"product_id={_id(course)}",
        "product_name=Ultimate%20Course",
        "user_id=",  # the buyer has no Gumroad account: null becomes an empty value
        "user_email=tier.change%40example.net",
        f"purchase_ids%5B%5D={_id(started['sale_id'])}",
        f"created_at={_stamp(sub['created_at'])}",
        "charge_occurrence_count=",
        "recurrence=monthly",
        "free_trial_ends_at=",
        "resource_name=subscription_updated",
        "type=upgrade",
        f"effective_as_of={_stamp(changed['effective_as_of'])}",
        # httparty walks nested hashes breadth-first: the tier comes after its siblings.
        "old_plan%5Brecurrence%5D=monthly",
        "old_plan%5Bprice_cents%5D=1000",
        "old_plan%5Bquantity%5D=1",
        f"old_plan%5Btier%5D%5Bid%5D={_id(tier['Basic'])}",
        "old_plan%5Btier%5D%5Bname%5D=Basic",
        "new_plan%5Brecurrence%5D=monthly",
        "new_plan%5Bprice_cents%5D=2500",
        "new_plan%5Bquantity%5D=1",
        f"new_plan%5Btier%5D%5Bid%5D={_id(tier['Pro'])}",
        "new_plan%5Btier%5D%5Bname%5D=Pro",
        "custom_fields%5BDiscord%20handle%5D=%40tier_change",
        f"license_key={sub['license_key']}",
    ]).encode()
    (got,) = receiver.received("exact-updated")
    assert got.body == expected


def test_brackets_in_custom_field_names_are_escaped(receiver: Receiver) -> None:
    with private_sandbox(0.001) as (sandbox, client):
        _subscribe(client, "sale", receiver.url("brackets"))
        kochbuch = next(p.id for p in sandbox.state.products.values() if p.name == "Kochbuch für Anfänger")
        custom = {"Widmung [Name]": "Für Oma"}
        sandbox.emit("first_purchase", {"product_id": kochbuch, "custom_fields": custom})
        assert sandbox.wait_idle(10)
    (got,) = receiver.received("brackets")
    assert b"&Widmung%20%255BName%255D=F%C3%BCr%20Oma&" in got.body
    assert b"&custom_fields%5BWidmung%20%255BName%255D%5D=F%C3%BCr%20Oma&" in got.body
    pairs = dict(parse_qsl(got.body.decode()))
    assert pairs["custom_fields[Widmung %5BName%5D]"] == "Für Oma"
    assert pairs["currency"] == "eur" and pairs["price"] != "900"  # price is USD cents, not euro cents


def test_each_resource_goes_to_its_subscribers_and_only_sales_to_the_ping_url(receiver: Receiver) -> None:
    with private_sandbox(0.001) as (sandbox, client):
        for name in RESOURCE_NAMES:
            _subscribe(client, name, receiver.url(f"route-{name}"))
        sandbox.set_ping_url(receiver.url("route-ping"))
        sale = sandbox.emit("first_purchase", {"product_id": "brushes"})["sale_id"]
        sandbox.emit("refund", {"sale_id": sale, "amount_cents": 100})
        sandbox.emit("dispute", {"sale_id": sale})
        sandbox.emit("dispute_won", {"sale_id": sale})
        sub = sandbox.emit("subscription_start", {"tier": "Basic"})["subscription_id"]
        sandbox.emit("plan_change", {"subscription_id": sub, "tier": "Pro"})
        sandbox.emit("cancellation", {"subscription_id": sub})
        sandbox.emit("subscription_end", {"subscription_id": sub})
        assert sandbox.wait_idle(10)  # a restart before the post is due would cancel the `ended` post
        sandbox.emit("subscription_restart", {"subscription_id": sub})
        sandbox.emit("test_purchase")
        assert sandbox.wait_idle(10)
    fields = {name: [dict(parse_qsl(r.body.decode())) for r in receiver.received(f"route-{name}")]
              for name in [*RESOURCE_NAMES, "ping"]}
    for name in RESOURCE_NAMES:
        assert fields[name] and all(f["resource_name"] == name for f in fields[name]), name
    assert {f["resource_name"] for f in fields["ping"]} == {"sale"}
    assert len(fields["ping"]) == len(fields["sale"]) == 4  # purchase, membership start, restart charge, test
    (refund,) = fields["refund"]
    assert refund["refunded"] == "false"  # a partial refund; there is no partially_refunded field
    assert fields["dispute"][0]["disputed"] == "true" and fields["dispute_won"][0]["dispute_won"] == "true"
    tests = [f for f in fields["sale"] if "test" in f]
    assert [f["test"] for f in tests] == ["true"] and "is_recurring_charge" not in tests[0]
    assert sum("is_recurring_charge" in f for f in fields["sale"]) == 1  # the restart's charge
    (cancel,) = fields["cancellation"]
    assert cancel["cancelled"] == "true" and cancel["cancelled_by_buyer"] == "true"
    assert "seller_id" not in cancel and "sale_id" not in cancel and "price" not in cancel
    (ended,) = fields["subscription_ended"]
    assert ended["ended_reason"] == "cancelled" and ended["ended_at"]
    assert fields["subscription_restarted"][0]["restarted_at"]


def test_an_ended_post_is_skipped_when_the_subscription_restarted_meanwhile(receiver: Receiver) -> None:
    with private_sandbox(0.01) as (sandbox, client):
        _subscribe(client, "subscription_ended", receiver.url("skip-ended"))
        _subscribe(client, "subscription_restarted", receiver.url("skip-restarted"))
        sub = sandbox.emit("subscription_start")["subscription_id"]
        sandbox.emit("subscription_end", {"subscription_id": sub})
        sandbox.emit("subscription_restart", {"subscription_id": sub})
        assert sandbox.wait_idle(10)
    assert receiver.received("skip-ended") == []
    assert len(receiver.received("skip-restarted")) == 1


def test_retry_after_500_carries_retry_count(receiver: Receiver) -> None:
    factor = 0.002
    with private_sandbox(factor) as (sandbox, client):
        _subscribe(client, "sale", receiver.url("retry-once"))
        receiver.script("retry-once", [500, 200])
        sandbox.emit("first_purchase")
        assert sandbox.wait_idle(10)
        attempts = sandbox.deliveries()
    first, second = receiver.received("retry-once")
    assert second.body == first.body + b"&retry_count=1"
    assert second.at - first.at >= 60 * factor
    assert [(d.attempt, d.status, d.retry_count) for d in attempts] == [(1, 500, 0), (2, 200, 1)]


def test_the_full_retry_schedule_is_60_180_600_seconds_scaled(receiver: Receiver) -> None:
    factor = 0.002
    with private_sandbox(factor) as (sandbox, client):
        _subscribe(client, "sale", receiver.url("retry-always"))
        receiver.script("retry-always", [503])
        sandbox.emit("first_purchase")
        assert sandbox.wait_idle(10)
        assert sandbox.sender.outstanding == 0
    got = receiver.received("retry-always")
    assert len(got) == 4  # the first try and three retries, then the delivery is dropped
    counts = [dict(parse_qsl(r.body.decode())).get("retry_count") for r in got]
    assert counts == [None, "1", "2", "3"]
    gaps = [b.at - a.at for a, b in pairwise(got)]
    for gap, delay in zip(gaps, (60, 180, 600), strict=True):
        assert delay * factor <= gap < delay * factor + 0.5


@pytest.mark.parametrize(
    ("status", "retried"),
    [(499, True), (500, True), (502, True), (503, True), (504, True),
     (400, False), (404, False), (408, False), (429, False), (501, False)],
)
def test_only_499_and_5xx_but_501_are_retried(receiver: Receiver, status: int, retried: bool) -> None:
    with private_sandbox(0.001) as (sandbox, client):
        name = f"status-{status}"
        _subscribe(client, "sale", receiver.url(name))
        receiver.script(name, [status, 200])
        sandbox.emit("first_purchase")
        assert sandbox.wait_idle(10)
    assert len(receiver.received(name)) == (2 if retried else 1)


def test_connection_refused_is_logged_and_not_retried() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with private_sandbox(0.001) as (sandbox, client):
        _subscribe(client, "sale", f"http://127.0.0.1:{port}/gone")
        sandbox.emit("first_purchase")
        assert sandbox.wait_idle(10)
        (attempt,) = sandbox.deliveries()
    assert attempt.status is None
    assert attempt.error is not None and attempt.error.startswith("connection error")


def test_a_timeout_is_dropped_without_retry(receiver: Receiver) -> None:
    with private_sandbox(0.001) as (sandbox, client):
        sandbox.configure(delivery_timeout_seconds=0.2)
        _subscribe(client, "sale", receiver.url("slow"))
        receiver.script("slow", [-10])  # answers after one second
        sandbox.emit("first_purchase")
        assert sandbox.wait_idle(10)
        (attempt,) = sandbox.deliveries()
    assert (attempt.status, attempt.error) == (None, "timeout")
    assert len(receiver.received("slow")) == 1


def test_duplicate_switch_sends_every_post_twice(receiver: Receiver) -> None:
    with private_sandbox(0.001) as (sandbox, client):
        _subscribe(client, "sale", receiver.url("dupes"))
        sandbox.configure(duplicate_deliveries=True)
        sandbox.emit("first_purchase")
        sandbox.emit("first_purchase")
        assert sandbox.wait_idle(10)
        log = sandbox.deliveries()
    bodies = Counter(r.body for r in receiver.received("dupes"))
    assert sorted(bodies.values()) == [2, 2]  # two events, each posted twice with the same body
    for event_id in {d.event_id for d in log}:
        assert [d.duplicate for d in log if d.event_id == event_id] == [False, True]


def _arrival_order(sandbox: GumroadSandbox) -> list[str]:
    return [d.event_id for d in sandbox.deliveries()]


def test_out_of_order_switch_reverses_each_batch(receiver: Receiver) -> None:
    with private_sandbox(0.001) as (sandbox, client):
        for name in RESOURCE_NAMES:
            _subscribe(client, name, receiver.url("order"))
        made = sandbox.emit("bulk", {"count": 12, "seed": 5})
        assert sandbox.wait_idle(10)
        normal = _arrival_order(sandbox)
        ids = [e["event_id"] for e in made["events"]]
        delays = {e["event_id"]: (10 if e["resource_name"] == "sale" else 5) for e in made["events"]}
        # In order of due time (sale +10 s, the others +5 s), then of occurrence.
        assert normal == sorted(ids, key=lambda i: (delays[i], ids.index(i)))
        sandbox.clear_deliveries()
        sandbox.configure(out_of_order=True)
        made = sandbox.emit("bulk", {"count": 12, "seed": 5})
        assert sandbox.wait_idle(10)
        assert _arrival_order(sandbox) == [e["event_id"] for e in made["events"]][::-1]


def test_delays_and_payload_built_at_send_time(receiver: Receiver) -> None:
    factor = 0.05  # a sale ping waits 0.5 s, a refund 0.25 s
    with private_sandbox(factor) as (sandbox, client):
        _subscribe(client, "sale", receiver.url("late-sale"))
        _subscribe(client, "refund", receiver.url("late-refund"))
        start = time.monotonic()
        sale = sandbox.emit("first_purchase", {"product_id": "brushes"})["sale_id"]
        # A refund through the API posts `refund` just as a scenario does.
        assert client.put(f"/v2/sales/{sale}/refund").json()["sale"]["refunded"] is True
        assert sandbox.wait_idle(10)
    (sale_ping,) = receiver.received("late-sale")
    (refund_ping,) = receiver.received("late-refund")
    assert sale_ping.at - start >= 10 * factor and refund_ping.at - start >= 5 * factor
    assert refund_ping.at < sale_ping.at  # no ordering guarantee: the refund overtakes its sale
    assert dict(parse_qsl(sale_ping.body.decode()))["refunded"] == "true"  # state when the post was due


def test_a_revoked_app_stops_its_subscriptions(receiver: Receiver) -> None:
    with private_sandbox(0.001) as (sandbox, client):
        app_token = sandbox.create_token(["view_sales"], application_id="zap-like")
        headers = {"Authorization": f"Bearer {app_token}"}
        client.put("/v2/resource_subscriptions", headers=headers,
                   data={"resource_name": "sale", "post_url": receiver.url("revoked")})
        sandbox.emit("first_purchase")
        assert sandbox.wait_idle(10)
        sandbox.revoke_token(app_token)
        sandbox.emit("first_purchase")
        assert sandbox.wait_idle(10)
    assert len(receiver.received("revoked")) == 1
