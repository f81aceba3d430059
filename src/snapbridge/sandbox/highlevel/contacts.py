"""Contact handlers of the HighLevel sandbox (snapshots-api.md §3.4, §4.2, §6, §10).

Quirks kept: `succeded` (sic) and, on v3, `succeeded` too; `tags` on update replaces every tag; duplicates
follow the sub-account's "allow duplicate contact" setting (email first, then phone) and a forbidden
duplicate answers 400 with `meta.contactId`; DND channel keys are `SMS`/`Email`… on 2021-07-28 and
lower-case on v3; an unknown contact id answers 400 "Contact with id … not found" (observed).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from snapbridge.sandbox.highlevel.call import Call, Reply, bad_request, ok, unprocessable
from snapbridge.sandbox.highlevel.collections import deleted_reply, resolve_contact
from snapbridge.sandbox.highlevel.state import DND_CHANNELS, format_time

__all__ = ["CONTACT_HANDLERS", "public_contact"]

SEARCH_PAGE_WINDOW = 10_000
MAX_SEARCH_PAGE_LIMIT = 500
_CHANNEL_BY_LOWER = {c.lower(): c for c in DND_CHANNELS}
_V3_CHANNEL = {
    "Call": "call", "Email": "email", "SMS": "sms", "WhatsApp": "whatsApp", "GMB": "gmb", "FB": "fb",
}
_PLAIN_FIELDS = ("email", "phone", "gender", "address1", "city", "state", "postalCode", "country", "website",
                 "timezone", "companyName", "source", "dateOfBirth", "assignedTo", "dnd")


def public_contact(contact: dict[str, Any], v3: bool) -> dict[str, Any]:
    """The contact as the API shows it: internal keys dropped, DND keys in the version's casing."""
    shown = {k: v for k, v in contact.items() if not k.startswith("_")}
    dnd = contact.get("dndSettings") or {}
    shown["dndSettings"] = {(_V3_CHANNEL[k] if v3 else k): v for k, v in dnd.items()}
    first, last = contact.get("firstName") or "", contact.get("lastName") or ""
    shown["firstNameLowerCase"] = first.lower()
    shown["lastNameLowerCase"] = last.lower()
    shown["fullNameLowerCase"] = (contact.get("name") or f"{first} {last}".strip()).lower()
    shown["emailLowerCase"] = (contact.get("email") or "").lower()
    return shown


def _apply(call: Call, contact: dict[str, Any], fields: dict[str, Any], *, replace_tags: bool) -> None:
    for key in _PLAIN_FIELDS:
        if key in fields:
            contact[key] = fields[key]
    if "firstName" in fields or "lastName" in fields:
        contact["firstName"] = fields.get("firstName", contact.get("firstName", ""))
        contact["lastName"] = fields.get("lastName", contact.get("lastName", ""))
        contact["name"] = f"{contact['firstName']} {contact['lastName']}".strip()
    if "name" in fields:
        contact["name"] = fields["name"]
        if "firstName" not in fields and "lastName" not in fields:
            first, _, last = str(fields["name"]).partition(" ")
            contact["firstName"], contact["lastName"] = first, last
    if "tags" in fields:
        tags = [str(t) for t in fields["tags"]]
        contact["tags"] = tags if replace_tags else list(dict.fromkeys([*contact["tags"], *tags]))
    if "customFields" in fields:
        _apply_custom_fields(call, contact, fields["customFields"])
    if "dndSettings" in fields:
        for channel, setting in dict(fields["dndSettings"]).items():
            name = _CHANNEL_BY_LOWER.get(str(channel).lower())
            if name is None:
                raise unprocessable([f"dndSettings.{channel} is not a DND channel"])
            contact["dndSettings"][name] = setting
    contact["dateUpdated"] = format_time(call.now)


def _apply_custom_fields(call: Call, contact: dict[str, Any], items: list[Any]) -> None:
    fields = call.state.children_of("customFields", contact["locationId"])
    by_key = {f["fieldKey"]: f["id"] for f in fields.values()}
    values = {item["id"]: item["value"] for item in contact["customFields"]}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise unprocessable([f"customFields.{index} must be an object"])
        field_id = item.get("id") or by_key.get(str(item.get("key", "")))
        if not field_id:
            raise unprocessable([f"customFields.{index}.id or key must name a custom field"])
        # v3 prefers fieldValue; field_value stays accepted (deprecated).
        values[str(field_id)] = item.get("fieldValue", item.get("field_value", item.get("value")))
    contact["customFields"] = [{"id": k, "value": v} for k, v in values.items()]


