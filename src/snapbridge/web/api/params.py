"""Query-string parameters: declared once (routes and the OpenAPI document), read with a clear 4xx for bad values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from snapbridge.web.api.context import ApiProblem

__all__ = ["INSTANT_EXAMPLE", "Query", "as_utc", "parse_instant", "query_choice", "query_int", "query_window"]

INSTANT_EXAMPLE = "2025-03-01T12:00:00Z"
_INTEGER = re.compile(r"-?[0-9]{1,30}")
# A '+' written unencoded in a query string arrives as a space: "12:00:00 02:00" was meant as "12:00:00+02:00".
_OFFSET_AS_SPACE = re.compile(r"^(\d{4}-?\d{2}-?\d{2}[T ]\d{2}(?::?\d{2}(?::?\d{2}(?:[.,]\d+)?)?)?) "
                              r"(\d{2}(?::?\d{2})?)$", re.ASCII)


@dataclass(frozen=True)
class Query:
    name: str
    kind: str  # "string" or "integer"
    description: str
    minimum: int | None = None
    maximum: int | None = None
    format: str | None = None  # "date-time" for an instant
    choices: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.format is not None:
            out["format"] = self.format
        if self.choices:
            out["enum"] = list(self.choices)
        return out


def as_utc(value: datetime) -> datetime:
    """The instant in UTC; a time without an offset is read as UTC (the dashboard shows UTC throughout).
    ValueError where the instant falls outside the years a datetime holds once moved to UTC."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None


def parse_instant(text: str) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime: a date is its midnight, no offset means UTC.
    RFC 3339's lower-case t and z are read too."""
    text = _OFFSET_AS_SPACE.sub(r"\1+\2", text.strip().upper())
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"not an ISO 8601 date-time such as {INSTANT_EXAMPLE}") from None


def query_int(request: Request, q: Query, default: int | None) -> int | None:
    raw = request.query_params.get(q.name)
    if raw is None or raw == "":
        return default
    # int() would also take " 1", "1_0" and other scripts' digits; the document says an integer.
    if not _INTEGER.fullmatch(raw):
        raise ApiProblem(422, f"{q.name} must be an integer", [{"path": q.name, "message": "not an integer"}])
    value = int(raw)
    if (q.minimum is not None and value < q.minimum) or (q.maximum is not None and value > q.maximum):
        raise ApiProblem(422, f"{q.name} must be between {q.minimum} and {q.maximum}",
                         [{"path": q.name, "message": "out of range"}])
    return value


def query_choice(request: Request, q: Query, default: str) -> str:
    raw = request.query_params.get(q.name) or default
    if raw not in q.choices:
        known = ", ".join(q.choices)
        raise ApiProblem(422, f"{q.name} must be one of {known}", [{"path": q.name, "message": "unknown value"}])
    return raw


def query_window(values: Mapping[str, object], since: str = "since",
                 until: str = "until") -> tuple[datetime | None, datetime | None]:
    """`since` and `until` from a query string or a form: 400 for a value that is not an
    ISO 8601 date-time, or for an `until` that is not after `since`."""
    found: dict[str, datetime | None] = {}
    for name in (since, until):
        raw = values.get(name)
        if not isinstance(raw, str) or not raw.strip():
            found[name] = None
            continue
        try:
            found[name] = parse_instant(raw)
        except ValueError as exc:
            raise ApiProblem(400, f"{name} is {exc} (got {raw.strip()[:40]!r})",
                             [{"path": name, "message": str(exc)}]) from None
    start, end = found[since], found[until]
    if start is not None and end is not None and end <= start:
        raise ApiProblem(400, f"{until} must be after {since}", [{"path": until, "message": "not after since"}])
    return start, end
