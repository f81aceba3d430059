"""The deriver: stored inbound events → verified → profile, domain events, runs and jobs in one transaction.

One pass takes the oldest pending events. Gumroad webhooks are first confirmed by re-reading the sale or
subscriber with the connection's token (verify-by-fetch, unless the connection turned it off); an object Gumroad
does not know rejects the event, with the reason, before any job exists (once the ping is NOT_FOUND_GRACE old:
before that it waits, as its API may lag its pings). A read that fails for another reason
(network, 5xx, auth) leaves the event pending and holds back that connection's later events until the next pass,
so one customer's events are still derived in order; the pass sends none of that connection's other reads, and
after a Retry-After no pass asks it again before then. A pass looks past a held connection's events (up to
`_WINDOW_PASSES` batches) so that they never starve the other connections' events behind them. Poll results
came from the API and are not read again.

Then ONE store transaction per pass, the transactional outbox: for each event, save the profile, create a run
per triggered workflow and enqueue its planned steps, and mark the event derived (or ignored, or rejected). A
crash before the commit leaves every event pending; the planner's idempotency keys and the store's one run per
(inbound event, workflow) make a second derivation of an event add no run and no job. Workers are woken after
the commit (PostgreSQL: the NOTIFY the store sends; in process: `on_jobs`). On PostgreSQL the transactions of
all derivers take turns on one lock (`_DERIVE_LOCK`), so each takes the oldest pending events there are and
reads the profiles the one before it wrote: no customer created twice, no sale counted on a stale profile, one
customer's jobs in the order of their events, whatever the batch or window of each deriver.

An event the deriver cannot process (a bug, or a value the database cannot hold) must not stop the events after
it: when a pass fails for any reason but a store outage, its events are derived again one at a time, each in its
own transaction, and one that fails alone is rejected, with the error's type as the reason. A store outage
(StoreUnavailable) leaves the pass's events pending for the next pass; `run_forever` survives any failed pass.

A job whose input still needs an earlier step's output, or whose condition reads one, carries what the worker
needs to finish it under `deferred["$plan"]`; `job_plan` turns a claimed job back into the planned step and the
derived event for `resolve_step`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from snapbridge.connectors.gumroad import (
    GumroadClient,
    GumroadConnectionOptions,
    GumroadEvent,
    SaleEvent,
    needs_fetch,
    refund_state_key,
    verify_by_fetch,
)
from snapbridge.connectors.gumroad import Sale as ApiSale
from snapbridge.connectors.gumroad import Subscriber as ApiSubscriber
from snapbridge.errors import (
    InvalidInput,
    NotFound,
    Retryable,
    SnapbridgeError,
    StoreUnavailable,
    WebhookRejected,
)
from snapbridge.runtime.derive import (
    Derivation,
    Inbound,
    ProfileState,
    derive,
    parse_inbound,
    state_from_record,
    state_to_record,
    subject_email,
)
from snapbridge.runtime.jobplan import PLAN_KEY, JobPlan, job_plan, pack_plan
from snapbridge.security import redact_text
from snapbridge.store import (
    DEFAULT_WORKSPACE,
    ClaimedJob,
    ConnectionRoute,
    EventMark,
    EventSource,
    EventStatus,
    InboundEvent,
    NewJob,
    NewRun,
    Profile,
    Store,
    Tx,
    WorkflowRecord,
)
from snapbridge.workflows import (
    DEFAULT_SEGMENTS,
    CustomerProfile,
    Event,
    Plan,
    PlannedStep,
    SegmentChangedEvent,
    SegmentRule,
    Workflow,
    find_action,
    load_workflow,
    plan_event,
)

__all__ = [
    "DeriveReport",
    "Deriver",
    "DeriverConfig",
    "GumroadAccess",
    "GumroadLink",
    "JobPlan",
    "NOT_FOUND_GRACE",
    "PLAN_KEY",
    "job_plan",
]

log = logging.getLogger(__name__)

_VERIFIED_SOURCES = frozenset({EventSource.GUMROAD, EventSource.REPLAY})
_DERIVE_LOCK = "snapbridge:derive"  # the key all derivers' write transactions take turns on (PostgreSQL)
_WINDOW_PASSES = 20  # how many batches a pass reads at most to find events past held connections'
_MAX_HOLD = timedelta(hours=1)  # a Retry-After longer than this is taken as this
NOT_FOUND_GRACE = timedelta(minutes=2)  # how long a ping's sale may be unknown to the API before it is refused


@dataclass(frozen=True)
class GumroadLink:
    """A Gumroad connection's client and webhook options."""

    client: GumroadClient
    options: GumroadConnectionOptions = field(default_factory=GumroadConnectionOptions)


