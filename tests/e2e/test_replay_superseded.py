"""Replaying a dead letter never puts a customer's data back in time. A dead letter is superseded when a later job
of its ordering key making the same call (higher id, same action, connection and workspace, another run and inbound
event) has succeeded, or is being delivered now; a call that adds a record (POST: an event) is never superseded.
Replays leave a superseded one out and say why, unless forced. On SQLite and PostgreSQL, through the store, the
Snapshots sandbox, the CLI, the API and the dashboard."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Literal

import httpx
import pytest
from sqlalchemy.engine import Engine
from test_api_support import serve_app, signed_in
from test_pipeline_support import fresh_database
from test_worker import Rig, settled, worker_rig
from test_worker_support import ALL_SCOPES, run_workers

from snapbridge.catalog import appending_actions
from snapbridge.connectors.snapshots import SnapshotsClient
from snapbridge.http import create_client
from snapbridge.sandbox import Sandboxes
from snapbridge.security import Secret
from snapbridge.store import (
    AttemptRecord,
    EventSource,
    JobStatus,
    NewInboundEvent,
    NewJob,
    NewRun,
    RunStatus,
    Store,
    migrate,
    open_engine,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
KEY = "customer:ada@example.com"
CONNECTION = "snap"


def _attempt(at: datetime) -> AttemptRecord:
    return AttemptRecord(started_at=at, duration_ms=3.0, http_status=200)


def _run(store: Store, key: str = KEY, *, steps: int = 1, connection: str = CONNECTION, workflow: str = "sync",
         event: int | None = None, workspace: int = 1, action: str = "snapshots.customers.upsert") -> list[int]:
    """A run of `steps` queued steps for ordering key `key`; its job ids in step order."""
    with store.transaction() as tx:
        run_id = tx.create_run(NewRun(workflow, event, "customer.updated", key, T0, workspace_id=workspace))
        made = tx.enqueue([NewJob(run_id, i, f"s{i}", action, connection, key,
                                  f"{workflow}:{run_id}:s{i}", {"name": f"n{i}"}) for i in range(steps)], now=T0)
    return [r.id for r in made]


def _end(store: Store, job_id: int, how: Literal["done", "dead"], at: datetime = T0) -> None:
    """Claim `job_id` (others claimed meanwhile go back untried) and end it."""
    target = None
    for job in store.claim("t", limit=100, lease_seconds=60, now=at):
        if job.id == job_id:
            target = job
        else:
            assert store.release(job, now=at)
    assert target is not None, f"job {job_id} is not the head of its key"
    if how == "done":
        assert store.complete(target, output={"ok": True}, attempt=_attempt(at), now=at)
    else:
        assert store.dead_letter(target, attempt=_attempt(at), reason="HTTP 403: scope customers.write", now=at)


def _event(store: Store, dedupe: str) -> int:
    (made,) = store.insert_events([NewInboundEvent(EventSource.GUMROAD, "gumroad", dedupe, "customer.updated",
                                                   {}, T0)])
    return made.id


def _status(store: Store, job_id: int) -> JobStatus:
    (run,) = [r for r in store.runs(limit=1000) if job_id in _job_ids(store, r.id)]
    detail = store.run_detail(run.id)
    assert detail is not None
    return next(s.status for s in detail.steps if s.job_id == job_id)


def _job_ids(store: Store, run_id: int) -> list[int]:
    detail = store.run_detail(run_id)
    assert detail is not None
    return [s.job_id for s in detail.steps]


def _dead_then_delivered(store: Store) -> tuple[int, int]:
    """A dies, then B (same customer, a later event) is delivered at T1: (A, B)."""
    (a,) = _run(store)
    _end(store, a, "dead")
    (b,) = _run(store)
    _end(store, b, "done", T1)
    return a, b


# ---- the rule, in the store --------------------------------------------------------------------------------------


def test_an_added_record_is_never_superseded_and_another_call_does_not_supersede(store: Store) -> None:
    (event_a,) = _run(store, action="snapshots.events.create")
    _end(store, event_a, "dead")
    (event_b,) = _run(store, action="snapshots.events.create")
    _end(store, event_b, "done", T1)
    (upsert,) = _run(store)
    _end(store, upsert, "dead", T1)
    (other,) = _run(store, action="snapshots.locations.update")
    _end(store, other, "done", T1)
    # A purchase event is its own fact: a later event of the customer does not make it stale.
    assert appending_actions() >= {"snapshots.events.create"}
    assert "snapshots.customers.upsert" not in appending_actions()
    assert store.supersessions([event_a, upsert], appending_actions()) == {}
    # Without the catalog's list, the same later event would have held the first back.
    assert set(store.supersessions([event_a])) == {event_a}
    outcome = store.replay(all_dead=True, now=T1, appends=appending_actions())
    assert outcome.queued == 2 and outcome.superseded == ()



def test_a_dead_letter_with_a_later_delivery_of_its_key_is_left_out_with_the_reason(store: Store) -> None:
    a, b = _dead_then_delivered(store)
    outcome = store.replay(job_ids=[a], now=T1)
    assert outcome.queued == 0
    (left_out,) = outcome.superseded
    assert (left_out.job_id, left_out.superseded_by, left_out.delivered_at, left_out.ordering_key) == (a, b, T1, KEY)
    assert left_out.reason == (f"superseded by job {b}, delivered at 2025-03-01 12:05:00 UTC, for the same ordering "
                               f"key {KEY}")
    assert _status(store, a) is JobStatus.DEAD
    assert store.runs(status=RunStatus.DEAD)[0].id == left_out.run_id  # the run stays dead
    assert store.supersessions([a]) == {a: left_out}


def test_force_queues_a_superseded_dead_letter(store: Store) -> None:
    a, _ = _dead_then_delivered(store)
    forced = store.replay(job_ids=[a], force=True, now=T1)
    assert (forced.queued, forced.superseded) == (1, ())
    assert _status(store, a) is JobStatus.QUEUED


def test_a_dead_letter_without_a_later_delivery_is_queued_as_before(store: Store) -> None:
    (earlier,) = _run(store)
    _end(store, earlier, "done")
    (a,) = _run(store)
    _end(store, a, "dead")  # only an earlier job of the key succeeded
    outcome = store.replay(job_ids=[a], now=T1)
    assert (outcome.queued, outcome.superseded) == (1, ())
    assert _status(store, a) is JobStatus.QUEUED


@pytest.mark.parametrize("later", ["dead", "queued"])
def test_a_later_job_that_died_or_waits_does_not_supersede(store: Store, later: str) -> None:
    (a,) = _run(store)
    _end(store, a, "dead")
    (b,) = _run(store)
    if later == "dead":
        _end(store, b, "dead")
    outcome = store.replay(job_ids=[a], now=T1)
    assert (outcome.queued, outcome.superseded) == (1, ())
    # Queued again, A is its key's head once more: it goes out before B.
    assert [j.id for j in store.claim("w", limit=10, lease_seconds=60, now=T1)] == [a]


@pytest.mark.parametrize("later", ["another key", "another connection", "another workspace", "the same event"])
def test_a_later_delivery_supersedes_only_the_same_key_connection_and_workspace_from_another_event(
        store: Store, later: str) -> None:
    event = _event(store, "customer.updated:1")
    (a,) = _run(store, event=event)
    _end(store, a, "dead")
    if later == "another key":
        (b,) = _run(store, "customer:bob@example.com")
    elif later == "another connection":
        (b,) = _run(store, connection="gumroad")  # a local profile write is not a Snapshots write
    elif later == "another workspace":
        (b,) = _run(store, workspace=2)
    else:
        (b,) = _run(store, workflow="another-workflow", event=event)  # the same data, not newer
    _end(store, b, "done", T1)
    assert store.supersessions([a]) == {}
    assert store.replay(job_ids=[a], now=T1).queued == 1


def test_a_later_job_being_delivered_now_holds_the_dead_letter_back(store: Store) -> None:
    (a,) = _run(store)
    _end(store, a, "dead")
    (b,) = _run(store)
    (leased,) = store.claim("w", limit=10, lease_seconds=60, now=T0)
    assert leased.id == b
    (left_out,) = store.replay(job_ids=[a], now=T0).superseded
    assert (left_out.superseded_by, left_out.delivered_at) == (b, None)
    assert "being delivered now" in left_out.reason
    assert store.complete(leased, output=None, attempt=_attempt(T1), now=T1)
    (after,) = store.replay(job_ids=[a], now=T1).superseded
    assert (after.superseded_by, after.delivered_at) == (b, T1)


def test_from_the_trigger_follows_the_same_rule(store: Store) -> None:
    s0, s1 = _run(store, steps=2)
    _end(store, s0, "done")
    _end(store, s1, "dead")
    (b,) = _run(store)
    _end(store, b, "done", T1)
    outcome = store.replay(job_ids=[s1], from_start=True, now=T1)
    assert outcome.queued == 0 and [s.superseded_by for s in outcome.superseded] == [b]
    assert [_status(store, j) for j in (s0, s1)] == [JobStatus.SUCCEEDED, JobStatus.DEAD]  # the run untouched
    assert store.replay(job_ids=[s1], from_start=True, force=True, now=T1).queued == 1
    assert [_status(store, j) for j in (s0, s1)] == [JobStatus.QUEUED, JobStatus.QUEUED]


def test_a_filter_or_all_queue_the_rest_and_report_the_superseded(store: Store) -> None:
    a, b = _dead_then_delivered(store)
    (other,) = _run(store, "customer:bob@example.com")
    _end(store, other, "dead")
    matching = store.replay_matching(workflow="sync", now=T1)
    assert matching.queued == 1 and [(s.job_id, s.superseded_by) for s in matching.superseded] == [(a, b)]
    assert _status(store, other) is JobStatus.QUEUED
    everything = store.replay(all_dead=True, now=T1)
    assert everything.queued == 0 and [s.job_id for s in everything.superseded] == [a]
    assert store.replay(all_dead=True, force=True, now=T1).queued == 1


# ---- against the Snapshots sandbox -------------------------------------------------------------------------------


@pytest.fixture
def rig(migrated: Engine, sandboxes: Sandboxes, tmp_path: Path) -> Iterator[Rig]:
    with worker_rig(migrated, sandboxes, tmp_path) as made:
        yield made


def _upsert(rig: Rig, customer: str, name: str) -> None:
    """One single-step run upserting the customer's name (Rig.enqueue's keys restart with each call)."""
    action, values, order = rig.upsert(customer, name=name)
    now = datetime.now(UTC)
    with rig.store.transaction() as tx:
        run_id = tx.create_run(NewRun("test", None, "customer.updated", order, now))
        tx.enqueue([NewJob(run_id, 0, "s0", action, CONNECTION, order, f"test-{rig.tag}-{customer}-{name}",
                           values)], now=now)


async def _name_in_snapshots(rig: Rig, customer: str) -> str | None:
    http = create_client(rig.sandboxes.snapshots_url, allowed_hosts=("127.0.0.1",))
    try:
        found = await SnapshotsClient(http, Secret(rig.key.key), base_url=rig.sandboxes.snapshots_url
                                      ).get_customer(customer)
    finally:
        await http.aclose()
    return found.name


async def test_a_superseded_dead_letter_is_not_sent_and_the_newer_name_stays(rig: Rig) -> None:
    customer = rig.customer("ada")
    path = f"/customers/{customer}"
    rig.connect(rig.sandboxes.snapshots.create_key([s for s in ALL_SCOPES if s != "customers.write"]))
    _upsert(rig, customer, "Old")
    await run_workers([rig.worker("w1")], settled(rig.store, 0, dead=1))
    (dead,) = rig.store.dead_letters()
    rig.connect(rig.sandboxes.snapshots.create_key(ALL_SCOPES))  # the fix, and then a newer change arrives
    _upsert(rig, customer, "New")
    await run_workers([rig.worker("w2")], settled(rig.store, 1, dead=1))
    assert await _name_in_snapshots(rig, customer) == "New"
    sent = len(rig.sandboxes.snapshots.requests(method="PUT", path=path))

    outcome = rig.store.replay(job_ids=[dead.job_id])
    assert outcome.queued == 0 and [s.job_id for s in outcome.superseded] == [dead.job_id]
    assert rig.store.counts().get(JobStatus.QUEUED.value, 0) == 0  # nothing for a worker to send
    assert len(rig.sandboxes.snapshots.requests(method="PUT", path=path)) == sent
    assert await _name_in_snapshots(rig, customer) == "New"

    # Forced, the old name is written last: what the default protects against.
    assert rig.store.replay(job_ids=[dead.job_id], force=True).queued == 1
    await run_workers([rig.worker("w3")], settled(rig.store, 2))
    assert await _name_in_snapshots(rig, customer) == "Old"
    assert len(rig.sandboxes.snapshots.requests(method="PUT", path=path)) == sent + 1


async def test_a_dead_letter_whose_later_job_also_died_is_sent_first_on_replay(rig: Rig) -> None:
    customer = rig.customer("bea")
    rig.connect(rig.sandboxes.snapshots.create_key([s for s in ALL_SCOPES if s != "customers.write"]))
    _upsert(rig, customer, "Old")
    _upsert(rig, customer, "New")
    await run_workers([rig.worker("w1")], settled(rig.store, 0, dead=2))
    rig.connect(rig.sandboxes.snapshots.create_key(ALL_SCOPES))
    outcome = rig.store.replay(all_dead=True)
    assert (outcome.queued, outcome.superseded) == (2, ())
    await run_workers([rig.worker("w2")], settled(rig.store, 2))
    assert await _name_in_snapshots(rig, customer) == "New"  # in the order they were made


# ---- the CLI ----------------------------------------------------------------------------------------------------


@dataclass
class Cli:
    home: Path
    url: str

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SNAPBRIDGE_")}
        env.update({"SNAPBRIDGE_HOME": str(self.home), "SNAPBRIDGE_DATABASE_URL": self.url})
        return subprocess.run([sys.executable, "-m", "snapbridge", *args], capture_output=True, text=True, env=env,
                              timeout=60, check=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def cli_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Cli, Store]]:
    home = tmp_path / "home"
    home.mkdir()
    with fresh_database(request.param, home) as url:
        engine = open_engine(url)
        migrate(engine)
        store = Store(engine)
        try:
            yield Cli(home, url), store
        finally:
            store.close()
            engine.dispose()


def test_the_cli_lists_skips_and_forces_superseded_dead_letters(cli_store: tuple[Cli, Store]) -> None:
    cli, store = cli_store
    a, b = _dead_then_delivered(store)
    (other,) = _run(store, "customer:bob@example.com")
    _end(store, other, "dead")
    reason = f"superseded by job {b}, delivered at 2025-03-01 12:05:00 UTC, for the same ordering key {KEY}"

    listed = cli("dead-letters")
    assert listed.returncode == 0, listed.stderr
    (line,) = [x for x in listed.stdout.splitlines() if x.startswith(f"job {a:>6}")]
    assert line.endswith(f"[superseded: {reason}]")
    assert "superseded" not in next(x for x in listed.stdout.splitlines() if x.startswith(f"job {other:>6}"))

    alone = cli("replay", "--job", str(a))
    assert alone.returncode == 1 and "Traceback" not in alone.stderr
    assert alone.stdout == f"skipped job {a} (run {_run_of(store, a)}): {reason}\n"
    assert alone.stderr == (f"error: nothing queued: job {a} was left out: {reason}; to replay it anyway: "
                            f"snapbridge replay --job {a} --force\n")

    some = cli("replay", "--all", "--from-start")
    assert some.returncode == 0, some.stderr
    assert some.stdout.splitlines() == [
        f"skipped job {a} (run {_run_of(store, a)}): {reason}", "queued 1 job(s) again",
        "left out 1 superseded dead letter; to replay it anyway: snapbridge replay --all --from-start --force"]

    forced = cli("replay", "--job", str(a), "--force")
    assert (forced.returncode, forced.stdout, forced.stderr) == (0, "queued 1 job(s) again\n", "")
    assert _status(store, a) is JobStatus.QUEUED


def _run_of(store: Store, job_id: int) -> int:
    return next(r.id for r in store.runs(limit=1000) if job_id in _job_ids(store, r.id))


# ---- the API and the dashboard ---------------------------------------------------------------------------------


@dataclass
class Web:
    base_url: str
    store: Store


@pytest.fixture
def web(migrated: Engine, sandboxes: Sandboxes, tmp_path: Path) -> Iterator[Web]:
    """The web app on this test's database (either engine)."""
    with serve_app(tmp_path, sandboxes, migrated) as served:
        yield Web(served.base_url, served.store)