def _duplicate(
    call: Call, location_id: str, email: object, phone: object
) -> tuple[dict[str, Any], str] | None:
    for contact in call.state.contacts_of(location_id):
        if isinstance(email, str) and email and (contact.get("email") or "").lower() == email.lower():
            return contact, "email"
    for contact in call.state.contacts_of(location_id):
        if isinstance(phone, str) and phone and contact.get("phone") == phone:
            return contact, "phone"
    return None


def _allows_duplicates(call: Call, location_id: str) -> bool:
    return bool(call.state.locations[location_id]["settings"].get("allowDuplicateContact"))


def create(call: Call) -> Reply:
    location_id = str(call.body["locationId"])
    found = _duplicate(call, location_id, call.body.get("email"), call.body.get("phone"))
    if found is not None and not _allows_duplicates(call, location_id):
        contact, field = found
        raise bad_request("This location does not allow duplicated contacts.",
                          {"contactId": contact["id"], "contactName": contact.get("name", ""),
                           "matchingField": field})
    contact = call.state.add_contact(location_id, {}, call.now)
    _apply(call, contact, dict(call.body), replace_tags=True)
    return ok({"contact": public_contact(contact, call.v3)}, call.op.success_status, entity=contact["id"])


def upsert(call: Call) -> Reply:
    location_id = str(call.body["locationId"])
    fields = dict(call.body)
    duplicates_ok = _allows_duplicates(call, location_id) and fields.pop("createNewIfDuplicateAllowed", False)
    fields.pop("createNewIfDuplicateAllowed", None)
    found = None if duplicates_ok else _duplicate(call, location_id, fields.get("email"), fields.get("phone"))
    created = found is None
    contact = call.state.add_contact(location_id, {}, call.now) if found is None else found[0]
    _apply(call, contact, fields, replace_tags=False)
    return ok({"new": created, "contact": public_contact(contact, call.v3), "traceId": call.state.new_id()},
              entity=contact["id"])


def get(call: Call) -> Reply:
    return ok({"contact": public_contact(resolve_contact(call, str(call.path["contactId"])), call.v3)})


def update(call: Call) -> Reply:
    contact = resolve_contact(call, str(call.path["contactId"]))
    _apply(call, contact, dict(call.body), replace_tags=True)
    body = {**deleted_reply(call), "contact": public_contact(contact, call.v3)}
    return ok(body, entity=contact["id"])


def delete(call: Call) -> Reply:
    contact = resolve_contact(call, str(call.path["contactId"]))
    del call.state.contacts[contact["id"]]
    return ok(deleted_reply(call), entity=contact["id"])


def _matches(contact: dict[str, Any], query: object) -> bool:
    if not isinstance(query, str) or not query:
        return True
    needle = query.lower()
    return any(needle in str(contact.get(k) or "").lower() for k in ("name", "email", "phone", "companyName"))


def _page_url(url: str, params: dict[str, Any]) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(params), ""))


def list_contacts(call: Call) -> Reply:
    limit = call.query.get("limit", 20)
    if not 1 <= limit <= 100:
        problem = "limit must not be greater than 100" if limit > 100 else "limit must be positive"
        raise unprocessable([problem])
    everyone = call.state.contacts_of(str(call.query["locationId"]))
    found = [c for c in everyone if _matches(c, call.query.get("query"))]
    after_id, after_ms = call.query.get("startAfterId"), call.query.get("startAfter")
    start = 0
    if after_id:
        ids = [c["id"] for c in found]
        if after_id not in ids:
            raise bad_request(f"Contact with id {after_id} not found")
        start = ids.index(after_id) + 1
    elif isinstance(after_ms, int):
        start = sum(1 for c in found if c["_addedMs"] <= after_ms)
    page = found[start : start + limit]
    more = start + limit < len(found)
    last = page[-1] if page and more else None
    current = start // limit + 1
    meta: dict[str, Any] = {
        "total": len(found),
        "startAfterId": last["id"] if last else None,
        "startAfter": last["_addedMs"] if last else None,
        "nextPageUrl": None,
        "currentPage": current,
        "nextPage": current + 1 if more else None,
        "prevPage": current - 1 if current > 1 else None,
    }
    if last is not None:
        params = {k: v for k, v in call.query.items() if k not in ("startAfterId", "startAfter")}
        meta["nextPageUrl"] = _page_url(call.url, {**params, "startAfterId": last["id"],
                                                   "startAfter": last["_addedMs"]})
    contacts = [public_contact(c, call.v3) for c in page]
    return ok({"contacts": contacts, "count": len(found), "meta": meta})


