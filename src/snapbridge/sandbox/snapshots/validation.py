"""Request validation with class-validator's wording, so a 422 reads like HighLevel's (a list of messages)."""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any

__all__ = [
    "BodyError",
    "Field",
    "Kind",
    "canonical",
    "check_body",
    "check_limit",
    "check_query",
    "parse_body",
    "parse_datetime",
]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


class Kind(Enum):
    STRING = "string"
    EMAIL = "email"
    TIMEZONE = "timezone"
    CHOICE = "choice"
    DATETIME = "datetime"
    STRINGS = "strings"
    OBJECT = "object"


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind = Kind.STRING
    required: bool = False
    nullable: bool = True
    max_length: int = 255  # characters for strings, elements for lists, UTF-8 bytes for objects
    choices: tuple[str, ...] = ()


class BodyError(Exception):
    """The body is not JSON at all (400), as opposed to JSON that fails validation (422)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(raw: bytes) -> Any:
    """The JSON value of a request body; an empty body reads as {} (Express does the same)."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise BodyError("Body is not valid UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise BodyError(f"Unexpected token in JSON at position {exc.pos}") from exc
    except (ValueError, RecursionError) as exc:
        raise BodyError(f"Body is not valid JSON: {exc}") from exc


def canonical(value: Any) -> str:
    """One spelling per JSON value, so two bodies that mean the same compare equal."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def parse_datetime(value: str) -> datetime | None:
    """An ISO 8601 date-time with a UTC offset (or Z); None for anything else, naive times included."""
    if not isinstance(value, str) or len(value) < 16 or "T" not in value.upper():
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _check(field: Field, value: Any) -> tuple[Any, list[str]]:
    name = field.name
    if value is None:
        if field.nullable and not field.required:
            return None, []
        return None, [f"{name} should not be empty"]
    kind = field.kind
    if kind == Kind.STRINGS:
        if not isinstance(value, list):
            return None, [f"{name} must be an array"]
        problems = []
        if any(not isinstance(item, str) for item in value):
            problems.append(f"each value in {name} must be a string")
        elif any(len(item) > 255 for item in value):
            problems.append(f"each value in {name} must be shorter than or equal to 255 characters")
        if len(value) > field.max_length:
            problems.append(f"{name} must contain no more than {field.max_length} elements")
        return value, problems
    if kind == Kind.OBJECT:
        if not isinstance(value, dict):
            return None, [f"{name} must be an object"]
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        if size > field.max_length:
            return None, [f"{name} must not be larger than {field.max_length} bytes (got {size})"]
        return value, []
    if not isinstance(value, str):
        label = {Kind.EMAIL: "an email", Kind.DATETIME: "a valid ISO 8601 date string"}.get(kind, "a string")
        return None, [f"{name} must be {label}"]
    if field.required and not value.strip():
        return None, [f"{name} should not be empty"]
    if len(value) > field.max_length:
        return None, [f"{name} must be shorter than or equal to {field.max_length} characters"]
    if kind == Kind.EMAIL and not _EMAIL.match(value):
        return None, [f"{name} must be an email"]
    if kind == Kind.TIMEZONE and value not in _zones():
        return None, [f"{name} must be a valid IANA time zone name (got {value!r})"]
    if kind == Kind.CHOICE and value not in field.choices:
        return None, [f"{name} must be one of the following values: {', '.join(field.choices)}"]
    if kind == Kind.DATETIME:
        moment = parse_datetime(value)
        if moment is None:
            return None, [f"{name} must be a valid ISO 8601 date string with a time zone offset"]
        return moment, []
    return value, []


def check_body(body: Any, fields: Sequence[Field]) -> tuple[dict[str, Any], list[str]]:
    """The given fields, converted (date-times parsed), and every problem found, unknown fields included."""
    if not isinstance(body, dict):
        return {}, ["body must be a JSON object"]
    known = {f.name: f for f in fields}
    problems = [f"property {name} should not exist" for name in body if name not in known]
    values: dict[str, Any] = {}
    for field in fields:
        if field.name not in body:
            if field.required:
                problems.append(f"{field.name} should not be empty")
            continue
        value, found = _check(field, body[field.name])
        problems.extend(found)
        if not found:
            values[field.name] = value
    return values, problems


def check_query(query: Sequence[tuple[str, str]], allowed: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """The last value of each allowed parameter, and a problem per unknown one (a typo'd cursor is loud)."""
    problems = [f"property {name} should not exist" for name, _ in query if name not in allowed]
    values = {name: value for name, value in query if name in allowed}
    return values, list(dict.fromkeys(problems))


def check_limit(values: Mapping[str, str], default: int = 20, maximum: int = 100) -> tuple[int, list[str]]:
    raw = values.get("limit")
    if raw is None or raw == "":
        return default, []
    if not re.fullmatch(r"[+-]?\d{1,9}", raw.strip()):
        return default, ["limit must be an integer number"]
    limit = int(raw)
    if limit < 1:
        return default, ["limit must not be less than 1"]
    if limit > maximum:
        return default, [f"limit must not be greater than {maximum}"]
    return limit, []
