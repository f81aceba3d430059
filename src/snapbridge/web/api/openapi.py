"""The endpoint table's shape, and the OpenAPI document it makes (the same table makes the routes)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from snapbridge.web.api import models as m
from snapbridge.web.api.context import Principal
from snapbridge.web.api.params import Query

__all__ = ["API_PREFIX", "Endpoint", "Handler", "openapi_document"]

API_PREFIX = "/api/v1"
Handler = Callable[[Request, Principal, Any], Awaitable[object]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # Starlette form, e.g. /runs/{run_id:int}
    handler: Handler
    summary: str
    admin: bool = False  # viewers may only read
    body: type[BaseModel] | None = None
    response: Any = None  # a model, list[model], or None for 204
    status: int = 200
    query: tuple[Query, ...] = ()
    media_type: str = "application/json"  # a handler for another type returns its own Response

    @property
    def openapi_path(self) -> str:
        return API_PREFIX + re.sub(r"\{(\w+):\w+\}", r"{\1}", self.path)


def _schema_of(annotation: Any, components: dict[str, Any]) -> dict[str, Any]:
    model = annotation
    is_list = getattr(annotation, "__origin__", None) is list
    if is_list:
        model = annotation.__args__[0]
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"type": "array", "items": ref} if is_list else ref


def openapi_document(table: Sequence[Endpoint]) -> dict[str, Any]:
    components: dict[str, Any] = {}
    error_ref = _schema_of(m.ErrorOut, components)
    paths: dict[str, dict[str, Any]] = {}
    for e in table:
        params: list[dict[str, Any]] = []
        for name, kind in re.findall(r"\{(\w+)(?::(\w+))?\}", e.path):
            schema: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 2**62 - 1} if kind == "int" \
                else {"type": "string", "minLength": 1, "maxLength": 200}
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
        for q in e.query:
            params.append({"name": q.name, "in": "query", "required": False, "description": q.description,
                           "schema": q.schema()})
        responses: dict[str, Any] = {}
        if e.status == 204:
            responses["204"] = {"description": "done"}
        else:
            responses[str(e.status)] = {"description": "ok", "content": {
                e.media_type: {"schema": _schema_of(e.response, components)}}}
        for code, text in (("400", "malformed request"), ("401", "not signed in"), ("403", "forbidden"),
                           ("404", "not found"), ("413", "body too large"), ("422", "invalid input"),
                           ("503", "store unavailable")):
            responses[code] = {"description": text, "content": {"application/json": {"schema": error_ref}}}
        if e.body is not None:
            responses["415"] = {"description": "the body is not sent as application/json",
                                "content": {"application/json": {"schema": error_ref}}}
        if e.method == "POST" and e.body is not None:  # a name another object (maybe another team's) holds
            responses["409"] = {"description": "conflict: the name is taken",
                                "content": {"application/json": {"schema": error_ref}}}
        operation: dict[str, Any] = {"summary": e.summary, "operationId": f"{e.method.lower()}_{e.handler.__name__}",
                                     "parameters": params, "responses": responses}
        if e.body is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": _schema_of(e.body, components)}}}
        paths.setdefault(e.openapi_path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "snapbridge management API", "version": "1"},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "sb_session"}}},
        "security": [{"bearer": []}, {"session": []}],
    }
