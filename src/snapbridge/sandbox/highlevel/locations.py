"""Sub-account (location) handlers of the HighLevel sandbox: create, search, get, update, delete and the rest.

Quirks kept (snapshots-api.md §3.3, §10): create answers 200 (not 201) with the object at the top level;
search takes `skip`/`limit` (default 10, order asc); create takes `snapshotId`, update
`snapshot{id,override}`.
"""

from __future__ import annotations

from typing import Any

from snapbridge.sandbox.highlevel.call import Call, Reply, bad_request, not_found, ok, unprocessable
from snapbridge.sandbox.highlevel.state import TIMEZONES, format_time

__all__ = ["LOCATION_HANDLERS"]

_SEARCH_FIELDS = ("id", "name", "phone", "email", "address", "city", "state", "country", "postalCode",
                  "website", "timezone", "settings", "social")
_WRITE_FIELDS = ("id", "companyId", "name", "phone", "email", "address", "city", "state", "domain", "country",
                 "postalCode", "website", "timezone", "settings", "social")
_CHANNEL_TYPES = ("sms", "email", "whatsapp", "facebook", "instagram", "gmb", "live_chat")


def _location(call: Call) -> dict[str, Any]:
    location_id = str(call.path["locationId"])
    location = call.state.locations.get(location_id)
    if location is None:
        raise not_found(f"Location with id {location_id} not found")
    return location


def _push(call: Call, snapshot_id: str, location_id: str) -> None:
    company = call.state.companies[call.token.company_id]
    if snapshot_id not in company.snapshots:
        raise bad_request(f"Snapshot with id {snapshot_id} not found")
    call.state.pushes[snapshot_id].append({
        "id": call.state.new_id(), "locationId": location_id, "status": "processing",
        "dateAdded": format_time(call.now), "completed": [],
        "pending": ["forms", "workflows", "custom_fields", "tags"],
    })


def create(call: Call) -> Reply:
    fields = dict(call.body)
    prospect = fields.get("prospectInfo")
    if prospect is not None:
        missing = [f"prospectInfo.{k} should not be empty" for k in ("firstName", "lastName", "email")
                   if not prospect.get(k)]
        if missing:
            raise unprocessable(missing)
    if fields.get("snapshotId"):
        company = call.state.companies[call.token.company_id]
        if fields["snapshotId"] not in company.snapshots:
            raise bad_request(f"Snapshot with id {fields['snapshotId']} not found")
    location = call.state.add_location(str(fields["companyId"]), fields, call.now)
    if fields.get("snapshotId"):
        _push(call, str(fields["snapshotId"]), location["id"])
    return ok({k: location[k] for k in _WRITE_FIELDS}, entity=location["id"], op=call.op)


def search(call: Call) -> Reply:
    company_id = call.query.get("companyId", call.token.company_id)
    found = call.state.locations_of(str(company_id))
    if call.token.location_id is not None:  # a sub-account token sees its own sub-account only
        found = [loc for loc in found if loc["id"] == call.token.location_id]
    if call.query.get("email"):
        found = [loc for loc in found if loc["email"] == call.query["email"]]
    if call.query.get("order", "asc") == "desc":
        found.reverse()
    skip, limit = call.query.get("skip", 0), call.query.get("limit", 10)
    page = found[skip : skip + limit]
    return ok({"locations": [{k: loc[k] for k in _SEARCH_FIELDS} for loc in page]})


def get(call: Call) -> Reply:
    return ok({"location": _location(call)})