class GumroadAccess(Protocol):
    """How the deriver reaches a Gumroad connection to verify its webhooks (None: no such connection now)."""

    async def gumroad(self, connection: str) -> GumroadLink | None: ...


@dataclass(frozen=True)
class DeriverConfig:
    """Knobs of the deriver.

    An event is routed within the workspace of the connection it came from: that workspace's workflows, and
    for a step of each app that workspace's connection of the app (the first by name; a Gumroad step uses the
    event's Gumroad connection, a local `snapbridge.*` step the profile's). `profile_connection` and
    `connections` name the connections to use where the workspace has none of that app, unless they belong to
    another workspace.
    """

    batch_size: int = 100  # events per pass and per write transaction (bounds how long SQLite is held)
    segments: tuple[SegmentRule, ...] = DEFAULT_SEGMENTS
    profile_connection: str = "gumroad"
    connections: Mapping[str, str] = field(default_factory=lambda: {"snapshots": "snapshots"})
    idle_seconds: float = 1.0  # run_forever looks again after this long even without a wake-up
    verify_concurrency: int = 8  # verify-by-fetch reads in flight at once

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1, got {self.batch_size}")
        if self.verify_concurrency < 1:
            raise InvalidInput(f"verify_concurrency must be at least 1, got {self.verify_concurrency}")
        if self.idle_seconds <= 0:
            raise InvalidInput(f"idle_seconds must be positive, got {self.idle_seconds}")


@dataclass(frozen=True)
class DeriveReport:
    """What one pass did. `waiting`: events left pending because their connection could not verify them."""

    derived: int = 0
    ignored: int = 0
    rejected: int = 0
    waiting: int = 0
    runs: int = 0
    jobs: int = 0

    @property
    def handled(self) -> int:
        return self.derived + self.ignored + self.rejected

    def __add__(self, other: DeriveReport) -> DeriveReport:
        return DeriveReport(self.derived + other.derived, self.ignored + other.ignored,
                            self.rejected + other.rejected, self.waiting + other.waiting, self.runs + other.runs,
                            self.jobs + other.jobs)


@dataclass
class _Item:
    """One pending event on its way through a pass."""

    row: InboundEvent
    workspace: int = DEFAULT_WORKSPACE
    parsed: Inbound | None = None
    email: str | None = None
    profile_connection: str = ""
    reject: str | None = None  # a reason: the event is marked rejected
    waiting: bool = False  # left pending for a later pass
    rekey: str | None = None  # the key it takes when derived; an event holding it already makes this a repeat
    refunded: bool = False  # the API says the sale is fully refunded by now


Key = tuple[str, str]  # (profile connection, email)


@dataclass(frozen=True)
class _Draft:
    """What one event will write: computed before the transaction, checked and applied inside it."""

    key: Key | None
    result: Derivation | None = None
    plans: tuple[tuple[Plan, Event], ...] = ()
    error: str | None = None
    profile: CustomerProfile | None = None  # the profile the plans were rendered with


