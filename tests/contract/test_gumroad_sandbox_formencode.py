"""The ping body encoder against the documented httparty and Gumroad rules (gumroad-api.md §5.1): a table."""

from __future__ import annotations

from typing import Any

import pytest

from snapbridge.sandbox.gumroad import encode_form
from snapbridge.sandbox.gumroad.formencode import escape_key_brackets, to_params
from snapbridge.sandbox.gumroad.pagination import next_page_url
from snapbridge.sandbox.gumroad.state import content_type_for

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("flat pair", {"a": "b"}, "a=b"),
    ("space is %20, never +", {"full_name": "Jane Doe"}, "full_name=Jane%20Doe"),
    ("reserved characters", {"email": "a+b@x.io", "q": "1&2=3/4"}, "email=a%2Bb%40x.io&q=1%262%3D3%2F4"),
    ("unreserved kept", {"k": "A-z_0.9~"}, "k=A-z_0.9~"),
    ("utf-8 bytes", {"name": "Zoë 李"}, "name=Zo%C3%AB%20%E6%9D%8E"),
    ("true and false", {"t": True, "f": False}, "t=true&f=false"),
    ("integers", {"price": 1350, "neg": -5}, "price=1350&neg=-5"),
    ("null is an empty value", {"card": None}, "card="),
    ("nested mapping", {"card": {"visual": "**** 4242", "type": "visa"}},
     "card%5Bvisual%5D=%2A%2A%2A%2A%204242&card%5Btype%5D=visa"),
    ("nested null", {"card": {"bin": None}}, "card%5Bbin%5D="),
    ("array", {"purchase_ids": ["a", "b"]}, "purchase_ids%5B%5D=a&purchase_ids%5B%5D=b"),
    ("empty top-level array", {"purchase_ids": []}, "purchase_ids%5B%5D="),
    ("empty nested array vanishes", {"x": {"ids": [], "y": 1}}, "x%5By%5D=1"),
    ("array inside mapping", {"x": {"ids": [1, 2]}}, "x%5Bids%5D%5B%5D=1&x%5Bids%5D%5B%5D=2"),
    # httparty walks nested mappings breadth-first: scalars of a level first, deeper mappings after them.
    ("breadth-first order",
     {"old_plan": {"tier": {"id": "t1", "name": "Pro"}, "recurrence": "monthly", "price_cents": 2500}},
     "old_plan%5Brecurrence%5D=monthly&old_plan%5Bprice_cents%5D=2500"
     "&old_plan%5Btier%5D%5Bid%5D=t1&old_plan%5Btier%5D%5Bname%5D=Pro"),
    ("top-level order kept", {"z": 1, "a": 2}, "z=1&a=2"),
]


@pytest.mark.parametrize(("case", "payload", "expected"), CASES, ids=[c[0] for c in CASES])
def test_to_params_follows_httparty(case: str, payload: dict[str, Any], expected: str) -> None:
    assert to_params(payload) == expected


BRACKET_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("bracket in a top-level key", {"Size [cm]": "40"}, "Size%20%255Bcm%255D=40"),
    ("bracket in a nested key", {"custom_fields": {"Size [cm]": "40"}},
     "custom_fields%5BSize%20%255Bcm%255D%5D=40"),
    ("plain keys untouched", {"custom_fields": {"Company": "Acme"}}, "custom_fields%5BCompany%5D=Acme"),
]


@pytest.mark.parametrize(("case", "payload", "expected"), BRACKET_CASES, ids=[c[0] for c in BRACKET_CASES])
def test_brackets_inside_key_names_are_escaped_before_encoding(
    case: str, payload: dict[str, Any], expected: str
) -> None:
    assert encode_form(payload) == expected.encode("ascii")


def test_escaped_names_decode_once_to_percent_form() -> None:
    from urllib.parse import parse_qsl

    body = encode_form({"custom_fields": {"Size [cm]": "40 cm"}})
    assert parse_qsl(body.decode()) == [("custom_fields[Size %5Bcm%5D]", "40 cm")]


def test_escape_key_brackets_leaves_values_alone() -> None:
    assert escape_key_brackets({"a[b]": "[v]"}) == {"a%5Bb%5D": "[v]"}


NEXT_PAGE_CASES = [
    ("/v2/sales", "", "20240101000000000000-5", "/v2/sales?page_key=20240101000000000000-5"),
    ("/v2/sales", "access_token=secret&before=2024-02-01&after=2024-01-01", "K-1",
     "/v2/sales?after=2024-01-01&before=2024-02-01&page_key=K-1"),
    ("/v2/sales", "page=3&page_key=old-1&email=a%40b.c", "K-2", "/v2/sales?email=a%40b.c&page_key=K-2"),
    ("/v2/sales", "email=jane%20doe%2Bx%40y.z", "K-3", "/v2/sales?email=jane%20doe%2Bx%40y.z&page_key=K-3"),
]


@pytest.mark.parametrize(("path", "query", "key", "expected"), NEXT_PAGE_CASES)
def test_next_page_url_drops_token_and_page_and_sorts_keys(
    path: str, query: str, key: str, expected: str
) -> None:
    assert next_page_url(path, query, key) == expected


@pytest.mark.parametrize(
    ("url", "content_type"),
    [
        ("https://hooks.zapier.com/hooks/catch/1/x", "application/json"),
        ("https://zapier.com/x", "application/json"),
        ("https://example.com/zapier.com", "application/x-www-form-urlencoded"),
        ("http://127.0.0.1:9/hook", "application/x-www-form-urlencoded"),
    ],
)
def test_json_only_for_zapier_hosts(url: str, content_type: str) -> None:
    assert content_type_for(url) == content_type
