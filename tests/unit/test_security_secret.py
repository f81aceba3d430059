"""Secret never shows its value: repr, str, f-strings, format specs, logging, containers, pickling."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest

from snapbridge.security import Secret

CANARY = "canary-7f3a9c1e-do-not-leak"


@pytest.mark.parametrize(
    "render",
    [repr, str, lambda s: f"{s}", lambda s: f"{s!r}", lambda s: f"{s:>40}", lambda s: "%s" % s,  # noqa: UP031
     lambda s: "{}".format(s), lambda s: str([s, {"k": s}]), lambda s: str((s,))],  # noqa: UP032
    ids=["repr", "str", "fstring", "fstring-repr", "format-spec", "percent", "format", "containers", "tuple"],
)
def test_rendering_never_shows_the_value(render: object) -> None:
    assert callable(render)
    text = render(Secret(CANARY))
    assert CANARY not in text
    assert "Secret('****')" in text


def test_logging_a_secret_shows_the_mask(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    logging.getLogger("test.secret").info("token is %s and %r", Secret(CANARY), Secret(CANARY))
    assert CANARY not in caplog.text
    assert "Secret('****')" in caplog.text


def test_reveal_returns_the_value() -> None:
    assert Secret(CANARY).reveal() == CANARY


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [("abc", "abc", True), ("abc", "abd", False), ("abc", "abcd", False), ("", "", True), ("é", "é", True)],
)
def test_equality_and_hash_follow_the_value(a: str, b: str, equal: bool) -> None:
    assert (Secret(a) == Secret(b)) is equal
    if equal:
        assert hash(Secret(a)) == hash(Secret(b))
        assert len({Secret(a), Secret(b)}) == 1


def test_a_secret_is_not_equal_to_its_plain_value() -> None:
    assert Secret("abc") != "abc"


def test_a_secret_takes_only_text() -> None:
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]


def test_a_secret_cannot_be_pickled_but_copies_are_itself() -> None:
    secret = Secret(CANARY)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
    assert copy.copy(secret) is secret
    assert copy.deepcopy({"k": secret})["k"] is secret


def test_a_secret_has_no_instance_dict_to_dump() -> None:
    assert not hasattr(Secret(CANARY), "__dict__")