class Deriver:
    """Derives pending inbound events; `run_once` is one pass, `run_forever` the service loop."""

    def __init__(self, store: Store, access: GumroadAccess, *, config: DeriverConfig | None = None,
                 clock: Callable[[], datetime] | None = None, on_jobs: Callable[[], object] | None = None) -> None:
        self._store = store
        self._access = access
        self._config = config or DeriverConfig()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._on_jobs = on_jobs
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._parsed: dict[tuple[int, str], tuple[str, Workflow | None]] = {}
        # Connections whose API asked us (Retry-After) not to read again before then.
        self._held_until: dict[str, datetime] = {}

    # ---- the loop -------------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for pending events now (the receiver calls this after each commit); safe from any thread."""
        loop, event = self._loop, self._wake
        if loop is None or event is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Derive until `stop` is set: a pass whenever woken, or every `idle_seconds`; a full pass goes on."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while not stop.is_set():
            self._wake.clear()
            try:
                report = await self.run_once()
            except SnapbridgeError as exc:  # an outage (store, network): the next pass tries again
                log.warning("action=derive_failed error=%s detail=%s", type(exc).__name__, exc)
                await self._back_off(stop)
                continue
            except Exception as exc:
                # Not one event's fault (those are rejected within the pass): reading the pending events, the
                # workflows, or a bug. The message may quote a payload, so only its type goes to the log line.
                log.error("action=derive_failed error=%s", type(exc).__name__)
                log.debug("action=derive_failed_detail", exc_info=exc)
                await self._back_off(stop)
                continue
            if report.handled >= self._config.batch_size:
                continue  # more may be waiting
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=self._config.idle_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()

    async def _back_off(self, stop: asyncio.Event) -> None:
        """After a failed pass: `idle_seconds` before the next, not cut short by wake-ups (each webhook would
        otherwise bring another failed pass and log line while the cause lasts), only by `stop`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=self._config.idle_seconds)

    async def run_once(self) -> DeriveReport:
        """One pass over the oldest pending events (at most `batch_size`).

        StoreUnavailable leaves them pending. Any other failure derives them again one at a time (`_one_by_one`).
        """
        held = self._held(self._clock())
        rows, window = await asyncio.to_thread(self._pending, held)
        if not rows:
            return DeriveReport()
        workflows, routes = await asyncio.to_thread(self._routing)
        items: list[_Item] | None = None
        try:
            items = await self._prepare(rows, routes, set(held))
            report = await asyncio.to_thread(self._commit, items, workflows, routes, self._clock(), window)
        except StoreUnavailable:
            raise
        except Exception as exc:
            log.error("action=derive_isolating events=%d first_event=%d error=%s", len(rows), rows[0].id,
                      type(exc).__name__)
            report = await self._one_by_one(rows, items, workflows, routes, window, set(held))
        if report.jobs and self._on_jobs is not None:
            self._on_jobs()
        return report

    def _held(self, now: datetime) -> frozenset[str]:
        """The connections still inside a Retry-After; the ones whose time is up are forgotten."""
        self._held_until = {c: until for c, until in self._held_until.items() if until > now}
        return frozenset(self._held_until)

    def _pending(self, held: frozenset[str]) -> tuple[list[InboundEvent], int]:
        """The oldest pending events, and how many were asked for (the window the transaction locks).

        A batch of mostly held connections' events is read further, so that the others behind them are
        derived; at most `_WINDOW_PASSES` batches.
        """
        batch = self._config.batch_size
        window = batch
        while True:
            rows = self._store.pending_events(window)
            usable = [index for index, row in enumerate(rows) if row.connection not in held]
            if len(usable) >= batch:
                # No more than a batch to derive, however far it had to look (held ones cost no work).
                return rows[:usable[batch - 1] + 1], window
            if len(rows) < window or window >= batch * _WINDOW_PASSES:
                return rows, window
            window = min(window * 4, batch * _WINDOW_PASSES)

    async def _one_by_one(self, rows: Sequence[InboundEvent], items: Sequence[_Item] | None, workflows: _Workflows,
                          routes: _Routes, window: int, held: set[str]) -> DeriveReport:
        """The pass again, each event in its own transaction, in order; an event that fails alone is rejected.

        `items`: the pass's events already parsed and verified, when that part succeeded (they are not asked
        again); otherwise each is prepared alone, a connection whose verification failed holding back its later
        events as in a whole pass. A store outage stops here, leaving this event and the rest pending.
        """
        total = DeriveReport()
        for index, row in enumerate(rows):
            try:
                item = items[index] if items is not None else (await self._prepare([row], routes, held))[0]
                if item.waiting:
                    total += DeriveReport(waiting=1)
                    continue
                total += await asyncio.to_thread(self._commit, [item], workflows, routes, self._clock(), window)
            except StoreUnavailable:
                if total.jobs and self._on_jobs is not None:
                    self._on_jobs()  # what did commit is delivered meanwhile
                raise
            except Exception as exc:
                log.error("action=derive_event_rejected event=%d connection=%s error=%s", row.id, row.connection,
                          type(exc).__name__)
                total += await asyncio.to_thread(self._reject, row, _failure_note(exc), self._clock(), window)
        return total

    def _reject(self, row: InboundEvent, note: str, now: datetime, window: int) -> DeriveReport:
        """Mark one event rejected in its own transaction, unless another deriver took it meanwhile."""
        with self._store.transaction(relaxed=True) as tx:
            tx.lock_key(_DERIVE_LOCK)
            if row.id not in {r.id for r in tx.pending_events(window)}:
                return DeriveReport()
            tx.mark_events([EventMark(row.id, EventStatus.REJECTED, note)], now=now)
        return DeriveReport(rejected=1)

    # ---- before the transaction: parse and verify -------------------------------------------------------------

    def _routing(self) -> tuple[_Workflows, _Routes]:
        return (self._parse_all(self._store.list_workflows(enabled_only=True)),
                _Routes.of(self._store.connection_routes(), self._config))

    def _parse_all(self, records: Sequence[WorkflowRecord]) -> _Workflows:
        """Each workspace's workflows, parsed once per version of their YAML; a broken one is logged, left out."""
        loaded: dict[int, list[Workflow]] = {}
        for record in records:
            key = (record.workspace_id, record.name)
            cached = self._parsed.get(key)
            if cached is None or cached[0] != record.source_yaml:
                try:
                    workflow: Workflow | None = load_workflow(record.source_yaml, record.name)
                except InvalidInput as exc:
                    log.error("action=workflow_invalid workflow=%s workspace=%d error=%s", record.name,
                              record.workspace_id, exc)
                    workflow = None
                cached = (record.source_yaml, workflow)
                self._parsed[key] = cached
            if cached[1] is not None:
                loaded.setdefault(record.workspace_id, []).append(cached[1])
        return {workspace: tuple(found) for workspace, found in loaded.items()}

    async def _prepare(self, rows: Sequence[InboundEvent], routes: _Routes, held: set[str] | None = None
                       ) -> list[_Item]:
        """Parse every row and verify the Gumroad webhooks (reads run concurrently, results apply in order).

        `held`: connections whose verification failed earlier in this pass, or that are inside a Retry-After
        (their events wait, unread); it grows. An error that is not ours (a bug) is raised once every read has
        ended.
        """
        if held is None:
            held = set()  # connections whose verification failed in this pass: their later events wait
        items = [self._parse(row, routes) for row in rows]
        gate = asyncio.Semaphore(self._config.verify_concurrency)
        failed = set(held)  # once one read of a connection failed, its reads not yet sent are not sent

        async def check(item: _Item) -> ApiSale | ApiSubscriber | Exception | None:
            assert isinstance(item.parsed, GumroadEvent)
            connection = item.row.connection
            async with gate:
                if connection in failed:
                    return _NOT_ASKED
                try:
                    return await self._verify(item.row, item.parsed)
                except Exception as exc:  # rejected, or could not ask: decided below, in order
                    if isinstance(exc, SnapbridgeError) and not isinstance(exc, WebhookRejected):
                        failed.add(connection)
                        self._hold(connection, exc)
                    return exc

        to_check = [item for item in items if self._needs_check(item) and item.row.connection not in held]
        outcomes = dict(zip((id(i) for i in to_check), await asyncio.gather(*map(check, to_check)), strict=True))
        for item in items:
            if item.parsed is None or item.reject is not None:
                continue
            if item.row.connection in held:
                item.waiting = True
                continue
            outcome = outcomes.get(id(item))
            if isinstance(outcome, _NotAsked):
                held.add(item.row.connection)
                item.waiting = True
                continue
            if isinstance(outcome, Exception) and not isinstance(outcome, SnapbridgeError):
                raise outcome
            if isinstance(outcome, WebhookRejected) and self._maybe_not_yet_readable(item.row, outcome):
                log.warning("action=verify_not_found_yet event=%d connection=%s", item.row.id, item.row.connection)
                held.add(item.row.connection)
                item.waiting = True
            elif isinstance(outcome, WebhookRejected):
                item.reject = f"verify-by-fetch: {outcome}"
            elif isinstance(outcome, SnapbridgeError):
                # Network, 5xx, auth, a malformed answer: not the event's fault, so it waits and is asked again.
                log.warning("action=verify_deferred event=%d connection=%s error=%s", item.row.id,
                            item.row.connection, outcome)
                held.add(item.row.connection)
                item.waiting = True
            else:
                item.email = subject_email(item.parsed, outcome)
                item.rekey = _refund_key(item.row, item.parsed, outcome)
                item.refunded = isinstance(outcome, ApiSale) and outcome.refunded
        return items

    def _maybe_not_yet_readable(self, row: InboundEvent, rejected: WebhookRejected) -> bool:
        """A sale the API does not know yet, for a ping received moments ago: asked again on a later pass. Gumroad
        sends pings from a background job after the sale commits, but its API may read a replica a little behind
        (UNCONFIRMED); rejecting at once would drop a real sale for good, so only after NOT_FOUND_GRACE."""
        return isinstance(rejected.__cause__, NotFound) and self._clock() - row.received_at < NOT_FOUND_GRACE

    def _hold(self, connection: str, error: SnapbridgeError) -> None:
        """Remember a Retry-After: the connection is not read again before it is up."""
        wait = error.retry_after if isinstance(error, Retryable) else None
        if wait is not None and wait > 0:
            until = self._clock() + min(timedelta(seconds=wait), _MAX_HOLD)
            self._held_until[connection] = max(until, self._held_until.get(connection, until))

    @staticmethod
    def _parse(row: InboundEvent, routes: _Routes) -> _Item:
        item = _Item(row, workspace=routes.workspace(row.connection))
        try:
            item.parsed = parse_inbound(row.kind, row.payload)
        except InvalidInput as exc:
            item.reject = f"cannot read the stored event: {exc}"
            return item
        gumroad = isinstance(item.parsed, GumroadEvent)
        item.profile_connection = row.connection if gumroad else routes.connection(item.workspace, "gumroad")
        return item

    @staticmethod
    def _needs_check(item: _Item) -> bool:
        parsed = item.parsed
        return (isinstance(parsed, GumroadEvent) and item.row.source in _VERIFIED_SOURCES
                and not _is_test(parsed))

    async def _verify(self, row: InboundEvent, event: GumroadEvent) -> ApiSale | ApiSubscriber | None:
        """The object the event describes, read back; None when the connection does not verify."""
        link = await self._access.gumroad(row.connection)
        if link is None:
            # Removed or not connected yet: the event waits rather than being refused for our own gap.
            raise Retryable(f"no Gumroad connection {row.connection!r} to verify event {row.id} with",
                            operation="get_sale")
        if needs_fetch(event, link.options) is None:
            return None
        return await verify_by_fetch(link.client, event)

    # ---- the transaction --------------------------------------------------------------------------------------

    def _commit(self, items: Sequence[_Item], workflows: _Workflows, routes: _Routes, now: datetime,
                window: int) -> DeriveReport:
        """Derive and plan first, then write it all in one transaction.

        Planning (rendering every step's mappings) is most of the work, so it runs before the write transaction
        begins, on the profiles as read then; SQLite's single writer (the receiver's commits) is held only for
        the writes. Inside, each profile is read again under lock: a customer whose profile changed meanwhile (a
        workflow step, another deriver), or who shares the pass with an event another deriver took, is derived
        again there, from what is current; so is every event of the pass when the workflows changed meanwhile.
        """
        todo = [i for i in items if not i.waiting and i.reject is None and i.parsed is not None]
        keys = sorted({k for k in map(_key, todo) if k is not None})
        seen = self._store.get_profiles(keys)
        drafts = self._draft(todo, seen, workflows, now)
        counts = {"derived": 0, "ignored": 0, "rejected": 0, "waiting": 0, "runs": 0, "jobs": 0}
        # Relaxed: a pass lost in a power cut leaves its events pending, derived again under the same keys.
        with self._store.transaction(relaxed=True) as tx:
            # Derivers take turns (PostgreSQL), so the events locked below are the oldest pending ones and the
            # profiles read are those the previous deriver wrote.
            tx.lock_key(_DERIVE_LOCK)
            # Locked (PostgreSQL) and re-read: an event another deriver took meanwhile is not ours any more.
            live = {row.id for row in tx.pending_events(window)}
            # Every profile of the pass locked in one order, so two derivers cannot deadlock on them.
            fresh = tx.get_profiles(keys)
            stale = {k for k in keys if fresh.get(k) != seen.get(k)}
            stale |= {k for i in todo if i.row.id not in live and (k := _key(i)) is not None}
            current = self._parse_all(tx.list_workflows(enabled_only=True))
            if current != workflows:
                # A workflow edited, enabled or disabled while the pass verified and planned: plan all again.
                workflows = current
                drafts.update(self._draft([i for i in todo if i.row.id in live], fresh, workflows, now))
            elif stale:
                again = [i for i in todo if i.row.id in live and _key(i) in stale]
                drafts.update(self._draft(again, fresh, workflows, now))
            outbox = _Outbox(now=now)
            for item in items:
                if item.row.id not in live:
                    continue
                if item.waiting:
                    counts["waiting"] += 1
                elif item.reject is not None or item.parsed is None:
                    outbox.marks.append(EventMark(item.row.id, EventStatus.REJECTED, item.reject or "unreadable"))
                    counts["rejected"] += 1
                elif item.rekey is not None and not tx.rekey_event(item.row.id, item.rekey):
                    # A partial refund has no effect on the profile, so leaving it out changes no later draft.
                    outbox.marks.append(EventMark(item.row.id, EventStatus.IGNORED,
                                                  f"a repeat of a partial refund already derived ({item.rekey})"))
                    counts["ignored"] += 1
                else:
                    self._apply(outbox, item, drafts[item.row.id], routes, counts)
            # One statement per kind for the whole pass: each customer's last state, the runs, their jobs (in
            # event order, so one customer's jobs keep the order of their events), the marks.
            tx.save_profiles([state_to_record(outbox.states[key], connection=key[0], now=now, base=fresh.get(key))
                              for key in sorted(outbox.states)])
            counts["runs"], counts["jobs"] = self._flush(tx, outbox, now)
            tx.mark_events(outbox.marks, now=now)
        return DeriveReport(**counts)

    def _draft(self, items: Sequence[_Item], records: Mapping[Key, Profile | None], workflows: _Workflows,
               now: datetime) -> dict[int, _Draft]:
        """Derive and plan the items in order, each customer's profile carried from one event to the next."""
        states = {k: state_from_record(r) if r is not None else None for k, r in records.items()}
        drafts: dict[int, _Draft] = {}
        for item in items:
            assert item.parsed is not None
            key = _key(item)
            state = states.get(key) if key else None
            try:
                result = derive(str(item.row.id), item.parsed, state, now, email=item.email,
                                segments=self._config.segments, refunded=item.refunded)
                profile = result.state.profile if result.state else state.profile if state else None
                plans = tuple(_plans(result.events, profile, workflows.get(item.workspace, ())))
            except (InvalidInput, ValueError) as exc:  # pydantic's ValidationError is a ValueError
                drafts[item.row.id] = _Draft(key, error=f"cannot derive: {exc}")
                continue
            if key and result.state is not None:
                states[key] = result.state
            drafts[item.row.id] = _Draft(key, result, plans, profile=profile)
        return drafts

    def _apply(self, outbox: _Outbox, item: _Item, draft: _Draft, routes: _Routes, counts: dict[str, int]
               ) -> None:
        row = item.row
        result = draft.result
        if draft.error is not None or result is None:
            outbox.marks.append(EventMark(row.id, EventStatus.REJECTED, draft.error or "cannot derive"))
            counts["rejected"] += 1
            return
        if draft.key is not None and result.state is not None:
            outbox.states[draft.key] = result.state  # the customer's last state in this pass is saved
        gumroad = row.connection if isinstance(item.parsed, GumroadEvent) else item.profile_connection
        target = _Target(item.profile_connection, gumroad, result.email, item.workspace, routes)
        notes = outbox.add_plans(draft.plans, target, inbound_event_id=row.id, profile=draft.profile)
        status = EventStatus.IGNORED if result.ignored else EventStatus.DERIVED
        if status is EventStatus.DERIVED:
            notes.insert(0, ", ".join(e.type for e in result.events) or "no domain events")
        elif result.note:
            notes.insert(0, result.note)
        outbox.marks.append(EventMark(row.id, status, "; ".join(notes)[:2000]))
        counts[status.value] += 1

    def _flush(self, tx: Tx, outbox: _Outbox, now: datetime) -> tuple[int, int]:
        """Create the outbox's runs and queue their steps; (runs, new jobs)."""
        if not outbox.runs:
            return 0, 0
        run_ids = tx.create_runs([run for run, _ in outbox.runs])
        new_jobs = [self._job(run_id, step, event, target, profile)
                    for run_id, (_, steps) in zip(run_ids, outbox.runs, strict=True)
                    for step, event, target, profile in steps]
        added = tx.enqueue(new_jobs, now=now)
        return len(run_ids), sum(1 for r in added if not r.duplicate)

    def _job(self, run_id: int, step: PlannedStep, event: Event, target: _Target,
             profile: CustomerProfile | None) -> NewJob:
        return NewJob(
            run_id=run_id, step_index=step.position, step_id=step.step_id, action=step.action,
            connection=self._connection_for(step.action, target), ordering_key=step.ordering_key,
            idempotency_key=step.idempotency_key, input=dict(step.input),
            deferred=pack_plan(step, event, profile_connection=target.profile_connection, email=target.email,
                               profile=profile),
        )

    @staticmethod
    def _connection_for(action: str, target: _Target) -> str:
        app = find_action(action).app
        if app == "snapbridge":
            return target.profile_connection
        if app == "gumroad":
            return target.gumroad_connection
        return target.routes.connection(target.workspace, app)

    # ---- segment changes made by a workflow step --------------------------------------------------------------

    def on_segment_changed(self, tx: Tx, event: SegmentChangedEvent, job: ClaimedJob) -> None:
        """Plan and queue what a segment change made by a `snapbridge.segments.refresh` step triggers.

        Runs in the step's own transaction (the worker's hook), so the segments saved and the jobs queued commit
        together; a retried step finds the segments already moved and calls nothing. Such runs have no inbound
        event of their own (the run list shows them without one); the event's id keys their jobs.
        """
        routes = _Routes.of(tx.connection_routes(), self._config)
        workspace = routes.workspace(job.connection)  # the profile's (Gumroad) connection
        workflows = self._parse_all(tx.list_workflows(enabled_only=True)).get(workspace, ())
        found = tx.get_profile(job.connection, event.customer.email)
        profile = state_from_record(found).profile if found is not None else None
        plans = _plans((event,), profile, workflows)
        target = _Target(job.connection, job.connection, event.customer.email, workspace, routes)
        # No in-process wake-up here: the transaction is the worker's and has not committed yet; the worker
        # that ran the step claims again when it is done (PostgreSQL's NOTIFY goes out with the commit).
        now = self._clock()
        outbox = _Outbox(now=now)
        outbox.add_plans(plans, target, inbound_event_id=None, profile=profile)
        self._flush(tx, outbox, now)


