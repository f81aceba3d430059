"""The form parser agrees with the standard library's strict parse_qsl (the same pairs, the same refusals), and
fold_form with the fold as first written on top of parse_qsl: the same nesting, key order and messages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snapbridge.connectors.gumroad import formdata
from snapbridge.errors import InvalidInput

DATA = Path(__file__).resolve().parents[1] / "data" / "gumroad_webhooks"
ALPHABET = st.sampled_from([*"ab=&+%2F5Bc3D0é ", "%20", "%C3%A9", "%ZZ", "%E9", "[", "]"])
# What could trip the one-pass decoder: escaped separators and NUL, backslashes (escapes to its codec), bytes
# that are never UTF-8, a lone surrogate, a "%" at the very end, whitespace that only str.strip removes.
TRICKY = st.sampled_from([
    *"ab=&+%[]\\\x00\x1cx ", "%26", "%3D", "%3d", "%00", "%FF", "%fe", "%5C", "\\x41", "%5B", "%5d", "%255B",
    "%C3%A9", "%C3", "%A9", "%E6%97%A5", "%F0%9F%98%80", "%ZZ", "%2", "%", "é", "日", "\ud800", "%2B",
])
# Mostly names that fold, so that bodies reach the nesting and its conflicts, and now and then one that is refused.
FOLDING_NAMES = ["a", "b", "a[b]", "a[c]", "a[b][c]", "a[b][d]", "a[]", "b[]", "b[c]", "é", "x y", "a\\b",
                 "custom_fields[Size %5Bcm%5D]"]
NAMES = st.sampled_from(FOLDING_NAMES * 4 + ["a[][x]", "[b]", "a]", "", "a&b", "a=b", "a\x00b"])
VALUES = st.sampled_from(["", "1", "x y", "a=b", "a&b", "é", "100%", "\\", "\x00", "+", "%", "%C3%A9", "%26", "%3D",
                         "a+b", "%2B", "%00", "%5B", "%E9"])

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_ESCAPED_BRACKET = re.compile(r"%5[bBdD]")


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


def _reference_split(key: str) -> list[str]:
    match = _KEY.match(key)
    if match is None:
        raise InvalidInput(f"form field name {key!r} is malformed (unbalanced or empty brackets)")
    segments = [match.group(1), *_SEGMENT.findall(match.group(2))]
    if "" in segments[:-1]:
        raise InvalidInput(f"form field name {key!r} nests inside a list, which Gumroad never sends")
    return [_ESCAPED_BRACKET.sub(lambda m: "[" if m.group(0)[-1] in "bB" else "]", s) for s in segments]


def _reference_insert(root: dict[str, object], path: list[str], value: str, key: str) -> None:
    node = root
    for depth, segment in enumerate(path[:-1]):
        existing = node.get(segment)
        if path[depth + 1] == "":
            if existing is None:
                existing = node[segment] = []
            if not isinstance(existing, list):
                raise InvalidInput(f"form field {key!r} makes {segment!r} both a list and a value")
            existing.append(value)
            return
        if existing is None:
            existing = node[segment] = {}
        if not isinstance(existing, dict):
            raise InvalidInput(f"form field {key!r} makes {segment!r} both a group and a value")
        node = existing
    existing_leaf = node.get(path[-1])
    if isinstance(existing_leaf, dict | list):
        kind = "group" if isinstance(existing_leaf, dict) else "list"
        raise InvalidInput(f"form field {key!r} makes {path[-1]!r} both a {kind} and a value")
    node[path[-1]] = value


def _reference_fold(body: bytes, max_fields: int) -> str:
    """The fold as first written, field by field on parse_qsl; its result as JSON text (so key order counts)
    or its message."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"form body is not UTF-8 (byte {exc.start})"
    try:
        pairs = parse_qsl(text.strip(), keep_blank_values=True, strict_parsing=True, errors="strict",
                          max_num_fields=max_fields)
    except UnicodeDecodeError:
        return "form body has a percent-escape that is not UTF-8"
    except ValueError as exc:
        return f"form body is malformed: {exc}"
    root: dict[str, object] = {}
    try:
        for key, value in pairs:
            _reference_insert(root, _reference_split(key), value, key)
    except InvalidInput as exc:
        return str(exc)
    return json.dumps(root)


