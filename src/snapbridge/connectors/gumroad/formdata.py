"""Folds a Gumroad form-encoded body (`card[visual]=…`, `purchase_ids[]=…`) back into nested values."""

from __future__ import annotations

import re
from urllib.parse import unquote

from snapbridge.errors import InvalidInput

__all__ = ["MAX_FORM_FIELDS", "fold_form", "parse_pairs", "split_key"]

MAX_FORM_FIELDS = 1000

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
# Gumroad escapes brackets *inside* key names (a custom field "Size [cm]") as %5B/%5D before encoding, so
# after one round of decoding they are still escaped and cannot be mistaken for nesting.
_ESCAPED_BRACKET = re.compile(r"%5[bBdD]")


def _unescape(name: str) -> str:
    return _ESCAPED_BRACKET.sub(lambda m: "[" if m.group(0)[-1] in "bB" else "]", name)


def split_key(key: str) -> list[str]:
    """`old_plan[tier][id]` → ["old_plan", "tier", "id"]; `purchase_ids[]` → ["purchase_ids", ""]."""
    if "[" not in key and "]" not in key and "%" not in key and key:
        return [key]  # most fields: nothing to split or unescape
    match = _KEY.match(key)
    if match is None:
        raise InvalidInput(f"form field name {key!r} is malformed (unbalanced or empty brackets)")
    segments = [match.group(1), *_SEGMENT.findall(match.group(2))]
    if "" in segments[:-1]:
        raise InvalidInput(f"form field name {key!r} nests inside a list, which Gumroad never sends")
    return [_unescape(segment) for segment in segments]


def _insert(root: dict[str, object], path: list[str], value: str, key: str) -> None:
    node = root
    for depth, segment in enumerate(path[:-1]):
        is_list = path[depth + 1] == ""
        existing = node.get(segment)
        if is_list:
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
    leaf = path[-1]
    existing_leaf = node.get(leaf)
    if isinstance(existing_leaf, dict | list):
        kind = "group" if isinstance(existing_leaf, dict) else "list"
        raise InvalidInput(f"form field {key!r} makes {leaf!r} both a {kind} and a value")
    # Rack semantics: a repeated plain key keeps its last value.
    node[leaf] = value


def parse_pairs(text: str, *, max_fields: int) -> list[tuple[str, str]]:
    """`parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")`, the same pairs and the
    same errors, without its per-field regex and decoding work when a field has nothing to decode (a ping has
    ~40 fields, and parsing was the receiver's largest cost)."""
    if not text:
        return []
    pieces = text.split("&")
    if len(pieces) > max_fields:
        raise ValueError("Max number of fields exceeded")
    pairs: list[tuple[str, str]] = []
    for piece in pieces:
        name, eq, value = piece.partition("=")
        if not eq:
            raise ValueError(f"bad query field: {piece!r}")
        pairs.append((_decode(name), _decode(value)))
    return pairs


def _decode(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text, errors="strict") if "%" in text else text


def fold_form(body: bytes, *, max_fields: int = MAX_FORM_FIELDS) -> dict[str, object]:
    """The nested dict a Rails app would see for this `application/x-www-form-urlencoded` body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"form body is not UTF-8 (byte {exc.start})") from exc
    try:
        pairs = parse_pairs(text.strip(), max_fields=max_fields)
    except UnicodeDecodeError as exc:
        raise InvalidInput("form body has a percent-escape that is not UTF-8") from exc
    except ValueError as exc:
        raise InvalidInput(f"form body is malformed: {exc}") from exc
    root: dict[str, object] = {}
    for key, value in pairs:
        _insert(root, split_key(key), value, key)
    return root
