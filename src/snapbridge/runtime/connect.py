"""Testing a connection with a cheap real call: which account it reached, which scopes are held or missing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from snapbridge.connectors.gumroad import GumroadClient
from snapbridge.connectors.snapshots import SnapshotsClient, probe_scopes
from snapbridge.errors import InvalidInput, ScopeMissing
from snapbridge.http import check_base_url, create_client
from snapbridge.security import Secret

__all__ = ["GUMROAD_SCOPES", "SNAPSHOTS_SCOPES", "ConnectionReport", "ScopeNeed", "ScopeStatus",
           "check_connection", "check_gumroad", "check_snapshots"]


@dataclass(frozen=True)
class ScopeNeed:
    needed_for: str
    required: bool = True


# What snapbridge does with each scope, in the words the connect command prints when it is missing.
GUMROAD_SCOPES: Mapping[str, ScopeNeed] = {
    "view_sales": ScopeNeed("read sales and subscribers, and receive sale, refund, dispute and "
                            "subscription webhooks (resource subscriptions need it)"),
}
SNAPSHOTS_SCOPES: Mapping[str, ScopeNeed] = {
    "saas/location.read": ScopeNeed("read locations (location_id, name, timezone) to map them to customers"),
    "saas/location.write": ScopeNeed("create or update a location for each new Gumroad customer"),
    "events.write": ScopeNeed("push purchases and subscription changes as events"),
    "customers.write": ScopeNeed("update customers' email, name and plan"),
    "events.readonly": ScopeNeed("read events back (reconciliation and run history)", required=False),
    "customers.readonly": ScopeNeed("read customers back (reconciliation and run history)", required=False),
}


@dataclass(frozen=True)
class ScopeStatus:
    scope: str
    held: bool
    need: ScopeNeed


@dataclass(frozen=True)
class ConnectionReport:
    app: str
    account: str
    scopes: tuple[ScopeStatus, ...]
    account_id: str | None = None  # Gumroad seller id (checked on every ping); Snapshots company id

    @property
    def missing(self) -> tuple[ScopeStatus, ...]:
        return tuple(s for s in self.scopes if not s.held and s.need.required)

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def held(self) -> tuple[str, ...]:
        return tuple(s.scope for s in self.scopes if s.held)


async def check_gumroad(http: httpx.AsyncClient, token: Secret, *, base_url: str) -> ConnectionReport:
    """GET /v2/user names the seller (any scope); one page of sales proves `view_sales`."""
    client = GumroadClient(http, token, base_url=base_url)
    user = await client.get_user()
    try:
        await client.list_sales()
        view_sales = True
    except ScopeMissing:
        view_sales = False
    who = user.name or user.display_name or user.email or user.id
    account = f"{who} <{user.email}>" if user.email and user.email != who else str(who)
    if user.user_id:
        account += f" (seller id {user.user_id})"
    statuses = (ScopeStatus("view_sales", view_sales, GUMROAD_SCOPES["view_sales"]),)
    return ConnectionReport("gumroad", account, statuses, account_id=user.user_id)


async def check_snapshots(http: httpx.AsyncClient, api_key: Secret, *, base_url: str) -> ConnectionReport:
    """Every scope probed without writing; the company comes from a location when the key can read one."""
    client = SnapshotsClient(http, api_key, base_url=base_url)
    held = await probe_scopes(client)
    account = "an unknown company (the key cannot read locations)"
    company_id: str | None = None
    if held.get("saas/location.read"):
        probe = await client.whoami()
        company_id = probe.company_id
        count = f"{probe.location_count} locations" if probe.location_count is not None else "locations"
        account = f"company {probe.company_id or 'unknown'} ({count} visible)"
    statuses = tuple(ScopeStatus(scope, held.get(scope, False), need) for scope, need in SNAPSHOTS_SCOPES.items())
    return ConnectionReport("snapshots", account, statuses, account_id=company_id)


async def check_connection(app: str, base_url: str, secret: Secret, *, allowed_hosts: Sequence[str] = (),
                           http_timeout: float = 10.0) -> ConnectionReport:
    """Test a credential for `app` at `base_url` (checked by the URL guard first) with a fresh client."""
    if app not in ("gumroad", "snapshots"):
        raise InvalidInput(f"unknown app {app!r}; known: gumroad, snapshots")
    check_base_url(base_url, allowed_hosts)
    async with create_client(base_url, allowed_hosts=allowed_hosts, timeout=http_timeout) as http:
        if app == "gumroad":
            return await check_gumroad(http, secret, base_url=base_url)
        return await check_snapshots(http, secret, base_url=base_url)