def search(call: Call) -> Reply:
    size = call.body["pageLimit"]
    page, cursor = call.body.get("page"), call.body.get("searchAfter")
    problems = []
    if not 1 <= size <= MAX_SEARCH_PAGE_LIMIT:
        problems.append(f"pageLimit must not be greater than {MAX_SEARCH_PAGE_LIMIT}" if size > 1
                        else "pageLimit must not be less than 1")
    if page is not None and cursor is not None:
        problems.append("page and searchAfter cannot be used together")
    if page is not None and (page < 1 or page * size > SEARCH_PAGE_WINDOW):
        problems.append(f"page * pageLimit must not exceed {SEARCH_PAGE_WINDOW}; use searchAfter beyond it")
    if problems:
        raise unprocessable(problems)
    everyone = call.state.contacts_of(str(call.body["locationId"]))
    found = [c for c in everyone if _matches(c, call.body.get("query"))]
    for index, rule in enumerate(call.body.get("filters") or []):
        field, operator, value = rule.get("field"), rule.get("operator"), rule.get("value")
        if operator not in ("eq", "contains") or not isinstance(field, str):
            raise unprocessable([f"filters.{index}.operator must be one of the following values: eq, "
                                 "contains"])
        if operator == "eq":
            found = [c for c in found if c.get(field) == value or (isinstance(c.get(field), list)
                                                                    and value in c[field])]
        else:
            found = [c for c in found if str(value).lower() in str(c.get(field) or "").lower()]
    if cursor is not None:
        if not (isinstance(cursor, list) and len(cursor) == 2):
            raise unprocessable(["searchAfter must be the searchAfter array of the last contact"])
        key = (int(cursor[0]), str(cursor[1]))
        found = [c for c in found if (c["_addedMs"], c["id"]) > key]
        chosen = found[:size]
    else:
        start = ((page or 1) - 1) * size
        chosen = found[start : start + size]
    total = len([c for c in call.state.contacts_of(str(call.body["locationId"]))
                 if _matches(c, call.body.get("query"))])
    items = [{**public_contact(c, call.v3), "searchAfter": [c["_addedMs"], c["id"]]} for c in chosen]
    return ok({"contacts": items, "total": total})


def find_duplicate(call: Call) -> Reply:
    found = _duplicate(call, str(call.query["locationId"]), call.query.get("email"), call.query.get("number"))
    return ok({"contact": public_contact(found[0], call.v3) if found else None})


def list_by_business(call: Call) -> Reply:
    limit, skip = call.query.get("limit", 25), call.query.get("skip", 0)
    if not 1 <= limit <= 100:
        raise unprocessable(["limit must not be greater than 100"])
    found = [c for c in call.state.contacts_of(str(call.query["locationId"]))
             if c.get("businessId") == call.path["businessId"] and _matches(c, call.query.get("query"))]
    shown = [public_contact(c, call.v3) for c in found[skip : skip + limit]]
    return ok({"contacts": shown, "count": len(found)})


def add_tags(call: Call) -> Reply:
    contact = resolve_contact(call, str(call.path["contactId"]))
    contact["tags"] = list(dict.fromkeys([*contact["tags"], *call.body["tags"]]))
    return ok({"tags": contact["tags"]}, call.op.success_status, entity=contact["id"])


def remove_tags(call: Call) -> Reply:
    contact = resolve_contact(call, str(call.path["contactId"]))
    gone = set(call.body["tags"])
    contact["tags"] = [t for t in contact["tags"] if t not in gone]
    return ok({"tags": contact["tags"]}, entity=contact["id"])


def bulk_update_tags(call: Call) -> Reply:
    location_id = str(call.body["locationId"])
    adding = call.path["type"] == "add"
    responses, errors = [], 0
    for contact_id in call.body["contacts"]:
        contact = call.state.contacts.get(contact_id)
        if contact is None or contact["locationId"] != location_id:
            errors += 1
            responses.append({"contactId": contact_id, "success": False, "message": "Contact not found"})
            continue
        if adding:
            contact["tags"] = list(dict.fromkeys([*contact["tags"], *call.body["tags"]]))
        elif call.body.get("removeAllTags"):
            contact["tags"] = []
        else:
            contact["tags"] = [t for t in contact["tags"] if t not in set(call.body["tags"])]
        responses.append({"contactId": contact_id, "success": True, "tags": contact["tags"]})
    return ok({**deleted_reply(call), "errorCount": errors, "responses": responses})


