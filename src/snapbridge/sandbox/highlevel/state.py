"""The HighLevel sandbox's in-memory data: agencies, sub-accounts, contacts, SaaS, snapshots, and seeding."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["Company", "HighLevelState", "format_time"]

_ID_ALPHABET = string.ascii_letters + string.digits
# The v2 spelling of the DND channel keys; v3 answers lower-case (snapshots-api.md §4.2).
DND_CHANNELS = ("Call", "Email", "SMS", "WhatsApp", "GMB", "FB")
TIMEZONES = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Sao_Paulo",
    "Europe/London", "Europe/Berlin", "Europe/Paris", "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney", "UTC",
)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as HighLevel writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class Company:
    id: str
    name: str
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    rebilling: dict[str, dict[str, Any]] = field(default_factory=dict)  # product → config and locations


class HighLevelState:
    """Everything the fake knows. Handlers mutate it under the app's lock; objects are plain JSON dicts."""

    def __init__(self, seed: int, now: datetime) -> None:
        self._rng = random.Random(seed)
        self.companies: dict[str, Company] = {}
        self.locations: dict[str, dict[str, Any]] = {}
        self.location_seq: dict[str, int] = {}  # creation order, for search order
        self.permissions: dict[str, list[str]] = {}
        self.saas: dict[str, dict[str, Any]] = {}  # location id → SaaS subscription record
        self.wallets: dict[str, dict[str, Any]] = {}
        self.contacts: dict[str, dict[str, Any]] = {}
        # Sub-resources of a location or a contact: (kind, parent id) → id → object.
        self.children: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.pushes: dict[str, list[dict[str, Any]]] = {}  # snapshot id → push records, oldest first
        self._counter = 0
        self._seed(now)

    # ---- ids and collections ---------------------------------------------------------------------------

    def new_id(self) -> str:
        return "".join(self._rng.choice(_ID_ALPHABET) for _ in range(20))

    def tick(self) -> int:
        self._counter += 1
        return self._counter

    def children_of(self, kind: str, parent: str) -> dict[str, dict[str, Any]]:
        return self.children.setdefault((kind, parent), {})

    def company_of_location(self, location_id: str) -> str | None:
        location = self.locations.get(location_id)
        return str(location["companyId"]) if location else None

    def locations_of(self, company_id: str) -> list[dict[str, Any]]:
        found = [loc for loc in self.locations.values() if loc["companyId"] == company_id]
        return sorted(found, key=lambda loc: self.location_seq[loc["id"]])

    def contacts_of(self, location_id: str) -> list[dict[str, Any]]:
        found = [c for c in self.contacts.values() if c["locationId"] == location_id]
        return sorted(found, key=lambda c: (c["_addedMs"], c["id"]))

    # ---- objects ----------------------------------------------------------------------------------------

    def add_location(self, company_id: str, fields: dict[str, Any], now: datetime) -> dict[str, Any]:
        location_id = self.new_id()
        prospect = fields.get("prospectInfo") or {}
        settings = {"allowDuplicateContact": False, "allowDuplicateOpportunity": False,
                    "allowFacebookNameMerge": False, "disableContactTimezone": False}
        settings.update(fields.get("settings") or {})
        location: dict[str, Any] = {
            "id": location_id,
            "companyId": company_id,
            "name": fields["name"],
            "domain": f"{location_id.lower()}.msgsndr.com",
            "address": fields.get("address", ""),
            "city": fields.get("city", ""),
            "state": fields.get("state", ""),
            "country": fields.get("country", "US"),
            "postalCode": fields.get("postalCode", ""),
            "website": fields.get("website", ""),
            "timezone": fields.get("timezone", "America/Chicago"),
            "firstName": prospect.get("firstName", ""),
            "lastName": prospect.get("lastName", ""),
            "email": prospect.get("email", fields.get("email", "")),
            "phone": fields.get("phone", ""),
            "logoUrl": "",
            "settings": settings,
            "social": dict(fields.get("social") or {}),
            "dateAdded": format_time(now),
        }
        location["business"] = {k: location[k] for k in ("name", "address", "city", "state", "country",
                                                          "postalCode", "website", "timezone", "logoUrl")}
        self.locations[location_id] = location
        self.location_seq[location_id] = self.tick()
        self.permissions[location_id] = ["contacts", "conversations", "settings"]
        self.wallets[location_id] = {"walletId": self.new_id(), "balance": 0.0, "complimentaryCredits": 0.0}
        return location

    def add_contact(self, location_id: str, fields: dict[str, Any], now: datetime) -> dict[str, Any]:
        contact_id = self.new_id()
        contact: dict[str, Any] = {
            "id": contact_id, "locationId": location_id, "type": "lead", "source": "public api",
            "tags": [], "customFields": [], "followers": [], "dnd": False, "dndSettings": {},
            "dateAdded": format_time(now), "dateUpdated": format_time(now), "lastActivity": None,
            "businessId": None, "_addedMs": epoch_ms(now) + self.tick(), "_campaigns": [], "_workflows": {},
        }
        self.contacts[contact_id] = contact
        return contact

    # ---- seed -------------------------------------------------------------------------------------------

    def _seed(self, now: datetime) -> None:
        start = now - timedelta(days=30)
        for index, name in enumerate(("Northwind Agency", "Globex Agency")):
            company = Company(self.new_id(), name)
            self.companies[company.id] = company
            for plan_name, level in (("Starter", 1), ("Pro", 3)):
                plan_id = self.new_id()
                company.plans[plan_id] = {
                    "planId": plan_id, "companyId": company.id, "title": plan_name,
                    "description": f"{plan_name} SaaS plan", "saasProducts": ["contentAI"], "addOns": [],
                    "planLevel": level, "trialPeriod": 14, "userLimit": 5 * level,
                    "contactLimit": 1000 * level,
                    "prices": [{"id": self.new_id(), "amount": 97 * level, "currency": "usd",
                                "billingInterval": "month"}],
                    "categoryId": "", "snapshotId": None, "productId": f"prod_{self.new_id()[:14]}",
                    "isSaaSV2": True, "providerLocationId": "", "setupFee": 0,
                    "createdAt": format_time(start), "updatedAt": format_time(start),
                }
            for snap_name, kind in (("Onboarding", "own"), ("Imported funnel", "imported")):
                snap_id = self.new_id()
                company.snapshots[snap_id] = {"id": snap_id, "name": snap_name, "type": kind}
                self.pushes[snap_id] = []
            places = (("Ada's Bakery", "Europe/London"), ("Café Zoë", "Europe/Paris"),
                      ("Tokyo Ramen", "Asia/Tokyo")) if index == 0 else (("Globex HQ", "America/New_York"),)
            for offset, (loc_name, tz) in enumerate(places):
                location = self.add_location(company.id, {"name": loc_name, "timezone": tz, "country": "GB",
                                                          "email": f"owner{offset}@example.com"},
                                             start + timedelta(hours=offset))
                self._seed_location(company, location, start + timedelta(hours=offset), offset)

    def _seed_location(self, company: Company, location: dict[str, Any], when: datetime, offset: int) -> None:
        location_id = location["id"]
        plan_id = next(iter(company.plans))
        self.saas[location_id] = {
            "locationId": location_id, "companyId": company.id, "isSaaSV2": True,
            "saasMode": "activated" if offset < 2 else "setup_pending",
            "subscriptionId": f"sub_{self.new_id()[:14]}", "customerId": f"cus_{self.new_id()[:14]}",
            "productId": company.plans[plan_id]["productId"], "priceId": f"price_{self.new_id()[:14]}",
            "saasPlanId": plan_id, "subscriptionStatus": "active" if offset < 2 else "incomplete",
            "paused": False, "enabled": offset < 2, "attachedRebillingConfig": {},
        }
        tags = self.children_of("tags", location_id)
        for tag_name in ("customer", "vip"):
            tag_id = self.new_id()
            tags[tag_id] = {"id": tag_id, "name": tag_name, "locationId": location_id}
        fields = self.children_of("customFields", location_id)
        field_id = self.new_id()
        fields[field_id] = {"id": field_id, "name": "Plan", "fieldKey": "contact.plan", "placeholder": "",
                            "dataType": "TEXT", "position": 0, "picklistOptions": [],
                            "isMultiFileAllowed": False,
                            "maxFileLimit": 0, "locationId": location_id, "model": "contact"}
        values = self.children_of("customValues", location_id)
        value_id = self.new_id()
        values[value_id] = {"id": value_id, "name": "Support email",
                            "fieldKey": "{{ custom_values.support_email }}",
                            "value": "help@example.com", "locationId": location_id}
        templates = self.children_of("templates", location_id)
        for template_type in ("sms", "email"):
            template_id = self.new_id()
            templates[template_id] = {"id": template_id, "name": f"Welcome {template_type}",
                                      "type": template_type,
                                      "originId": location_id, "deleted": False, "locationId": location_id,
                                      "dateAdded": format_time(when)}
        for snap_id in company.snapshots:
            self.pushes[snap_id].append({
                "id": self.new_id(), "locationId": location_id, "status": "completed",
                "dateAdded": format_time(when), "completed": ["forms", "workflows", "custom_fields", "tags"],
                "pending": [],
            })
        for number, (first, last) in enumerate((("Zoë", "Łukasz"), ("Ada", "Lovelace"), ("Grace", "Hopper"))):
            contact = self.add_contact(location_id, {}, when + timedelta(minutes=number))
            contact.update({
                "firstName": first, "lastName": last, "name": f"{first} {last}",
                "email": f"{first.lower().replace('ë', 'e')}.{offset}@example.com",
                "phone": f"+4420790{offset}{number:04d}", "tags": ["customer"],
            })
            self.children_of("appointments", contact["id"])[self.new_id()] = {
                "calendarId": self.new_id(), "status": "booked", "title": "Onboarding call",
                "startTime": format_time(when + timedelta(days=40)),
            }
