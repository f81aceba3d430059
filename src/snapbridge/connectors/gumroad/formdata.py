"""Folds a Gumroad form-encoded body (`card[visual]=…`, `purchase_ids[]=…`) back into nested values."""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import unquote

from snapbridge.errors import InvalidInput

__all__ = ["MAX_FORM_FIELDS", "fold_form", "parse_pairs", "split_key"]

MAX_FORM_FIELDS = 1000

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
# Gumroad escapes brackets *inside* key names (a custom field "Size [cm]") as %5B/%5D before encoding, so
# after one round of decoding they are still escaped and cannot be mistaken for nesting.
_ESCAPED_BRACKET = re.compile(r"%5[bBdD]")
# One pass over the whole body: "+" is a space, and both separators become NUL so that one split gives
# [name, value, name, value, …]. Every other byte is kept.
_SEPARATORS_TO_NUL = bytes.maketrans(b"+&=", b" \x00\x00")
_ALL_BUT_SEPARATORS = bytes(c for c in range(256) if c not in b"&=")
_REMEMBERED_NAME_LENGTH = 200


def _unescape(name: str) -> str:
    return _ESCAPED_BRACKET.sub(lambda m: "[" if m.group(0)[-1] in "bB" else "]", name)


def split_key(key: str) -> list[str]:
    """`old_plan[tier][id]` → ["old_plan", "tier", "id"]; `purchase_ids[]` → ["purchase_ids", ""]."""
    return list(_path(key))


def _path(key: str) -> tuple[str, ...]:
    # A seller's pings repeat the same few dozen names, so their splits are remembered; only short ones, so
    # that bodies of huge names cannot fill memory.
    return _remembered_path(key) if len(key) <= _REMEMBERED_NAME_LENGTH else _split(key)


def _split(key: str) -> tuple[str, ...]:
    if "[" not in key and "]" not in key and "%" not in key and key:
        return (key,)  # most fields: nothing to split or unescape
    match = _KEY.match(key)
    if match is None:
        raise InvalidInput(f"form field name {key!r} is malformed (unbalanced or empty brackets)")
    segments = [match.group(1), *_SEGMENT.findall(match.group(2))]
    if "" in segments[:-1]:
        raise InvalidInput(f"form field name {key!r} nests inside a list, which Gumroad never sends")
    return tuple(_unescape(segment) if "%" in segment else segment for segment in segments)


# A name that is refused raises again: failures are not remembered.
_remembered_path = lru_cache(maxsize=1024)(_split)


def _insert(root: dict[str, object], path: Sequence[str], value: str, key: str) -> None:
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


def _decoded_fields(text: str, max_fields: int) -> list[str] | None:
    """[name, value, name, value, …] of a well-formed body, decoded in one pass; None when the body is empty,
    has too many fields, or has anything unusual (a field without "=" or with two, a bad or non-UTF-8 escape,
    a NUL), so that the field-by-field parse decides what it means or which error it is.

    Decoding field by field cost ~1.5 µs per percent-escaped field in urllib's Python loop; here the escapes
    are rewritten as `\\xHH` and decoded in C by `codecs.escape_decode` (what pickle decodes its protocol-0
    strings with; backslashes are doubled first, so nothing else in the body is an escape to it), and the
    result is checked to split into exactly the fields the raw body has, so an escaped "&", "=" or NUL can
    never move a boundary.
    """
    count = text.count("&") + 1
    if not text or count > max_fields:
        return None
    raw = text.encode("utf-8", "surrogatepass")  # a lone surrogate fails the decoding below
    if raw.translate(None, _ALL_BUT_SEPARATORS) != b"=&" * (count - 1) + b"=":
        return None  # not exactly one "=" per field
    if b"\\" in raw:
        raw = raw.replace(b"\\", b"\\\\")
    try:
        decoded = codecs.escape_decode(raw.translate(_SEPARATORS_TO_NUL).replace(b"%", b"\\x"))[0]
        fields = decoded.decode("utf-8")
    except ValueError:  # "%" without two hex digits, or escapes that are not UTF-8 (UnicodeDecodeError)
        return None
    parts = fields.split("\x00")
    return parts if len(parts) == 2 * count else None  # else a NUL, sent or escaped, split a field


def parse_pairs(text: str, *, max_fields: int) -> list[tuple[str, str]]:
    """`parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")`, the same pairs and the
    same errors, without its per-field regex and decoding work (a ping has ~40 fields, and parsing was the
    receiver's largest cost)."""
    flat = _decoded_fields(text, max_fields)
    if flat is not None:
        return list(zip(flat[0::2], flat[1::2], strict=True))
    return _pairs_one_by_one(text, max_fields)


def _pairs_one_by_one(text: str, max_fields: int) -> list[tuple[str, str]]:
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
    text = text.strip()
    flat = _decoded_fields(text, max_fields)
    if flat is None:
        try:
            pairs = _pairs_one_by_one(text, max_fields)
        except UnicodeDecodeError as exc:
            raise InvalidInput("form body has a percent-escape that is not UTF-8") from exc
        except ValueError as exc:
            raise InvalidInput(f"form body is malformed: {exc}") from exc
        flat = [part for pair in pairs for part in pair]
    return _fold(flat)


def _fold(flat: list[str]) -> dict[str, object]:
    root: dict[str, object] = {}
    parts = iter(flat)
    for key, value in zip(parts, parts, strict=True):
        if "[" in key or "]" in key or "%" in key or not key:
            path = _path(key)
            if len(path) == 2 and path[1]:
                # `card[visual]`, the usual group: filled directly unless a conflict needs naming.
                group = root.get(path[0])
                if group is None:
                    group = root[path[0]] = {}
                if group.__class__ is dict:
                    existing = group.get(path[1])
                    if existing is None or existing.__class__ is str:
                        group[path[1]] = value
                        continue
            _insert(root, path, value, key)
            continue
        # A plain key, most of a ping: set it directly unless it already names a group or a list.
        existing = root.get(key)
        if existing is None or existing.__class__ is str:
            root[key] = value
        else:
            _insert(root, (key,), value, key)  # refuses it, naming the conflict
    return root
