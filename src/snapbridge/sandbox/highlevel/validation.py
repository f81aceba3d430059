"""Request validation driven by the catalog record, worded like class-validator (HighLevel's 422 list)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from snapbridge.catalog import Operation, Param, ParamIn, ParamType

__all__ = ["check_body", "check_query"]

_INTEGER = re.compile(r"^-?\d{1,15}$")
_NUMBER = re.compile(r"^-?\d{1,15}(\.\d+)?$")
_TYPE_WORDS = {
    ParamType.STRING: "must be a string",
    ParamType.INTEGER: "must be an integer number",
    ParamType.NUMBER: "must be a number conforming to the specified constraints",
    ParamType.BOOLEAN: "must be a boolean value",
    ParamType.ARRAY: "must be an array",
    ParamType.OBJECT: "must be an object",
}


def _json_ok(type_: ParamType, value: Any) -> bool:
    if type_ is ParamType.STRING:
        return isinstance(value, str)
    if type_ is ParamType.INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ is ParamType.NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_ is ParamType.BOOLEAN:
        return isinstance(value, bool)
    if type_ is ParamType.ARRAY:
        return isinstance(value, list)
    return isinstance(value, dict)


def _check_value(param: Param, value: Any, problems: list[str]) -> None:
    if not _json_ok(param.type, value):
        problems.append(f"{param.name} {_TYPE_WORDS[param.type]}")
        return
    if param.items is not None and any(not _json_ok(param.items, item) for item in value):
        problems.append(f"each value in {param.name} {_TYPE_WORDS[param.items]}")
        return
    if param.enum and value not in param.enum:
        problems.append(f"{param.name} must be one of the following values: {', '.join(param.enum)}")
    elif param.required and isinstance(value, str) and not value.strip() and param.name != "lastDoc":
        # lastDoc is required but empty on the first page of snapshot pushes.
        problems.append(f"{param.name} should not be empty")


def _from_text(param: Param, raw: str) -> tuple[Any, str | None]:
    """A query string value converted to the record's type, or the class-validator complaint."""
    if param.type is ParamType.INTEGER:
        return (int(raw), None) if _INTEGER.match(raw) else (None, f"{param.name} {_TYPE_WORDS[param.type]}")
    if param.type is ParamType.NUMBER:
        return (float(raw), None) if _NUMBER.match(raw) else (None, f"{param.name} {_TYPE_WORDS[param.type]}")
    if param.type is ParamType.BOOLEAN:
        if raw in ("true", "false"):
            return raw == "true", None
        return None, f"{param.name} {_TYPE_WORDS[param.type]}"
    return raw, None


def check_query(op: Operation, pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, Any], list[str]]:
    """The record's query parameters converted to their types, and every problem found."""
    params = {p.name: p for p in op.params if p.where is ParamIn.QUERY}
    unknown = (f"property {name} should not exist" for name, _ in pairs if name not in params)
    problems = list(dict.fromkeys(unknown))
    values: dict[str, Any] = {}
    grouped: dict[str, list[str]] = {}
    for name, raw in pairs:
        grouped.setdefault(name, []).append(raw)
    for name, param in params.items():
        raws = grouped.get(name)
        if not raws:
            if param.required:
                problems.append(f"{name} should not be empty")
            continue
        if param.type is ParamType.ARRAY:
            values[name] = raws
            continue
        value, problem = _from_text(param, raws[-1])
        if problem:
            problems.append(problem)
            continue
        _check_value(param, value, problems)
        values[name] = value
    return values, problems


def check_body(op: Operation, body: Any, *, form: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The record's body fields, and every problem; `form` bodies (multipart) carry strings to convert."""
    params = {p.name: p for p in op.params if p.where is ParamIn.BODY}
    if not isinstance(body, Mapping):
        return {}, ["body must be an object"]
    problems = [f"property {name} should not exist" for name in body if name not in params]
    values: dict[str, Any] = {}
    for name, param in params.items():
        if name not in body or body[name] is None:
            if param.required:
                problems.append(f"{name} should not be empty")
            continue
        value = body[name]
        if form and isinstance(value, str):
            value, problem = _from_text(param, value)
            if problem:
                problems.append(problem)
                continue
        _check_value(param, value, problems)
        values[name] = value
    return values, problems