@pytest.fixture
def api(web: Web) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web.base_url) as browser:
        csrf = signed_in(browser)
        made = browser.post("/api/v1/tokens", json={"name": "ci", "role": "admin"}, headers={"X-CSRF-Token": csrf})
        token = made.json()["token"]
    with httpx.Client(base_url=web.base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def test_the_api_reports_superseded_dead_letters_and_queues_them_when_forced(web: Web, api: httpx.Client) -> None:
    a, b = _dead_then_delivered(web.store)
    run_a = _run_of(web.store, a)
    expected = {"job_id": a, "run_id": run_a, "ordering_key": KEY, "superseded_by": b,
                "delivered_at": "2025-03-01T12:05:00Z",
                "reason": f"superseded by job {b}, delivered at 2025-03-01 12:05:00 UTC, for the same ordering key "
                          f"{KEY}"}
    (listed,) = api.get("/api/v1/dead-letters").json()
    assert (listed["superseded_by"], listed["superseded_reason"]) == (b, expected["reason"])

    for answer in (api.post(f"/api/v1/dead-letters/{a}/replay"),
                   api.post(f"/api/v1/dead-letters/{a}/replay?from=trigger&force=false"),
                   api.post("/api/v1/dead-letters/replay", json={"workflow": "sync"}),
                   api.post("/api/v1/dead-letters/replay-all")):
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"replayed": 0, "superseded": [expected]}
    assert _status(web.store, a) is JobStatus.DEAD

    bad = api.post(f"/api/v1/dead-letters/{a}/replay?force=yes")
    assert bad.status_code == 422 and bad.json()["error"] == "force must be true or false"
    forced = api.post("/api/v1/dead-letters/replay?force=true", json={"workflow": "sync"})
    assert forced.json() == {"replayed": 1, "superseded": []}
    assert _status(web.store, a) is JobStatus.QUEUED
    assert api.post(f"/api/v1/dead-letters/{a}/replay?force=true").status_code == 404  # no longer dead


