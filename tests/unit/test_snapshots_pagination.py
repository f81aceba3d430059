"""Snapshots cursor pagination, pure: a page body and its query → the next query, or None."""

from __future__ import annotations

import pytest

from snapbridge.connectors.snapshots import next_page_params, page_size
from snapbridge.errors import InvalidInput

ITEM = {"location_id": "loc_1"}


@pytest.mark.parametrize(
    ("body", "params", "expected"),
    [
        # A cursor moves us on and keeps our own filters.
        ({"locations": [ITEM], "meta": {"total": 3, "startAfterId": "loc_1", "nextPageUrl": "http://x/?a"}},
         {"limit": "1", "external_id": "e"}, {"limit": "1", "external_id": "e", "startAfterId": "loc_1"}),
        # The cursor replaces the one we sent.
        ({"locations": [ITEM], "meta": {"startAfterId": "loc_2"}},
         {"limit": "1", "startAfterId": "loc_1"}, {"limit": "1", "startAfterId": "loc_2"}),
        # Last page: null cursor, empty cursor, no cursor, no meta.
        ({"locations": [ITEM], "meta": {"total": 1, "startAfterId": None, "nextPageUrl": None}}, {}, None),
        ({"locations": [ITEM], "meta": {"startAfterId": ""}}, {}, None),
        ({"locations": [ITEM], "meta": {}}, {}, None),
        ({"locations": [ITEM]}, {}, None),
        # An empty page ends the walk even if it names a cursor.
        ({"locations": [], "meta": {"startAfterId": "loc_9"}}, {}, None),
    ],
    ids=["first", "advance", "null", "empty-cursor", "no-cursor", "no-meta", "empty-page"],
)
def test_next_page_params(body: dict[str, object], params: dict[str, str], expected: dict[str, str] | None
                          ) -> None:
    assert next_page_params(body, params, items_key="locations") == expected


@pytest.mark.parametrize(
    ("body", "params", "message"),
    [
        ({"locations": [ITEM], "meta": {"startAfterId": "loc_1"}}, {"startAfterId": "loc_1"},
         "did not advance"),
        ({"locations": [ITEM], "meta": {"startAfterId": 7}}, {}, "not a string"),
        ({"events": [ITEM]}, {}, "no list 'locations'"),
    ],
    ids=["stuck", "non-string", "wrong-key"],
)
def test_a_faulty_page_is_refused(body: dict[str, object], params: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        next_page_params(body, params, items_key="locations")


@pytest.mark.parametrize(("limit", "expected"), [(None, 20), (1, 1), (100, 100)])
def test_page_size_within_limits(limit: int | None, expected: int) -> None:
    assert page_size(limit) == expected


@pytest.mark.parametrize("limit", [0, 101, -1, True])
def test_page_size_past_the_limits(limit: int) -> None:
    with pytest.raises(InvalidInput, match="between 1 and 100"):
        page_size(limit)