def bulk_set_business(call: Call) -> Reply:
    location_id = str(call.body["locationId"])
    changed = []
    for contact_id in call.body["ids"]:
        contact = call.state.contacts.get(contact_id)
        if contact is not None and contact["locationId"] == location_id:
            contact["businessId"] = call.body["businessId"]
            changed.append(contact_id)
    return ok({"success": True, "ids": changed})


def list_appointments(call: Call) -> Reply:
    contact = resolve_contact(call, str(call.path["contactId"]))
    events = [{"id": k, **v} for k, v in call.state.children_of("appointments", contact["id"]).items()]
    return ok({"events": events})


def add_followers(call: Call) -> Reply:
    contact = resolve_contact(call, str(call.path["contactId"]))
    added = [f for f in call.body["followers"] if f not in contact["followers"]]
    contact["followers"] = [*contact["followers"], *added]
    return ok({"followers": contact["followers"], "followersAdded": added}, call.op.success_status,
              entity=contact["id"])


def remove_followers(call: Call) -> Reply:
    contact = resolve_contact(call, str(call.path["contactId"]))
    removed = [f for f in contact["followers"] if f in call.body["followers"]]
    contact["followers"] = [f for f in contact["followers"] if f not in removed]
    return ok({"followers": contact["followers"], "followersRemoved": removed}, entity=contact["id"])


def add_campaign(call: Call) -> Reply:
    contact = resolve_contact(call, str(call.path["contactId"]))
    if call.path["campaignId"] not in contact["_campaigns"]:
        contact["_campaigns"].append(call.path["campaignId"])
    return ok(deleted_reply(call), call.op.success_status, entity=contact["id"])


def remove_campaign(call: Call) -> Reply:
    contact = resolve_contact(call, str(call.path["contactId"]))
    if call.path["campaignId"] not in contact["_campaigns"]:
        raise bad_request(f"Contact {contact['id']} is not in campaign {call.path['campaignId']}")
    contact["_campaigns"].remove(call.path["campaignId"])
    return ok(deleted_reply(call), entity=contact["id"])


def remove_all_campaigns(call: Call) -> Reply:
    contact = resolve_contact(call, str(call.path["contactId"]))
    contact["_campaigns"].clear()
    return ok(deleted_reply(call), entity=contact["id"])


def add_workflow(call: Call) -> Reply:
    contact = resolve_contact(call, str(call.path["contactId"]))
    contact["_workflows"][call.path["workflowId"]] = call.body.get("eventStartTime") or format_time(call.now)
    return ok(deleted_reply(call), call.op.success_status, entity=contact["id"])


def remove_workflow(call: Call) -> Reply:
    contact = resolve_contact(call, str(call.path["contactId"]))
    if contact["_workflows"].pop(call.path["workflowId"], None) is None:
        raise bad_request(f"Contact {contact['id']} is not in workflow {call.path['workflowId']}")
    return ok(deleted_reply(call), entity=contact["id"])


CONTACT_HANDLERS = {
    "highlevel.contacts.list": list_contacts,
    "highlevel.contacts.create": create,
    "highlevel.contacts.upsert": upsert,
    "highlevel.contacts.get": get,
    "highlevel.contacts.update": update,
    "highlevel.contacts.delete": delete,
    "highlevel.contacts.search": search,
    "highlevel.contacts.find_duplicate": find_duplicate,
    "highlevel.contacts.list_by_business": list_by_business,
    "highlevel.contacts.bulk_update_tags": bulk_update_tags,
    "highlevel.contacts.bulk_set_business": bulk_set_business,
    "highlevel.contacts.list_appointments": list_appointments,
    "highlevel.contact_tags.add": add_tags,
    "highlevel.contact_tags.remove": remove_tags,
    "highlevel.contact_followers.add": add_followers,
    "highlevel.contact_followers.remove": remove_followers,
    "highlevel.contact_campaigns.add": add_campaign,
    "highlevel.contact_campaigns.remove": remove_campaign,
    "highlevel.contact_campaigns.remove_all": remove_all_campaigns,
    "highlevel.contact_campaigns.remove_all_legacy": remove_all_campaigns,
    "highlevel.contact_workflows.add": add_workflow,
    "highlevel.contact_workflows.remove": remove_workflow,
}
