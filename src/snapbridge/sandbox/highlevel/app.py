"""The HighLevel sandbox: a Starlette app whose routes, checks and validation come from the catalog records.

Every request passes, in order: route → token (401) → `Version` header (400) → token kind (401 E-102) →
scope (401) → rate limit (429) → validation (422) → location/company access (403/404) → handler. The
checks read the record; only the behaviour behind them is hand-written, per resource.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from snapbridge.catalog import BodyEncoding, Operation, ParamIn, TokenKind, highlevel_operations
from snapbridge.sandbox.highlevel.access import RateLimiter, TokenRegistry
from snapbridge.sandbox.highlevel.call import (
    AUTH_CLASS_MESSAGE,
    SCOPE_MESSAGE,
    Call,
    Problem,
    Reply,
    Token,
    bad_request,
    forbidden,
    not_found,
    unauthorized,
    unprocessable,
)
from snapbridge.sandbox.highlevel.collections import COLLECTIONS, collection_handler
from snapbridge.sandbox.highlevel.contacts import CONTACT_HANDLERS
from snapbridge.sandbox.highlevel.locations import LOCATION_HANDLERS
from snapbridge.sandbox.highlevel.saas import SAAS_HANDLERS, SNAPSHOT_HANDLERS
from snapbridge.sandbox.highlevel.state import HighLevelState
from snapbridge.sandbox.highlevel.validation import check_body, check_query
from snapbridge.sandbox.journal import Journal

__all__ = ["HighLevelSandbox"]

Handler = Callable[[Call], Reply]
_HANDLERS: dict[str, Handler] = {
    **LOCATION_HANDLERS, **CONTACT_HANDLERS, **SAAS_HANDLERS, **SNAPSHOT_HANDLERS,
}
INVALID_TOKEN_MESSAGE = "Invalid token: access token is invalid"  # noqa: S105 -- a message
COMPANY_MESSAGE = "The token does not have access to this company."


@dataclass(frozen=True)
class _Route:
    op: Operation
    pattern: re.Pattern[str]
    literal_segments: int


def _compile(op: Operation) -> _Route:
    parts = re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", op.path)
    regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    literal = sum(1 for seg in op.path.split("/") if seg and not seg.startswith("{"))
    return _Route(op, re.compile(f"^{regex}$"), literal)


def handler_for(op: Operation) -> Handler:
    """The behaviour behind a record: a hand-written handler, else the generic child-collection CRUD."""
    if op.name in _HANDLERS:
        return _HANDLERS[op.name]
    if op.name.split(".")[1] in COLLECTIONS:
        return collection_handler
    raise LookupError(f"the HighLevel sandbox has no behaviour for {op.name} ({op.method} {op.path})")


class HighLevelSandbox:
    """A fake of HighLevel's SaaS, Snapshots, Locations and Contacts APIs, served from the catalog.

    `.agency_token` and `.location_token` hold every scope; `create_token` mints narrower ones. The seed
    makes two agencies: `company_id` (three sub-accounts, `location_id` first) and `other_company_id`.
    """

    def __init__(self, seed: int = 1, time_factor: float = 1.0,
                 operations: Iterable[Operation] | None = None) -> None:
        self.time_factor = time_factor
        self.journal = Journal()
        self.base_url = ""  # set by whoever serves the app
        self.tokens = TokenRegistry()
        self.limiter = RateLimiter(time_factor)
        self.state = HighLevelState(seed, datetime.now(UTC))
        self._lock = threading.Lock()
        self.operations = tuple(operations if operations is not None else highlevel_operations())
        self._handlers = {op.name: handler_for(op) for op in self.operations}
        # Literal segments first, so /locations/search is never read as /locations/{locationId}.
        self._routes = sorted((_compile(op) for op in self.operations), key=lambda r: -r.literal_segments)
        companies = list(self.state.companies)
        self.company_id, self.other_company_id = companies[0], companies[1]
        self.location_ids = [loc["id"] for loc in self.state.locations_of(self.company_id)]
        self.location_id = self.location_ids[0]
        self.other_location_id = self.state.locations_of(self.other_company_id)[0]["id"]
        every_scope = {s for op in self.operations for s in op.scopes}
        self.agency_token = self.create_token(TokenKind.AGENCY, every_scope)
        self.location_token = self.create_token(TokenKind.LOCATION, every_scope, location_id=self.location_id)
        self.app = Starlette(routes=[
            Route("/_sandbox/tokens", self._mint, methods=["POST"]),
            Route("/_sandbox/journal", self._journal, methods=["GET"]),
            Route("/{path:path}", self._serve, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ])

    # ---- Python API for tests and the demo ---------------------------------------------------------------

    def create_token(self, kind: TokenKind | str, scopes: Iterable[str], company_id: str | None = None,
                     location_id: str | None = None) -> str:
        """A new token; a Sub-Account token is bound to `location_id` (default: the first seeded one)."""
        kind = TokenKind(kind)
        if kind is TokenKind.USER:
            raise ValueError("HighLevel tokens are agency or location tokens")
        if kind is TokenKind.LOCATION:
            location_id = location_id or self.location_id
            company_id = company_id or self.state.company_of_location(location_id)
        else:
            location_id = None
        chosen_company = company_id or self.company_id
        if chosen_company not in self.state.companies:
            raise ValueError(f"unknown company {chosen_company}")
        return self.tokens.create(kind, scopes, chosen_company, location_id).value

    def set_rate_limits(self, burst: int, daily: int) -> None:
        self.limiter.set_limits(burst, daily)

    # ---- HTTP -------------------------------------------------------------------------------------------

    async def _mint(self, request: Request) -> Response:
        try:
            data = json.loads(await request.body() or b"{}")
            token = self.create_token(data["kind"], data.get("scopes", []), data.get("company_id"),
                                      data.get("location_id"))
        except (ValueError, KeyError, TypeError) as exc:
            body = {"statusCode": 400, "message": f"cannot create token: {exc}"}
            return JSONResponse(body, status_code=400)
        return JSONResponse({"token": token}, status_code=201)

    async def _journal(self, request: Request) -> Response:
        return JSONResponse({"entries": [e.to_json() for e in self.journal.entries()]})

    def _match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        allowed = False
        for route in self._routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.op.method == method:
                return route.op, found.groupdict()
            allowed = True
        if allowed:
            raise _error(404, f"Cannot {method} {path}", "Not Found")
        return None

    async def _serve(self, request: Request) -> Response:
        arrived = datetime.now(UTC)
        token: Token | None = None
        extra: Mapping[str, str] = {}
        try:
            matched = self._match(request.method, request.url.path)
            if matched is None:
                raise _error(404, f"Cannot {request.method} {request.url.path}", "Not Found")
            op, path_params = matched
            token = self._authenticate(request)
            version = self._version(request, op)
            self._authorize(op, token)
            quota = self.limiter.take(token.fingerprint, self._resource(token, path_params, request),
                                      time.monotonic())
            extra = quota.headers()
            if not quota.allowed:
                raise Problem(Reply(429, {"statusCode": 429, "message": "Too many requests"},
                                    headers={"Retry-After": str(quota.retry_after)}))
            query, body = await self._validate(op, request)
            call = Call(op, self.state, token, path_params, query, body, version, arrived, str(request.url))
            with self._lock:
                self._check_access(call)
                reply = self._handlers[op.name](call)
        except Problem as problem:
            reply = problem.reply
        headers = {**extra, **reply.headers}
        self.journal.record(method=request.method, path=request.url.path, status=reply.status,
                            arrived_at=arrived, entity=reply.entity if reply.status < 400 else None,
                            api_key=token.fingerprint if token else None)
        return JSONResponse(reply.body, status_code=reply.status, headers=headers)

    # ---- the checks, in order ---------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> Token:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = self.tokens.find(value.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise unauthorized(INVALID_TOKEN_MESSAGE)
        return token

    def _version(self, request: Request, op: Operation) -> str:
        # What HighLevel does without a Version header, or with one outside the operation's list, is
        # UNCONFIRMED; the sandbox refuses both so a client that forgets it finds out here.
        version = request.headers.get("version")
        if not version:
            raise bad_request("The Version header is required")
        if op.versions and version not in op.versions:
            raise bad_request(f"Version {version} is not supported here; use one of {', '.join(op.versions)}")
        return version

    def _authorize(self, op: Operation, token: Token) -> None:
        if op.token_kinds and token.kind not in op.token_kinds:
            raise unauthorized(AUTH_CLASS_MESSAGE)  # wrong token class (observed wording)
        if op.scopes and not token.scopes.intersection(op.scopes):
            raise unauthorized(SCOPE_MESSAGE)

    def _resource(self, token: Token, path: Mapping[str, str], request: Request) -> str:
        # Limits apply per app per resource: the sub-account when the call names one, else the agency.
        return token.location_id or path.get("locationId") or request.query_params.get("locationId") \
            or token.company_id

    async def _validate(self, op: Operation, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
        query, problems = check_query(op, list(request.query_params.multi_items()))
        body: dict[str, Any] = {}
        if op.body_encoding is BodyEncoding.MULTIPART:
            form: dict[str, Any] = {}
            async with request.form() as parts:
                for name, value in parts.multi_items():
                    if isinstance(value, str):
                        form[name] = value
                    else:
                        form[name] = (await value.read()).decode("utf-8", errors="replace")
            body, more = check_body(op, form, form=True)
            problems += more
        elif any(p.where is ParamIn.BODY for p in op.params):
            raw = await request.body()
            try:
                parsed = json.loads(raw) if raw.strip() else {}
            except (ValueError, UnicodeDecodeError):
                raise bad_request("Unexpected token in JSON body") from None
            body, more = check_body(op, parsed)
            problems += more
        if problems:
            raise unprocessable(problems)
        return query, body

    def _check_access(self, call: Call) -> None:
        token = call.token
        company_id = call.arg("companyId")
        if company_id is not None and company_id != token.company_id:
            raise forbidden(COMPANY_MESSAGE)
        location_id = call.arg("locationId")
        if location_id is None:
            return
        if token.kind is TokenKind.LOCATION and location_id != token.location_id:
            raise forbidden()
        owner = self.state.company_of_location(str(location_id))
        if owner is None:
            raise not_found(f"Location with id {location_id} not found")
        if owner != token.company_id:
            raise forbidden()


def _error(status: int, message: str, error: str) -> Problem:
    return Problem(Reply(status, {"statusCode": status, "message": message, "error": error}))
