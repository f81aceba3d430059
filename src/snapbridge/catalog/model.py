"""The records of the catalog: one frozen Operation per action, one Trigger per event, and their enums."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from snapbridge.errors import InvalidInput

__all__ = [
    "BodyEncoding",
    "Kind",
    "Operation",
    "Pagination",
    "Param",
    "ParamIn",
    "ParamType",
    "Record",
    "TokenKind",
    "Trigger",
    "TriggerSource",
]

# "<app>.<resource>.<verb>": three lower-case segments; resource and verb may hold underscores.
NAME_PATTERN = re.compile(r"^[a-z]+\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Kind(StrEnum):
    ACTION = "action"
    TRIGGER = "trigger"


class Pagination(StrEnum):
    """How a list operation pages; each style has its own next-page rule (see catalog.pagination)."""

    NONE = "none"
    PAGE_KEY = "page_key"  # Gumroad: `next_page_key`, absent on the last page
    START_AFTER_ID = "start_after_id"  # `meta.startAfterId` (+ `meta.startAfter`), null on the last page
    SKIP_LIMIT = "skip_limit"  # HighLevel: `skip` + `limit`; the last page is short
    PAGE_SEARCH_AFTER = "page_search_after"  # HighLevel contacts search: `page`, later `searchAfter`
    PAGE = "page"  # HighLevel SaaS locations: `page`, answered with `pagination.hasNext`
    LAST_DOC = "last_doc"  # HighLevel snapshot pushes: the last item's `id` as the next `lastDoc`


class TokenKind(StrEnum):
    """Which kind of credential an operation accepts."""

    AGENCY = "agency"  # HighLevel Agency token (userType Company); a company-wide Snapshots API key
    LOCATION = "location"  # HighLevel Sub-Account token (userType Location); a location-bound API key
    USER = "user"  # a Gumroad seller's OAuth token


class ParamIn(StrEnum):
    PATH = "path"
    QUERY = "query"
    BODY = "body"


class ParamType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ARRAY = "array"
    OBJECT = "object"


class BodyEncoding(StrEnum):
    NONE = "none"
    JSON = "json"
    FORM = "form"  # Gumroad writes: its handlers compare form strings such as "true"
    MULTIPART = "multipart"


class TriggerSource(StrEnum):
    PING = "ping"  # Gumroad's seller Ping URL
    RESOURCE_SUBSCRIPTION = "resource_subscription"  # Gumroad `PUT /resource_subscriptions`
    WEBHOOK = "webhook"  # signed webhooks the Snapshots API sends
    DERIVED = "derived"  # domain events snapbridge derives from the raw ones


_JSON_TYPES: dict[ParamType, str] = {t: t.value for t in ParamType}


@dataclass(frozen=True)
class Param:
    name: str
    where: ParamIn
    type: ParamType
    required: bool = False
    description: str = ""
    enum: tuple[str, ...] = ()
    items: ParamType | None = None  # element type of an array

    def json_schema(self) -> dict[str, object]:
        schema: dict[str, object] = {"type": _JSON_TYPES[self.type]}
        if self.items is not None:
            schema["items"] = {"type": _JSON_TYPES[self.items]}
        if self.enum:
            schema["enum"] = list(self.enum)
        if self.description:
            schema["description"] = self.description
        return schema


def _check_name(app: str, name: str) -> None:
    if not NAME_PATTERN.match(name) or not name.startswith(f"{app}."):
        raise InvalidInput(f"catalog: {name!r} is not an '<app>.<resource>.<verb>' name of {app}")


def _object_schema(params: tuple[Param, ...]) -> dict[str, object]:
    return {
        "type": "object",
        "properties": {p.name: p.json_schema() for p in params},
        "required": [p.name for p in params if p.required],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Operation:
    """One action: an HTTP call of one app, with everything needed to validate, send and document it."""

    app: str
    name: str
    method: str
    path: str  # template with `{param}` placeholders, relative to the app's base URL
    summary: str
    params: tuple[Param, ...] = ()
    scopes: tuple[str, ...] = ()  # any one of them suffices; empty: no scope is checked
    response_key: str | None = None  # the key of the payload in the response body; None: the whole body
    pagination: Pagination = Pagination.NONE
    idempotent: bool = False  # repeating the call leaves the same state (GET, PUT, DELETE, upserts)
    idempotency_header: bool = False  # the API honours an `Idempotency-Key` header
    version: str | None = None  # `Version` header value sent
    versions: tuple[str, ...] = ()  # every `Version` value the API documents for the operation
    token_kinds: tuple[TokenKind, ...] = ()  # empty: the call needs no credential
    body_encoding: BodyEncoding = BodyEncoding.NONE
    success_status: int = 200
    deprecated: bool = False
    source: str = ""  # where the record comes from: an operationId or a connector method
    notes: str = ""  # choices made where a reference is silent (UNCONFIRMED)
    kind: Kind = field(default=Kind.ACTION, init=False)

    def __post_init__(self) -> None:
        _check_name(self.app, self.name)
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise InvalidInput(f"catalog: {self.name} declares a parameter twice: {names}")
        in_path = set(_PATH_PARAM.findall(self.path))
        declared = {p.name for p in self.params if p.where is ParamIn.PATH}
        if in_path != declared:
            raise InvalidInput(
                f"catalog: {self.name} path {self.path} has {sorted(in_path)}, params {sorted(declared)}"
            )

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def params_in(self, where: ParamIn) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.where is where)

    @property
    def is_write(self) -> bool:
        return self.method != "GET"

    def body_schema(self) -> dict[str, object] | None:
        """The JSON Schema of the request body, or None when the operation sends none."""
        body = self.params_in(ParamIn.BODY)
        return _object_schema(body) if body or self.body_encoding is not BodyEncoding.NONE else None

    def input_schema(self) -> dict[str, object]:
        """The JSON Schema of the flat input a workflow step gives this action (path, query and body)."""
        return _object_schema(self.params)


@dataclass(frozen=True)
class Trigger:
    """One event a workflow can start from, with the fields of its payload."""

    app: str
    name: str
    event: str  # the name on the wire: a `resource_name`, a webhook `type`, or a derived event type
    summary: str
    source: TriggerSource
    fields: tuple[Param, ...] = ()
    scopes: tuple[str, ...] = ()  # what the credential must hold for the event to be delivered
    notes: str = ""
    kind: Kind = field(default=Kind.TRIGGER, init=False)

    def __post_init__(self) -> None:
        _check_name(self.app, self.name)

    def payload_schema(self) -> dict[str, object]:
        schema = _object_schema(self.fields)
        # Senders add fields over time (Gumroad custom fields arrive as top-level keys); do not reject them.
        schema["additionalProperties"] = True
        schema["title"] = self.name
        return schema


Record = Operation | Trigger
