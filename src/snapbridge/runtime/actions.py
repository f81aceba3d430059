"""Running one claimed job: a catalog action over its connection's HTTP client, or a local profile action.

Inputs: the deriver enqueues each step with its input rendered as far as planning could; a step that reads
an earlier step's output (or whose condition does) carries its plan under `deferred["$plan"]`. `prepare`
finishes it with workflows.resolve_step over the derived event, the profile as it is now and the earlier
steps' outputs (ClaimedJob.step_outputs); a false condition skips the step (output null, no request). What
the store already filled (plain `steps.<id>.output` references) is in the job's input. Nothing here raises for
the action's own failures: `Outcome.error` carries our typed error, with what was sent and answered as
redacted excerpts for the attempt history.

Local actions (workflows.LOCAL_ACTIONS) run in one store transaction, see runtime.local_actions.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import anyio.lowlevel
import httpx

from snapbridge.catalog import (
    ActionResult,
    Operation,
    get_action,
    prepare_request,
    run_action,
    validate_params,
)
from snapbridge.errors import (
    AuthFailed,
    DeliveryError,
    InvalidInput,
    Permanent,
    Retryable,
    ScopeMissing,
    SnapbridgeError,
)
from snapbridge.http import RateLimitState, create_client
from snapbridge.runtime.jobplan import job_plan
from snapbridge.runtime.local_actions import SegmentChangedHook, run_local_action
from snapbridge.security import Secret, Vault, redact_json_text, redact_text
from snapbridge.store import ClaimedJob, ConnectionRecord, ConnectionStore, Store
from snapbridge.workflows import DEFAULT_SEGMENTS, LOCAL_ACTIONS, SegmentRule, resolve_step

__all__ = [
    "BATCH_ACTION",
    "EVENT_ACTION",
    "MAX_BATCH_EVENTS",
    "ActionRunner",
    "BatchMember",
    "Connections",
    "Outcome",
    "Prepared",
    "PreparedBatch",
    "SegmentChangedHook",
    "batch_idempotency_key",
    "is_batchable",
]

EVENT_ACTION = "snapshots.events.create"
BATCH_ACTION = "snapshots.events.batch"
MAX_BATCH_EVENTS = 100  # the contract's limit per /events/batch request
EXCERPT_CHARS = 500
REASON_CHARS = 300  # the most of a batch item's own error a member's error repeats
CREDENTIAL_CACHE_SECONDS = 60.0

def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Outcome:
    """What one try of a job did. `error` None means success with `output`."""

    output: object = None
    error: BaseException | None = None
    http_status: int | None = None
    request_excerpt: str = ""
    response_excerpt: str = ""
    rate_limit: RateLimitState | None = None
    elapsed_ms: float = 0.0
    replayed: bool = False
    sent: bool = False  # a request went out (for usage and the limiter); False for local or refused input
    skipped: bool = False  # the step's condition rendered false: nothing was run


@dataclass(frozen=True)
class BatchMember:
    job: ClaimedJob
    outcome: Outcome


@dataclass(frozen=True)
class Prepared:
    """A job ready to send: its complete input and, for a catalog action, the operation and the connection.

    Everything slow (profile read, connection lookup, decryption) happens while preparing, so that between
    taking a rate-limit token and the request leaving there is nothing but the send.
    """

    job: ClaimedJob
    params: Mapping[str, object]
    op: Operation | None = None
    credential: Secret | None = field(default=None, repr=False)
    client: httpx.AsyncClient | None = None
    request_excerpt: str = ""


@dataclass(frozen=True)
class PreparedBatch:
    """Independent POST /events jobs of one connection, ready to go out as one /events/batch."""

    members: tuple[tuple[ClaimedJob, Mapping[str, object]], ...]
    idempotency_key: str
    params: Mapping[str, object]
    op: Operation
    credential: Secret = field(repr=False)
    client: httpx.AsyncClient
    request_excerpt: str


def batch_idempotency_key(member_keys: Sequence[str]) -> str:
    """One key for a batch, derived from its members' keys: the same members always send the same key."""
    digest = hashlib.sha256("\n".join(sorted(member_keys)).encode("utf-8")).hexdigest()
    return f"sbb1-{digest}"


def is_batchable(job: ClaimedJob) -> bool:
    """An independent POST /events: its input is complete, nothing left to render."""
    return job.action == EVENT_ACTION and not job.deferred


# ---- connections ----------------------------------------------------------------------------------------


@dataclass
class _Connected:
    record: ConnectionRecord
    credential: Secret = field(repr=False)
    client: httpx.AsyncClient
    loaded: float


