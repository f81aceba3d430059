"""SaaS and Snapshots handlers of the HighLevel sandbox (snapshots-api.md §3.1, §3.2, §4.3).

The current `/saas/...` routes and their deprecated `/saas-api/public-api/...` twins share one handler per
verb; they differ in their records only (stricter query, 201 vs 200 on writes).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from snapbridge.sandbox.highlevel.call import Call, Reply, bad_request, not_found, ok, unprocessable

__all__ = ["SAAS_HANDLERS", "SNAPSHOT_HANDLERS"]

SAAS_PAGE_SIZE = 10


def _subscription(call: Call, location_id: str) -> dict[str, Any]:
    record = call.state.saas.get(location_id)
    if record is None:
        raise not_found(f"No SaaS subscription for location {location_id}")
    return record


def locations_by_stripe(call: Call) -> Reply:
    company_id = call.query["companyId"]
    found = [
        loc_id for loc_id, sub in call.state.saas.items()
        if sub["companyId"] == company_id and loc_id in call.state.locations
        and call.query.get("customerId") in (None, sub["customerId"])
        and call.query.get("subscriptionId") in (None, sub["subscriptionId"])
    ]
    return ok(found)  # an array of location ids, nothing more


def update_subscription(call: Call) -> Reply:
    location_id = str(call.path["locationId"])
    record = _subscription(call, location_id)
    record.update(subscriptionId=call.body["subscriptionId"], customerId=call.body["customerId"])
    return ok({"success": True, "locationId": location_id, "subscriptionId": record["subscriptionId"],
               "customerId": record["customerId"]}, call.op.success_status, entity=location_id)


def bulk_disable(call: Call) -> Reply:
    for location_id in call.body["locationIds"]:
        if location_id in call.state.saas:
            call.state.saas[location_id]["enabled"] = False
    return ok({"data": {"msg": "success"}}, call.op.success_status)


def enable(call: Call) -> Reply:
    location_id = str(call.path["locationId"])
    record = _subscription(call, location_id)
    record.update(enabled=True, isSaaSV2=call.body["isSaaSV2"], saasMode="activated")
    for key in ("saasPlanId", "priceId"):
        if call.body.get(key):
            record[key] = call.body[key]
    if call.body.get("stripeCustomerId"):
        record["customerId"] = call.body["stripeCustomerId"]
    data = {"customer_id": record["customerId"], "ok": True, "paymentMethodAdded": False}
    return ok({"data": data}, call.op.success_status, entity=location_id)


def pause(call: Call) -> Reply:
    location_id = str(call.path["locationId"])
    record = _subscription(call, location_id)
    record["paused"] = call.body["paused"]
    body = {"success": True, "locationId": location_id, "paused": record["paused"]}
    return ok(body, call.op.success_status, entity=location_id)


def update_rebilling(call: Call) -> Reply:
    company = call.state.companies[str(call.path["companyId"])]
    company.rebilling[str(call.body["product"])] = {"config": dict(call.body["config"]),
                                                    "locationIds": list(call.body["locationIds"])}
    return ok({"success": True}, call.op.success_status)


def list_agency_plans(call: Call) -> Reply:
    return ok(list(call.state.companies[str(call.path["companyId"])].plans.values()))


def get_subscription(call: Call) -> Reply:
    record = _subscription(call, str(call.path["locationId"]))
    return ok({k: v for k, v in record.items() if k not in ("enabled", "paused", "attachedRebillingConfig")})


def bulk_enable(call: Call) -> Reply:
    payload = call.body["actionPayload"]
    if not isinstance(payload.get("saasPlanId"), str) or not payload["saasPlanId"]:
        raise unprocessable(["actionPayload.saasPlanId should not be empty"])
    company = call.state.companies[str(call.path["companyId"])]
    if payload["saasPlanId"] not in company.plans:
        raise not_found(f"SaaS plan {payload['saasPlanId']} not found")
    for location_id in call.body["locationIds"]:
        if location_id in call.state.saas:
            call.state.saas[location_id].update(enabled=True, saasPlanId=payload["saasPlanId"])
    action = call.state.new_id()
    return ok({"success": True, "message": "Bulk enable SaaS started",
               "bulkActionUrl": f"https://app.gohighlevel.com/bulk-actions/{action}"}, call.op.success_status)


def list_saas_locations(call: Call) -> Reply:
    company_id = str(call.path["companyId"])
    page = call.query.get("page", 1)
    if page < 1:
        raise unprocessable(["page must not be less than 1"])
    enabled = [
        (loc_id, sub) for loc_id, sub in call.state.saas.items()
        if sub["companyId"] == company_id and sub["enabled"] and loc_id in call.state.locations
    ]
    start = (page - 1) * SAAS_PAGE_SIZE
    chosen = enabled[start : start + SAAS_PAGE_SIZE]
    total_pages = max(1, -(-len(enabled) // SAAS_PAGE_SIZE))
    items = [{
        "locationId": loc_id, "companyId": company_id, "saasMode": sub["saasMode"],
        "subscriptionId": sub["subscriptionId"], "customerId": sub["customerId"],
        "name": call.state.locations[loc_id]["name"], "email": call.state.locations[loc_id]["email"],
        "providerLocationId": "", "isSaaSV2": sub["isSaaSV2"],
        "subscriptionInfo": {"priceId": sub["priceId"], "saasPlanId": sub["saasPlanId"],
                             "stripeProductId": sub["productId"],
                             "subscriptionStatus": sub["subscriptionStatus"]},
    } for loc_id, sub in chosen]
    pagination = {"page": page, "limit": SAAS_PAGE_SIZE, "total": len(enabled), "totalPages": total_pages,
                  "hasNext": page < total_pages, "hasPrev": page > 1}
    return ok({"locations": items, "pagination": pagination})


def get_plan(call: Call) -> Reply:
    company = call.state.companies[str(call.query["companyId"])]
    plan = company.plans.get(str(call.path["planId"]))
    if plan is None:
        raise not_found(f"SaaS plan {call.path['planId']} not found")
    return ok(plan)


def allow_attach_rebilling(call: Call) -> Reply:
    location_id = str(call.path["locationId"])
    record = _subscription(call, location_id)
    if record["saasMode"] != "setup_pending":
        raise unprocessable([f"Location {location_id} is not in setup_pending"])
    record["attachedRebillingConfig"] = dict(call.body.get("attachedRebillingConfig") or {})
    return ok({"success": True, "locationId": location_id,
               "attachedRebillingConfig": record["attachedRebillingConfig"]}, call.op.success_status,
              entity=location_id)


def get_wallet_balance(call: Call) -> Reply:
    return ok(call.state.wallets[str(call.path["locationId"])])


def add_complimentary_credits(call: Call) -> Reply:
    amount = call.body["complimentaryCreditsAmount"]
    if amount <= 0:
        raise unprocessable(["complimentaryCreditsAmount must be a positive number"])
    wallet = call.state.wallets[str(call.path["locationId"])]
    wallet["complimentaryCredits"] = round(wallet["complimentaryCredits"] + amount, 2)
    return ok(wallet, call.op.success_status, entity=str(call.path["locationId"]))


_SAAS_VERBS: dict[str, Callable[[Call], Reply]] = {
    "locations_by_stripe": locations_by_stripe,
    "update_subscription": update_subscription,
    "bulk_disable": bulk_disable,
    "enable": enable,
    "pause": pause,
    "update_rebilling": update_rebilling,
    "list_agency_plans": list_agency_plans,
    "get_subscription": get_subscription,
    "bulk_enable": bulk_enable,
    "list_saas_locations": list_saas_locations,
    "get_plan": get_plan,
    "allow_attach_rebilling": allow_attach_rebilling,
    "get_wallet_balance": get_wallet_balance,
    "add_complimentary_credits": add_complimentary_credits,
}
SAAS_HANDLERS = {f"highlevel.{area}.{verb}": handler for verb, handler in _SAAS_VERBS.items()
                 for area in ("saas", "saas_legacy")}


# ---- Snapshots (agency only) -------------------------------------------------------------------------------


def _snapshot(call: Call, snapshot_id: str) -> dict[str, Any]:
    snapshot = call.state.companies[str(call.query["companyId"])].snapshots.get(snapshot_id)
    if snapshot is None:
        raise not_found(f"Snapshot with id {snapshot_id} not found")
    return snapshot


def list_snapshots(call: Call) -> Reply:
    return ok({"snapshots": list(call.state.companies[str(call.query["companyId"])].snapshots.values())})


def create_share_link(call: Call) -> Reply:
    snapshot = _snapshot(call, str(call.body["snapshot_id"]))
    kind = call.body["share_type"]
    if kind == "agency_link" and not call.body.get("relationship_number"):
        raise unprocessable(["relationship_number should not be empty"])
    if kind == "location_link" and not call.body.get("share_location_id"):
        raise unprocessable(["share_location_id should not be empty"])
    link_id = call.state.new_id()
    return ok({"id": link_id, "shareLink": f"https://affiliates.gohighlevel.com/?share={link_id}"},
              call.op.success_status, entity=snapshot["id"])


def _moment(value: str, name: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise unprocessable([f"{name} must be a valid ISO 8601 date string"]) from None


def list_pushes(call: Call) -> Reply:
    snapshot = _snapshot(call, str(call.path["snapshotId"]))
    start, end = _moment(call.query["from"], "from"), _moment(call.query["to"], "to")
    pushes = [p for p in call.state.pushes[snapshot["id"]]
              if start <= datetime.fromisoformat(p["dateAdded"].replace("Z", "+00:00")) <= end]
    last = call.query.get("lastDoc") or ""
    if last:
        ids = [p["id"] for p in pushes]
        if last not in ids:
            raise bad_request(f"lastDoc {last} is not a push of this snapshot")
        pushes = pushes[ids.index(last) + 1 :]
    limit = call.query.get("limit", 20)
    shown = [{k: p[k] for k in ("id", "locationId", "status", "dateAdded")} for p in pushes[:limit]]
    return ok({"data": shown})


def get_latest_push(call: Call) -> Reply:
    snapshot = _snapshot(call, str(call.path["snapshotId"]))
    location_id = str(call.path["locationId"])
    found = [p for p in call.state.pushes[snapshot["id"]] if p["locationId"] == location_id]
    if not found:
        raise not_found(f"No push of snapshot {snapshot['id']} to location {location_id}")
    return ok({"data": found[-1]})


SNAPSHOT_HANDLERS = {
    "highlevel.snapshots.list": list_snapshots,
    "highlevel.snapshots.create_share_link": create_share_link,
    "highlevel.snapshots.list_pushes": list_pushes,
    "highlevel.snapshots.get_latest_push": get_latest_push,
}
