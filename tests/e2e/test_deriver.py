"""The deriver against a real store (SQLite and PostgreSQL) and a real Gumroad sandbox: webhooks the sandbox
posted are stored as the receiver stores them, then verified by fetching, derived, planned and queued."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from snapbridge.connectors.gumroad import GumroadClient, GumroadConnectionOptions, ResourceName
from snapbridge.http import create_client
from snapbridge.runtime import (
    PLAN_KEY,
    Deriver,
    DeriverConfig,
    GumroadHook,
    GumroadLink,
    gumroad_inbound,
    job_plan,
)
from snapbridge.runtime.deriver import NOT_FOUND_GRACE
from snapbridge.sandbox.gumroad import GumroadSandbox
from snapbridge.sandbox.server import ServerThread
from snapbridge.security import Secret
from snapbridge.store import (
    AttemptRecord,
    ConnectionRecord,
    ConnectionStore,
    EventSource,
    EventStatus,
    InboundEvent,
    NewInboundEvent,
    RunSummary,
    Store,
    Tx,
)
from snapbridge.workflows import resolve_step, template_names, template_text

CONNECTION = "gumroad"
HOOK_SECRET = "s" * 40


@dataclass
class Capture:
    """A webhook endpoint on loopback that keeps every body it is sent."""

    bodies: list[tuple[bytes, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.bodies.append((body, request.headers.get("content-type", "")))
        return PlainTextResponse("ok")

    def take(self) -> list[tuple[bytes, str]]:
        with self.lock:
            taken, self.bodies = self.bodies, []
        return taken


@dataclass
class Gumroad:
    """A private Gumroad sandbox whose every webhook goes to a capture endpoint."""

    sandbox: GumroadSandbox
    capture: Capture

    @property
    def hook(self) -> GumroadHook:
        return GumroadHook(Secret(HOOK_SECRET), CONNECTION, self.sandbox.seller_id)

    def emit(self, scenario: str, **params: Any) -> tuple[dict[str, Any], list[NewInboundEvent]]:
        """Run a scenario and return the inbound rows its webhooks make, as the receiver makes them."""
        result = self.sandbox.emit(scenario, params)
        assert self.sandbox.wait_idle(10)
        rows = [gumroad_inbound(self.hook, body, kind, now=datetime.now(UTC), max_body_bytes=1_000_000)[1]
                for body, kind in self.capture.take()]
        return result, rows


@pytest.fixture(scope="module")
def gumroad() -> Iterator[Gumroad]:
    sandbox = GumroadSandbox(seed=11, time_factor=0.001)
    server = ServerThread(sandbox.app).start()
    sandbox.base_url = server.base_url
    capture = Capture()
    hook_server = ServerThread(Starlette(routes=[Route("/hook", capture.hook, methods=["POST"])])).start()
    token = {"Authorization": f"Bearer {sandbox.access_token}"}
    with httpx.Client(base_url=server.base_url, headers=token, timeout=10) as http:
        for name in ResourceName:
            answer = http.put("/v2/resource_subscriptions",
                              data={"resource_name": name.value, "post_url": f"{hook_server.base_url}/hook"})
            assert answer.json()["success"] is True
    try:
        yield Gumroad(sandbox, capture)
    finally:
        hook_server.stop()
        server.stop()


@pytest.fixture
async def client(gumroad: Gumroad) -> AsyncIterator[GumroadClient]:
    async with create_client(gumroad.sandbox.base_url, allowed_hosts=("127.0.0.1",)) as http:
        yield GumroadClient(http, Secret(gumroad.sandbox.access_token), base_url=gumroad.sandbox.base_url)


@dataclass
class Access:
    """GumroadAccess over one client (the service uses ConnectionClients over the stored connections)."""

    client: GumroadClient | None
    verify: bool = True

    async def gumroad(self, connection: str) -> GumroadLink | None:
        if self.client is None:
            return None
        return GumroadLink(self.client, GumroadConnectionOptions(verify_by_fetch=self.verify))


def install_templates(store: Store) -> None:
    for name in template_names():
        store.save_workflow(name, template_text(name))


def event_row(store: Store, event_id: int) -> InboundEvent:
    found = store.get_event(event_id)
    assert found is not None
    return found


def runs_by_workflow(store: Store, since_id: int = 0) -> dict[str, RunSummary]:
    return {r.workflow_name: r for r in store.runs(limit=500) if r.id > since_id}


def last_run_id(store: Store) -> int:
    return max((r.id for r in store.runs(limit=1)), default=0)


def jobs_total(store: Store) -> int:
    counts = store.counts()
    return sum(v for k, v in counts.items() if k != "events_received")


async def test_forged_ping_for_an_unknown_sale_is_rejected(store: Store, gumroad: Gumroad,
                                                           client: GumroadClient) -> None:
    install_templates(store)
    _, rows = gumroad.emit("first_purchase")
    real = rows[0]
    forged_payload = {**real.payload, "sale_id": "FoRgEd0000000000000000=="}
    forged = NewInboundEvent(source=EventSource.GUMROAD, connection=CONNECTION, dedupe_key="gumroad:sale:forged",
                             kind="sale", payload=forged_payload, received_at=datetime.now(UTC))
    [stored] = store.insert_events([forged])
    # Moments after the ping, a sale the API does not know may be a replica behind: asked again later.
    early = await Deriver(store, Access(client)).run_once()
    assert (early.rejected, early.waiting) == (0, 1) and event_row(store, stored.id).status is EventStatus.RECEIVED
    later = datetime.now(UTC) + NOT_FOUND_GRACE
    report = await Deriver(store, Access(client), clock=lambda: later).run_once()
    row = event_row(store, stored.id)
    assert row.status is EventStatus.REJECTED and report.rejected == 1 and report.jobs == 0
    assert "verify-by-fetch" in row.note and "FoRgEd" in row.note
    assert store.runs() == [] and jobs_total(store) == 0
    assert store.get_profile(CONNECTION, str(real.payload["email"])) is None


async def test_without_verification_the_same_ping_is_derived(store: Store, gumroad: Gumroad) -> None:
    _, rows = gumroad.emit("first_purchase")
    forged = NewInboundEvent(source=EventSource.GUMROAD, connection=CONNECTION, dedupe_key="gumroad:sale:forged-2",
                             kind="sale", payload={**rows[0].payload, "sale_id": "NoSuChSaLe"},
                             received_at=datetime.now(UTC))
    [stored] = store.insert_events([forged])
    async with create_client("http://127.0.0.1:9", allowed_hosts=("127.0.0.1",), timeout=2) as dead:
        unused = GumroadClient(dead, Secret("x" * 20), base_url="http://127.0.0.1:9")  # a fetch would fail
        report = await Deriver(store, Access(unused, verify=False)).run_once()
    assert report.derived == 1 and event_row(store, stored.id).status is EventStatus.DERIVED


async def test_without_a_connection_gumroad_events_wait(store: Store, gumroad: Gumroad) -> None:
    _, rows = gumroad.emit("first_purchase")
    [stored] = store.insert_events(rows)
    report = await Deriver(store, Access(None)).run_once()
    assert report.waiting == 1 and event_row(store, stored.id).status is EventStatus.RECEIVED


async def test_first_purchase_with_the_starter_templates(store: Store, gumroad: Gumroad,
                                                         client: GumroadClient) -> None:
    install_templates(store)
    result, rows = gumroad.emit("first_purchase", full_name="Grace Hopper")
    [stored] = store.insert_events(rows)
    woken: list[int] = []
    report = await Deriver(store, Access(client), on_jobs=lambda: woken.append(1)).run_once()
    assert (report.derived, report.runs, report.jobs) == (1, 2, 7) and woken == [1]
    row = event_row(store, stored.id)
    assert row.status is EventStatus.DERIVED and row.note.startswith("customer.created, purchase")
    runs = runs_by_workflow(store)
    assert {name: run.steps for name, run in runs.items()} == {"new-customer-location": 5, "purchase-event": 2}
    assert all(run.inbound_event_id == stored.id and run.customer_key == result["email"] for run in runs.values())
    assert runs["new-customer-location"].event_type == "customer.created"
    assert runs["new-customer-location"].id < runs["purchase-event"].id  # queued in the order derived
    profile = store.get_profile(CONNECTION, result["email"])
    assert profile is not None and profile.name == "Grace Hopper"
    assert (profile.purchases, profile.lifetime_value_cents) == (1, result["price"])
    detail = store.run_detail(runs["new-customer-location"].id)
    assert detail is not None
    keys = {step.ordering_key for step in detail.steps}
    assert keys == {f"customer:{result['email']}"}
    find, create, *_ = detail.steps
    assert find.input == {"external_id": result["email"], "limit": 1} and PLAN_KEY not in find.deferred
    assert PLAN_KEY in create.deferred  # its condition reads the find step's output


async def test_a_planned_condition_reaches_the_worker(store: Store, gumroad: Gumroad, client: GumroadClient) -> None:
    """The worker's side of the contract: a claimed job gives back its plan, which resolves with step outputs."""
    install_templates(store)
    store.set_workflow_enabled("purchase-event", enabled=False)
    result, rows = gumroad.emit("first_purchase")
    store.insert_events(rows)
    await Deriver(store, Access(client)).run_once()
    [find] = store.claim("w1", limit=10, lease_seconds=30)
    assert find.step_id == "find" and job_plan(find) is None
    attempt = AttemptRecord(started_at=datetime.now(UTC), duration_ms=1.0)
    assert store.complete(find, output=[], attempt=attempt)
    [create] = store.claim("w1", limit=10, lease_seconds=30)
    plan = job_plan(create)
    assert plan is not None and plan.step.step_id == "create" and plan.email == result["email"]
    assert plan.profile_connection == CONNECTION and plan.event.type == "customer.created"
    resolved = resolve_step(plan.step, plan.event, None, create.step_outputs)
    assert resolved.run and resolved.input["external_id"] == result["email"]
    assert not resolve_step(plan.step, plan.event, None, {"find": [{"location_id": "loc-1"}]}).run