_PlannedJob = tuple[PlannedStep, Event, "_Target", CustomerProfile | None]


@dataclass
class _Outbox:
    """What one pass will write, gathered so that each kind goes to the store in one statement."""

    now: datetime
    states: dict[Key, ProfileState] = field(default_factory=dict)
    runs: list[tuple[NewRun, list[_PlannedJob]]] = field(default_factory=list)
    marks: list[EventMark] = field(default_factory=list)

    def add_plans(self, plans: Sequence[tuple[Plan, Event]], target: _Target, *, inbound_event_id: int | None,
                  profile: CustomerProfile | None) -> list[str]:
        """A run per plan with its steps; the notes of plans that failed."""
        notes: list[str] = []
        for plan, event in plans:
            if plan.error is not None:
                notes.append(plan.error)
                log.error("action=plan_failed event=%s workflow=%s error=%s", inbound_event_id, plan.workflow,
                          plan.error)
                continue
            run = NewRun(workflow_name=plan.workflow, inbound_event_id=inbound_event_id, event_type=event.type,
                         customer_key=target.email or plan.steps[0].ordering_key, created_at=self.now,
                         workspace_id=target.workspace)
            self.runs.append((run, [(step, event, target, profile) for step in plan.steps]))
        return notes


@dataclass(frozen=True)
class _Target:
    """Where a plan's steps go: the profile's connection, the Gumroad connection, the customer, the workspace
    and its connection for each other app."""

    profile_connection: str
    gumroad_connection: str
    email: str | None
    workspace: int
    routes: _Routes


