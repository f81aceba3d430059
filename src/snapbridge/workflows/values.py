"""JSON-like values as mappings see them: read-only views that know their path, sizes, and conversion back."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import date, datetime
from typing import overload

from jinja2 import Undefined
from jinja2.runtime import StrictUndefined
from jinja2.utils import missing

from snapbridge.errors import InvalidInput
from snapbridge.workflows.filters import iso8601

__all__ = [
    "SCOPE_NAMES",
    "Missing",
    "Record",
    "RecordList",
    "child_path",
    "describe",
    "measure",
    "to_plain",
    "to_text",
    "wrap",
]

_MAX_KNOWN_IN_MESSAGE = 25

# The top-level names of the render in progress, so a message about a mistyped name can list the right ones.
SCOPE_NAMES: ContextVar[tuple[str, ...]] = ContextVar("snapbridge_mapping_scope", default=())


def child_path(path: str, key: object) -> str:
    """`event.sale` for a plain key, `event.custom_fields['Spouse name']` or `event.tags[0]` otherwise."""
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def describe(value: object) -> str:
    """What kind of JSON value this is, for messages: 'text', 'a number', 'a list'…"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, Sequence | range):
        return "a list"
    return f"a {type(value).__name__}"


def _known(keys: Sequence[object]) -> str:
    names = sorted(str(k) for k in keys)
    shown = ", ".join(names[:_MAX_KNOWN_IN_MESSAGE])
    more = f" and {len(names) - _MAX_KNOWN_IN_MESSAGE} more" if len(names) > _MAX_KNOWN_IN_MESSAGE else ""
    return f"{shown}{more}" if names else "none"


class Missing(StrictUndefined):
    """A missing value: any use fails with a message naming the path that was asked for."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        if self._undefined_obj is missing:
            # A top-level name: jinja builds this one, so the names in scope come from the render.
            return f"{self._undefined_name} is undefined; known names: {_known(SCOPE_NAMES.get())}"
        return super()._undefined_message


def _missing(path: str, known: Sequence[object]) -> Missing:
    return Missing(hint=f"{path} is undefined; known fields: {_known(known)}")


class Record(Mapping[str, object]):
    """A read-only object of input data that knows where it sits (`event.sale`)."""

    __slots__ = ("_data", "_path", "_size")

    def __init__(self, data: Mapping[str, object], path: str) -> None:
        self._data = data
        self._path = path
        self._size: int | None = None

    @property
    def path(self) -> str:
        return self._path

    def __getitem__(self, key: str) -> object:
        return wrap(self._data[key], child_path(self._path, key))

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def lookup(self, key: object) -> object:
        """The field, wrapped; or a Missing that names the path and the known fields."""
        try:
            present = key in self._data
        except TypeError:
            present = False
        if present and isinstance(key, str):
            return self[key]
        return _missing(child_path(self._path, key), list(self._data))

    def size(self, limit: int) -> int:
        if self._size is None:
            self._size = measure(self._data, limit)
        return self._size

    def raw(self) -> Mapping[str, object]:
        return self._data

    def __repr__(self) -> str:
        return f"Record({self._path})"


class RecordList(Sequence[object]):
    """A read-only list of input data that knows where it sits (`event.tags`)."""

    __slots__ = ("_items", "_path", "_size")

    def __init__(self, items: Sequence[object], path: str) -> None:
        self._items = items
        self._path = path
        self._size: int | None = None

    @property
    def path(self) -> str:
        return self._path

    @overload
    def __getitem__(self, index: int) -> object: ...

    @overload
    def __getitem__(self, index: slice) -> RecordList: ...

    def __getitem__(self, index: int | slice) -> object:
        if isinstance(index, slice):
            return RecordList(self._items[index], f"{self._path}[{index.start}:{index.stop}]")
        position = index + len(self._items) if index < 0 else index
        return wrap(self._items[index], f"{self._path}[{position}]")

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordList):
            return list(self._items) == list(other._items)
        if isinstance(other, list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def size(self, limit: int) -> int:
        if self._size is None:
            self._size = measure(self._items, limit)
        return self._size

    def raw(self) -> Sequence[object]:
        return self._items

    def __repr__(self) -> str:
        return f"RecordList({self._path})"


_PLAIN = frozenset({str, int, float, bool, type(None)})


def wrap(value: object, path: str) -> object:
    """Input data as the mapping language reads it: objects and lists become path-aware views."""
    kind = type(value)
    # Exact types first: planning wraps every value it reads, and ABC checks cost more than the rest of a read.
    if kind in _PLAIN or kind is Record or kind is RecordList:
        return value
    if kind is dict:
        return Record(value, path)  # type: ignore[arg-type]
    if isinstance(value, Record | RecordList):
        return value
    if isinstance(value, Mapping):
        return Record(value, path)
    if isinstance(value, list | tuple):
        return RecordList(value, path)
    return value


def measure(value: object, limit: int) -> int:
    """Roughly how many characters the value takes as JSON; counting stops soon after `limit` is passed."""
    if type(value) is str:
        return len(value)  # most rendered values
    total = 0
    stack: list[object] = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif item is None or isinstance(item, bool):
            total += 4
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, Record | RecordList):
            total += item.size(limit)
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            for key, child in item.items():
                stack.append(key)
                stack.append(child)
        elif isinstance(item, list | tuple | range):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += 24
    return total


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int | float | bool) or key is None:
        return json.dumps(key)
    raise InvalidInput(f"an object key must be text, got {describe(key)}")


def to_plain(value: object) -> object:
    """A rendered value as plain JSON-like Python (dict, list, str, int, float, bool, None)."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Record):
        return to_plain(value.raw())
    if isinstance(value, RecordList):
        return to_plain(value.raw())
    if isinstance(value, Mapping):
        return {_key_text(key): to_plain(child) for key, child in value.items()}
    if isinstance(value, list | tuple | range):
        return [to_plain(item) for item in value]
    if isinstance(value, datetime | date):
        return iso8601(value)
    raise InvalidInput(f"{describe(value)} cannot be used as a value")


def to_text(value: object, limit: int) -> str:
    """How a value reads inside text: null is empty, booleans are true/false, objects and lists are JSON."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, datetime | date):
        text = iso8601(value) or ""
    elif isinstance(value, Mapping | Sequence | range):
        if measure(value, limit) > limit:
            raise InvalidInput(f"a value is longer than the limit of {limit} characters")
        text = json.dumps(to_plain(value), ensure_ascii=False)
    else:
        raise InvalidInput(f"{describe(value)} cannot be written into text")
    if len(text) > limit:
        raise InvalidInput(f"a value is longer than the limit of {limit} characters")
    return text
