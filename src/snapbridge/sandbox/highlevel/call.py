"""One checked request to the HighLevel sandbox, the answer a handler gives, and HighLevel's error bodies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from snapbridge.catalog import Operation, TokenKind
from snapbridge.sandbox.highlevel.state import HighLevelState

__all__ = [
    "SCOPE_MESSAGE",
    "Call",
    "Problem",
    "Reply",
    "Token",
    "bad_request",
    "forbidden",
    "not_found",
    "ok",
    "unprocessable",
]

# snapshots-api.md §1.7 and §10: the exact wording of the observed answers.
SCOPE_MESSAGE = "The token is not authorized for this scope."
LOCATION_MESSAGE = "The token does not have access to this location."
AUTH_CLASS_MESSAGE = "E-102. This AuthClass is not yet supported!"


@dataclass(frozen=True)
class Token:
    """A sandbox credential: an Agency or a Sub-Account token with its scopes and its binding."""

    value: str
    kind: TokenKind
    scopes: frozenset[str]
    company_id: str
    location_id: str | None = None
    fingerprint: str = ""

    def reaches_location(self, location_id: str, company_of_location: str | None) -> bool:
        if self.kind is TokenKind.LOCATION:
            return location_id == self.location_id
        return company_of_location == self.company_id


@dataclass(frozen=True)
class Reply:
    status: int
    body: object
    entity: str | None = None  # the object this request wrote, for the journal
    headers: Mapping[str, str] = field(default_factory=dict)


class Problem(Exception):
    """A handler's way to stop with an error answer."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply.body))
        self.reply = reply


@dataclass(frozen=True)
class Call:
    """A request that passed the token, scope, rate-limit, validation and access checks."""

    op: Operation
    state: HighLevelState
    token: Token
    path: Mapping[str, str]
    query: Mapping[str, Any]  # converted to the record's types
    body: Mapping[str, Any]
    version: str
    now: datetime
    url: str  # the request URL, for answers that link to the next page

    @property
    def verb(self) -> str:
        return self.op.name.rsplit(".", 1)[1]

    @property
    def v3(self) -> bool:
        return self.version == "v3"

    def arg(self, name: str, default: Any = None) -> Any:
        """A parameter wherever the record places it: path, query or body."""
        for source in (self.path, self.query, self.body):
            if name in source:
                return source[name]
        return default


def ok(
    body: object, status: int | None = None, entity: str | None = None, *, op: Operation | None = None
) -> Reply:
    chosen = status if status is not None else (op.success_status if op is not None else 200)
    return Reply(chosen, body, entity)


def _error(status: int, message: object, error: str | None, meta: Mapping[str, Any] | None = None) -> Problem:
    body: dict[str, Any] = {"statusCode": status, "message": message}
    if error:
        body["error"] = error
    if meta:
        body["meta"] = dict(meta)
    return Problem(Reply(status, body))


def bad_request(message: str, meta: Mapping[str, Any] | None = None) -> Problem:
    return _error(400, message, "Bad Request", meta)


def unauthorized(message: str) -> Problem:
    return _error(401, message, "Unauthorized")


def forbidden(message: str = LOCATION_MESSAGE) -> Problem:
    return _error(403, message, "Forbidden")


def not_found(message: str) -> Problem:
    return _error(404, message, None)


def unprocessable(messages: list[str]) -> Problem:
    # class-validator style: `message` is a list (snapshots-api.md §7).
    return _error(422, messages, "Unprocessable Entity")