class Connections:
    """Connection name → its record, decrypted credential and a pooled HTTP client (re-read periodically)."""

    def __init__(self, records: ConnectionStore, vault: Vault, *, allowed_hosts: Sequence[str] = (),
                 timeout: float = 10.0, max_connections: int = 20,
                 cache_seconds: float = CREDENTIAL_CACHE_SECONDS) -> None:
        self._records = records
        self._vault = vault
        self._allowed = tuple(allowed_hosts)
        self._timeout = timeout
        self._max_connections = max_connections
        self._cache_seconds = cache_seconds
        self._open: dict[str, _Connected] = {}
        self._lock = asyncio.Lock()

    async def get(self, name: str) -> tuple[ConnectionRecord, Secret, httpx.AsyncClient]:
        async with self._lock:
            found = self._open.get(name)
            if found is not None and time.monotonic() - found.loaded < self._cache_seconds:
                return found.record, found.credential, found.client
            return await self._load(name, found)

    async def rotated(self, name: str, used: Secret) -> bool:
        """True when `name`'s stored credential is no longer `used` (replaced within the cache's lifetime, by
        `connect` or the dashboard, perhaps in another process); the next `get` then gives the new one."""
        async with self._lock:
            found = self._open.get(name)
            if found is not None and found.credential != used:
                return True  # another job has loaded the new one already
            try:
                _, credential, _ = await self._load(name, found)
            except SnapbridgeError:
                return False
            return credential != used

    async def _load(self, name: str, found: _Connected | None
                    ) -> tuple[ConnectionRecord, Secret, httpx.AsyncClient]:
        """Read the record and decrypt its credential (the lock is held)."""
        record = await asyncio.to_thread(self._records.get, name)
        if record is None:
            raise InvalidInput(f"no connection named {name!r}; connect it, then replay the job")
        # Re-reading lets a reconnected credential take effect; the client stays while the URL does.
        credential = self._vault.decrypt(record.credential, bound_to=f"{record.name}:credential")
        if found is not None and found.record.base_url == record.base_url:
            client = found.client
        else:
            if found is not None:
                await found.client.aclose()
            client = create_client(record.base_url, allowed_hosts=self._allowed, timeout=self._timeout,
                                   max_connections=self._max_connections)
            # httpx's network backend (anyio) loads on first use, tens of ms on a busy host: load it now,
            # not between a rate-limit token and the request it pays for.
            await anyio.lowlevel.checkpoint()
        self._open[name] = _Connected(record, credential, client, time.monotonic())
        return record, credential, client

    async def aclose(self) -> None:
        async with self._lock:
            for connected in self._open.values():
                await connected.client.aclose()
            self._open.clear()


# ---- the runner -----------------------------------------------------------------------------------------


