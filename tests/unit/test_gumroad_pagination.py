"""Gumroad paging, pure: a page's body and query → the next page's query."""

from __future__ import annotations

import pytest

from snapbridge.connectors.gumroad import next_page_params, params_from_next_page_url
from snapbridge.errors import Permanent

SALES = "/v2/sales"


@pytest.mark.parametrize(
    ("body", "params", "expected"),
    [
        # Last page: both keys are absent (never null, but null is read as absent too).
        ({"success": True, "sales": []}, {}, None),
        ({"success": True, "sales": [], "next_page_key": None, "next_page_url": None}, {}, None),
        ({"next_page_key": ""}, {}, None),
        # The cursor replaces the old one and keeps every filter.
        ({"next_page_key": "20230119081040000000-123456"}, {"after": "2023-01-01", "email": "a@b.c"},
         {"after": "2023-01-01", "email": "a@b.c", "page_key": "20230119081040000000-123456"}),
        ({"next_page_key": "k2"}, {"page_key": "k1", "paginated": "true"},
         {"page_key": "k2", "paginated": "true"}),
        # Offset paging is deprecated and the token never travels in the query.
        ({"next_page_key": "k2"}, {"page": "3", "access_token": "t"}, {"page_key": "k2"}),
        # Without a key, the relative next_page_url is followed (products in newer Gumroad code).
        ({"next_page_url": "/v2/sales?page_key=k9&after=2023-01-01&access_token=leak"}, {},
         {"page_key": "k9", "after": "2023-01-01"}),
        # The key wins when both are present.
        ({"next_page_key": "k3", "next_page_url": "/v2/sales?page_key=other"}, {"email": "x"},
         {"email": "x", "page_key": "k3"}),
    ],
)
def test_next_page_params(
    body: dict[str, object], params: dict[str, str], expected: dict[str, str] | None
) -> None:
    assert next_page_params(body, params, path=SALES) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/v2/sales?page_key=k",
        "//evil.example/v2/sales?page_key=k",
        "/v2/products?page_key=k",
        "/api/v2/sales?page_key=k",
    ],
)
def test_next_page_url_off_the_listed_path_is_refused(url: str) -> None:
    with pytest.raises(Permanent, match="refusing to follow"):
        next_page_params({"next_page_url": url}, {}, path=SALES, operation="gumroad.list_sales")


def test_next_page_url_under_a_prefixed_base_path() -> None:
    assert params_from_next_page_url("/api/v2/sales?page_key=k", "/api/v2/sales") == {"page_key": "k"}


def test_a_cursor_that_does_not_advance_stops_the_loop() -> None:
    with pytest.raises(Permanent, match="did not advance"):
        next_page_params({"next_page_key": "k1"}, {"page_key": "k1"}, path=SALES)
