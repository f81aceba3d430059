"""Products, variant categories, variants, offer codes and custom fields: reads, writes and error bodies."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import quote

import httpx
import pytest
from test_gumroad_sandbox_support import private_sandbox

from snapbridge.sandbox.gumroad import GumroadSandbox

Box = tuple[GumroadSandbox, httpx.Client]


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    with private_sandbox(0.001, seed=21) as pair:
        yield pair


def _product(client: httpx.Client, name: str) -> dict[str, object]:
    return next(p for p in client.get("/v2/products").json()["products"] if p["name"] == name)


def test_products_lists_visible_products_newest_first(box: Box) -> None:
    _, client = box
    body = client.get("/v2/products").json()
    names = [p["name"] for p in body["products"]]
    assert "Old Product" not in names and "Another Seller's Plugin" not in names
    assert "Draft Template" in names  # unpublished products are still the seller's
    assert "next_page_url" not in body  # the 2025 code returns every product at once
    stamps = [p["id"] for p in body["products"]]
    assert len(stamps) == len(set(stamps))
    course = _product(client, "Ultimate Course")
    assert course["is_tiered_membership"] is True and course["recurrences"] == ["monthly", "yearly"]
    assert course["url"] is None and str(course["short_url"]).startswith("https://")
    tiers = course["variants"][0]["options"]  # type: ignore[index]
    assert tiers[0]["recurrence_prices"]["monthly"]["price_cents"] == 1000


def test_sales_figures_only_with_view_sales(box: Box) -> None:
    sandbox, client = box
    full = _product(client, "Pixel Brushes Pack")
    assert isinstance(full["sales_count"], int) and isinstance(full["sales_usd_cents"], int)
    public = sandbox.create_token(["view_public"])
    headers = {"Authorization": f"Bearer {public}"}
    slim = client.get(f"/v2/products/{full['id']}", headers=headers).json()["product"]
    assert "sales_count" not in slim and "sales_usd_cents" not in slim


def test_products_can_be_paged_behind_a_setting() -> None:
    with private_sandbox(0.001, seed=22) as (sandbox, client):
        state = sandbox.state
        with state.lock:  # five more products (the API cannot create any), 13 visible in all
            template = next(p for p in state.products.values() if p.name == "Pixel Brushes Pack")
            for i in range(5):
                copy = replace(template, pk=state.next_pk(), id=state.ids.external_id(), name=f"Copy {i}",
                               unique_permalink=f"copy{i}", custom_permalink=None, created_at=state.stamp(),
                               variant_category_ids=[], custom_field_ids=[])
                state.products[copy.id] = copy
        everything = [p["id"] for p in client.get("/v2/products").json()["products"]]
        assert len(everything) == 13
        sandbox.configure(paginate_products=True)
        first = client.get("/v2/products").json()
        assert len(first["products"]) == 10 and first["next_page_url"].startswith("/v2/products?page_key=")
        second = client.get(first["next_page_url"]).json()
        assert "next_page_url" not in second
        assert [p["id"] for p in first["products"] + second["products"]] == everything


def test_product_by_permalink_disable_enable_and_delete(box: Box) -> None:
    _, client = box
    draft = _product(client, "Draft Template")
    by_id = client.get(f"/v2/products/{draft['id']}").json()["product"]
    short = str(by_id["short_url"]).rsplit("/", 1)[1]
    assert client.get(f"/v2/products/{short}").json()["product"]["id"] == draft["id"]
    assert client.put(f"/v2/products/{draft['id']}/enable").json()["product"]["published"] is True
    assert client.put(f"/v2/products/{draft['id']}/disable").json()["product"]["published"] is False
    deleted = client.delete(f"/v2/products/{draft['id']}").json()
    assert deleted == {"success": True, "message": "The product was deleted successfully."}
    assert draft["id"] not in [p["id"] for p in client.get("/v2/products").json()["products"]]
    assert client.get(f"/v2/products/{draft['id']}").json()["product"]["deleted"] is True


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("GET", "/v2/products/nope", "The product was not found."),
        ("DELETE", "/v2/products/nope", "The product was not found."),
        ("PUT", "/v2/products/nope/enable", "The product was not found."),
        ("GET", "/v2/products/nope/variant_categories", "The product was not found."),
        ("GET", "/v2/products/{p}/variant_categories/nope", "The variant_category was not found."),
        ("GET", "/v2/products/{p}/variant_categories/nope/variants", "The variant_category was not found."),
        ("GET", "/v2/products/{p}/variant_categories/{c}/variants/nope", "The variant was not found."),
        ("GET", "/v2/products/{p}/offer_codes/nope", "The offer_code was not found."),
        ("PUT", "/v2/products/{p}/custom_fields/nope", "The custom_field was not found."),
        ("DELETE", "/v2/products/{p}/custom_fields/nope", "The custom_field was not found."),
    ],
)
def test_not_found_is_200_with_the_object_name(box: Box, method: str, path: str, message: str) -> None:
    _, client = box
    brushes = _product(client, "Pixel Brushes Pack")
    category = client.get(f"/v2/products/{brushes['id']}/variant_categories").json()["variant_categories"][0]
    response = client.request(method, path.format(p=brushes["id"], c=category["id"]))
    assert response.status_code == 200
    assert response.json() == {"success": False, "message": message}


def test_variant_category_and_variant_lifecycle(box: Box) -> None:
    _, client = box
    pid = _product(client, "Hand-bound Notebook")["id"]
    base = f"/v2/products/{pid}/variant_categories"
    category = client.post(base, data={"title": "Paper"}).json()["variant_category"]
    assert category["title"] == "Paper"
    renamed = client.put(f"{base}/{category['id']}", data={"title": "Paper type"}).json()
    assert renamed["variant_category"]["title"] == "Paper type"
    variants = f"{base}/{category['id']}/variants"
    made = client.post(variants, data={"name": "Dotted", "price_difference_cents": "250",
                                       "max_purchase_count": "9"})
    variant = made.json()["variant"]
    shape = (variant["name"], variant["price_difference_cents"], variant["max_purchase_count"])
    assert shape == ("Dotted", 250, 9)
    blank = client.post(variants, data={"price_difference_cents": "1"}).json()
    assert blank == {"success": False, "message": "Name can't be blank"}
    changed = client.put(f"{variants}/{variant['id']}", data={"description": "5 mm grid"}).json()["variant"]
    assert changed["description"] == "5 mm grid" and changed["name"] == "Dotted"
    assert [v["id"] for v in client.get(variants).json()["variants"]] == [variant["id"]]
    assert client.delete(f"{variants}/{variant['id']}").json() == {
        "success": True, "message": "The variant was deleted successfully."}
    assert client.get(variants).json()["variants"] == []
    gone = client.delete(f"{base}/{category['id']}").json()
    assert gone["message"] == "The variant_category was deleted successfully."
    assert category["id"] not in [c["id"] for c in client.get(base).json()["variant_categories"]]


def test_offer_codes_include_universal_ones_and_validate(box: Box) -> None:
    _, client = box
    pid = _product(client, "Kochbuch für Anfänger")["id"]
    base = f"/v2/products/{pid}/offer_codes"
    codes = {c["name"]: c for c in client.get(base).json()["offer_codes"]}
    assert codes["WELCOME"]["universal"] is True and codes["WELCOME"]["percent_off"] == 20
    missing = client.post(base, data={"name": "NOPE"}).json()
    assert missing["success"] is False
    assert missing["message"].startswith("You are missing required offer code")
    cents = client.post(base, data={"name": "MINUS3", "amount_off": "300"}).json()["offer_code"]
    assert cents["amount_cents"] == 300 and cents["universal"] is False and "percent_off" not in cents
    percent = client.post(base, data={"name": "HALF", "amount_off": "50", "offer_type": "percent",
                                      "universal": "true"}).json()["offer_code"]
    assert percent["percent_off"] == 50 and percent["universal"] is True
    json_true = client.post(base, json={"name": "JSONTRUE", "amount_off": "5", "universal": True}).json()
    assert json_true["offer_code"]["universal"] is False  # a JSON true is not the string "true"
    assert client.post(base, data={"name": "MINUS3", "amount_off": "1"}).json()["success"] is False
    updated = client.put(f"{base}/{cents['id']}", data={"max_purchase_count": "7", "name": "IGNORED"}).json()
    assert updated["offer_code"]["max_purchase_count"] == 7 and updated["offer_code"]["name"] == "MINUS3"
    gone = client.delete(f"{base}/{cents['id']}").json()
    assert gone["message"] == "The offer_code was deleted successfully."
    assert "MINUS3" not in {c["name"] for c in client.get(base).json()["offer_codes"]}


def test_custom_fields_are_addressed_by_name(box: Box) -> None:
    _, client = box
    pid = _product(client, "Retro Font")["id"]
    base = f"/v2/products/{pid}/custom_fields"
    made = client.post(base, data={"label": "Use / purpose [short]", "required": "true"})
    made = made.json()["custom_field"]
    assert made["name"] == "Use / purpose [short]" and made["required"] is True and made["type"] == "text"
    path = f"{base}/{quote(made['name'], safe='')}"
    assert client.put(path, data={"required": "false"}).json()["custom_field"]["required"] is False
    assert client.put(path).json()["success"] is True  # nothing to change is a success
    assert client.post(base, data={"required": "true"}).json() == {
        "success": False, "message": "The custom_field was unable to be created."}
    gone = client.delete(path).json()
    assert gone == {"success": True, "message": "The custom_field was deleted successfully."}
    assert made["name"] not in {f["name"] for f in client.get(base).json()["custom_fields"]}


def test_deleting_a_shared_custom_field_only_detaches_it(box: Box) -> None:
    _, client = box
    course = _product(client, "Ultimate Course")["id"]
    newsletter = _product(client, "Monthly Newsletter")["id"]
    path = f"/v2/products/{course}/custom_fields/{quote('Discord handle')}"
    assert client.delete(path).json()["success"] is True
    left = client.get(f"/v2/products/{course}/custom_fields").json()["custom_fields"]
    assert "Discord handle" not in {f["name"] for f in left}
    kept = client.get(f"/v2/products/{newsletter}/custom_fields").json()["custom_fields"]
    assert [f["products"] for f in kept if f["name"] == "Discord handle"] == [[newsletter]]