_Workflows = Mapping[int, tuple[Workflow, ...]]  # by workspace


class _Routes:
    """Which workspace each connection is in, and each workspace's connection of each app (first by name)."""

    def __init__(self, stored: Sequence[ConnectionRoute], defaults: Mapping[str, str]) -> None:
        self._workspace_of = {r.name: r.workspace_id for r in stored}
        self._by_app: dict[int, dict[str, str]] = {}
        for route in stored:
            self._by_app.setdefault(route.workspace_id, {}).setdefault(route.app, route.name)
        self._defaults = defaults

    @classmethod
    def of(cls, stored: Sequence[ConnectionRoute], config: DeriverConfig) -> _Routes:
        return cls(stored, {**config.connections, "gumroad": config.profile_connection})

    def workspace(self, connection: str) -> int:
        # A connection removed since its event arrived: the default workspace's, as before workspaces.
        return self._workspace_of.get(connection, DEFAULT_WORKSPACE)

    def connection(self, workspace: int, app: str) -> str:
        found = self._by_app.get(workspace, {}).get(app)
        if found is not None:
            return found
        default = self._defaults.get(app, app)
        # Never another workspace's connection: a name no connection has makes the step fail, saying so.
        return default if self._workspace_of.get(default, workspace) == workspace else f"{app} (none connected)"


