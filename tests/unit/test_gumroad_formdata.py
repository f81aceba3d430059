"""The form parser agrees with the standard library's strict parse_qsl: the same pairs, the same refusals."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snapbridge.connectors.gumroad import formdata
from snapbridge.errors import InvalidInput

ALPHABET = st.sampled_from([*"ab=&+%2F5Bc3D0é ", "%20", "%C3%A9", "%ZZ", "%E9", "[", "]"])


def _stdlib(text: str, max_fields: int) -> list[tuple[str, str]] | str:
    try:
        return parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict",
                         max_num_fields=max_fields)
    except (ValueError, UnicodeDecodeError) as exc:
        return type(exc).__name__


def _ours(text: str, max_fields: int) -> list[tuple[str, str]] | str:
    try:
        return formdata.parse_pairs(text, max_fields=max_fields)
    except (ValueError, UnicodeDecodeError) as exc:
        return type(exc).__name__


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=30).map("".join), st.integers(min_value=1, max_value=6))
def test_parse_pairs_matches_strict_parse_qsl(text: str, max_fields: int) -> None:
    assert _ours(text, max_fields) == _stdlib(text, max_fields)


@pytest.mark.parametrize("text", ["", "a=1", "a=1&b=", "a+b=c+d", "k%5Bx%5D=1", "e=%C3%A9", "x=%E9", "a&b=1",
                                  "a=1&&b=2", "=v", "a=b=c"])
def test_parse_pairs_examples(text: str) -> None:
    assert _ours(text, 10) == _stdlib(text, 10)


def test_split_key_fast_path_keeps_the_refusals() -> None:
    assert formdata.split_key("email") == ["email"]
    assert formdata.split_key("card[visual]") == ["card", "visual"]
    for bad in ("", "a]", "a[b"):
        with pytest.raises(InvalidInput, match="malformed"):
            formdata.split_key(bad)
