"""Gumroad paging, pure: one page's body and query → the next page's query, or None on the last page."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

from snapbridge.errors import Permanent

__all__ = ["next_page_params", "params_from_next_page_url"]

# Never carried from one page to the next: the cursor is replaced, offset paging is deprecated, and the token
# travels in a header, not the query.
_DROPPED = frozenset({"page", "page_key", "access_token"})


def params_from_next_page_url(url: str, expected_path: str, *, operation: str = "") -> dict[str, str]:
    """The query of a relative `next_page_url`; anything pointing off the listed path is refused."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or parts.path != expected_path:
        # A cursor that leads to another host or path would let a response steer our token elsewhere.
        raise Permanent(
            f"next_page_url {parts.path or url!r} does not continue {expected_path}; refusing to follow it",
            operation=operation,
        )
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    return {key: value for key, value in pairs if key != "access_token"}


def next_page_params(
    body: Mapping[str, object], params: Mapping[str, str], *, path: str, operation: str = ""
) -> dict[str, str] | None:
    """The next request's query: `next_page_key` with the same filters, else `next_page_url`'s query.

    Both keys are absent on the last page (Gumroad never sends them as null, but null is read as absent too).
    """
    key = body.get("next_page_key")
    following: dict[str, str] | None = None
    if isinstance(key, str) and key:
        following = {name: value for name, value in params.items() if name not in _DROPPED}
        following["page_key"] = key
    else:
        url = body.get("next_page_url")
        if isinstance(url, str) and url:
            following = params_from_next_page_url(url, path, operation=operation)
    if following is not None and following == dict(params):
        raise Permanent(f"the page cursor did not advance ({path}); stopping", operation=operation)
    return following
