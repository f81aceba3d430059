"""Customer profiles as API records, and as a CSV file a spreadsheet opens without running any cell."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime

from snapbridge.store import Profile
from snapbridge.web.api.models import CustomerOut

__all__ = ["CSV_COLUMNS", "csv_cell", "customer_out", "customers_csv"]

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection); \t and \r too, per OWASP.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = ("id", "connection", "email", "name", "plan", "location_id", "timezone", "region", "tier", "tags",
               "segments", "lifetime_value_cents", "purchases", "first_seen_at", "last_activity_at", "updated_at")


def csv_cell(value: object) -> str:
    """One cell's text: empty for None, ISO for times, numbers as they are, and a leading quote on text a
    spreadsheet would compute."""
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)  # a number is never a formula, and "'-500" would no longer sum as one
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        value = ";".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def customers_csv(profiles: Iterable[Profile]) -> str:
    """A CSV document: the header row, then one row per profile (quoted by the csv module where needed)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for p in profiles:
        writer.writerow([csv_cell(getattr(p, column)) for column in CSV_COLUMNS])
    return out.getvalue()


def customer_out(p: Profile) -> CustomerOut:
    return CustomerOut(id=p.id or 0, connection=p.connection, email=p.email, name=p.name, plan=p.plan,
                       location_id=p.location_id, timezone=p.timezone, region=p.region, tier=p.tier,
                       tags=list(p.tags), segments=list(p.segments), attributes=dict(p.attributes),
                       lifetime_value_cents=p.lifetime_value_cents, purchases=p.purchases,
                       first_seen_at=p.first_seen_at, last_activity_at=p.last_activity_at, updated_at=p.updated_at)