async def test_deriving_the_same_event_twice_adds_no_jobs(store: Store, gumroad: Gumroad,
                                                          client: GumroadClient) -> None:
    install_templates(store)
    result, rows = gumroad.emit("first_purchase")
    [stored] = store.insert_events(rows)
    deriver = Deriver(store, Access(client))
    await deriver.run_once()
    runs, jobs = len(store.runs(limit=100)), jobs_total(store)
    with store.transaction() as tx:  # as if a second deriver had picked the same event up
        tx.mark_event(stored.id, EventStatus.RECEIVED)
    again = await deriver.run_once()
    assert again.derived == 1 and again.jobs == 0
    assert len(store.runs(limit=100)) == runs and jobs_total(store) == jobs == 7
    profile = store.get_profile(CONNECTION, result["email"])
    assert profile is not None and (profile.purchases, profile.lifetime_value_cents) == (1, result["price"])


async def test_a_redelivered_webhook_is_one_event(store: Store, gumroad: Gumroad, client: GumroadClient) -> None:
    install_templates(store)
    _, rows = gumroad.emit("first_purchase")
    first = store.insert_events(rows)
    second = store.insert_events(rows)
    assert [r.duplicate for r in second] == [True] and second[0].id == first[0].id
    report = await Deriver(store, Access(client)).run_once()
    assert report.derived == 1 and report.jobs == 7


