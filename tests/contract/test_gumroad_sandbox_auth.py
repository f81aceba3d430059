"""All 42 endpoints: both ways to pass the token, the 401 and 403 shapes, any-one-of scopes, the envelope."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from test_gumroad_sandbox_support import private_sandbox

from snapbridge.sandbox.gumroad import GumroadSandbox
from snapbridge.sandbox.gumroad.app import API_ROUTES

ANY: frozenset[str] = frozenset()
EDIT = frozenset({"edit_products"})
VIEW = frozenset({"view_sales"})


@dataclass(frozen=True)
class Endpoint:
    method: str
    route: str  # the route template, as registered
    path: str  # with placeholders filled from the Ids fixture
    scopes: frozenset[str] | None  # None: no token needed; empty: any token
    params: tuple[tuple[str, str], ...] = ()


E = Endpoint
P = "/v2/products/{link_id}"
VC = P + "/variant_categories"
V = VC + "/{variant_category_id}/variants"
TABLE = [
    E("GET", "/v2/products", "/v2/products", ANY),
    E("GET", "/v2/products/{id}", "/v2/products/{product}", ANY),
    E("DELETE", "/v2/products/{id}", "/v2/products/{draft}", EDIT),
    E("PUT", "/v2/products/{id}/enable", "/v2/products/{product}/enable", EDIT),
    E("PUT", "/v2/products/{id}/disable", "/v2/products/{draft}/disable", EDIT),
    E("POST", VC, "/v2/products/{product}/variant_categories", EDIT, (("title", "Size"),)),
    E("GET", VC + "/{id}", "/v2/products/{product}/variant_categories/{category}", ANY),
    E("PUT", VC + "/{id}", "/v2/products/{product}/variant_categories/{category}", EDIT,
      (("title", "Format"),)),
    E("DELETE", VC + "/{id}", "/v2/products/{product}/variant_categories/{spare_category}", EDIT),
    E("GET", VC, "/v2/products/{product}/variant_categories", ANY),
    E("POST", V, "/v2/products/{product}/variant_categories/{category}/variants", EDIT, (("name", "Krita"),)),
    E("GET", V + "/{id}", "/v2/products/{product}/variant_categories/{category}/variants/{variant}", ANY),
    E("PUT", V + "/{id}", "/v2/products/{product}/variant_categories/{category}/variants/{variant}", EDIT,
      (("description", "For Procreate"),)),
    E("DELETE", V + "/{id}", "/v2/products/{product}/variant_categories/{category}/variants/{spare_variant}",
      EDIT),
    E("GET", V, "/v2/products/{product}/variant_categories/{category}/variants", ANY),
    E("GET", P + "/offer_codes", "/v2/products/{product}/offer_codes", ANY),
    E("GET", P + "/offer_codes/{id}", "/v2/products/{product}/offer_codes/{offer_code}", ANY),
    E("POST", P + "/offer_codes", "/v2/products/{product}/offer_codes", EDIT, (("amount_off", "100"),)),
    E("PUT", P + "/offer_codes/{id}", "/v2/products/{product}/offer_codes/{offer_code}", EDIT,
      (("max_purchase_count", "50"),)),
    E("DELETE", P + "/offer_codes/{id}", "/v2/products/{product}/offer_codes/{spare_offer_code}", EDIT),
    E("GET", P + "/custom_fields", "/v2/products/{product}/custom_fields", ANY),
    E("POST", P + "/custom_fields", "/v2/products/{product}/custom_fields", EDIT, (("name", "Team size"),)),
    E("PUT", P + "/custom_fields/{name:path}", "/v2/products/{product}/custom_fields/Company", EDIT,
      (("required", "false"),)),
    E("DELETE", P + "/custom_fields/{name:path}", "/v2/products/{product}/custom_fields/{spare_field}", EDIT),
    E("GET", "/v2/user", "/v2/user", ANY),
    E("PUT", "/v2/resource_subscriptions", "/v2/resource_subscriptions", VIEW,
      (("resource_name", "sale"), ("post_url", "https://example.com/hook"))),
    E("GET", "/v2/resource_subscriptions", "/v2/resource_subscriptions", VIEW, (("resource_name", "sale"),)),
    E("DELETE", "/v2/resource_subscriptions/{resource_subscription_id}",
      "/v2/resource_subscriptions/{resource_subscription}", VIEW),
    E("GET", "/v2/payouts", "/v2/payouts", frozenset({"view_payouts"})),
    E("GET", "/v2/payouts/{id}", "/v2/payouts/{payout}", frozenset({"view_payouts"})),
    E("GET", "/v2/sales", "/v2/sales", VIEW),
    E("GET", "/v2/sales/{id}", "/v2/sales/{sale}", VIEW),
    E("PUT", "/v2/sales/{id}/mark_as_shipped", "/v2/sales/{sale}/mark_as_shipped",
      frozenset({"mark_sales_as_shipped"})),
    E("PUT", "/v2/sales/{id}/refund", "/v2/sales/{sale}/refund", frozenset({"refund_sales", "edit_sales"}),
      (("amount_cents", "1"),)),
    E("POST", "/v2/sales/{id}/resend_receipt", "/v2/sales/{sale}/resend_receipt", frozenset({"edit_sales"})),
    E("GET", "/v2/products/{link_id}/subscribers", "/v2/products/{course}/subscribers", VIEW),
    E("GET", "/v2/subscribers/{id}", "/v2/subscribers/{subscriber}", VIEW),
    E("POST", "/v2/licenses/verify", "/v2/licenses/verify", None,
      (("product_id", "{product}"), ("license_key", "{license}"))),
    E("PUT", "/v2/licenses/enable", "/v2/licenses/enable", EDIT,
      (("product_id", "{product}"), ("license_key", "{license}"))),
    E("PUT", "/v2/licenses/disable", "/v2/licenses/disable", EDIT,
      (("product_id", "{product}"), ("license_key", "{spare_license}"))),
    E("PUT", "/v2/licenses/decrement_uses_count", "/v2/licenses/decrement_uses_count", EDIT,
      (("product_id", "{product}"), ("license_key", "{license}"))),
    E("PUT", "/v2/licenses/rotate", "/v2/licenses/rotate", EDIT,
      (("product_id", "{product}"), ("license_key", "{spare_license}"))),
]
IDS = [f"{e.method} {e.route}" for e in TABLE]


def test_the_table_covers_all_42_endpoints_and_nothing_else() -> None:
    registered = {(method, path) for method, path, _, _ in API_ROUTES}
    assert len(API_ROUTES) == 42
    assert {(e.method, e.route) for e in TABLE} == registered
    assert len(TABLE) == 42


@pytest.fixture(scope="module")
def box() -> Iterator[tuple[GumroadSandbox, httpx.Client, dict[str, str]]]:
    with private_sandbox(0.001, seed=3) as (sandbox, client):
        state = sandbox.state
        products = {p.name: p for p in state.products.values()}
        brushes, course = products["Pixel Brushes Pack"], products["Ultimate Course"]
        category = state.product_variant_categories(brushes)[0]
        spare_category = client.post(f"/v2/products/{brushes.id}/variant_categories", data={"title": "Spare"})
        spare_variant = client.post(
            f"/v2/products/{brushes.id}/variant_categories/{category.id}/variants", data={"name": "Spare"}
        )
        spare_code = client.post(f"/v2/products/{brushes.id}/offer_codes",
                                 data={"name": "SPARE", "amount_off": "5"})
        hook = client.put("/v2/resource_subscriptions", data={"resource_name": "refund", "post_url": "https://e.x/h"})
        licenses = [
            lic for lic in state.licenses.values()
            if lic.product_id == brushes.id
            and not lic.disabled
            and not state.sales[lic.sale_id].access_revoked
        ]
        sale = next(s for s in state.listed_sales() if s.price_cents > 0 and not s.ever_refunded)
        ids = {
            "product": brushes.id,
            "draft": products["Draft Template"].id,
            "course": course.id,
            "category": category.id,
            "spare_category": spare_category.json()["variant_category"]["id"],
            "variant": state.category_variants(category)[0].id,
            "spare_variant": spare_variant.json()["variant"]["id"],
            "offer_code": next(c.id for c in state.offer_codes.values() if c.code == "LAUNCH10"),
            "spare_offer_code": spare_code.json()["offer_code"]["id"],
            "spare_field": quote("Team size"),
            "resource_subscription": hook.json()["resource_subscription"]["id"],
            "payout": next(iter(state.payouts)),
            "sale": sale.id,
            "subscriber": state.active_subscribers(course, state.now())[0].id,
            "license": licenses[0].serial,
            "spare_license": licenses[1].serial,
        }
        yield sandbox, client, ids


def _call(
    client: httpx.Client, endpoint: Endpoint, ids: dict[str, str], *, token: str | None, how: str = "header"
) -> httpx.Response:
    path = endpoint.path.format(**ids)
    params = {k: v.format(**ids) for k, v in endpoint.params}
    headers = {"Authorization": ""}  # drop the client's default header
    if token is not None and token.startswith("Basic "):
        headers["Authorization"] = token  # not a Bearer header at all
    elif token is not None and how == "header":
        headers["Authorization"] = f"Bearer {token}"
    elif token is not None:
        params["access_token"] = token
    if endpoint.method == "GET" or how == "query":
        return client.request(endpoint.method, path, params=params, headers=headers)
    if how == "json":
        return client.request(endpoint.method, path, json=params, headers=headers)
    return client.request(endpoint.method, path, data=params, headers=headers)


def _assert_envelope(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["success"], bool)
    if response.status_code != 200:  # only the license endpoints use real statuses
        assert response.status_code == 404 and "/licenses/" in str(response.request.url)


@pytest.mark.parametrize("endpoint", TABLE, ids=IDS)
@pytest.mark.parametrize("how", ["header", "query", "form", "json"])
def test_the_token_is_accepted_as_header_or_parameter(
    box: tuple[GumroadSandbox, httpx.Client, dict[str, str]], endpoint: Endpoint, how: str
) -> None:
    sandbox, client, ids = box
    response = _call(client, endpoint, ids, token=sandbox.access_token, how=how)
    _assert_envelope(response)


@pytest.mark.parametrize("endpoint", [e for e in TABLE if e.scopes is not None], ids=[
    i for i, e in zip(IDS, TABLE, strict=True) if e.scopes is not None
])
@pytest.mark.parametrize("token", [None, "not-a-token", "Basic dXNlcjpwYXNz"])
def test_missing_or_unknown_token_is_401_with_empty_body(
    box: tuple[GumroadSandbox, httpx.Client, dict[str, str]], endpoint: Endpoint, token: str | None
) -> None:
    _, client, ids = box
    response = _call(client, endpoint, ids, token=token)
    assert response.status_code == 401
    assert response.content == b""
    assert response.headers["www-authenticate"].startswith('Bearer realm="Doorkeeper", error="invalid_token"')


SCOPED = [e for e in TABLE if e.scopes]


@pytest.mark.parametrize("endpoint", SCOPED, ids=[f"{e.method} {e.route}" for e in SCOPED])
def test_a_token_without_the_scope_is_403_and_any_listed_scope_or_account_passes(
    box: tuple[GumroadSandbox, httpx.Client, dict[str, str]], endpoint: Endpoint
) -> None:
    sandbox, client, ids = box
    assert endpoint.scopes
    others = {"view_public", "view_profile", "edit_products", "view_sales", "mark_sales_as_shipped",
              "refund_sales", "edit_sales", "view_payouts"} - endpoint.scopes
    wrong = sandbox.create_token(others)
    denied = _call(client, endpoint, ids, token=wrong)
    assert denied.status_code == 403
    assert denied.content == b""
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    for scope in [*sorted(endpoint.scopes), "account"]:
        allowed = _call(client, endpoint, ids, token=sandbox.create_token([scope]))
        assert allowed.status_code in (200, 404), scope
        _assert_envelope(allowed)


READS = [e for e in TABLE if e.scopes == ANY]


@pytest.mark.parametrize("endpoint", READS, ids=[f"{e.method} {e.route}" for e in READS])
def test_public_reads_accept_a_view_public_token(
    box: tuple[GumroadSandbox, httpx.Client, dict[str, str]], endpoint: Endpoint
) -> None:
    sandbox, client, ids = box
    response = _call(client, endpoint, ids, token=sandbox.create_token([]))  # Doorkeeper default: view_public
    assert response.status_code == 200
    assert response.json()["success"] is True


def test_a_revoked_token_is_401(box: tuple[GumroadSandbox, httpx.Client, dict[str, str]]) -> None:
    sandbox, client, _ = box
    token = sandbox.create_token(["view_sales"])
    assert client.get("/v2/sales", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert sandbox.revoke_token(token)
    assert client.get("/v2/sales", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_the_header_wins_over_the_parameter(box: tuple[GumroadSandbox, httpx.Client, dict[str, str]]) -> None:
    sandbox, client, _ = box
    response = client.get(
        "/v2/sales", params={"access_token": sandbox.access_token}, headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401


def test_bearer_token_parameter_is_accepted(box: tuple[GumroadSandbox, httpx.Client, dict[str, str]]) -> None:
    sandbox, client, _ = box
    params = {"bearer_token": sandbox.access_token}
    response = client.get("/v2/user", params=params, headers={"Authorization": ""})
    assert response.status_code == 200


def test_license_verify_needs_no_token(box: tuple[GumroadSandbox, httpx.Client, dict[str, str]]) -> None:
    _, client, ids = box
    response = client.post(
        "/v2/licenses/verify",
        data={"product_id": ids["product"], "license_key": ids["license"], "increment_uses_count": "false"},
        headers={"Authorization": ""},
    )
    assert response.status_code == 200
    assert response.json()["success"] is True


def test_the_journal_records_requests_without_tokens(
    box: tuple[GumroadSandbox, httpx.Client, dict[str, str]],
) -> None:
    sandbox, client, _ = box
    client.get("/v2/user")
    entry = sandbox.journal.entries(path="/v2/user")[-1]
    assert (entry.method, entry.status) == ("GET", 200)
    assert entry.api_key and sandbox.access_token not in str(entry.to_json())


JSON = "application/json"
MALFORMED: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v2/licenses/verify", {"content": b"{not json", "headers": {"Content-Type": JSON}}),
    ("GET", "/v2/sales", {"content": b"[1,2", "headers": {"Content-Type": JSON}}),
    ("GET", "/v2/sales", {"json": {"email": ["a", "b"]}}),
    ("GET", "/v2/sales", {"json": {"before": 20240101}}),
    ("GET", "/v2/sales", {"json": {"order_id": 5}}),
    ("PUT", "/v2/resource_subscriptions", {"json": {"post_url": {"x": 1}, "resource_name": "sale"}}),
    ("POST", "/v2/licenses/verify", {"json": {"license_key": ["x"]}}),
    ("GET", "/v2/products/%00/offer_codes", {}),
    ("GET", "/v2/sales", {"params": {"page_key": "20240101000000000000-999999999999999999999999"}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), MALFORMED)
def test_malformed_requests_never_get_a_500(
    box: tuple[GumroadSandbox, httpx.Client, dict[str, str]], method: str, path: str, kwargs: dict[str, Any]
) -> None:
    _, client, _ = box
    response = client.request(method, path, **kwargs)
    assert response.status_code in (200, 400, 404)
    body = response.json()
    assert ("success" in body) or body.get("status") == 400