def _fold(body: bytes, max_fields: int) -> str:
    try:
        return json.dumps(formdata.fold_form(body, max_fields=max_fields))
    except InvalidInput as exc:
        return str(exc)


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate makes a body that is not UTF-8


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=30).map("".join), st.integers(min_value=1, max_value=6))
def test_parse_pairs_matches_strict_parse_qsl(text: str, max_fields: int) -> None:
    assert _ours(text, max_fields) == _stdlib(text, max_fields)


@settings(max_examples=600, deadline=None)
@given(st.lists(TRICKY, max_size=30).map("".join), st.integers(min_value=1, max_value=8))
def test_parse_pairs_matches_strict_parse_qsl_on_tricky_text(text: str, max_fields: int) -> None:
    assert _ours(text, max_fields) == _stdlib(text, max_fields)


@pytest.mark.parametrize("text", ["", "a=1", "a=1&b=", "a+b=c+d", "k%5Bx%5D=1", "e=%C3%A9", "x=%E9", "a&b=1",
                                  "a=1&&b=2", "=v", "a=b=c", "a%3Db=c%26d", "a=%00&b=1", "a\\x41=\\", "a=%FF",
                                  "a=%", "a=%2", "a=\ud800", "a=1&b=%26=2"])
def test_parse_pairs_examples(text: str) -> None:
    assert _ours(text, 10) == _stdlib(text, 10)


@settings(max_examples=600, deadline=None)
@given(st.lists(TRICKY, max_size=40).map("".join), st.integers(min_value=1, max_value=8))
def test_fold_form_matches_the_reference_on_any_text(text: str, max_fields: int) -> None:
    body = _encoded(text)
    assert _fold(body, max_fields) == _reference_fold(body, max_fields)


def _field(name: str, value: str, escape_brackets: bool) -> str:
    if escape_brackets:
        name = name.replace("[", "%5B").replace("]", "%5D")
    return f"{name}={value}"


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES, st.booleans()), max_size=12),
       st.sampled_from(["", " ", "\n", "\x1c"]), st.integers(min_value=1, max_value=15))
def test_fold_form_matches_the_reference_on_fields(
    fields: list[tuple[str, str, bool]], padding: str, max_fields: int
) -> None:
    # Mostly well-formed bodies, so the nesting and its refusals are reached, not only the parse errors.
    body = _encoded(padding + "&".join(_field(*field) for field in fields) + padding)
    assert _fold(body, max_fields) == _reference_fold(body, max_fields)


@pytest.mark.parametrize("path", sorted(DATA.rglob("*.txt")), ids=lambda p: p.name)
def test_fold_form_matches_the_reference_on_recorded_bodies(path: Path) -> None:
    body = path.read_bytes()
    assert _fold(body, 1000) == _reference_fold(body, 1000)
    assert _fold(body, 3) == _reference_fold(body, 3)


def test_split_key_fast_path_keeps_the_refusals() -> None:
    assert formdata.split_key("email") == ["email"]
    assert formdata.split_key("card[visual]") == ["card", "visual"]
    assert formdata.split_key("f[A %5Bb%5D]") == ["f", "A [b]"]
    long_name = "n" * 300 + "[x]"  # past the names whose splits are remembered
    assert formdata.split_key(long_name) == ["n" * 300, "x"]
    for bad in ("", "a]", "a[b", "a" * 300 + "]"):
        for _ in range(2):  # a refused name is refused again, not remembered
            with pytest.raises(InvalidInput, match="malformed"):
                formdata.split_key(bad)
