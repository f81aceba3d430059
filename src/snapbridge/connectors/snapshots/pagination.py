"""Cursor pagination of the Snapshots API, pure: a page's body and query → the next page's query, or None."""

from __future__ import annotations

from collections.abc import Mapping

from snapbridge.errors import InvalidInput

__all__ = ["CURSOR_PARAM", "DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "next_page_params", "page_size"]

CURSOR_PARAM = "startAfterId"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_size(limit: int | None) -> int:
    """The `limit` to send: the contract allows 1 to 100; anything else is refused before any request."""
    if limit is None:
        return DEFAULT_PAGE_SIZE
    if isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page limit must be between 1 and {MAX_PAGE_SIZE}, got {limit!r}")
    return limit


def next_page_params(
    body: Mapping[str, object], params: Mapping[str, str], *, items_key: str
) -> dict[str, str] | None:
    """The query for the page after `body` (fetched with `params`), or None when `body` is the last page.

    Follows `meta.startAfterId` and ignores `meta.nextPageUrl`: the query we build keeps our own filters
    and base URL. A page with no items ends the walk even if it names a cursor, and a cursor that does not
    move (the one we just sent) is refused, so a faulty server cannot make an iterator loop forever.
    """
    items = body.get(items_key)
    if not isinstance(items, list):
        raise InvalidInput(f"page body has no list {items_key!r}")
    meta = body.get("meta")
    cursor = meta.get(CURSOR_PARAM) if isinstance(meta, Mapping) else None
    if cursor is None or cursor == "" or not items:
        return None
    if not isinstance(cursor, str):
        raise InvalidInput(f"meta.{CURSOR_PARAM} is not a string: {cursor!r}")
    if cursor == params.get(CURSOR_PARAM):
        raise InvalidInput(f"meta.{CURSOR_PARAM} {cursor!r} did not advance; stopping to avoid a loop")
    return {**params, CURSOR_PARAM: cursor}
