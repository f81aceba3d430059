"""Form bodies exactly as Gumroad's ping worker builds them: bracket-escaped keys, then httparty's to_params.

Pure code. The rules (gumroad-api.md §5.1; httparty 0.22 `HashConversions`; Gumroad's
`PostToIndividualPingEndpointWorker#encode_brackets`):
- `[` and `]` inside any key name become `%5B`/`%5D` first, so they cannot be read as nesting;
- a nested mapping becomes `parent[child]` keys; its scalar children come first, in order, and its nested
  mappings after them (httparty walks a stack breadth-first);
- a list becomes repeated `key[]` (an empty top-level list becomes `key[]=`, an empty nested one vanishes);
- keys and values are percent-encoded with ERB::Util.url_encode (everything but `A-Za-z0-9_.-~`, so a space
  is `%20`); `True`/`False` become `true`/`false`, `None` an empty value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias
from urllib.parse import quote

__all__ = ["FormValue", "encode_form", "escape_key_brackets", "to_params", "url_encode"]

FormValue: TypeAlias = str | int | float | bool | Sequence["FormValue"] | Mapping[str, "FormValue"] | None


def url_encode(text: str) -> str:
    """ERB::Util.url_encode: percent-encode every byte outside `A-Za-z0-9_.-~` (UTF-8)."""
    return quote(text, safe="")


def _scalar(value: FormValue) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _is_list(value: FormValue) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _normalize(key: str, value: FormValue) -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        pairs: list[tuple[str, str]] = []
        stack: list[tuple[str, Mapping[str, FormValue]]] = [(key, value)]
        index = 0
        while index < len(stack):  # the stack grows while it is walked, as in Ruby's `stack.each`
            parent, mapping = stack[index]
            index += 1
            for child_key, child in mapping.items():
                name = f"{parent}[{child_key}]"
                if isinstance(child, Mapping):
                    stack.append((name, child))
                elif _is_list(child):
                    assert isinstance(child, Sequence)
                    for element in child:  # an empty nested list adds nothing (no `key[]=` here)
                        pairs.extend(_normalize(f"{name}[]", element))
                else:
                    pairs.extend(_normalize(name, child))
        return pairs
    if _is_list(value):
        assert isinstance(value, Sequence)
        if not value:
            return [(f"{key}[]", "")]
        out: list[tuple[str, str]] = []
        for element in value:
            out.extend(_normalize(f"{key}[]", element))
        return out
    return [(key, _scalar(value))]


def to_params(params: Mapping[str, FormValue]) -> str:
    """httparty's HashConversions.to_params for one payload."""
    parts = []
    for key, value in params.items():
        for name, text in _normalize(str(key), value):
            parts.append(f"{url_encode(name)}={url_encode(text)}")
    return "&".join(parts)


def escape_key_brackets(value: FormValue) -> FormValue:
    """Gumroad's `deep_transform_keys { encode_brackets }`: `[`/`]` in every key name become `%5B`/`%5D`."""
    if isinstance(value, Mapping):
        return {
            str(k).replace("[", "%5B").replace("]", "%5D"): escape_key_brackets(v) for k, v in value.items()
        }
    if _is_list(value):
        assert isinstance(value, Sequence)
        return [escape_key_brackets(v) for v in value]
    return value


def encode_form(payload: Mapping[str, FormValue]) -> bytes:
    """The exact bytes of a form-encoded ping body."""
    escaped = escape_key_brackets(payload)
    assert isinstance(escaped, Mapping)
    return to_params(escaped).encode("ascii")
