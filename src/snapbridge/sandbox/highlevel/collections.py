"""Generic CRUD over the child collections of a sub-account or a contact, shaped by the catalog records.

A record named `<app>.<collection>.<verb>` with verb list/create/get/update/delete and a path ending in the
collection (or an item of it) is served here; the response key of the record names the wrapper, so a new
collection in the catalog needs one line in COLLECTIONS, not a handler.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from snapbridge.catalog import ParamIn
from snapbridge.sandbox.highlevel.call import Call, Reply, bad_request, forbidden, ok
from snapbridge.sandbox.highlevel.state import format_time

__all__ = ["COLLECTIONS", "collection_handler", "deleted_reply", "resolve_contact"]

Extra = Callable[[Call, dict[str, Any]], None]


@dataclass(frozen=True)
class Collection:
    kind: str  # key in HighLevelState.children
    parent: str  # the path parameter naming the parent: locationId or contactId
    on_write: Extra | None = None
    filter: Callable[[Call, list[dict[str, Any]]], list[dict[str, Any]]] | None = None
    delete_body: Callable[[Call, str], dict[str, Any]] | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "field"


def _custom_field_extra(call: Call, obj: dict[str, Any]) -> None:
    obj.setdefault("model", "contact")
    obj.setdefault("fieldKey", f"{obj['model']}.{_slug(obj['name'])}")
    obj.setdefault("picklistOptions", [])
    obj.setdefault("placeholder", "")
    obj.setdefault("position", 0)
    obj["isMultiFileAllowed"] = bool(obj.get("isMultipleFile", obj.get("isMultiFileAllowed", False)))
    obj["maxFileLimit"] = int(obj.get("maxNumberOfFiles", obj.get("maxFileLimit", 0)))
    obj.pop("isMultipleFile", None)
    obj.pop("maxNumberOfFiles", None)


def _custom_value_extra(call: Call, obj: dict[str, Any]) -> None:
    obj["fieldKey"] = f"{{{{ custom_values.{_slug(obj['name'])} }}}}"


def _task_extra(call: Call, obj: dict[str, Any]) -> None:
    obj.setdefault("completed", False)
    obj.setdefault("body", "")
    obj.setdefault("assignedTo", None)


def _note_extra(call: Call, obj: dict[str, Any]) -> None:
    obj.setdefault("dateAdded", format_time(call.now))
    obj.setdefault("pinned", False)


def _field_filter(call: Call, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    model = call.query.get("model")
    return items if model in (None, "all") else [i for i in items if i.get("model") == model]


def _template_filter(call: Call, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kept = [i for i in items if i["originId"] == call.query["originId"]
            and i.get("deleted", False) == call.query.get("deleted", False)
            and call.query.get("type") in (None, i["type"])]
    return kept


def _recurring_deleted(call: Call, item_id: str) -> dict[str, Any]:
    return {"id": item_id, "success": True}


def _template_deleted(call: Call, item_id: str) -> dict[str, Any]:
    return {"success": True}


COLLECTIONS: dict[str, Collection] = {
    "location_tags": Collection("tags", "locationId"),
    "location_custom_fields": Collection("customFields", "locationId", _custom_field_extra, _field_filter),
    "location_custom_values": Collection("customValues", "locationId", _custom_value_extra),
    "location_recurring_tasks": Collection("recurringTasks", "locationId", delete_body=_recurring_deleted),
    "location_templates": Collection("templates", "locationId", filter=_template_filter,
                                     delete_body=_template_deleted),
    "contact_notes": Collection("notes", "contactId", _note_extra),
    "contact_tasks": Collection("tasks", "contactId", _task_extra),
}


def deleted_reply(call: Call) -> dict[str, Any]:
    """HighLevel's delete answer: `succeded` (sic); the v3 spec answers both spellings (§4.2)."""
    return {"succeded": True, "succeeded": True} if call.v3 else {"succeded": True}


def resolve_contact(call: Call, contact_id: str) -> dict[str, Any]:
    """The contact, reachable by the token; 400 "not found" as observed, 403 for another sub-account."""
    contact = call.state.contacts.get(contact_id)
    if contact is None:
        raise bad_request(f"Contact with id {contact_id} not found")
    location_id = contact["locationId"]
    if not call.token.reaches_location(location_id, call.state.company_of_location(location_id)):
        raise forbidden()
    return contact


def _parent(call: Call, spec: Collection) -> str:
    parent = str(call.path[spec.parent])
    if spec.parent == "contactId":
        resolve_contact(call, parent)
    return parent


def _item_id(call: Call, spec: Collection) -> str | None:
    names = [p.name for p in call.op.params_in(ParamIn.PATH) if p.name != spec.parent]
    return str(call.path[names[-1]]) if names else None


def collection_handler(call: Call) -> Reply:
    resource = call.op.name.split(".")[1]
    spec = COLLECTIONS[resource]
    parent = _parent(call, spec)
    items = call.state.children_of(spec.kind, parent)
    item_id = _item_id(call, spec)
    key = call.op.response_key
    verb = call.verb
    if verb == "list":
        listed = list(items.values())
        listed = spec.filter(call, listed) if spec.filter else listed
        total = len(listed)
        skip, limit = call.query.get("skip"), call.query.get("limit")
        if isinstance(skip, int) or isinstance(limit, int):
            start = skip or 0
            listed = listed[start : start + (limit or 10)]
        body: dict[str, Any] = {str(key): listed}
        if spec.kind == "templates":
            body["totalCount"] = total
        return ok(body)
    if verb == "create":
        new_id = call.state.new_id()
        created = {"id": new_id, spec.parent: parent, **dict(call.body)}
        if spec.on_write:
            spec.on_write(call, created)
        items[new_id] = created
        return ok({str(key): created}, call.op.success_status, entity=new_id)
    assert item_id is not None
    obj = items.get(item_id)
    if obj is None:
        raise bad_request(f"{spec.kind[:-1]} with id {item_id} not found")
    if verb == "get":
        return ok({str(key): obj})
    if verb in ("update", "complete"):
        obj.update(call.body)
        if spec.on_write:
            spec.on_write(call, obj)
        return ok({str(key): obj}, entity=item_id)
    if verb == "delete":
        del items[item_id]
        body = spec.delete_body(call, item_id) if spec.delete_body else deleted_reply(call)
        return ok(body, entity=item_id)
    raise bad_request(f"{call.op.name} is not a collection verb")
