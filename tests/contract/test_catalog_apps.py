"""Every Gumroad and Snapshots catalog action through the generic runner against its sandbox (once with
exactly its scopes, once without them), and every trigger fired once and received.

Each module gets its own sandboxes, so deleting a product or rotating a license here cannot disturb
another suite. SAMPLES builds each action's input from the seeded data, creating what a write needs first;
a new record without a sample fails loudly, naming itself.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from snapbridge.catalog import (
    GUMROAD_TRIGGERS,
    SNAPSHOTS_TRIGGERS,
    Operation,
    ParamIn,
    ParamType,
    Trigger,
    TriggerSource,
    get_action,
    iterate_action,
    run_action,
    select,
)
from snapbridge.connectors.gumroad import fold_form
from snapbridge.connectors.gumroad import parse_webhook as parse_gumroad
from snapbridge.connectors.snapshots import InMemorySeenIds, verify_webhook
from snapbridge.errors import AuthFailed, DeliveryError, NotFound, Retryable, ScopeMissing
from snapbridge.http import create_client
from snapbridge.sandbox.gumroad import GumroadSandbox
from snapbridge.sandbox.server import ServerThread
from snapbridge.sandbox.snapshots import SnapshotsSandbox
from snapbridge.security import Secret

pytestmark = pytest.mark.asyncio(loop_scope="module")
GUMROAD = [op for op in select("gumroad") if isinstance(op, Operation)]
SNAPSHOTS = [op for op in select("snapshots") if isinstance(op, Operation)]
GUMROAD_SCOPES = {"view_profile", "edit_products", "view_sales", "mark_sales_as_shipped", "refund_sales",
                  "edit_sales", "view_payouts"}
SNAPSHOTS_SCOPES = {"saas/location.read", "saas/location.write", "events.write", "events.readonly",
                    "customers.write", "customers.readonly"}
TIME_FACTOR = 0.001
_counter = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}-{time.monotonic_ns() % 100_000}"


class Receiver:
    """A receiver on loopback that keeps every request it gets (webhooks, and the runner's own requests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        methods = ["GET", "POST", "PUT", "DELETE"]
        self.app = Starlette(routes=[Route("/{path:path}", self._take, methods=methods)])

    async def _take(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self.posts.append((request.url.path, dict(request.headers), body))
        return Response(status_code=200)

    def headers_under(self, prefix: str) -> dict[str, str]:
        """The headers of the request that reached a path under `prefix` (it has arrived: the call returned)."""
        with self._lock:
            return next(h for p, h, _ in self.posts if p.startswith(prefix))

    def wait_for(self, path: str, match: Callable[[dict[str, str], bytes], bool],
                 timeout: float = 10.0) -> tuple[dict[str, str], bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [(h, b) for p, h, b in self.posts if p == path and match(h, b)]
            if found:
                return found[0]
            time.sleep(0.005)
        raise AssertionError(f"no matching webhook reached {path} within {timeout} s")


@dataclass
class Apps:
    gumroad: GumroadSandbox
    snapshots: SnapshotsSandbox
    receiver: Receiver
    receiver_url: str
    servers: list[ServerThread] = field(default_factory=list)


@pytest.fixture(scope="module")
def apps() -> Iterator[Apps]:
    gumroad = GumroadSandbox(seed=11, time_factor=TIME_FACTOR)
    snapshots = SnapshotsSandbox(seed=11, time_factor=TIME_FACTOR)
    receiver = Receiver()
    servers = [ServerThread(app).start() for app in (gumroad.app, snapshots.app, receiver.app)]
    gumroad.base_url, snapshots.base_url = servers[0].base_url, servers[1].base_url
    try:
        yield Apps(gumroad, snapshots, receiver, servers[2].base_url, servers)
    finally:
        for server in servers:
            server.stop()


@dataclass
class Clients:
    gumroad: httpx.AsyncClient
    snapshots: httpx.AsyncClient


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clients(apps: Apps) -> AsyncIterator[Clients]:
    async with create_client(apps.gumroad.base_url, allowed_hosts=("127.0.0.1",)) as gumroad, \
            create_client(apps.snapshots.base_url, allowed_hosts=("127.0.0.1",)) as snapshots:
        yield Clients(gumroad, snapshots)


@dataclass
class Ctx:
    apps: Apps
    clients: Clients

    async def run(self, name: str, params: dict[str, object]) -> Any:
        op = get_action(name)
        if op.app == "gumroad":
            token = Secret(self.apps.gumroad.access_token)
            http = self.clients.gumroad
        else:
            token = Secret(self.apps.snapshots.create_key(SNAPSHOTS_SCOPES).key)
            http = self.clients.snapshots
        result = await run_action(op, params, http=http, credential=token, idempotency_key=unique("key"))
        return result.payload

    async def product(self, name: str = "Retro Font") -> str:
        products = await self.run("gumroad.products.list", {})
        return str(next(p["id"] for p in products if p["name"] == name))

    async def sales(self) -> list[dict[str, Any]]:
        op = get_action("gumroad.sales.list")
        token = Secret(self.apps.gumroad.access_token)
        found: list[dict[str, Any]] = []
        async for page in iterate_action(op, {}, http=self.clients.gumroad, credential=token):
            found.extend(page.payload)  # type: ignore[arg-type]
        return found

    async def sale(self, want: Callable[[dict[str, Any]], bool] = lambda s: True) -> dict[str, Any]:
        return next(s for s in await self.sales() if want(s))

    async def license(self) -> dict[str, object]:
        sale = await self.sale(lambda s: bool(s.get("license_key")) and not s.get("refunded"))
        current = await self.run("gumroad.sales.get", {"sale_id": sale["id"]})
        params = {"product_id": current["product_id"], "license_key": current["license_key"]}
        await self.run("gumroad.licenses.enable", params)
        return params

    async def variant_category(self) -> dict[str, object]:
        product = await self.product()
        category = await self.run("gumroad.variant_categories.create", {"product_id": product, "title": "Size"})
        return {"product_id": product, "variant_category_id": category["id"]}

    async def variant(self) -> dict[str, object]:
        parent = await self.variant_category()
        variant = await self.run("gumroad.variants.create", {**parent, "name": unique("XL")})
        return {**parent, "variant_id": variant["id"]}

    async def offer_code(self) -> dict[str, object]:
        product = await self.product()
        code = await self.run("gumroad.offer_codes.create",
                              {"product_id": product, "name": unique("SAVE"), "amount_off": 5})
        return {"product_id": product, "offer_code_id": code["id"]}

    async def custom_field(self) -> dict[str, object]:
        product, name = await self.product(), unique("Discord")
        await self.run("gumroad.custom_fields.create", {"product_id": product, "name": name})
        return {"product_id": product, "name": name}

    async def location_id(self) -> str:
        location = await self.run("snapshots.locations.create",
                                  {"name": unique("Studio"), "timezone": "Europe/Berlin"})
        return str(location["location_id"])

    async def customer_id(self) -> str:
        customer_id = unique("cust")
        await self.run("snapshots.customers.upsert", {"customer_id": customer_id, "email": "zoe@example.com"})
        return customer_id


Sample = Callable[[Ctx], Awaitable[dict[str, object]]]


async def _nothing(ctx: Ctx) -> dict[str, object]:
    return {}


async def _product(ctx: Ctx) -> dict[str, object]:
    return {"product_id": await ctx.product()}


async def _membership(ctx: Ctx) -> dict[str, object]:
    return {"product_id": await ctx.product("Ultimate Course"), "paginated": True}


async def _sale(ctx: Ctx) -> dict[str, object]:
    return {"sale_id": (await ctx.sale())["id"]}


async def _refundable(ctx: Ctx) -> dict[str, object]:
    sale = await ctx.sale(lambda s: not s.get("refunded") and s.get("price", 0) > 100)
    return {"sale_id": sale["id"], "amount_cents": 100}


async def _subscriber(ctx: Ctx) -> dict[str, object]:
    return {"subscriber_id": (await ctx.sale(lambda s: bool(s.get("subscription_id"))))["subscription_id"]}


async def _payout(ctx: Ctx) -> dict[str, object]:
    payouts = await ctx.run("gumroad.payouts.list", {})
    return {"payout_id": next(p["id"] for p in payouts if p["id"])}


async def _subscription(ctx: Ctx) -> dict[str, object]:
    created = await ctx.run("gumroad.resource_subscriptions.create",
                            {"resource_name": "sale", "post_url": f"{ctx.apps.receiver_url}/unused"})
    return {"resource_subscription_id": created["id"]}


async def _location(ctx: Ctx) -> dict[str, object]:
    return {"location_id": await ctx.location_id()}


async def _customer(ctx: Ctx) -> dict[str, object]:
    return {"customer_id": await ctx.customer_id()}


def _event() -> dict[str, object]:
    return {"event_id": unique("evt"), "type": "purchase", "timestamp": datetime.now(UTC).isoformat(),
            "data": {"price_cents": 1500}}


def _with(maker: Sample, **extra: object) -> Sample:
    async def build(ctx: Ctx) -> dict[str, object]:
        return {**await maker(ctx), **extra}
    return build


def _const(**values: object) -> Sample:
    async def build(ctx: Ctx) -> dict[str, object]:
        return {k: v() if callable(v) else v for k, v in values.items()}
    return build


async def _variant_category(ctx: Ctx) -> dict[str, object]:
    return await ctx.variant_category()


async def _variant(ctx: Ctx) -> dict[str, object]:
    return await ctx.variant()


async def _offer_code(ctx: Ctx) -> dict[str, object]:
    return await ctx.offer_code()


async def _custom_field(ctx: Ctx) -> dict[str, object]:
    return await ctx.custom_field()


async def _license(ctx: Ctx) -> dict[str, object]:
    return await ctx.license()


async def _deletable_product(ctx: Ctx) -> dict[str, object]:
    # The seed's draft product is not used by any other sample.
    return {"product_id": await ctx.product("Draft Template")}


SAMPLES: dict[str, Sample] = {
    "gumroad.products.list": _nothing,
    "gumroad.products.get": _product,
    "gumroad.products.delete": _deletable_product,
    "gumroad.products.enable": _product,
    "gumroad.products.disable": _product,
    "gumroad.variant_categories.create": _with(_product, title="Colour"),
    "gumroad.variant_categories.get": _variant_category,
    "gumroad.variant_categories.update": _with(_variant_category, title="Colour"),
    "gumroad.variant_categories.delete": _variant_category,
    "gumroad.variant_categories.list": _product,
    "gumroad.variants.create": _with(_variant_category, name="Blue", price_difference_cents=200),
    "gumroad.variants.get": _variant,
    "gumroad.variants.update": _with(_variant, max_purchase_count=10),
    "gumroad.variants.delete": _variant,
    "gumroad.variants.list": _variant_category,
    "gumroad.offer_codes.list": _product,
    "gumroad.offer_codes.get": _offer_code,
    "gumroad.offer_codes.create": _with(_product, name=unique("WELCOME"), amount_off=10, offer_type="percent",
                                        universal=False),
    "gumroad.offer_codes.update": _with(_offer_code, max_purchase_count=3),
    "gumroad.offer_codes.delete": _offer_code,
    "gumroad.custom_fields.list": _product,
    "gumroad.custom_fields.create": _with(_product, name="Company", required=True),
    "gumroad.custom_fields.update": _with(_custom_field, required=True),
    "gumroad.custom_fields.delete": _custom_field,
    "gumroad.user.get": _nothing,
    "gumroad.resource_subscriptions.create": _const(resource_name="refund", post_url="https://hooks.example.com/r"),
    "gumroad.resource_subscriptions.list": _const(resource_name="sale"),
    "gumroad.resource_subscriptions.delete": _subscription,
    "gumroad.sales.list": _const(after="2000-01-01"),
    "gumroad.sales.get": _sale,
    "gumroad.sales.mark_as_shipped": _with(_sale, tracking_url="https://track.example.com/1"),
    "gumroad.sales.refund": _refundable,
    "gumroad.sales.resend_receipt": _sale,
    "gumroad.subscribers.list": _membership,
    "gumroad.subscribers.get": _subscriber,
    "gumroad.licenses.verify": _with(_license, increment_uses_count=False),
    "gumroad.licenses.enable": _license,
    "gumroad.licenses.disable": _license,
    "gumroad.licenses.decrement_uses_count": _license,
    "gumroad.licenses.rotate": _license,
    "gumroad.payouts.list": _const(include_upcoming=False),
    "gumroad.payouts.get": _payout,
    "snapshots.locations.list": _const(limit=5),
    "snapshots.locations.get": _location,
    "snapshots.locations.create": _const(name=lambda: unique("Atelier"), timezone="Asia/Tokyo",
                                         external_id=lambda: unique("ext"), onboarding_status="pending"),
    "snapshots.locations.update": _with(_location, tier="gold", onboarding_status="active"),
    "snapshots.events.create": _const(event_id=lambda: unique("evt"), type="purchase",
                                      timestamp=lambda: datetime.now(UTC).isoformat(), data={"n": 1}),
    "snapshots.events.batch": _const(events=lambda: [_event(), _event()]),
    "snapshots.events.list": _const(type="purchase"),
    "snapshots.customers.upsert": _const(customer_id=lambda: unique("cust"), email="ada@example.com",
                                         name="Ada Lovelace", plan="pro", tags=["vip"]),
    "snapshots.customers.get": _customer,
    "snapshots.customers.list": _const(email="zoe@example.com"),
}


async def sample(ctx: Ctx, op: Operation) -> dict[str, object]:
    maker = SAMPLES.get(op.name)
    assert maker is not None, f"add a sample input for {op.name} to SAMPLES"
    return await maker(ctx)


_PLAIN: dict[ParamType, object] = {
    ParamType.STRING: "unknown", ParamType.INTEGER: 1, ParamType.NUMBER: 1.0, ParamType.BOOLEAN: True,
    ParamType.ARRAY: [], ParamType.OBJECT: {},
}


def _plain(op: Operation) -> dict[str, object]:
    """Input that passes the runner's checks without creating anything; the scope is checked first."""
    params: dict[str, object] = {}
    for param in op.params:
        if param.where is ParamIn.PATH or param.required:
            params[param.name] = param.enum[0] if param.enum else _PLAIN[param.type]
    return params


def _credential(apps: Apps, op: Operation, scopes: set[str] | tuple[str, ...]) -> Secret:
    if op.app == "gumroad":
        return Secret(apps.gumroad.create_token(scopes))
    return Secret(apps.snapshots.create_key(scopes).key)


def _client(clients: Clients, op: Operation) -> httpx.AsyncClient:
    return clients.gumroad if op.app == "gumroad" else clients.snapshots


# ---- every action, twice ----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", GUMROAD + SNAPSHOTS, ids=lambda o: o.name)
async def test_action_succeeds_with_exactly_its_scopes(apps: Apps, clients: Clients, op: Operation) -> None:
    ctx = Ctx(apps, clients)
    params = await sample(ctx, op)
    # An empty scope list means any token will do; Doorkeeper's default scope is view_public.
    token = _credential(apps, op, op.scopes or ("view_public",))
    result = await run_action(op, params, http=_client(clients, op), credential=token,
                              idempotency_key=unique("step"))
    assert 200 <= result.status < 300
    if op.response_key is not None:
        assert result.payload == result.body[op.response_key]  # type: ignore[index]


@pytest.mark.parametrize("op", [o for o in GUMROAD + SNAPSHOTS if o.scopes], ids=lambda o: o.name)
async def test_action_without_its_scope_is_refused(apps: Apps, clients: Clients, op: Operation) -> None:
    every = GUMROAD_SCOPES if op.app == "gumroad" else SNAPSHOTS_SCOPES
    token = _credential(apps, op, every - set(op.scopes))
    with pytest.raises(ScopeMissing) as caught:
        await run_action(op, _plain(op), http=_client(clients, op), credential=token,
                         idempotency_key=unique("step"))
    assert caught.value.status == (403 if op.app == "gumroad" else 401)
    assert set(caught.value.scopes) <= set(op.scopes) and caught.value.scopes


# Gumroad's read-only product, variant, offer-code and custom-field endpoints and GET /user accept any
# token of the seller, even one with only the default view_public scope, so no scope can be missing;
# what can fail is the token itself.
@pytest.mark.parametrize("op", [o for o in GUMROAD if not o.scopes and o.token_kinds], ids=lambda o: o.name)
async def test_any_scope_action_refuses_a_bad_token(apps: Apps, clients: Clients, op: Operation) -> None:
    with pytest.raises(AuthFailed) as caught:
        await run_action(op, _plain(op), http=clients.gumroad, credential=Secret("not-a-token"),
                         idempotency_key=None)
    assert caught.value.status == 401


# POST /licenses/verify takes no token at all (it is called from buyers' apps), so neither a scope nor a
# token can be refused; the failure it does have is an unknown license.
@pytest.mark.parametrize("op", [o for o in GUMROAD if not o.token_kinds], ids=lambda o: o.name)
async def test_tokenless_action_refuses_an_unknown_license(apps: Apps, clients: Clients, op: Operation) -> None:
    params = {"product_id": "unknown", "license_key": "0000-0000"}
    with pytest.raises(NotFound):
        await run_action(op, params, http=clients.gumroad, credential=Secret(""), idempotency_key=None)


# ---- every trigger, fired once ----------------------------------------------------------------------------

SCENARIOS = {
    "sale": "first_purchase", "refund": "refund", "dispute": "dispute", "dispute_won": "dispute_won",
    "cancellation": "cancellation", "subscription_updated": "plan_change", "subscription_ended": "subscription_end",
    "subscription_restarted": "subscription_restart",
}


def _check_payload(trigger: Trigger, payload: dict[str, object]) -> None:
    required = [f.name for f in trigger.fields if f.required]
    assert trigger.payload_schema()["required"] == required
    missing = [name for name in required if name not in payload]
    assert not missing, f"{trigger.name}: payload lacks {missing}"


@pytest.mark.parametrize("trigger", GUMROAD_TRIGGERS, ids=lambda t: t.name)
async def test_gumroad_trigger_fires(apps: Apps, clients: Clients, trigger: Trigger) -> None:
    path = f"/gumroad/{trigger.name}"
    url = f"{apps.receiver_url}{path}"
    if trigger.source is TriggerSource.PING:
        apps.gumroad.set_ping_url(url)
    else:
        token = Secret(apps.gumroad.create_token(trigger.scopes))
        await run_action(get_action("gumroad.resource_subscriptions.create"),
                         {"resource_name": trigger.event, "post_url": url}, http=clients.gumroad,
                         credential=token, idempotency_key=None)
    response = await clients.gumroad.post(f"/_sandbox/scenarios/{SCENARIOS[trigger.event]}", json={})
    assert response.status_code == 200, response.text
    wanted = "sale" if trigger.source is TriggerSource.PING else trigger.event
    headers, body = apps.receiver.wait_for(path, lambda h, b: fold_form(b).get("resource_name") == wanted)
    _check_payload(trigger, fold_form(body))
    assert parse_gumroad(body, headers.get("content-type")) is not None
    if trigger.source is TriggerSource.PING:
        apps.gumroad.set_ping_url(None)


FIRE: dict[str, tuple[str, Callable[[Ctx], Awaitable[dict[str, object]]]]] = {
    "LocationCreate": ("snapshots.locations.create",
                       _const(name=lambda: unique("Hooked"), timezone="UTC", external_id=lambda: unique("x"))),
    "LocationUpdate": ("snapshots.locations.update", _with(_location, tier="silver")),
    # A customer's creation sends nothing; a change to an existing one does.
    "CustomerUpdate": ("snapshots.customers.upsert", _with(_customer, plan="basic")),
}


@pytest.mark.parametrize("trigger", SNAPSHOTS_TRIGGERS, ids=lambda t: t.name)
async def test_snapshots_trigger_fires(apps: Apps, clients: Clients, trigger: Trigger) -> None:
    path = f"/snapshots/{trigger.event}"
    apps.snapshots.subscribe(f"{apps.receiver_url}{path}")
    try:
        action, make = FIRE[trigger.event]
        params = await make(Ctx(apps, clients))
        payload = await Ctx(apps, clients).run(action, params)
        headers, body = apps.receiver.wait_for(path, lambda h, b: trigger.event.encode() in b)
    finally:
        apps.snapshots.unsubscribe_all()
    event = verify_webhook(body, headers, apps.snapshots.webhook_public_key, datetime.now(UTC), InMemorySeenIds())
    assert event is not None
    data = json.loads(body)
    assert data["type"] == trigger.event
    _check_payload(trigger, data)
    key = "location_id" if "location" in action else "customer_id"
    assert data[key] == payload[key]


# ---- what the runner adds: idempotency keys and typed retryable errors --------------------------------------


async def test_a_repeated_write_with_the_same_key_is_applied_once(apps: Apps, clients: Clients) -> None:
    op = get_action("snapshots.customers.upsert")
    token = Secret(apps.snapshots.create_key({"customers.write"}).key)
    customer_id = unique("idem")
    params: dict[str, object] = {"customer_id": customer_id, "plan": "pro"}
    first = await run_action(op, params, http=clients.snapshots, credential=token, idempotency_key="evt_9:step_0")
    second = await run_action(op, params, http=clients.snapshots, credential=token, idempotency_key="evt_9:step_0")
    assert (first.replayed, second.replayed) == (False, True)
    assert second.payload == first.payload
    assert apps.snapshots.writes_to(customer_id) == 1


@pytest.mark.parametrize(("name", "params", "expected"), [
    ("snapshots.customers.upsert", {"customer_id": "c1", "plan": "pro"},
     {"idempotency-key": "k-1", "version": "2021-07-28", "content-type": "application/json"}),
    ("snapshots.customers.get", {"customer_id": "c1"}, {"idempotency-key": None, "version": "2021-07-28"}),
    ("gumroad.sales.refund", {"sale_id": "s1", "amount_cents": 5},
     {"idempotency-key": None, "version": None, "content-type": "application/x-www-form-urlencoded"}),
    ("highlevel.contacts.upsert", {"locationId": "l1", "email": "a@example.com"},
     {"idempotency-key": None, "version": "2021-07-28", "content-type": "application/json"}),
])
async def test_the_wire_headers_of_each_app(apps: Apps, name: str, params: dict[str, object],
                                            expected: dict[str, str | None]) -> None:
    path = f"/wire/{unique('h')}"
    async with create_client(apps.receiver_url + path, allowed_hosts=("127.0.0.1",)) as client:
        # The receiver's bare 200 is no valid answer of any app; only the request it saw matters here.
        with contextlib.suppress(DeliveryError):
            await run_action(get_action(name), params, http=client, credential=Secret("pit-wire"),
                             idempotency_key="k-1")
    headers = apps.receiver.headers_under(path)
    assert headers["authorization"] == "Bearer pit-wire"
    for key, value in expected.items():
        assert headers.get(key) == value if value is None else headers[key].startswith(value), key


async def test_a_rate_limited_call_is_retryable_with_its_wait(apps: Apps, clients: Clients) -> None:
    apps.snapshots.set_faults(storm_requests=1)
    try:
        with pytest.raises(Retryable) as caught:
            await run_action(get_action("snapshots.locations.list"), {}, http=clients.snapshots,
                             credential=Secret(apps.snapshots.create_key(SNAPSHOTS_SCOPES).key),
                             idempotency_key=None)
    finally:
        apps.snapshots.clear_faults()
    assert caught.value.status == 429 and caught.value.retry_after is not None
