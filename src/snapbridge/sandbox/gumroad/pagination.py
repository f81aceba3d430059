"""Gumroad's cursor paging (gumroad-api.md §3): page_key in, next_page_key/next_page_url out.

Pure code. Rows come sorted newest first by (created_at, pk); a cursor keeps only rows with
`created_at <= t AND pk < last_pk`, exactly the real server's condition. `next_page_url` is the request
path with the original query (minus access_token, page, page_key) plus the new page_key, keys sorted and
values percent-encoded as Addressable's `query_values=` writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, quote

from snapbridge.sandbox.gumroad.ids import InvalidPageKey, decode_page_key, encode_page_key

__all__ = ["Cursor", "Page", "apply_cursor", "next_page_url", "paginate", "read_cursor"]

Row = TypeVar("Row")


@dataclass(frozen=True)
class Page(Generic[Row]):
    rows: list[Row]
    next_key: str | None

    def links(self, path: str, query: str) -> dict[str, Any]:
        """The pagination keys of the answer; absent (never null) on the last page."""
        if self.next_key is None:
            return {}
        return {"next_page_key": self.next_key, "next_page_url": next_page_url(path, query, self.next_key)}


@dataclass(frozen=True)
class Cursor:
    """A decoded page_key: rows with `created_at <= moment` and `pk < last_pk` come after it."""

    moment: datetime
    last_pk: int


def read_cursor(page_key: str, resolve: Callable[[int], int | None]) -> Cursor:
    """`resolve` maps the key's numeric id back to a pk; an undecodable key or unknown id is InvalidPageKey."""
    moment, numeric = decode_page_key(page_key)
    last_pk = resolve(numeric)
    if last_pk is None:
        raise InvalidPageKey(page_key)
    return Cursor(moment, last_pk)


def apply_cursor(
    rows: Sequence[Row],
    page_key: str,
    *,
    created_at: Callable[[Row], datetime],
    pk: Callable[[Row], int],
    resolve: Callable[[int], int | None],
) -> list[Row]:
    """Rows after the cursor (see read_cursor)."""
    cursor = read_cursor(page_key, resolve)
    return [r for r in rows if created_at(r) <= cursor.moment and pk(r) < cursor.last_pk]


def paginate(
    rows: Sequence[Row],
    per_page: int,
    *,
    created_at: Callable[[Row], datetime],
    numeric_id: Callable[[Row], int],
) -> Page[Row]:
    """The first `per_page` rows, and a key built from the last of them when more remain."""
    chosen = list(rows[:per_page])
    if len(rows) > per_page:
        last = chosen[-1]
        return Page(chosen, encode_page_key(created_at(last), numeric_id(last)))
    return Page(chosen, None)


def _encode(text: str) -> str:
    return quote(text, safe="-._~")


def next_page_url(path: str, query: str, page_key: str) -> str:
    values = dict(parse_qsl(query, keep_blank_values=True))
    for dropped in ("access_token", "page", "page_key"):
        values.pop(dropped, None)
    values["page_key"] = page_key
    pairs = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(values.items()))
    return f"{path}?{pairs}"
