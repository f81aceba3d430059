"""Every SnapshotsClient method against the Snapshots sandbox over real HTTP, checked in its journal."""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from snapbridge.connectors.snapshots import (
    MAX_BATCH_EVENTS,
    OPERATIONS,
    BatchItemStatus,
    CustomerChanges,
    EventInput,
    LocationChanges,
    LocationCreate,
    OnboardingStatus,
    SnapshotsClient,
)
from snapbridge.errors import (
    AuthFailed,
    Conflict,
    InvalidInput,
    NotFound,
    Permanent,
    Retryable,
    ScopeMissing,
)
from snapbridge.http import create_client
from snapbridge.sandbox import Sandboxes
from snapbridge.sandbox.snapshots import SandboxKey
from snapbridge.security import Secret

ALL_SCOPES = (
    "saas/location.read", "saas/location.write", "events.write", "events.readonly", "customers.write",
    "customers.readonly",
)
_serial = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other test in this session uses (tests share one sandbox)."""
    return f"{prefix}-{next(_serial):04d}-{datetime.now(UTC):%H%M%S%f}"


@pytest.fixture
async def http(sandboxes: Sandboxes) -> AsyncIterator[httpx.AsyncClient]:
    client = create_client(sandboxes.snapshots_url, allowed_hosts=("127.0.0.1",))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def client_for(sandboxes: Sandboxes, http: httpx.AsyncClient
               ) -> Callable[[SandboxKey | str], SnapshotsClient]:
    def build(key: SandboxKey | str) -> SnapshotsClient:
        value = key if isinstance(key, str) else key.key
        return SnapshotsClient(http, Secret(value), base_url=sandboxes.snapshots_url)

    return build


@pytest.fixture
def key(sandboxes: Sandboxes) -> SandboxKey:
    return sandboxes.snapshots.create_key(ALL_SCOPES)


@pytest.fixture
def client(client_for: Callable[[SandboxKey | str], SnapshotsClient], key: SandboxKey) -> SnapshotsClient:
    return client_for(key)


def event_input(event_id: str, **extra: object) -> EventInput:
    return EventInput(event_id=event_id, type="purchase", timestamp=datetime(2026, 7, 1, 12, tzinfo=UTC),
                      data={"amount_cents": 1900, "product": "Zoë's course", **extra})


# ---- the operations table ------------------------------------------------------------------------


def test_the_operations_table_covers_every_endpoint_of_the_contract() -> None:
    from snapbridge.sandbox.snapshots.api import OPERATIONS as SANDBOX_OPERATIONS

    served = {(op.method, op.pattern.pattern, op.scope.value) for op in SANDBOX_OPERATIONS}
    ours = {(op.method, re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", op.path) + "/?", op.scope)
            for op in OPERATIONS.values()}
    assert ours == served
    assert {op.name for op in SANDBOX_OPERATIONS} == set(OPERATIONS)
    for op in OPERATIONS.values():
        method = getattr(SnapshotsClient, op.client_method)
        assert inspect.iscoroutinefunction(method), op.client_method
        if op.writes:  # STYLE: every write takes the caller's idempotency key, keyword-only and required
            param = inspect.signature(method).parameters["idempotency_key"]
            assert param.kind is param.KEYWORD_ONLY and param.default is param.empty


# ---- locations ------------------------------------------------------------------------------------


async def test_list_locations_pages_and_iter_locations_walks_them_all(client: SnapshotsClient) -> None:
    first = await client.list_locations(limit=3)
    assert len(first.items) == 3 and first.total is not None and first.total >= 8
    assert first.next_cursor == first.items[-1].location_id
    second = await client.list_locations(limit=3, start_after_id=first.next_cursor)
    assert second.items[0].location_id > first.items[-1].location_id
    everything = [loc async for loc in client.iter_locations(page_size=3)]
    ids = [loc.location_id for loc in everything]
    assert len(ids) == first.total and ids == sorted(set(ids))
    assert any(loc.name == "東京スタジオ" for loc in everything)
    assert all(loc.created_at is not None and loc.created_at.tzinfo is not None for loc in everything)
    assert first.rate_limit is not None and first.rate_limit.limit == 100


async def test_list_locations_filters(client: SnapshotsClient) -> None:
    seeded = (await client.list_locations(limit=1)).items[0]
    assert seeded.external_id is not None
    page = await client.list_locations(external_id=seeded.external_id)
    assert [loc.location_id for loc in page.items] == [seeded.location_id] and page.next_cursor is None
    future = datetime.now(UTC) + timedelta(days=1)
    assert (await client.list_locations(updated_since=future)).items == ()
    with pytest.raises(InvalidInput):
        await client.list_locations(limit=101)


async def test_create_get_and_update_a_location(client: SnapshotsClient) -> None:
    external = unique("buyer")
    created = await client.create_location(
        LocationCreate(name="Ørsted Dance ✨", timezone="Europe/Copenhagen", email="owner@example.dk",
                       external_id=external),
        idempotency_key=unique("evt") + ":step_0",
    )
    assert created.onboarding_status is OnboardingStatus.PENDING and created.external_id == external
    assert created.rate_limit is not None
    assert await client.get_location(created.location_id) == created
    updated = await client.update_location(
        created.location_id, LocationChanges(onboarding_status=OnboardingStatus.ACTIVE, tier="pro"),
        idempotency_key=unique("evt") + ":step_1",
    )
    assert updated.onboarding_status is OnboardingStatus.ACTIVE and updated.tier == "pro"
    assert updated.name == "Ørsted Dance ✨"  # a partial update leaves other fields alone


async def test_get_an_unknown_location_is_not_found(client: SnapshotsClient) -> None:
    with pytest.raises(NotFound, match=r"locations\.get"):
        await client.get_location("no-such-location")


async def test_an_invalid_location_is_permanent_with_every_message(client: SnapshotsClient) -> None:
    bad = LocationCreate(name="X", timezone="Mars/Olympus_Mons", email="not-an-email")
    with pytest.raises(Permanent) as caught:
        await client.create_location(bad, idempotency_key=unique("k"))
    assert caught.value.status == 422
    assert "timezone" in str(caught.value) and "email" in str(caught.value)


async def test_upsert_by_external_id_creates_then_updates(sandboxes: Sandboxes, client: SnapshotsClient
                                                          ) -> None:
    external = unique("gumroad:buyer")
    key = unique("evt_upsert") + ":step_0"
    first = await client.upsert_location_by_external_id(
        LocationCreate(name="First name", timezone="UTC", external_id=external), idempotency_key=key)
    assert first.created
    second_key = unique("evt_upsert") + ":step_0"
    second = await client.upsert_location_by_external_id(
        LocationCreate(name="Second name", timezone="Asia/Tokyo", external_id=external),
        idempotency_key=second_key,
    )
    assert not second.created
    assert second.location.location_id == first.location.location_id
    assert second.location.name == "Second name" and second.location.timezone == "Asia/Tokyo"
    # The 409 turned into an update of the existing id, under a key derived from the caller's.
    posts = sandboxes.snapshots.requests(method="POST", path="/locations")
    assert [e.status for e in posts if e.idempotency_key == second_key] == [409]
    puts = sandboxes.snapshots.requests(method="PUT", path=f"/locations/{first.location.location_id}")
    assert [(e.status, e.idempotency_key) for e in puts] == [(200, f"{second_key}:update")]
    with pytest.raises(InvalidInput, match="external_id"):
        await client.upsert_location_by_external_id(LocationCreate(name="n", timezone="UTC"),
                                                    idempotency_key=unique("k"))


async def test_a_duplicate_external_id_on_create_is_a_conflict_naming_the_location(
    client: SnapshotsClient,
) -> None:
    external = unique("dup")
    made = await client.create_location(LocationCreate(name="A", timezone="UTC", external_id=external),
                                        idempotency_key=unique("k"))
    with pytest.raises(Conflict) as caught:
        await client.create_location(LocationCreate(name="B", timezone="UTC", external_id=external),
                                     idempotency_key=unique("k"))
    assert caught.value.existing_id == made.location_id and caught.value.status == 409


async def test_an_idempotency_key_replay_is_one_write(sandboxes: Sandboxes, client: SnapshotsClient) -> None:
    key = unique("evt_42") + ":step_0"
    wanted = LocationCreate(name="Replay Studio", timezone="UTC", external_id=unique("replay"))
    first = await client.create_location(wanted, idempotency_key=key)
    again = await client.create_location(wanted, idempotency_key=key)
    assert again == first
    entries = [e for e in sandboxes.snapshots.requests(method="POST", path="/locations")
               if e.idempotency_key == key]
    assert [e.replayed for e in entries] == [False, True]
    assert sandboxes.snapshots.writes_to(first.location_id) == 1
    # The same key with another body is refused, not applied.
    with pytest.raises(Permanent, match="different request") as caught:
        await client.create_location(LocationCreate(name="Other", timezone="UTC"), idempotency_key=key)
    assert caught.value.status == 422


async def test_writes_refuse_a_bad_idempotency_key(client: SnapshotsClient) -> None:
    location = LocationCreate(name="n", timezone="UTC")
    for bad in ("", "x" * 256, "naïve"):
        with pytest.raises(InvalidInput, match="idempotency_key"):
            await client.create_location(location, idempotency_key=bad)


# ---- events ---------------------------------------------------------------------------------------


async def test_create_event_and_its_replay(sandboxes: Sandboxes, client: SnapshotsClient) -> None:
    event_id = unique("evt_sale")
    first = await client.create_event(event_input(event_id), idempotency_key=f"{event_id}:step_0")
    assert not first.replayed and first.event.event_id == event_id
    assert first.event.data["product"] == "Zoë's course"
    # The same event under a new key: the API recognises the event_id and answers with the stored copy.
    again = await client.create_event(event_input(event_id), idempotency_key=f"{event_id}:step_0:retry")
    assert again.replayed and again.event == first.event
    entries = sandboxes.snapshots.requests(method="POST", path="/events", entity=event_id)
    assert [(e.status, e.replayed) for e in entries] == [(201, False), (200, True)]
    with pytest.raises(Conflict) as caught:
        await client.create_event(event_input(event_id, amount_cents=1), idempotency_key=f"{event_id}:other")
    assert caught.value.existing_id == event_id


async def test_create_events_batch(sandboxes: Sandboxes, client: SnapshotsClient) -> None:
    known = unique("evt_b")
    await client.create_event(event_input(known), idempotency_key=f"{known}:single")
    fresh = unique("evt_b")
    foreign = EventInput(event_id=unique("evt_b"), type="refund", timestamp=datetime.now(UTC),
                         location_id="not-a-location")
    before = len(sandboxes.snapshots.requests(path="/events/batch"))
    result = await client.create_events_batch([event_input(fresh), event_input(known), foreign],
                                              idempotency_key=f"{fresh}:batch")
    assert [r.status for r in result.results] == [
        BatchItemStatus.CREATED, BatchItemStatus.DUPLICATE, BatchItemStatus.ERROR,
    ]
    assert result.errors[0].error is not None and "not-a-location" in result.errors[0].error
    assert len(sandboxes.snapshots.requests(path="/events/batch")) == before + 1
    full = [event_input(f"{fresh}-{n:03d}") for n in range(MAX_BATCH_EVENTS)]
    done = await client.create_events_batch(full, idempotency_key=f"{fresh}:full")
    assert len(done.results) == MAX_BATCH_EVENTS
    with pytest.raises(InvalidInput, match="at most 100"):
        await client.create_events_batch([*full, event_input(f"{fresh}-x")], idempotency_key=f"{fresh}:over")
    with pytest.raises(InvalidInput):
        await client.create_events_batch([], idempotency_key=f"{fresh}:empty")
    assert len(sandboxes.snapshots.requests(path="/events/batch")) == before + 2  # the refused never left


async def test_list_and_iter_events(client: SnapshotsClient) -> None:
    customer = unique("cus")
    ids = [unique("evt_l") for _ in range(5)]
    for event_id in ids:
        event = EventInput(event_id=event_id, type="signup", timestamp=datetime.now(UTC),
                           customer_id=customer)
        await client.create_event(event, idempotency_key=f"{event_id}:0")
    page = await client.list_events(customer_id=customer, limit=2)
    assert page.total == 5 and len(page.items) == 2 and page.next_cursor is not None
    walked = [e.event_id async for e in client.iter_events(customer_id=customer, page_size=2)]
    assert walked == sorted(ids)
    typed = await client.list_events(type="refund", limit=100)
    assert all(e.type == "refund" for e in typed.items)


# ---- customers ------------------------------------------------------------------------------------


async def test_upsert_get_and_list_customers(client: SnapshotsClient) -> None:
    customer_id = unique("cus")
    email = f"{customer_id}@example.com"
    made = await client.upsert_customer(
        customer_id, CustomerChanges(email=email, name="Søren Kierkegaard", plan="pro", tags=("vip", "new")),
        idempotency_key=f"{customer_id}:0",
    )
    assert made.created and made.customer.tags == ("vip", "new")
    changed = await client.upsert_customer(customer_id, CustomerChanges(tags=("loyal",)),
                                           idempotency_key=f"{customer_id}:1")
    assert not changed.created and changed.customer.tags == ("loyal",)  # tags replace
    assert changed.customer.name == "Søren Kierkegaard"
    assert await client.get_customer(customer_id) == changed.customer
    found = await client.list_customers(email=email.upper())
    assert [c.customer_id for c in found.items] == [customer_id]
    everyone = [c async for c in client.iter_customers(page_size=2)]
    assert customer_id in {c.customer_id for c in everyone}
    assert len(everyone) == len({c.customer_id for c in everyone})
    with pytest.raises(NotFound):
        await client.get_customer(unique("nobody"))


async def test_a_customer_id_with_reserved_characters_round_trips(client: SnapshotsClient) -> None:
    customer_id = unique("gumroad/buyer?x=1&y#z")
    made = await client.upsert_customer(customer_id, CustomerChanges(plan="basic"),
                                        idempotency_key=unique("k"))
    assert made.customer.customer_id == customer_id
    assert (await client.get_customer(customer_id)).plan == "basic"


# ---- auth, scopes, access -------------------------------------------------------------------------


async def test_a_missing_scope_names_the_scope(
    sandboxes: Sandboxes, client_for: Callable[[SandboxKey | str], SnapshotsClient]
) -> None:
    no_location_read = client_for(sandboxes.snapshots.create_key(set(ALL_SCOPES) - {"saas/location.read"}))
    with pytest.raises(ScopeMissing) as caught:
        await no_location_read.whoami()
    assert caught.value.scopes == ("saas/location.read",) and "saas/location.read" in str(caught.value)
    read_only = client_for(sandboxes.snapshots.create_key({"saas/location.read", "events.readonly"}))
    with pytest.raises(ScopeMissing, match=r"'events\.write'"):
        await read_only.create_event(event_input(unique("evt")), idempotency_key=unique("k"))
    with pytest.raises(ScopeMissing, match=r"'customers\.readonly'"):
        await read_only.get_customer("cus_0001")


async def test_an_unknown_key_is_refused_without_echoing_it(
    client_for: Callable[[SandboxKey | str], SnapshotsClient]
) -> None:
    canary = "pit-canary-0000-1111-2222-333344445555"
    with pytest.raises(AuthFailed) as caught:
        await client_for(canary).list_locations()
    error = caught.value
    assert canary not in f"{error} {error.excerpt} {error!r}" and error.status == 401


async def test_a_key_bound_to_another_location_gets_a_permanent_403(
    sandboxes: Sandboxes, client_for: Callable[[SandboxKey | str], SnapshotsClient], client: SnapshotsClient
) -> None:
    first, second = (await client.list_locations(limit=2)).items
    bound = client_for(sandboxes.snapshots.create_key(ALL_SCOPES, location_id=first.location_id))
    assert (await bound.get_location(first.location_id)).location_id == first.location_id
    with pytest.raises(Permanent, match="no access to this location") as caught:
        await bound.get_location(second.location_id)
    assert type(caught.value) is Permanent and caught.value.status == 403
    # Creating a location is a company-level act: a bound key is valid but of the wrong kind.
    with pytest.raises(Permanent, match="bound to one location") as refused:
        await bound.create_location(LocationCreate(name="n", timezone="UTC"), idempotency_key=unique("k"))
    assert type(refused.value) is Permanent and refused.value.status == 401


async def test_whoami_probes_with_one_cheap_read(sandboxes: Sandboxes, client: SnapshotsClient) -> None:
    probe = await client.whoami()
    assert probe.location_count is not None and probe.location_count >= 8
    assert probe.sample_location is not None and probe.rate_limit is not None
    # The sandbox's location objects carry no company id (the contract names none), so none is reported.
    assert probe.company_id in (None, sandboxes.snapshots.company_id)


# ---- rate limits and faults -----------------------------------------------------------------------


async def test_rate_limit_headers_are_kept_and_a_429_is_retryable(
    sandboxes: Sandboxes, client_for: Callable[[SandboxKey | str], SnapshotsClient]
) -> None:
    # Two requests per (scaled) 10 000 s: the third inside the window is refused.
    tight = client_for(sandboxes.snapshots.create_key(ALL_SCOPES, burst_limit=2, burst_window_ms=10_000_000))
    await tight.list_locations(limit=1)
    assert tight.rate_limit is not None and tight.rate_limit.limit == 2 and tight.rate_limit.remaining == 1
    await tight.list_customers(limit=1)
    with pytest.raises(Retryable) as caught:
        await tight.list_events(limit=1)
    assert caught.value.status == 429 and caught.value.operation == "events.list"
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 10_000
    assert tight.rate_limit.remaining == 0 and tight.rate_limit.daily_limit == 200_000


async def test_an_injected_server_error_is_retryable(sandboxes: Sandboxes, client: SnapshotsClient) -> None:
    sandboxes.snapshots.set_faults(error_rate=1.0, error_statuses=(503,))
    try:
        with pytest.raises(Retryable) as caught:
            await client.get_customer("cus_0001")
    finally:
        sandboxes.snapshots.clear_faults()
    assert caught.value.status == 503


async def test_a_write_whose_answer_is_lost_is_applied_once_after_a_retry(
    sandboxes: Sandboxes, client: SnapshotsClient
) -> None:
    customer_id = unique("cus_reset")
    changes = CustomerChanges(email=f"{customer_id}@example.com", plan="pro")
    key = f"evt_9:{customer_id}:step_0"
    sandboxes.snapshots.lose_next_response("PUT", f"/customers/{customer_id}")
    try:
        with pytest.raises(Retryable):
            await client.upsert_customer(customer_id, changes, idempotency_key=key)
    finally:
        sandboxes.snapshots.clear_faults()
    retried = await client.upsert_customer(customer_id, changes, idempotency_key=key)
    assert retried.created  # the replayed first answer: this call did create the customer
    first, second = sandboxes.snapshots.requests(path=f"/customers/{customer_id}")
    assert first.idempotency_key == second.idempotency_key == key
    assert not first.replayed and second.replayed
    assert sandboxes.snapshots.writes_to(customer_id) == 1


async def test_a_lost_create_answer_is_recovered_by_the_retry(sandboxes: Sandboxes, client: SnapshotsClient
                                                              ) -> None:
    key = unique("evt_reset") + ":step_0"
    wanted = LocationCreate(name="Reset Studio", timezone="UTC", external_id=unique("reset"))
    sandboxes.snapshots.lose_next_response("POST", "/locations")
    try:
        with pytest.raises(Retryable):
            await client.create_location(wanted, idempotency_key=key)
    finally:
        sandboxes.snapshots.clear_faults()
    made = await client.create_location(wanted, idempotency_key=key)
    assert sandboxes.snapshots.writes_to(made.location_id) == 1
    page = await client.list_locations(external_id=wanted.external_id)
    assert [loc.location_id for loc in page.items] == [made.location_id]
