"""check_storable: which parsed webhook bodies the receiver refuses because the store could not keep them or the
deriver could not read them back (NaN and ±Infinity, lone surrogates, deep nesting)."""

from __future__ import annotations

import json

import pytest

from snapbridge.errors import InvalidInput
from snapbridge.runtime.payloads import MAX_PAYLOAD_DEPTH, check_storable


def _nested(depth: int, leaf: object) -> dict[str, object]:
    value: object = leaf
    for _ in range(depth):
        value = [{"x": value}]
    return {"a": value}


@pytest.mark.parametrize("body", [
    "{}", '{"a": 1.5, "b": -1.7e308, "c": 1e308, "d": 0.0, "e": -0.0}', '{"n": 1' + "0" * 400 + "}",
    '{"s": "NaN", "t": "Infinity", "u": [true, null, "inf"]}', '{"a": {"b": [[1.25e-320]]}}',
])
def test_finite_bodies_pass(body: str) -> None:
    check_storable(json.loads(body))


NAN = "webhook body holds NaN, which is not a JSON number"
INFINITY = "webhook body holds Infinity (or a number too large for a float), which is not a JSON number"


@pytest.mark.parametrize(("body", "message"), [
    ('{"a": NaN}', NAN), ('{"a": {"b": [1, {"c": [2.5, NaN]}]}}', NAN),
    ('{"a": Infinity}', INFINITY), ('{"a": 1e999}', INFINITY),
    ('{"a": -Infinity}', INFINITY.replace("Infinity", "-Infinity", 1)),
    ('{"a": [-1' + "0" * 400 + '.5]}', INFINITY.replace("Infinity", "-Infinity", 1)),
])
def test_non_finite_numbers_are_refused_wherever_they_are(body: str, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_storable(json.loads(body))
    assert str(refused.value) == message


def test_nesting_up_to_the_limit_passes_and_one_level_more_is_refused() -> None:
    def nested(levels: int) -> dict[str, object]:  # `levels` containers, the outermost object included
        value: object = "leaf"
        for index in range(levels - 1):
            value = {"x": value} if index % 2 else [value]
        return {"a": value}

    check_storable(nested(MAX_PAYLOAD_DEPTH))
    with pytest.raises(InvalidInput, match=f"nested more than {MAX_PAYLOAD_DEPTH} levels deep"):
        check_storable(nested(MAX_PAYLOAD_DEPTH + 1))


def test_a_very_deep_body_is_refused_without_recursion() -> None:
    with pytest.raises(InvalidInput, match="nested more than"):
        check_storable(_nested(200_000, 1.5))


@pytest.mark.parametrize("body", [
    '{"email": "\\udc00"}', '{"a": ["ok", {"b": "x\\ud800y"}]}', '{"\\ud83d": 1}', '{"a": {"\\udfff": "k"}}',
])
def test_lone_surrogates_in_values_and_keys_are_refused(body: str) -> None:
    with pytest.raises(InvalidInput, match="not valid Unicode"):
        check_storable(json.loads(body))


def test_text_in_any_script_passes() -> None:
    check_storable(json.loads('{"name": "Zoë Ñúñez 山田 \\ud83d\\ude00", "Straße": ["Zürich", "🎉"]}'))


def test_nul_in_text_is_kept() -> None:
    check_storable(json.loads('{"offer_code": "LA\\u0000UNCH", "\\u0000": "k"}'))
