"""The Snapshots API contract actions: method, path and scope from the connector's OPERATIONS, the rest here.

As for Gumroad, the HTTP side is derived from the hand-written client so the two cannot disagree, and a test
checks that details and connector operations cover each other exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from snapbridge.catalog.model import (
    BodyEncoding,
    Operation,
    Pagination,
    Param,
    ParamIn,
    ParamType,
    TokenKind,
)
from snapbridge.connectors.snapshots import DEFAULT_VERSION, OPERATIONS
from snapbridge.errors import InvalidInput

__all__ = ["SNAPSHOTS_DETAILS", "snapshots_operations"]

APP = "snapshots"
ONBOARDING_STATUSES = ("pending", "active", "paused", "cancelled")
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

STR, INT, ARR, OBJ = ParamType.STRING, ParamType.INTEGER, ParamType.ARRAY, ParamType.OBJECT


def _q(name: str, type_: ParamType = STR, description: str = "") -> Param:
    return Param(name, ParamIn.QUERY, type_, description=description)


def _b(name: str, type_: ParamType = STR, required: bool = False, description: str = "",
       enum: tuple[str, ...] = (), items: ParamType | None = None) -> Param:
    return Param(name, ParamIn.BODY, type_, required, description, enum, items)


@dataclass(frozen=True)
class _Detail:
    summary: str
    response_key: str | None
    params: tuple[Param, ...] = ()  # query and body; path parameters come from the path
    pagination: Pagination = Pagination.NONE
    success_status: int = 200
    idempotent: bool | None = None  # None: every method but POST
    notes: str = ""


_PAGE = (_q("limit", INT, "1-100, default 20"), _q("startAfterId", description="cursor: meta.startAfterId"))
_LOCATION = (
    _b("timezone", description="IANA name"),
    _b("email"),
    _b("region"),
    _b("onboarding_status", enum=ONBOARDING_STATUSES),
    _b("tier"),
    _b("snapshot_id"),
    _b("external_id", description="the caller's key, unique per company"),
)

# Keyed by the connector's operation name.
SNAPSHOTS_DETAILS: Mapping[str, _Detail] = {
    "locations.list": _Detail(
        "List locations by id", "locations",
        (*_PAGE, _q("external_id"), _q("updated_since", description="ISO 8601")), Pagination.START_AFTER_ID,
    ),
    "locations.get": _Detail("Get one location", "location"),
    "locations.create": _Detail(
        "Create a location", "location", (_b("name", required=True), *_LOCATION), success_status=201,
        notes="409 with meta.location_id when external_id already exists.",
    ),
    "locations.update": _Detail("Update some fields of a location", "location", (_b("name"), *_LOCATION)),
    "events.create": _Detail(
        "Record an event", "event",
        (
            _b("event_id", required=True, description="caller-chosen, unique per company"),
            _b("type", required=True),
            _b("timestamp", required=True, description="ISO 8601"),
            _b("location_id"),
            _b("customer_id"),
            _b("data", OBJ, description="at most 16 KiB"),
        ),
        success_status=201, idempotent=True, notes="The same event_id and body again answers 200, replayed.",
    ),
    "events.batch": _Detail(
        "Record up to 100 events in one request", "results",
        (_b("events", ARR, required=True, items=OBJ, description="at most 100"),), idempotent=True,
    ),
    "events.list": _Detail("List events", "events", (*_PAGE, _q("customer_id"), _q("type")),
                           Pagination.START_AFTER_ID),
    "customers.upsert": _Detail(
        "Create or update a customer", "customer",
        (
            _b("email"),
            _b("name"),
            _b("plan"),
            _b("location_id"),
            _b("tags", ARR, items=STR, description="replaces the customer's tags"),
            _b("last_activity_at", description="ISO 8601"),
        ),
        notes="201 when created, 200 when updated.",
    ),
    "customers.get": _Detail("Get one customer", "customer"),
    "customers.list": _Detail("List customers", "customers", (*_PAGE, _q("email")),
                              Pagination.START_AFTER_ID),
}


def _operation(name: str, method: str, path: str, scope: str) -> Operation:
    detail = SNAPSHOTS_DETAILS[name]
    params = [Param(p, ParamIn.PATH, STR, required=True) for p in _PATH_PARAM.findall(path)]
    params.extend(detail.params)
    has_body = any(p.where is ParamIn.BODY for p in detail.params)
    return Operation(
        app=APP,
        name=f"{APP}.{name}",
        method=method,
        path=path,
        summary=detail.summary,
        params=tuple(params),
        scopes=(scope,),
        response_key=detail.response_key,
        pagination=detail.pagination,
        idempotent=detail.idempotent if detail.idempotent is not None else method != "POST",
        idempotency_header=method != "GET",  # every write honours Idempotency-Key (contract)
        version=DEFAULT_VERSION,
        versions=(DEFAULT_VERSION,),
        token_kinds=(TokenKind.AGENCY, TokenKind.LOCATION),
        body_encoding=BodyEncoding.JSON if has_body else BodyEncoding.NONE,
        success_status=detail.success_status,
        source=f"SnapshotsClient.{OPERATIONS[name].client_method}",
        notes=detail.notes,
    )


@cache
def snapshots_operations() -> tuple[Operation, ...]:
    """One record per connector operation, in the connector's order."""
    missing = sorted(set(OPERATIONS) - set(SNAPSHOTS_DETAILS))
    extra = sorted(set(SNAPSHOTS_DETAILS) - set(OPERATIONS))
    if missing or extra:
        raise InvalidInput(f"catalog: Snapshots details lack {missing} and name unknown operations {extra}")
    return tuple(_operation(op.name, op.method, op.path, op.scope) for op in OPERATIONS.values())
