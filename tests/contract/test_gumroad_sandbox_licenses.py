"""License endpoints: real HTTP statuses, the uses counter, the legacy permalink, and the purchase block."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from test_gumroad_sandbox_support import private_sandbox

from snapbridge.sandbox.gumroad import GumroadSandbox
from snapbridge.sandbox.gumroad.models import License

Box = tuple[GumroadSandbox, httpx.Client]


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    with private_sandbox(0.001, seed=31) as pair:
        yield pair


def _licenses(sandbox: GumroadSandbox, product_name: str) -> list[License]:
    state = sandbox.state
    with state.lock:
        product = next(p for p in state.products.values() if p.name == product_name)
        return [lic for lic in state.licenses.values() if lic.product_id == product.id]


def _usable(sandbox: GumroadSandbox, product_name: str) -> License:
    state = sandbox.state
    return next(
        lic for lic in _licenses(sandbox, product_name)
        if not lic.disabled
        and not state.sales[lic.sale_id].access_revoked
        and not state.sales[lic.sale_id].subscription_id
    )


def _verify(client: httpx.Client, **data: str) -> httpx.Response:
    return client.post("/v2/licenses/verify", data=data, headers={"Authorization": ""})


def test_verify_counts_uses_unless_told_not_to(box: Box) -> None:
    sandbox, client = box
    lic = _usable(sandbox, "Pixel Brushes Pack")
    first = _verify(client, product_id=lic.product_id, license_key=lic.serial)
    assert first.status_code == 200
    body = first.json()
    assert body["success"] is True and body["uses"] == 1
    purchase = body["purchase"]
    assert purchase["sale_id"] == purchase["id"] == lic.sale_id
    assert purchase["license_key"] == lic.serial
    # `variants` is the old display string here, and custom fields a list of "name: value" strings.
    assert isinstance(purchase["variants"], str) and purchase["variants"].startswith("(")
    assert isinstance(purchase["custom_fields"], list)  # "name: value" strings
    assert all(": " in item for item in purchase["custom_fields"])
    assert purchase["refunded"] is False and purchase["chargebacked"] is False
    assert "resource_name" not in purchase
    assert _verify(client, product_id=lic.product_id, license_key=lic.serial).json()["uses"] == 2
    same = _verify(client, product_id=lic.product_id, license_key=lic.serial, increment_uses_count="false")
    assert same.json()["uses"] == 2


def test_membership_licenses_carry_subscription_dates(box: Box) -> None:
    sandbox, client = box
    lic = _licenses(sandbox, "Ultimate Course")[0]
    purchase = _verify(client, product_id=lic.product_id, license_key=lic.serial).json()["purchase"]
    assert {"subscription_ended_at", "subscription_cancelled_at", "subscription_failed_at"} <= purchase.keys()
    assert "chargebacked" not in purchase


def test_legacy_product_permalink_still_works(box: Box) -> None:
    sandbox, client = box
    lic = _usable(sandbox, "Pixel Brushes Pack")
    for key in ("product_permalink", "id", "link_id"):
        assert _verify(client, license_key=lic.serial, **{key: "brushes"}).status_code == 200
    wrong = _verify(client, license_key=lic.serial, product_permalink="other")
    assert wrong.status_code == 404


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("unknown", "That license does not exist for the provided product."),
        ("wrong_product", "That license does not exist for the provided product."),
        ("disabled", "This license key has been disabled."),
        ("revoked", "Access to the purchase associated with this license has expired."),
    ],
)
def test_verify_failures_are_404(box: Box, kind: str, message: str) -> None:
    sandbox, client = box
    state = sandbox.state
    brushes, font = _licenses(sandbox, "Pixel Brushes Pack"), _licenses(sandbox, "Retro Font")
    if kind == "unknown":
        product_id, serial = brushes[0].product_id, "00000000-00000000-00000000-00000000"
    elif kind == "wrong_product":
        product_id, serial = font[0].product_id, _usable(sandbox, "Pixel Brushes Pack").serial
    elif kind == "disabled":
        lic = next(lic for lic in font if lic.disabled)
        product_id, serial = lic.product_id, lic.serial
    else:
        lic = next(lic for lic in brushes if state.sales[lic.sale_id].access_revoked)
        product_id, serial = lic.product_id, lic.serial
    response = _verify(client, product_id=product_id, license_key=serial)
    assert response.status_code == 404
    assert response.json() == {"success": False, "message": message}


def test_non_string_parameters_are_400(box: Box) -> None:
    _, client = box
    response = client.post("/v2/licenses/verify", json={"license_key": ["A"], "product_id": "x"})
    assert response.status_code == 400
    assert response.json() == {"success": False, "message": "The 'license_key' parameter must be a string."}


def test_disable_enable_decrement_and_rotate(box: Box) -> None:
    sandbox, client = box
    lic = _usable(sandbox, "Retro Font")
    data = {"product_id": lic.product_id, "license_key": lic.serial}
    assert client.put("/v2/licenses/disable", data=data).json()["success"] is True
    assert _verify(client, **data).status_code == 404
    assert client.put("/v2/licenses/enable", data=data).json()["success"] is True
    assert _verify(client, **data).json()["uses"] == 1
    assert client.put("/v2/licenses/decrement_uses_count", data=data).json()["uses"] == 0
    assert client.put("/v2/licenses/decrement_uses_count", data=data).json()["uses"] == 0  # never below 0
    old_key = data["license_key"]
    rotated = client.put("/v2/licenses/rotate", data=data).json()
    new_key = rotated["purchase"]["license_key"]
    assert new_key != old_key and len(new_key) == 35
    assert _verify(client, **data).status_code == 404
    assert _verify(client, product_id=lic.product_id, license_key=new_key).status_code == 200
    sale = client.get(f"/v2/sales/{lic.sale_id}").json()["sale"]
    assert sale["license_key"] == new_key


def test_another_sellers_license_is_404_not_found(box: Box) -> None:
    sandbox, client = box
    lic = _licenses(sandbox, "Another Seller's Plugin")[0]
    data = {"product_id": lic.product_id, "license_key": lic.serial}
    assert _verify(client, **data).status_code == 200  # verify needs no owner
    for action in ("enable", "disable", "decrement_uses_count", "rotate"):
        response = client.put(f"/v2/licenses/{action}", data=data)
        assert response.status_code == 404
        assert response.json() == {"success": False, "error": "Not found"}


def test_owner_actions_need_product_id(box: Box) -> None:
    sandbox, client = box
    lic = _usable(sandbox, "Pixel Brushes Pack")
    response = client.put("/v2/licenses/enable", data={"license_key": lic.serial})
    assert response.status_code == 404
