"""refuse_non_finite: which parsed JSON bodies the webhook endpoints refuse for holding NaN or ±Infinity."""

from __future__ import annotations

import json

import pytest

from snapbridge.errors import InvalidInput
from snapbridge.web.hooks import refuse_non_finite


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
    refuse_non_finite(json.loads(body))


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
        refuse_non_finite(json.loads(body))
    assert str(refused.value) == message


def test_a_deeply_nested_body_is_checked_without_recursion() -> None:
    refuse_non_finite(_nested(20_000, 1.5))
    with pytest.raises(InvalidInput, match="holds NaN"):
        refuse_non_finite(_nested(20_000, float("nan")))
