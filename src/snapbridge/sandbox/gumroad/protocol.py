"""Gumroad's request conventions: Rails-style params, Doorkeeper auth and scopes, the three error shapes.

Every /v2 handler is wrapped by `endpoint(scopes)`, which reads the params (query, form or JSON body),
finds the token (Bearer header, `access_token` or `bearer_token` parameter), applies the any-one-of
scope rule with the `account` catch-all, and turns a `BadParam` into a 400 so bad input never gives 500.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from snapbridge.sandbox.gumroad.models import Token
from snapbridge.sandbox.gumroad.state import SandboxState

__all__ = [
    "ANY_SCOPE",
    "ApiContext",
    "BadParam",
    "Params",
    "endpoint",
    "error_400",
    "fail",
    "ok",
    "ruby_to_i",
]

MAX_BODY_BYTES = 1_000_000
# Read endpoints accept every public scope (view_public included), so any token passes them.
ANY_SCOPE: frozenset[str] = frozenset()
_CATCH_ALL = "account"
# UNCONFIRMED (gumroad-api.md §1): Doorkeeper's default answers are an empty body plus this header;
# the live service was never observed. Tests rely only on the status codes and the empty body.
_INVALID_TOKEN = (
    'Bearer realm="Doorkeeper", error="invalid_token", error_description="The access token is invalid"'  # noqa: S105
)
_INSUFFICIENT = (
    'Bearer realm="Doorkeeper", error="insufficient_scope", '
    'error_description="The request requires higher privileges than provided by the access token."'
)


class BadParam(Exception):
    """A parameter has a shape no handler can use (a JSON list where a string belongs, say)."""


def ruby_to_i(value: Any) -> int:
    """Ruby's String#to_i: leading sign and digits, anything else gives 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if not isinstance(value, str):
        return 0
    text = value.strip()
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    digits = ""
    for char in text:
        if not char.isdigit() or not char.isascii():
            break
        digits += char
    return sign * int(digits) if digits else 0


@dataclass(frozen=True)
class Params:
    """The merged request parameters; values are strings except those of a JSON body."""

    values: dict[str, Any]

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def has(self, name: str) -> bool:
        return name in self.values

    def text(self, name: str) -> str | None:
        """A scalar parameter as a string (JSON numbers and booleans as their text); lists refused."""
        value = self.values.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float, str)):
            return str(value)
        raise BadParam(name)

    def present(self, name: str) -> str | None:
        """The value when Rails would call it `present?` (not blank), else None."""
        value = self.text(name)
        return value if value is not None and value.strip() else None


@dataclass(frozen=True)
class ApiContext:
    request: Request
    params: Params
    token: Token | None
    state: SandboxState

    @property
    def scopes(self) -> frozenset[str]:
        return self.token.scopes if self.token else frozenset()


def ok(payload: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse({"success": True, **(payload or {})})


def fail(message: str) -> JSONResponse:
    """Not found, could not modify, validation: HTTP 200 with success false (the code admits it is wrong)."""
    return JSONResponse({"success": False, "message": message})


def error_400(error: str = "Invalid request.") -> JSONResponse:
    """Bad list parameters: a different body, {status, error}, and no `success`."""
    return JSONResponse({"status": 400, "error": error}, status_code=400)


async def read_params(request: Request) -> Params:
    """Query string, then the body over it (form or JSON), then the path params, as Rails merges them."""
    values: dict[str, Any] = dict(parse_qsl(request.url.query, keep_blank_values=True))
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise BadParam("body")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and content_type == "application/json":
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadParam("body") from exc
        if isinstance(parsed, dict):
            values.update(parsed)
    elif body and content_type in ("application/x-www-form-urlencoded", ""):
        values.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif body and content_type == "multipart/form-data":
        form = await request.form()
        values.update({k: v for k, v in form.items() if isinstance(v, str)})
    values.update(request.path_params)
    return Params(values)


def _find_token(request: Request, params: Params) -> str | None:
    """Doorkeeper's default order: Bearer header, then `access_token`, then `bearer_token` (UNCONFIRMED)."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer " and header[7:].strip():
        return header[7:].strip()
    for name in ("access_token", "bearer_token"):
        value = params.raw(name)
        if isinstance(value, str) and value:
            return value
    return None


def fingerprint(token: str) -> str:
    """A short, non-reversible label for the journal; the token itself is never recorded."""
    return hashlib.sha256(token.encode()).hexdigest()[:10]


# Handlers are synchronous: they run under the state lock and must not yield the event loop.
Handler = Callable[[ApiContext], Response]


def endpoint(
    state: SandboxState, scopes: frozenset[str] | None
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Wrap a handler with Gumroad's auth; `scopes` None means no token at all (license verify)."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                params = await read_params(request)
            except BadParam:
                return error_400("Invalid request.")
            token: Token | None = None
            if scopes is not None:
                value = _find_token(request, params)
                with state.lock:
                    token = state.tokens.get(value) if value else None
                if token is None or token.revoked:
                    return Response(status_code=401, headers={"WWW-Authenticate": _INVALID_TOKEN})
                request.state.api_key = fingerprint(token.value)
                wanted = scopes | {_CATCH_ALL} if scopes else None
                if not token.scopes or (wanted is not None and not token.scopes & wanted):
                    return Response(status_code=403, headers={"WWW-Authenticate": _INSUFFICIENT})
            try:
                with state.lock:
                    return handler(ApiContext(request, params, token, state))
            except BadParam as exc:
                return error_400(f"Invalid value for '{exc}'.")

        return run

    return wrap