def _plans(events: Sequence[Event], profile: CustomerProfile | None, workflows: Sequence[Workflow]
           ) -> list[tuple[Plan, Event]]:
    """The plans of the derived events; a workflow runs once per inbound event (its first trigger wins)."""
    chosen: list[tuple[Plan, Event]] = []
    seen: set[str] = set()
    for event in events:
        for plan in plan_event(event, profile, workflows):
            if plan.workflow in seen:
                continue
            seen.add(plan.workflow)
            if plan.steps or plan.error is not None:
                chosen.append((plan, event))
    return chosen


def _refund_key(row: InboundEvent, event: Inbound, truth: ApiSale | ApiSubscriber | None) -> str | None:
    """The key a partial refund's webhook (kept per delivery by the receiver) takes when derived: keyed by the
    amount the API then says is refundable, so one refund delivered twice derives once, and two refunds twice
    (when each is derived before the next is made). Unverified, it falls back to one partial refund per sale."""
    if row.source is not EventSource.GUMROAD or not isinstance(event, SaleEvent) or not event.partial_refund \
            or event.test:
        return None  # a poll is keyed by the refundable amount it read already
    key = refund_state_key(event.dedupe_key, truth) if isinstance(truth, ApiSale) else event.dedupe_key
    return None if key == row.dedupe_key else key


class _NotAsked(Exception):
    """The outcome of a read not sent: an earlier read of its connection failed in this pass."""


_NOT_ASKED = _NotAsked()


def _failure_note(exc: Exception) -> str:
    """Why an event is rejected for an unexpected error: its type and the start of its message, redacted, with
    what is not printable escaped (a lone surrogate or a NUL quoted from the event would fail this write too)."""
    lines = str(exc).strip().splitlines()
    detail = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in lines[0][:200]) if lines else ""
    return f"cannot derive: {type(exc).__name__}" + (f": {redact_text(detail)}" if detail else "")


def _key(item: _Item) -> Key | None:
    return (item.profile_connection, item.email) if item.email else None


def _is_test(event: Inbound) -> bool:
    # Test purchases and the settings-page test ping derive nothing, so there is nothing to verify.
    return isinstance(event, SaleEvent) and (event.test or event.is_test_ping)
