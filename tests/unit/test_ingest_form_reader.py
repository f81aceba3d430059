"""The webhook parser's FormReader answers exactly as Reader does, for any value: the same result, or the same
error message."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snapbridge.connectors.gumroad import events
from snapbridge.connectors.gumroad.values import Reader
from snapbridge.errors import InvalidInput

# Strings a form body may carry, and near misses of the shapes FormReader answers by itself.
NEAR_MISSES = ["", "true", "false", "TRUE", " true", "false ", "1", "0", "01", " 12 ", "1_000", "-3", "+4", "1.5",
               "²", "١٢", "\x1c7\x1c", "abc", "None", "9" * 30, "2021-01-05T19:38:56Z", "2021-01-05 19:38"]
TEXTS = st.one_of(st.sampled_from(NEAR_MISSES), st.text(alphabet="0123456789 ²٣._-+truefalsTRUEx", max_size=6))
SCALARS = st.one_of(TEXTS, st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(TEXTS, inner, max_size=3)), max_leaves=6)
METHODS = ["has", "text", "opt_text", "raw_text", "integer", "opt_integer", "flag", "opt_flag", "time", "opt_time",
           "text_map", "text_list", "opt_text_list", "objects"]


def _answer(read: Callable[[str], object], key: str) -> object:
    try:
        value = read(key)
    except InvalidInput as exc:
        return ("refused", str(exc))
    if isinstance(value, Reader):
        return ("reader", value.data, value.where)
    if isinstance(value, list):  # objects(): a list of readers
        return [_answer(lambda _key, item=item: item, key) for item in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize("value", [*NEAR_MISSES, None, True, False, 0, 1, 2, 1.0, 1.5, float("nan"), {"x": "1"},
                                   {"x": {"y": "true"}}, ["a", 1], [{"x": "1"}], {}, []])
def test_form_reader_answers_as_reader_for_each_value(value: object) -> None:
    data = {"k": value}
    plain, fast = Reader(data, "webhook"), events.FormReader(data, "webhook")
    for key in ("k", "missing"):
        for method in METHODS:
            assert _answer(getattr(fast, method), key) == _answer(getattr(plain, method), key), (method, key)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), VALUES, max_size=3), st.sampled_from(["a", "b", "c"]))
def test_form_reader_answers_as_reader(data: dict[str, object], key: str) -> None:
    plain, fast = Reader(data, "webhook"), events.FormReader(data, "webhook")
    for method in METHODS:
        expected = _answer(getattr(plain, method), key)
        assert _answer(getattr(fast, method), key) == expected, method
    plain_sub, fast_sub = plain.sub(key) if isinstance(data.get(key), dict) else None, None
    if plain_sub is not None:
        fast_sub = fast.sub(key)
        assert isinstance(fast_sub, Reader)
        for inner in list(plain_sub.data)[:2]:
            for method in METHODS:
                assert _answer(getattr(fast_sub, method), inner) == _answer(getattr(plain_sub, method), inner)
