"""Every HighLevel catalog action against the catalog-driven HighLevel sandbox: once with exactly its scopes,
once with a token lacking them; plus the checks every route shares (token kind, location, Version, 422, 429)
and each pagination style followed to its end with the generic runner.

Inputs come from `auto_params`, which reads the record (path, required query and body parameters) and
creates what an id must point at through the catalog itself; OVERRIDES holds the few that need a story.
A new record is picked up by the parametrization and either passes or names itself here.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio

from snapbridge.catalog import (
    Operation,
    Pagination,
    ParamIn,
    ParamType,
    TokenKind,
    get_action,
    highlevel_operations,
)
from snapbridge.catalog.runner import ActionResult, iterate_action, run_action
from snapbridge.errors import AuthFailed, InvalidInput, NotFound, Permanent, Retryable, ScopeMissing
from snapbridge.http import create_client
from snapbridge.sandbox.highlevel import AUTH_CLASS_MESSAGE, LOCATION_MESSAGE, SCOPE_MESSAGE, HighLevelSandbox
from snapbridge.sandbox.server import ServerThread
from snapbridge.security import Secret

OPERATIONS = highlevel_operations()
_counter = itertools.count(1)
# One event loop and one client for the module: a client per test would rebuild its TLS context each time.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def highlevel() -> Iterator[HighLevelSandbox]:
    box = HighLevelSandbox(seed=7, time_factor=0.001)
    server = ServerThread(box.app).start()
    box.base_url = server.base_url
    try:
        yield box
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(highlevel: HighLevelSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(highlevel.base_url, allowed_hosts=("127.0.0.1",)) as client:
        yield client


@dataclass
class Ctx:
    box: HighLevelSandbox
    http: httpx.AsyncClient
    cache: dict[str, str] = field(default_factory=dict)

    def token(self, op: Operation, scopes: set[str] | frozenset[str] | tuple[str, ...]) -> Secret:
        kind = op.token_kinds[0]
        location = self.box.location_id if kind is TokenKind.LOCATION else None
        return Secret(self.box.create_token(kind, scopes, location_id=location))

    def full(self, op: Operation) -> Secret:
        every = {s for o in OPERATIONS for s in o.scopes}
        return self.token(op, every)

    async def run(self, name: str, params: dict[str, object]) -> ActionResult:
        op = get_action(name)
        return await run_action(op, params, http=self.http, credential=self.full(op), idempotency_key=None)

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(_counter)}"

    async def contact(self) -> str:
        result = await self.run("highlevel.contacts.create", {
            "locationId": self.box.location_id, "email": f"{self.unique('c')}@example.com",
            "firstName": "Zoë",
        })
        return str(result.payload["id"])  # type: ignore[index]

    async def location(self) -> str:
        result = await self.run("highlevel.locations.create", {
            "name": self.unique("Sub-account"), "companyId": self.box.company_id, "timezone": "Europe/Berlin",
        })
        return str(result.payload["id"])  # type: ignore[index]

    async def child(self, op: Operation, parents: dict[str, object]) -> str:
        """An id for the item path parameter of `op`, made by the resource's own create action under the
        same parents (the contact or sub-account already chosen)."""
        resource = op.name.rsplit(".", 1)[0]
        create = next((o for o in OPERATIONS if o.name == f"{resource}.create"), None)
        if create is not None:
            result = await self.run(create.name, await auto_params(self, create, parents))
            return str(result.payload["id"])  # type: ignore[index]
        listing = get_action(f"{resource}.list")
        result = await self.run(listing.name, await auto_params(self, listing, parents))
        return str(result.payload[0]["id"])  # type: ignore[index]


def _first_snapshot(box: HighLevelSandbox) -> str:
    return next(iter(box.state.companies[box.company_id].snapshots))


def _first_plan(box: HighLevelSandbox) -> str:
    return next(iter(box.state.companies[box.company_id].plans))


async def _path_value(ctx: Ctx, op: Operation, name: str, parents: dict[str, object]) -> str:
    box = ctx.box
    simple: dict[str, Callable[[], str]] = {
        "locationId": lambda: box.location_id,
        "companyId": lambda: box.company_id,
        "snapshotId": lambda: _first_snapshot(box),
        "planId": lambda: _first_plan(box),
        "businessId": lambda: "biz-42",
        "campaignId": lambda: ctx.unique("campaign"),
        "workflowId": lambda: ctx.unique("workflow"),
    }
    if name in simple:
        return simple[name]()
    if name == "contactId":
        return await ctx.contact()
    param = op.param(name)
    if param is not None and param.enum:
        return param.enum[0]
    if name == "type":
        return "sms"
    return await ctx.child(op, parents)


def _sample_text(ctx: Ctx) -> str:
    return "sample"


_TEXT: dict[str, Callable[[Ctx], str]] = {
    "email": lambda ctx: f"{ctx.unique('person')}@example.com",
    "name": lambda ctx: ctx.unique("Name"),
    "title": lambda ctx: ctx.unique("Title"),
    "dueDate": lambda ctx: "2030-01-01T10:00:00Z",
    "from": lambda ctx: "2000-01-01T00:00:00Z",
    "to": lambda ctx: "2100-01-01T00:00:00Z",
    "lastDoc": lambda ctx: "",
    "companyId": lambda ctx: ctx.box.company_id,
    "locationId": lambda ctx: ctx.box.location_id,
    "originId": lambda ctx: ctx.box.location_id,
    "snapshot_id": lambda ctx: _first_snapshot(ctx.box),
    "subscriptionId": lambda ctx: "sub_123",
    "customerId": lambda ctx: "cus_123",
    "dataType": lambda ctx: "TEXT",
}
_NUMBERS = {"pageLimit": 10, "page": 1, "complimentaryCreditsAmount": 5.0}


async def auto_params(ctx: Ctx, op: Operation, preset: dict[str, object] | None = None) -> dict[str, object]:
    """Path parameters resolved to live objects; every other required parameter given a plain value."""
    params: dict[str, object] = {}
    for param in op.params:
        if param.where is ParamIn.PATH:
            if preset and param.name in preset:
                params[param.name] = preset[param.name]
            else:
                params[param.name] = await _path_value(ctx, op, param.name, params)
    return _fill(ctx, op, params)


def plain_params(ctx: Ctx, op: Operation) -> dict[str, object]:
    """Valid-looking input without creating anything: enough for checks that come before the data."""
    known = {"locationId": ctx.box.location_id, "companyId": ctx.box.company_id}
    params: dict[str, object] = {}
    for param in op.params_in(ParamIn.PATH):
        params[param.name] = param.enum[0] if param.enum else known.get(param.name, "unknown-id")
    return _fill(ctx, op, params)


def _fill(ctx: Ctx, op: Operation, params: dict[str, object]) -> dict[str, object]:
    for param in op.params:
        if param.where is ParamIn.PATH or not param.required:
            continue
        if param.enum:
            params[param.name] = param.enum[0]
        elif param.type is ParamType.STRING:
            params[param.name] = _TEXT.get(param.name, _sample_text)(ctx)
        elif param.type in (ParamType.INTEGER, ParamType.NUMBER):
            params[param.name] = _NUMBERS.get(param.name, 1)
        elif param.type is ParamType.BOOLEAN:
            params[param.name] = param.name != "completed"
        elif param.type is ParamType.ARRAY:
            params[param.name] = [ctx.box.location_id] if param.name == "locationIds" else ["sample"]
        else:
            params[param.name] = {"saasPlanId": _first_plan(ctx.box)} if param.name == "actionPayload" else {}
    return params


Sample = Callable[[Ctx, Operation], Awaitable[dict[str, object]]]


async def _fresh_location(ctx: Ctx, op: Operation) -> dict[str, object]:
    return {"locationId": await ctx.location(), "deleteTwilioAccount": False}


async def _campaign_member(ctx: Ctx, op: Operation) -> dict[str, object]:
    contact, campaign = await ctx.contact(), ctx.unique("campaign")
    await ctx.run("highlevel.contact_campaigns.add", {"contactId": contact, "campaignId": campaign})
    return {"contactId": contact, "campaignId": campaign}


async def _workflow_member(ctx: Ctx, op: Operation) -> dict[str, object]:
    contact, workflow = await ctx.contact(), ctx.unique("workflow")
    await ctx.run("highlevel.contact_workflows.add", {"contactId": contact, "workflowId": workflow})
    return {"contactId": contact, "workflowId": workflow}


async def _upload(ctx: Ctx, op: Operation) -> dict[str, object]:
    field_id = await ctx.child(get_action("highlevel.location_custom_fields.get"), {})
    return {"locationId": ctx.box.location_id, "id": field_id, "file": "hello"}


async def _attach_rebilling(ctx: Ctx, op: Operation) -> dict[str, object]:
    # Only a sub-account in setup_pending accepts it; the seed's third sub-account is one.
    return {"locationId": ctx.box.location_ids[2], "companyId": ctx.box.company_id,
            "attachedRebillingConfig": {"contentAI": {"enabled": True, "markup": 10}}}


async def _pushed_location(ctx: Ctx, op: Operation) -> dict[str, object]:
    return {"snapshotId": _first_snapshot(ctx.box), "locationId": ctx.box.location_id,
            "companyId": ctx.box.company_id}


async def _snapshot_on_update(ctx: Ctx, op: Operation) -> dict[str, object]:
    return {"locationId": await ctx.location(), "companyId": ctx.box.company_id, "name": "Renamed",
            "snapshot": {"id": _first_snapshot(ctx.box), "override": False}}


async def _bulk_tags(ctx: Ctx, op: Operation) -> dict[str, object]:
    return {"type": "add", "contacts": [await ctx.contact()], "tags": ["vip"],
            "locationId": ctx.box.location_id}


async def _bulk_business(ctx: Ctx, op: Operation) -> dict[str, object]:
    return {"locationId": ctx.box.location_id, "ids": [await ctx.contact()], "businessId": "biz-42"}


OVERRIDES: dict[str, Sample] = {
    "highlevel.locations.delete": _fresh_location,
    "highlevel.locations.update": _snapshot_on_update,
    "highlevel.contact_campaigns.remove": _campaign_member,
    "highlevel.contact_workflows.remove": _workflow_member,
    "highlevel.location_custom_fields.upload": _upload,
    "highlevel.saas.allow_attach_rebilling": _attach_rebilling,
    "highlevel.snapshots.get_latest_push": _pushed_location,
    "highlevel.contacts.bulk_update_tags": _bulk_tags,
    "highlevel.contacts.bulk_set_business": _bulk_business,
}


async def sample(ctx: Ctx, op: Operation) -> dict[str, object]:
    maker = OVERRIDES.get(op.name)
    return await maker(ctx, op) if maker else await auto_params(ctx, op)


def _other_kind(op: Operation) -> TokenKind | None:
    others = [k for k in (TokenKind.AGENCY, TokenKind.LOCATION) if k not in op.token_kinds]
    return others[0] if others else None


# ---- every action, twice ---------------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda o: o.name)
async def test_action_succeeds_with_exactly_its_scopes(highlevel: HighLevelSandbox, http: httpx.AsyncClient,
                                                        op: Operation) -> None:
    ctx = Ctx(highlevel, http)
    params = await sample(ctx, op)
    before = len(highlevel.journal.entries())
    token = ctx.token(op, op.scopes)
    result = await run_action(op, params, http=http, credential=token, idempotency_key=None)
    assert result.status == op.success_status
    if op.response_key is not None:
        assert result.payload == result.body[op.response_key]  # type: ignore[index]
    if op.pagination is not Pagination.NONE:
        assert isinstance(result.payload, list)
    last = highlevel.journal.entries()[before:][-1]
    assert (last.method, last.status) == (op.method, op.success_status)


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda o: o.name)
async def test_action_without_its_scope_is_refused(highlevel: HighLevelSandbox, http: httpx.AsyncClient,
                                                   op: Operation) -> None:
    ctx = Ctx(highlevel, http)
    params = plain_params(ctx, op)  # the scope is checked before any object is looked up
    every_other = {s for o in OPERATIONS for s in o.scopes} - set(op.scopes)
    with pytest.raises(ScopeMissing) as caught:
        await run_action(op, params, http=http, credential=ctx.token(op, every_other), idempotency_key=None)
    assert caught.value.status == 401
    assert caught.value.scopes == op.scopes
    assert SCOPE_MESSAGE.rstrip(".") in str(caught.value)


@pytest.mark.parametrize("op", [o for o in OPERATIONS if _other_kind(o) is not None], ids=lambda o: o.name)
async def test_action_refuses_the_other_token_kind(highlevel: HighLevelSandbox, http: httpx.AsyncClient,
                                                   op: Operation) -> None:
    ctx = Ctx(highlevel, http)
    params = plain_params(ctx, op)
    kind = _other_kind(op)
    assert kind is not None
    token = highlevel.create_token(kind, op.scopes, location_id=highlevel.location_id)
    with pytest.raises(AuthFailed, match="E-102"):
        await run_action(op, params, http=http, credential=Secret(token), idempotency_key=None)
    assert AUTH_CLASS_MESSAGE.startswith("E-102")


# ---- checks shared by every route ------------------------------------------------------------------------


async def test_a_sub_account_token_cannot_reach_another_sub_account(highlevel: HighLevelSandbox,
                                                                     http: httpx.AsyncClient) -> None:
    op = get_action("highlevel.location_tags.list")
    token = Secret(highlevel.create_token(TokenKind.LOCATION, op.scopes, location_id=highlevel.location_id))
    other = highlevel.location_ids[1]
    with pytest.raises(Permanent) as caught:
        await run_action(op, {"locationId": other}, http=http, credential=token, idempotency_key=None)
    assert caught.value.status == 403
    assert LOCATION_MESSAGE in str(caught.value)


async def test_an_agency_token_cannot_reach_another_agency(highlevel: HighLevelSandbox,
                                                           http: httpx.AsyncClient) -> None:
    op = get_action("highlevel.locations.get")
    token = Secret(highlevel.create_token(TokenKind.AGENCY, op.scopes))
    with pytest.raises(Permanent) as caught:
        await run_action(op, {"locationId": highlevel.other_location_id}, http=http, credential=token,
                         idempotency_key=None)
    assert caught.value.status == 403


async def test_an_unknown_token_is_refused(http: httpx.AsyncClient) -> None:
    op = get_action("highlevel.locations.search")
    with pytest.raises(AuthFailed, match="Invalid token"):
        await run_action(op, {}, http=http, credential=Secret("pit-not-a-token"), idempotency_key=None)


@pytest.mark.parametrize(("version", "status"), [(None, 400), ("1999-01-01", 400), ("2021-07-28", 200),
                                                 ("v3", 200)])
async def test_the_version_header_is_checked(highlevel: HighLevelSandbox, http: httpx.AsyncClient,
                                             version: str | None, status: int) -> None:
    headers = {"Authorization": f"Bearer {highlevel.location_token}"}
    if version:
        headers["Version"] = version
    response = await http.get(f"/locations/{highlevel.location_id}", headers=headers)
    assert response.status_code == status


async def test_validation_failures_are_a_422_list(highlevel: HighLevelSandbox,
                                                   http: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"Bearer {highlevel.location_token}", "Version": "2021-07-28"}
    response = await http.post(f"/locations/{highlevel.location_id}/tags", headers=headers,
                               json={"name": 5, "colour": "red"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "Unprocessable Entity"
    assert body["message"] == ["property colour should not exist", "name must be a string"]


async def test_the_runner_refuses_bad_input_before_any_request(highlevel: HighLevelSandbox,
                                                               http: httpx.AsyncClient) -> None:
    before = len(highlevel.journal.entries())
    op = get_action("highlevel.contacts.create")
    with pytest.raises(InvalidInput) as caught:
        await run_action(op, {"mail": "x"}, http=http, credential=Secret(highlevel.location_token),
                         idempotency_key=None)
    assert "missing required parameter locationId" in str(caught.value)
    assert "unknown parameter mail (known: locationId, firstName" in str(caught.value)
    assert len(highlevel.journal.entries()) == before


async def test_rate_limit_headers_and_429(http: httpx.AsyncClient) -> None:
    box = HighLevelSandbox(seed=8, time_factor=100.0)  # a 1000 s window: the burst cannot refill mid-test
    box.set_rate_limits(burst=3, daily=1000)
    server = ServerThread(box.app).start()
    try:
        async with create_client(server.base_url, allowed_hosts=("127.0.0.1",)) as client:
            op = get_action("highlevel.locations.get")
            token = Secret(box.location_token)
            results = [await run_action(op, {"locationId": box.location_id}, http=client, credential=token,
                                        idempotency_key=None) for _ in range(3)]
            assert [r.rate_limit.remaining for r in results if r.rate_limit] == [2, 1, 0]
            with pytest.raises(Retryable) as caught:
                await run_action(op, {"locationId": box.location_id}, http=client, credential=token,
                                 idempotency_key=None)
            assert caught.value.status == 429
            assert caught.value.retry_after is not None and caught.value.retry_after > 0
    finally:
        server.stop()


async def test_unknown_contact_is_the_observed_400_and_reads_as_not_found(highlevel: HighLevelSandbox,
                                                                          http: httpx.AsyncClient) -> None:
    op = get_action("highlevel.contacts.get")
    with pytest.raises(NotFound) as caught:
        await run_action(op, {"contactId": "missing"}, http=http, credential=Secret(highlevel.location_token),
                         idempotency_key=None)
    assert caught.value.status == 400


# ---- quirks of §10 ---------------------------------------------------------------------------------------


async def test_contact_quirks_duplicates_tags_spelling_and_dnd_casing(highlevel: HighLevelSandbox,
                                                                      http: httpx.AsyncClient) -> None:
    ctx = Ctx(highlevel, http)
    email = f"{ctx.unique('dup')}@example.com"
    first = await ctx.run("highlevel.contacts.create", {"locationId": highlevel.location_id, "email": email,
                                                        "tags": ["a", "b"],
                                                        "dndSettings": {"SMS": {"status": "active"}}})
    contact_id = str(first.payload["id"])  # type: ignore[index]
    from snapbridge.errors import Conflict

    with pytest.raises(Conflict) as caught:
        await ctx.run("highlevel.contacts.create", {"locationId": highlevel.location_id, "email": email})
    assert caught.value.status == 400 and caught.value.existing_id == contact_id
    updated = await ctx.run("highlevel.contacts.update", {"contactId": contact_id, "tags": ["c"]})
    assert updated.body == {"succeded": True, "contact": updated.payload}
    assert updated.payload["tags"] == ["c"]  # type: ignore[index]
    assert updated.payload["dndSettings"] == {"SMS": {"status": "active"}}  # type: ignore[index]
    headers = {"Authorization": f"Bearer {highlevel.location_token}", "Version": "v3"}
    v3 = (await http.get(f"/contacts/{contact_id}", headers=headers)).json()["contact"]
    assert v3["dndSettings"] == {"sms": {"status": "active"}}
    deleted = (await http.delete(f"/contacts/{contact_id}", headers=headers)).json()
    assert deleted == {"succeded": True, "succeeded": True}


async def test_location_quirks_create_is_200_and_search_pages_by_skip(highlevel: HighLevelSandbox,
                                                                     http: httpx.AsyncClient) -> None:
    ctx = Ctx(highlevel, http)
    created = await ctx.run("highlevel.locations.create", {"name": "Quirk", "companyId": highlevel.company_id,
                                                           "snapshotId": _first_snapshot(highlevel)})
    assert created.status == 200 and "id" in created.payload  # type: ignore[operator]
    op = get_action("highlevel.locations.search")
    token = Secret(highlevel.agency_token)
    pages = [r async for r in iterate_action(op, {"companyId": highlevel.company_id, "limit": 2}, http=http,
                                             credential=token)]
    names = [loc["name"] for page in pages for loc in page.payload]  # type: ignore[attr-defined]
    everyone = highlevel.state.locations_of(highlevel.company_id)
    assert names == [loc["name"] for loc in everyone]
    assert all(len(page.payload) <= 2 for page in pages)  # type: ignore[arg-type]


# ---- each pagination style, followed to the end ----------------------------------------------------------


async def test_contacts_list_follows_start_after_id(highlevel: HighLevelSandbox,
                                                    http: httpx.AsyncClient) -> None:
    op = get_action("highlevel.contacts.list")
    token = Secret(highlevel.location_token)
    pages = [r async for r in iterate_action(op, {"locationId": highlevel.location_id, "limit": 2}, http=http,
                                             credential=token)]
    ids = [c["id"] for page in pages for c in page.payload]  # type: ignore[attr-defined]
    assert ids == [c["id"] for c in highlevel.state.contacts_of(highlevel.location_id)]
    assert len(pages) > 1 and pages[-1].body["meta"]["nextPageUrl"] is None  # type: ignore[index]


@pytest.mark.parametrize("window", [False, True])
async def test_contacts_search_follows_pages_then_search_after(highlevel: HighLevelSandbox,
                                                               http: httpx.AsyncClient, window: bool) -> None:
    op = get_action("highlevel.contacts.search")
    token = Secret(highlevel.location_token)
    start: dict[str, object] = {"locationId": highlevel.location_id, "pageLimit": 2}
    if window:
        start["searchAfter"] = [0, ""]
    pages = [r async for r in iterate_action(op, start, http=http, credential=token)]
    ids = [c["id"] for page in pages for c in page.payload]  # type: ignore[attr-defined]
    assert ids == [c["id"] for c in highlevel.state.contacts_of(highlevel.location_id)]


async def test_snapshot_pushes_follow_last_doc(highlevel: HighLevelSandbox, http: httpx.AsyncClient) -> None:
    op = get_action("highlevel.snapshots.list_pushes")
    snapshot = _first_snapshot(highlevel)
    params: dict[str, object] = {"snapshotId": snapshot, "companyId": highlevel.company_id,
                                 "from": (datetime.now(UTC) - timedelta(days=400)).isoformat(),
                                 "to": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
                                 "lastDoc": "", "limit": 1}
    token = Secret(highlevel.agency_token)
    pages = [r async for r in iterate_action(op, params, http=http, credential=token)]
    ids = [p["id"] for page in pages for p in page.payload]  # type: ignore[attr-defined]
    assert ids == [p["id"] for p in highlevel.state.pushes[snapshot]]


async def test_saas_locations_follow_page(highlevel: HighLevelSandbox, http: httpx.AsyncClient) -> None:
    op = get_action("highlevel.saas.list_saas_locations")
    pages = [r async for r in iterate_action(op, {"companyId": highlevel.company_id, "page": 1}, http=http,
                                             credential=Secret(highlevel.agency_token))]
    assert pages[-1].body["pagination"]["hasNext"] is False  # type: ignore[index]
    assert all(item["companyId"] == highlevel.company_id for p in pages for item in p.payload)  # type: ignore


# ---- the sandbox's own surface ------------------------------------------------------------------------------


async def test_tokens_can_be_minted_over_http(highlevel: HighLevelSandbox, http: httpx.AsyncClient) -> None:
    minted = await http.post("/_sandbox/tokens", json={"kind": "location", "scopes": ["locations.readonly"],
                                                       "location_id": highlevel.location_ids[1]})
    assert minted.status_code == 201
    token = Secret(minted.json()["token"])
    op = get_action("highlevel.locations.get")
    result = await run_action(op, {"locationId": highlevel.location_ids[1]}, http=http, credential=token,
                              idempotency_key=None)
    assert result.payload["id"] == highlevel.location_ids[1]  # type: ignore[index]
    refused = await http.post("/_sandbox/tokens", json={"kind": "user"})
    assert refused.status_code == 400


@pytest.mark.parametrize(("method", "path"), [("GET", "/nowhere"), ("PATCH", "/contacts/abc"),
                                              ("POST", "/locations/search")])
async def test_unknown_routes_answer_nest_style_404(highlevel: HighLevelSandbox, http: httpx.AsyncClient,
                                                    method: str, path: str) -> None:
    response = await http.request(method, path, headers={"Authorization": f"Bearer {highlevel.agency_token}"})
    assert response.status_code == 404
    assert response.json() == {"statusCode": 404, "message": f"Cannot {method} {path}", "error": "Not Found"}