def update(call: Call) -> Reply:
    location = _location(call)
    fields = dict(call.body)
    snapshot = fields.pop("snapshot", None)
    if snapshot is not None and not isinstance(snapshot.get("id"), str):
        raise unprocessable(["snapshot.id should not be empty"])
    if snapshot is not None:
        _push(call, str(snapshot["id"]), location["id"])
    fields.pop("companyId", None)
    prospect = fields.pop("prospectInfo", None) or {}
    settings = fields.pop("settings", None)
    social = fields.pop("social", None)
    fields.pop("twilio", None)
    fields.pop("mailgun", None)
    location.update(fields)
    location.update({k: v for k, v in prospect.items() if k in ("firstName", "lastName", "email")})
    if settings:
        location["settings"].update(settings)
    if social:
        location["social"].update(social)
    location["business"].update({k: location[k] for k in location["business"] if k in location})
    return ok({k: location[k] for k in _WRITE_FIELDS}, entity=location["id"])


def delete(call: Call) -> Reply:
    location = _location(call)
    location_id = location["id"]
    del call.state.locations[location_id]
    for contact_id in [c["id"] for c in call.state.contacts.values() if c["locationId"] == location_id]:
        del call.state.contacts[contact_id]
    return ok({"success": True, "message": f"Deleted location with id: {location_id}"}, entity=location_id)


def get_permissions(call: Call) -> Reply:
    _location(call)
    return ok({"permissions": call.state.permissions[str(call.path["locationId"])]})


def update_permissions(call: Call) -> Reply:
    location = _location(call)
    call.state.permissions[location["id"]] = list(call.body["permissions"])
    return ok({"permissions": call.state.permissions[location["id"]]}, entity=location["id"])


def list_timezones(call: Call) -> Reply:
    _location(call)
    return ok({"timeZones": list(TIMEZONES)})


def get_conversation_channel(call: Call) -> Reply:
    location = _location(call)
    channel = str(call.path["type"])
    if channel not in _CHANNEL_TYPES:
        raise unprocessable([f"type must be one of the following values: {', '.join(_CHANNEL_TYPES)}"])
    return ok({"conversationChannel": {"type": channel, "locationId": location["id"], "enabled": True}})


def search_tasks(call: Call) -> Reply:
    location = _location(call)
    tasks: list[dict[str, Any]] = []
    for contact in call.state.contacts_of(location["id"]):
        tasks.extend(call.state.children_of("tasks", contact["id"]).values())
    if call.body.get("contactId"):
        tasks = [t for t in tasks if t["contactId"] in call.body["contactId"]]
    if "completed" in call.body:
        tasks = [t for t in tasks if t.get("completed") is call.body["completed"]]
    if call.body.get("assignedTo"):
        tasks = [t for t in tasks if t.get("assignedTo") in call.body["assignedTo"]]
    if call.body.get("query"):
        needle = str(call.body["query"]).lower()
        tasks = [t for t in tasks if needle in str(t.get("title", "")).lower()]
    skip, limit = call.body.get("skip", 0), call.body.get("limit", 10)
    return ok({"tasks": tasks[skip : skip + limit]})


def upload_custom_field_file(call: Call) -> Reply:
    location = _location(call)
    field_id = str(call.body["id"])
    fields = call.state.children_of("customFields", location["id"])
    if field_id not in fields:
        raise bad_request(f"Custom field with id {field_id} not found")
    url = f"https://storage.example.com/{location['id']}/{field_id}/{call.state.new_id()}.txt"
    return ok({"uploadedFiles": {str(call.body.get("file_name", "file.txt")): url},
               "meta": [{"fieldId": field_id, "size": len(str(call.body["file"]))}]},
              call.op.success_status, entity=field_id)


LOCATION_HANDLERS = {
    "highlevel.locations.create": create,
    "highlevel.locations.search": search,
    "highlevel.locations.get": get,
    "highlevel.locations.update": update,
    "highlevel.locations.delete": delete,
    "highlevel.locations.get_permissions": get_permissions,
    "highlevel.locations.update_permissions": update_permissions,
    "highlevel.locations.list_timezones": list_timezones,
    "highlevel.locations.get_conversation_channel": get_conversation_channel,
    "highlevel.location_tasks.search": search_tasks,
    "highlevel.location_custom_fields.upload": upload_custom_field_file,
}