# What each scenario makes with the five starter templates installed: {workflow: steps}.
SCENARIOS: list[tuple[str, dict[str, Any], list[str], dict[str, int]]] = [
    ("repeat purchase", {}, ["derived"], {"purchase-event": 2}),
    ("refund", {}, ["derived"], {"churn": 3}),
    ("partial refund", {"amount_cents": 1}, ["derived"], {"churn": 1}),
    ("dispute", {}, ["derived"], {}),
    ("test purchase", {}, ["ignored"], {}),
]


@pytest.mark.parametrize(("name", "params", "statuses", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
async def test_scenarios_with_the_starter_templates(store: Store, gumroad: Gumroad, client: GumroadClient,
                                                    name: str, params: dict[str, Any], statuses: list[str],
                                                    expected: dict[str, int]) -> None:
    install_templates(store)
    deriver = Deriver(store, Access(client))
    bought, rows = gumroad.emit("first_purchase", product_id="brushes")  # a paid product: refundable
    store.insert_events(rows)
    await deriver.run_once()
    before = last_run_id(store)
    scenario = {"repeat purchase": "repeat_purchase", "partial refund": "refund", "test purchase": "test_purchase"}
    extra = {"email": bought["email"]} if name == "repeat purchase" else (
        {} if name == "test purchase" else {"sale_id": bought["sale_id"]})
    _, rows = gumroad.emit(scenario.get(name, name), **extra, **params)
    stored = store.insert_events(rows)
    await deriver.run_once()
    assert [event_row(store, r.id).status.value for r in stored] == statuses
    assert {w: r.steps for w, r in runs_by_workflow(store, before).items()} == expected


async def test_membership_lifecycle_with_the_starter_templates(store: Store, gumroad: Gumroad,
                                                               client: GumroadClient) -> None:
    install_templates(store)
    deriver = Deriver(store, Access(client))

    async def step(scenario: str, **params: Any) -> tuple[dict[str, Any], dict[str, int]]:
        before = last_run_id(store)
        result, rows = gumroad.emit(scenario, **params)
        store.insert_events(rows)
        report = await deriver.run_once()
        assert report.rejected == 0 and report.waiting == 0
        return result, {w: r.steps for w, r in runs_by_workflow(store, before).items()}

    started, made = await step("subscription_start", tier="Basic")
    assert made == {"new-customer-location": 5, "purchase-event": 2}
    sub = started["subscription_id"]
    profile = store.get_profile(CONNECTION, started["email"])
    assert profile is not None and profile.plan == "Basic"
    _, made = await step("plan_change", subscription_id=sub, tier="Pro")
    assert made == {"customer-sync": 1}  # subscription.updated + customer.updated (plan)
    profile = store.get_profile(CONNECTION, started["email"])
    assert profile is not None and profile.plan == "Pro"
    _, made = await step("renewal", subscription_id=sub)
    assert made == {"purchase-event": 2}
    _, made = await step("cancellation", subscription_id=sub)
    assert made == {"churn": 3}
    _, made = await step("subscription_end", subscription_id=sub)
    assert made == {"churn": 3}


async def test_location_update_enriches_and_runs_location_enrich(store: Store, gumroad: Gumroad,
                                                                 client: GumroadClient) -> None:
    install_templates(store)
    deriver = Deriver(store, Access(client), config=DeriverConfig(profile_connection=CONNECTION))
    bought, rows = gumroad.emit("first_purchase")
    store.insert_events(rows)
    await deriver.run_once()
    before = last_run_id(store)
    body = {"type": "LocationUpdate", "webhookId": "wh-loc-1", "timestamp": "2030-01-01T00:00:00Z",
            "companyId": "co-1", "location_id": "loc-42", "name": "Shop", "timezone": "Europe/Paris",
            "external_id": bought["email"], "tier": "gold", "updated_at": "2030-01-01T00:00:00Z"}
    [stored] = store.insert_events([NewInboundEvent(
        source=EventSource.SNAPSHOTS, connection="snapshots", dedupe_key="snapshots:webhook:wh-loc-1",
        kind="LocationUpdate", payload=body, received_at=datetime.now(UTC))])
    report = await deriver.run_once()
    assert report.derived == 1 and event_row(store, stored.id).status is EventStatus.DERIVED
    runs = runs_by_workflow(store, before)
    assert {w: r.steps for w, r in runs.items()} == {"location-enrich": 2}
    detail = store.run_detail(runs["location-enrich"].id)
    assert detail is not None and {s.connection for s in detail.steps} == {CONNECTION}  # local profile steps
    profile = store.get_profile(CONNECTION, bought["email"])
    assert profile is not None and (profile.location_id, profile.tier) == ("loc-42", "gold")


async def test_unreachable_gumroad_leaves_events_pending_in_order(store: Store, gumroad: Gumroad,
                                                                  client: GumroadClient) -> None:
    install_templates(store)
    _, first = gumroad.emit("first_purchase")
    _, second = gumroad.emit("first_purchase")
    stored = store.insert_events(first + second)
    async with create_client("http://127.0.0.1:9", allowed_hosts=("127.0.0.1",), timeout=2) as dead:
        unreachable = GumroadClient(dead, Secret("x" * 20), base_url="http://127.0.0.1:9")
        report = await Deriver(store, Access(unreachable)).run_once()
    assert (report.waiting, report.derived, report.jobs) == (2, 0, 0)
    assert [event_row(store, r.id).status for r in stored] == [EventStatus.RECEIVED] * 2
    healed = await Deriver(store, Access(client)).run_once()
    assert healed.derived == 2 and healed.jobs == 14


async def test_an_unreadable_stored_event_is_rejected_with_the_reason(store: Store, client: GumroadClient) -> None:
    [stored] = store.insert_events([NewInboundEvent(
        source=EventSource.GUMROAD, connection=CONNECTION, dedupe_key="gumroad:sale:broken", kind="sale",
        payload={"resource_name": "sale"}, received_at=datetime.now(UTC))])
    report = await Deriver(store, Access(client)).run_once()
    row = event_row(store, stored.id)
    assert report.rejected == 1 and row.status is EventStatus.REJECTED and "sale_id" in row.note


VIP_TAG = """
name: vip-tag
trigger:
  app: gumroad
  event: customer.segment_changed
  filter: "{{ 'vip' in event.entered }}"
steps:
  - id: tag
    action: snapbridge.profiles.update
    input:
      email: "{{ event.customer.email }}"
      add_tags: [vip]
"""


async def test_a_segment_change_triggers_workflows(store: Store, gumroad: Gumroad, client: GumroadClient) -> None:
    store.save_workflow("vip-tag", VIP_TAG)
    deriver = Deriver(store, Access(client))
    cheap, rows = gumroad.emit("first_purchase", product_id="brushes")  # $12 or so
    store.insert_events(rows)
    await deriver.run_once()
    assert runs_by_workflow(store) == {}  # paying, active…, but not vip
    # A big order moves the customer into "vip" ($500 or more): the derived segment change runs the workflow.
    _, rows = gumroad.emit("repeat_purchase", email=cheap["email"], product_id="brushes", quantity=50)
    [stored] = store.insert_events(rows)
    await deriver.run_once()
    assert "customer.segment_changed" in event_row(store, stored.id).note
    run = runs_by_workflow(store)["vip-tag"]
    assert run.inbound_event_id == stored.id and run.event_type == "customer.segment_changed"
    detail = store.run_detail(run.id)
    assert detail is not None
    assert [(s.action, s.connection, s.input) for s in detail.steps] == [
        ("snapbridge.profiles.update", CONNECTION, {"email": cheap["email"], "add_tags": ["vip"]})]


async def test_a_segment_change_made_by_a_step_queues_its_workflows(store: Store, client: GumroadClient) -> None:
    """The worker's hook: a segments.refresh step that moved segments plans them in the step's transaction."""
    from snapbridge.store import ClaimedJob
    from snapbridge.workflows import App, Customer, SegmentChangedEvent

    store.save_workflow("vip-tag", VIP_TAG)
    deriver = Deriver(store, Access(client))
    now = datetime.now(UTC)
    job = ClaimedJob(
        id=1, run_id=1, workflow_name="location-enrich", inbound_event_id=None, step_index=1, step_id="segments",
        action="snapbridge.segments.refresh", connection=CONNECTION, ordering_key="customer:ada@example.com",
        idempotency_key="k", input={"email": "ada@example.com"}, deferred={}, step_outputs={}, attempt=1,
        lease_token=1, lease_expires_at=now, leased_by="w",
    )
    event = SegmentChangedEvent(
        id="job-1:customer.segment_changed", inbound_id="job-1", type="customer.segment_changed", app=App.GUMROAD,
        occurred_at=now, customer=Customer(email="ada@example.com"), segments=["vip"], entered=["vip"], left=[])
    with store.transaction() as tx:
        deriver.on_segment_changed(tx, event, job)
    [run] = store.runs()
    assert run.workflow_name == "vip-tag" and run.inbound_event_id is None and run.steps == 1
    detail = store.run_detail(run.id)
    assert detail is not None and detail.steps[0].input == {"email": "ada@example.com", "add_tags": ["vip"]}


async def test_run_forever_derives_when_woken(store: Store, gumroad: Gumroad, client: GumroadClient) -> None:
    import asyncio

    install_templates(store)
    deriver = Deriver(store, Access(client), config=DeriverConfig(idle_seconds=30))
    stop = asyncio.Event()
    task = asyncio.create_task(deriver.run_forever(stop))
    await asyncio.sleep(0)  # let the loop start and find nothing
    _, rows = gumroad.emit("first_purchase")
    [stored] = store.insert_events(rows)
    deriver.wake()  # without it the loop would sleep for idle_seconds
    deadline = asyncio.get_running_loop().time() + 10
    while event_row(store, stored.id).status is EventStatus.RECEIVED:
        assert asyncio.get_running_loop().time() < deadline, "not derived within 10 s of the wake-up"
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert event_row(store, stored.id).status is EventStatus.DERIVED


async def test_connection_clients_verify_with_the_vault_credential(store: Store, migrated: Engine,
                                                                    gumroad: Gumroad, tmp_path: Any) -> None:
    from snapbridge.runtime import ConnectionClients, Connections
    from snapbridge.security import Vault
    from snapbridge.store import ConnectionRecord, ConnectionStore

    vault = Vault.open(tmp_path / "secret.key")
    records = ConnectionStore(migrated)
    records.save(ConnectionRecord(
        name=CONNECTION, app="gumroad", base_url=gumroad.sandbox.base_url,
        credential=vault.encrypt(Secret(gumroad.sandbox.access_token), bound_to=f"{CONNECTION}:credential"),
        options={"verify_by_fetch": True}))
    pool = Connections(records, vault, allowed_hosts=("127.0.0.1",))
    access = ConnectionClients(pool)
    try:
        link = await access.gumroad(CONNECTION)
        assert link is not None and link.options.verify_by_fetch
        assert await access.gumroad("nobody") is None and await access.snapshots(CONNECTION) is None
        _, rows = gumroad.emit("first_purchase")
        forged = NewInboundEvent(source=EventSource.GUMROAD, connection=CONNECTION, dedupe_key="gumroad:sale:x",
                                 kind="sale", payload={**rows[0].payload, "sale_id": "NoSuChSaLe"},
                                 received_at=datetime.now(UTC) - NOT_FOUND_GRACE)  # past the grace
        real, fake = store.insert_events([*rows, forged])
        report = await Deriver(store, access).run_once()
        assert (report.derived, report.rejected) == (1, 1)
        assert event_row(store, real.id).status is EventStatus.DERIVED
        assert event_row(store, fake.id).status is EventStatus.REJECTED
    finally:
        await pool.aclose()


class RacingStore(Store):
    """A store where something writes just before the deriver's transaction: after it planned, before it writes."""

    race: Callable[[Store], None] | None = None

    @contextmanager
    def transaction(self, *, relaxed: bool = False) -> Iterator[Tx]:
        race, self.race = self.race, None
        if race is not None:
            race(self)
        with super().transaction(relaxed=relaxed) as tx:
            yield tx


async def test_a_profile_changed_while_planning_is_derived_again(migrated: Engine, gumroad: Gumroad,
                                                                 client: GumroadClient) -> None:
    store = RacingStore(migrated)
    try:
        install_templates(store)
        deriver = Deriver(store, Access(client))
        bought, rows = gumroad.emit("first_purchase")
        store.insert_events(rows)
        await deriver.run_once()
        _, rows = gumroad.emit("repeat_purchase", email=bought["email"])
        store.insert_events(rows)

        def tag_customer(st: Store) -> None:  # what a workflow's profiles.update step does meanwhile
            with st.transaction() as tx:
                found = tx.get_profile(CONNECTION, bought["email"])
                assert found is not None
                tx.save_profile(replace(found, tags=("from-a-step",), plan="Gold"))

        store.race = tag_customer
        report = await deriver.run_once()
        assert report.derived == 1 and store.race is None
        profile = store.get_profile(CONNECTION, bought["email"])
        assert profile is not None
        assert profile.tags == ("from-a-step",) and profile.plan == "Gold"  # the step's change is kept
        assert profile.purchases == 2  # and the sale is counted
    finally:
        store.close()


async def test_events_run_only_their_workspaces_workflows_on_its_connections(
        engine: Engine, store: Store, gumroad: Gumroad, client: GumroadClient) -> None:
    """Team A (workspace 1) and team B (workspace 2) each have workflows and a Snapshots connection; B's Gumroad
    connection's sale runs B's enabled workflows only, sends to B's Snapshots connection, and its runs are B's.
    Without a Snapshots connection of its own, B's steps name none: never A's."""
    install_templates(store)  # team A: every starter, enabled
    store.save_workflow("purchase-event", template_text("purchase-event"), workspace=2)
    records = ConnectionStore(engine)
    teams = ((CONNECTION, "gumroad", 2), ("snapshots", "snapshots", 1), ("b-snapshots", "snapshots", 2))
    for name, app, space in teams:
        records.save(ConnectionRecord(name=name, app=app, base_url="http://127.0.0.1:9", credential="x",
                                      workspace_id=space))
    deriver = Deriver(store, Access(client))
    _, rows = gumroad.emit("first_purchase")
    store.insert_events(rows)
    report = await deriver.run_once()
    assert report.rejected == 0 and report.waiting == 0 and report.derived >= 1
    assert store.runs(workspace=1) == []
    (run,) = store.runs(workspace=2)
    assert run.workflow_name == "purchase-event"
    detail = store.run_detail(run.id, workspace=2)
    assert detail is not None and {s.connection for s in detail.steps} == {"b-snapshots"}
    assert store.run_detail(run.id, workspace=1) is None

    records.remove("b-snapshots")
    _, rows = gumroad.emit("first_purchase")
    store.insert_events(rows)
    await deriver.run_once()
    newest = store.runs(workspace=2)[0]
    detail = store.run_detail(newest.id)
    assert newest.id != run.id and detail is not None
    assert {s.connection for s in detail.steps} == {"snapshots (none connected)"}