def test_the_openapi_document_describes_force_on_every_replay(web: Web) -> None:
    paths = httpx.get(web.base_url + "/api/v1/openapi.json").json()["paths"]
    for path in ("/api/v1/dead-letters/{job_id}/replay", "/api/v1/dead-letters/replay",
                 "/api/v1/dead-letters/replay-all"):
        (force,) = [p for p in paths[path]["post"]["parameters"] if p["name"] == "force"]
        assert force["in"] == "query" and force["schema"] == {"type": "boolean"}
        assert "superseded" in force["description"]


def test_the_dashboard_marks_superseded_dead_letters_and_replays_them_only_when_ticked(web: Web) -> None:
    a, b = _dead_then_delivered(web.store)
    (other,) = _run(web.store, "customer:bob@example.com")
    _end(web.store, other, "dead")
    with httpx.Client(base_url=web.base_url, follow_redirects=True) as client:
        csrf = signed_in(client)
        page = unescape(client.get("/dead-letters").text)
        assert f"Left out of replays unless forced: superseded by job {b}, delivered at" in page
        row = re.search(rf'action="/dead-letters/{a}/replay".*?</form>', page, re.S)
        assert row and 'name="force" value="true"> Replay even if superseded' in row.group(0)
        plain = re.search(rf'action="/dead-letters/{other}/replay".*?</form>', page, re.S)
        assert plain and 'name="force"' not in plain.group(0)

        done = unescape(client.post("/dead-letters/replay-all", data={"csrf": csrf}).text)
        assert (f"Replayed 1 dead letter. Left out job {a} (run #{_run_of(web.store, a)}): superseded by job {b}"
                in done)
        assert "Tick “Replay even if superseded” to queue it anyway." in done
        assert _status(web.store, a) is JobStatus.DEAD and _status(web.store, other) is JobStatus.QUEUED

        assert client.post(f"/dead-letters/{a}/replay", data={"csrf": csrf, "force": "on"}).status_code == 422
        forced = unescape(client.post(f"/dead-letters/{a}/replay", data={"csrf": csrf, "force": "true"}).text)
        assert "Replayed 1 dead letter." in forced and "Left out" not in forced
    assert _status(web.store, a) is JobStatus.QUEUED
