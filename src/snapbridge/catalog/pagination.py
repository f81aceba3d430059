"""The next page of any list action, pure: (record, parameters sent, body received) → parameters or None."""

from __future__ import annotations

from collections.abc import Mapping

from snapbridge.catalog.model import Operation, Pagination

__all__ = ["SEARCH_PAGE_WINDOW", "items_of", "next_page_params"]

# HighLevel's contacts search pages by number only up to 10,000 records; past that it takes `searchAfter`.
SEARCH_PAGE_WINDOW = 10_000


def items_of(op: Operation, body: object) -> list[object]:
    """The list a page holds (under the record's response key), or [] when there is none."""
    value = body.get(op.response_key) if isinstance(body, Mapping) and op.response_key else body
    return list(value) if isinstance(value, list) else []


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def next_page_params(op: Operation, params: Mapping[str, object], body: object) -> dict[str, object] | None:
    """The parameters of the page after this one; None when this page was the last."""
    if not isinstance(body, Mapping):
        return None
    items = items_of(op, body)
    following = dict(params)
    style = op.pagination
    if style is Pagination.PAGE_KEY:
        # Gumroad leaves next_page_key out on the last page (never null).
        key = body.get("next_page_key")
        if not isinstance(key, str) or not key:
            return None
        following["page_key"] = key
        return following
    if style is Pagination.START_AFTER_ID:
        meta = body.get("meta")
        cursor = meta.get("startAfterId") if isinstance(meta, Mapping) else None
        if not items or not isinstance(cursor, str) or not cursor:
            return None
        following["startAfterId"] = cursor
        after = meta.get("startAfter") if isinstance(meta, Mapping) else None
        if _int(after) is not None and op.param("startAfter") is not None:
            following["startAfter"] = _int(after)
        return following
    if style is Pagination.SKIP_LIMIT:
        limit = _int(params.get("limit"))
        # Without a limit the page size is the server's default; only an empty page proves the end.
        if not items or (limit is not None and len(items) < limit):
            return None
        following["skip"] = (_int(params.get("skip")) or 0) + len(items)
        return following
    if style is Pagination.PAGE:
        info = body.get("pagination")
        if not isinstance(info, Mapping) or info.get("hasNext") is not True:
            return None
        following["page"] = (_int(params.get("page")) or 1) + 1
        return following
    if style is Pagination.LAST_DOC:
        limit = _int(params.get("limit")) or 20
        last = items[-1] if items else None
        last_id = last.get("id") if isinstance(last, Mapping) else None
        if len(items) < limit or not isinstance(last_id, str):
            return None
        following["lastDoc"] = last_id
        return following
    if style is Pagination.PAGE_SEARCH_AFTER:
        return _next_search_page(params, items, following)
    return None


def _next_search_page(params: Mapping[str, object], items: list[object],
                      following: dict[str, object]) -> dict[str, object] | None:
    size = _int(params.get("pageLimit")) or 0
    if not items or len(items) < size:
        return None
    page = _int(params.get("page"))
    if "searchAfter" not in params and (page or 1) * size + size <= SEARCH_PAGE_WINDOW:
        following["page"] = (page or 1) + 1
        return following
    last = items[-1]
    cursor = last.get("searchAfter") if isinstance(last, Mapping) else None
    if not isinstance(cursor, list) or not cursor:
        return None
    following.pop("page", None)
    following["searchAfter"] = cursor
    return following