class ActionRunner:
    """Runs jobs: catalog actions through `Connections`, local actions through the store."""

    def __init__(self, connections: Connections, store: Store, *,
                 segments: Sequence[SegmentRule] = DEFAULT_SEGMENTS,
                 on_segment_changed: SegmentChangedHook | None = None,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self._connections = connections
        self._store = store
        self._segments = tuple(segments)
        self._on_segment_changed = on_segment_changed
        self._clock = clock

    async def aclose(self) -> None:
        """Close the connections' HTTP clients (the owner calls this once the worker has stopped)."""
        await self._connections.aclose()

    @staticmethod
    def is_local(action: str) -> bool:
        return action in LOCAL_ACTIONS

    async def run(self, job: ClaimedJob) -> Outcome:
        """One try of the job, prepare then execute, without a rate limiter."""
        prepared = await self.prepare(job)
        return prepared if isinstance(prepared, Outcome) else await self.execute(prepared)

    async def prepare(self, job: ClaimedJob) -> Prepared | Outcome:
        """The job ready to send, or its final Outcome when nothing is to be sent (skipped, bad input)."""
        try:
            params = await self._input(job)
            if params is None:
                return Outcome(skipped=True, request_excerpt=f"{job.action}: skipped, its condition is false")
            if self.is_local(job.action):
                return Prepared(job, params, request_excerpt=_cut(f"{job.action} " + _json_excerpt(params)))
        except SnapbridgeError as exc:
            return _failed(job, exc)
        try:
            op = get_action(job.action)
            checked = validate_params(op, params)  # refuse bad input before a token is spent on it
            record, credential, client = await self._connections.get(job.connection)
            _check_app(op, record)
        except SnapbridgeError as exc:
            return _failed(job, exc, params)
        return Prepared(job, checked, op, credential, client,
                        _request_excerpt(op, checked, job.idempotency_key, (credential,)))

    async def _input(self, job: ClaimedJob) -> dict[str, object] | None:
        """The complete input (None: the condition is false); see the module docstring."""
        plan = job_plan(job)
        if plan is None:
            return dict(job.input)
        # The profile as planned, not as it is now: each try must send the same body under the same key.
        resolved = resolve_step(plan.step, plan.event, plan.profile, job.step_outputs)
        return dict(resolved.input) if resolved.run else None

    async def execute(self, prepared: Prepared) -> Outcome:
        """Run the prepared action; the error of a failed try is in the Outcome."""
        job, params = prepared.job, prepared.params
        started = time.perf_counter()
        if prepared.op is None or prepared.client is None or prepared.credential is None:
            try:
                output = await asyncio.to_thread(self._run_local, job, params)
            except SnapbridgeError as exc:
                return replace(_failed(job, exc, params), elapsed_ms=_ms_since(started))
            return Outcome(output=output, elapsed_ms=_ms_since(started),
                           request_excerpt=prepared.request_excerpt, response_excerpt=_json_excerpt(output))
        try:
            result = await run_action(prepared.op, params, http=prepared.client,
                                      credential=prepared.credential, idempotency_key=job.idempotency_key,
                                      clock=self._clock)
        except SnapbridgeError as exc:
            sent = not isinstance(exc, InvalidInput)  # the runner checks input before it sends anything
            error = await self._unless_rotated(exc, prepared.job.connection, prepared.credential)
            return Outcome(error=error, http_status=_status(exc), request_excerpt=prepared.request_excerpt,
                           response_excerpt=_excerpt_of(exc), elapsed_ms=_ms_since(started), sent=sent)
        return _success(result, prepared.request_excerpt, (prepared.credential,))

    async def _unless_rotated(self, error: SnapbridgeError, connection: str, used: Secret) -> SnapbridgeError:
        """`error`, or a retry at once when the app refused a credential that has been replaced meanwhile (the
        connections are cached for a minute): the job must not die of a key the user has already fixed."""
        if not isinstance(error, AuthFailed | ScopeMissing) or not await self._connections.rotated(connection, used):
            return error
        return Retryable(f"the credential was replaced while this was sent; sending again with the new one "
                         f"(refused: {error})", retry_after=0.0, operation=getattr(error, "operation", ""))

    async def prepare_batch(self, members: Sequence[ClaimedJob]
                            ) -> tuple[PreparedBatch | None, list[BatchMember], list[ClaimedJob]]:
        """The batch to send; the members that failed on their own already (bad input, no connection); and the
        members held back because an earlier member of their ordering key failed (they must not go ahead of it)."""
        single = get_action(EVENT_ACTION)
        ready: list[tuple[ClaimedJob, Mapping[str, object]]] = []
        done: list[BatchMember] = []
        held: list[ClaimedJob] = []
        seen: set[str] = set()  # ordering keys met so far
        stopped: set[str] = set()  # ordering keys with a failed member: the rest of the key waits for it
        for job in sorted(members, key=lambda member: member.id):
            if not is_batchable(job):
                raise ValueError(f"job {job.id} is not an independent {EVENT_ACTION}")
            first, key = job.ordering_key not in seen, job.ordering_key
            seen.add(key)
            if key in stopped:
                held.append(job)
                continue
            try:
                ready.append((job, validate_params(single, job.input)))
            except InvalidInput as exc:
                stopped.add(key)
                # Only a key's first member ends here; one behind another waits its turn, as it would alone.
                if first:
                    done.append(BatchMember(job, _failed(job, exc)))
                else:
                    held.append(job)
        if not ready:
            return None, done, held
        connection = ready[0][0].connection
        if any(job.connection != connection for job, _ in ready):
            raise ValueError("a batch must hold jobs of one connection")
        # In job order: a customer's events in one batch arrive as enqueued (UNCONFIRMED in the contract: the
        # API applies a batch's events in their order; the sandbox does). The same members make the same body.
        key = batch_idempotency_key([job.idempotency_key for job, _ in ready])
        op = get_action(BATCH_ACTION)
        params: dict[str, object] = {"events": [dict(event) for _, event in ready]}
        try:
            record, credential, client = await self._connections.get(connection)
            _check_app(op, record)
        except SnapbridgeError as exc:
            return None, done + [BatchMember(job, _failed(job, exc)) for job, _ in ready], held
        request = _request_excerpt(op, params, key, (credential,))
        return PreparedBatch(tuple(ready), key, params, op, credential, client, request), done, held

    async def execute_batch(self, batch: PreparedBatch) -> list[BatchMember]:
        """Send the batch: an outcome per member.

        Refused as a whole (429, 5xx, network, auth): every member gets that outcome. Otherwise each member is
        settled by its own result: created or duplicate → done (its output: the event as sent), error → a
        permanent failure with the app's message.
        """
        started = time.perf_counter()
        try:
            result = await run_action(batch.op, batch.params, http=batch.client, credential=batch.credential,
                                      idempotency_key=batch.idempotency_key, clock=self._clock)
        except SnapbridgeError as exc:
            error = await self._unless_rotated(exc, batch.members[0][0].connection, batch.credential)
            failed = Outcome(error=error, http_status=_status(exc), request_excerpt=batch.request_excerpt,
                             response_excerpt=_excerpt_of(exc), elapsed_ms=_ms_since(started), sent=True)
            return [BatchMember(job, failed) for job, _ in batch.members]
        by_id: dict[str, Mapping[str, object]] = {}
        for item in result.payload if isinstance(result.payload, list) else []:
            if isinstance(item, Mapping) and isinstance(item.get("event_id"), str):
                by_id.setdefault(str(item["event_id"]), item)
        items = [by_id.get(str(event.get("event_id"))) for _, event in batch.members]
        # The whole answer's excerpt is only shown for a member the answer has no result for: redacting a
        # large batch body for nothing was a tenth of the worker's time.
        whole = _success(result, batch.request_excerpt, (batch.credential,), excerpt=None in items)
        return [BatchMember(job, _member_outcome(whole, batch, event, item))
                for (job, event), item in zip(batch.members, items, strict=True)]

    def _run_local(self, job: ClaimedJob, params: Mapping[str, object]) -> dict[str, object]:
        with self._store.transaction() as tx:
            return run_local_action(tx, job, params, now=self._clock(), segments=self._segments,
                                    on_segment_changed=self._on_segment_changed)


# ---- helpers --------------------------------------------------------------------------------------------


def _member_outcome(whole: Outcome, batch: PreparedBatch, event: Mapping[str, object],
                    item: Mapping[str, object] | None) -> Outcome:
    secrets = (batch.credential,)
    member = replace(
        whole, response_excerpt=_json_excerpt(item, secrets) if item is not None else whole.response_excerpt,
        request_excerpt=_cut(f"{batch.request_excerpt[:200]} … event {_json_excerpt(event, secrets)}"),
    )
    status = item.get("status") if item is not None else None
    if status in ("created", "duplicate"):
        return replace(member, output=dict(event), replayed=status == "duplicate")
    event_id, op = event.get("event_id"), batch.op.name
    if status == "error":
        # The API's words, as an error excerpt shows them: redacted and bounded.
        why = item.get("error") if item is not None else None
        said = _cut(_json_excerpt(why, secrets), REASON_CHARS) if why else "no reason given"
        return replace(member, error=Permanent(f"event {event_id} refused: {said}", operation=op,
                                               status=whole.http_status))
    return replace(member, error=Retryable(f"the batch answer has no result for event {event_id}",
                                           operation=op, status=whole.http_status))


def _check_app(op: Operation, record: ConnectionRecord) -> None:
    if record.app != op.app:
        raise InvalidInput(f"{op.name} needs a {op.app} connection; {record.name!r} is a {record.app} one")


def _cut(text: str, limit: int = EXCERPT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _json_excerpt(value: object, secrets: Sequence[Secret | str] = ()) -> str:
    try:
        return _cut(redact_json_text(value, secrets, keep=EXCERPT_CHARS))
    except (TypeError, ValueError):
        return _cut(redact_text(repr(value), secrets))


def _request_excerpt(op: Operation, params: Mapping[str, object], key: str | None,
                     secrets: Sequence[Secret | str]) -> str:
    """`METHOD /path?query {body}`, sensitive values removed; the idempotency key helps to trace replays."""
    try:
        prepared = prepare_request(op, params)
    except InvalidInput:
        return _cut(f"{op.method} {op.path} " + _json_excerpt(dict(params), secrets))
    query = "&".join(f"{k}={v}" for k, v in prepared.query)
    line = f"{op.method} {prepared.path}{'?' + query if query else ''}"
    if key and op.is_write:
        line += f" [Idempotency-Key {key}]"
    if prepared.json is not None:
        line += " " + _json_excerpt(prepared.json, secrets)
    elif prepared.form is not None:
        line += " " + _json_excerpt(dict(prepared.form), secrets)
    return _cut(redact_text(line, secrets))


def _failed(job: ClaimedJob, error: BaseException, values: Mapping[str, object] | None = None) -> Outcome:
    shown = values if values is not None else job.input
    return Outcome(error=error, http_status=_status(error), response_excerpt=_excerpt_of(error),
                   request_excerpt=_cut(f"{job.action} " + _json_excerpt(shown)))


def _success(result: ActionResult, request: str, secrets: Sequence[Secret | str], *, excerpt: bool = True
             ) -> Outcome:
    return Outcome(output=result.payload, http_status=result.status, request_excerpt=request,
                   response_excerpt=_json_excerpt(result.body, secrets) if excerpt else "",
                   rate_limit=result.rate_limit,
                   elapsed_ms=result.elapsed_ms, replayed=result.replayed, sent=True)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _status(error: BaseException) -> int | None:
    return error.status if isinstance(error, DeliveryError) else None


def _excerpt_of(error: BaseException) -> str:
    return _cut(error.excerpt) if isinstance(error, DeliveryError) else ""
