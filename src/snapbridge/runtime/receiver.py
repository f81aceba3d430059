"""The webhook receiver's core: authenticate, parse and key inbound webhooks, and commit them in groups."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from snapbridge.connectors.gumroad import GumroadEvent, SaleEvent, check_seller
from snapbridge.connectors.gumroad import parse_webhook as parse_gumroad_webhook
from snapbridge.connectors.snapshots import (
    MAX_FUTURE_SKEW,
    CustomerUpdateEvent,
    Location,
    SnapshotsWebhookEvent,
    check_freshness,
    check_signature,
    load_public_key,
)
from snapbridge.connectors.snapshots import parse_webhook as parse_snapshots_webhook
from snapbridge.errors import InvalidInput, StoreUnavailable, WebhookRejected
from snapbridge.runtime.payloads import check_storable
from snapbridge.security import Secret, redact_text
from snapbridge.store import EventSource, InsertResult, NewInboundEvent

__all__ = [
    "MIN_WEBHOOK_SECRET_LENGTH",
    "CommitStats",
    "GroupCommitter",
    "GumroadHook",
    "ReceiverConfig",
    "ReceiverLimits",
    "SnapshotsHook",
    "check_webhook_key",
    "find_gumroad_hook",
    "gumroad_inbound",
    "location_dedupe_key",
    "new_webhook_secret",
    "snapshots_dedupe_key",
    "snapshots_inbound",
]

log = logging.getLogger(__name__)

MIN_WEBHOOK_SECRET_LENGTH = 32
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# inbound_events.dedupe_key is a String(500): a longer key could never commit, so it is bad input (400).
MAX_DEDUPE_KEY_LENGTH = 500


def new_webhook_secret() -> Secret:
    """A fresh path token for a Gumroad connection's webhook URL: 256 random bits, URL-safe (43 chars)."""
    return Secret(secrets.token_urlsafe(32))


@dataclass(frozen=True)
class GumroadHook:
    """One Gumroad connection's webhook endpoint: its secret path token and the seller it belongs to."""

    secret: Secret
    connection: str
    seller_id: str


@dataclass(frozen=True)
class SnapshotsHook:
    """One Snapshots connection's webhook verification key."""

    connection: str
    public_key: Ed25519PublicKey = field(repr=False)


@dataclass(frozen=True)
class ReceiverLimits:
    """Group-commit and freshness knobs; the body size limit comes from Settings.max_body_bytes."""

    max_batch: int = 512  # events in one store transaction
    # How long the collector waits for more events after the first one before committing. Zero still
    # batches: whatever arrives while a commit runs goes into the next one.
    linger_seconds: float = 0.0
    max_backlog: int = 10_000  # events waiting or committing; past this, answer "retry later" at once
    # Gumroad gives up on an attempt after 5 s; answering 503 before that keeps its retry schedule.
    commit_timeout_seconds: float = 4.0
    retry_after_seconds: int = 60  # the Retry-After sent with a 429 to the Snapshots API
    # A sender that stops in the middle of a body is answered 408 after this, rather than holding a connection
    # and its buffered part of the body for as long as it likes (both senders send a body at once).
    body_timeout_seconds: float = 30.0
    # The Snapshots API retries a 429 about 10 minutes later with the same timestamp (up to 6 times), so the
    # contract's 5-minute window would refuse every retry. A signed body's webhookId is deduplicated durably
    # in the store, which is what stops replays; the window only bounds how old a first delivery may be.
    max_age: timedelta = timedelta(minutes=75)
    max_future_skew: timedelta = MAX_FUTURE_SKEW

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_backlog < 1:
            raise InvalidInput("max_batch and max_backlog must be at least 1")
        if self.linger_seconds < 0 or self.commit_timeout_seconds <= 0 or self.retry_after_seconds < 0:
            raise InvalidInput("linger, commit timeout and Retry-After must not be negative")
        if self.body_timeout_seconds <= 0:
            raise InvalidInput("the body timeout must be positive")


@dataclass(frozen=True)
class ReceiverConfig:
    """Who may post: the Gumroad connections' secrets and seller ids, the Snapshots webhook keys."""

    gumroad: tuple[GumroadHook, ...] = ()
    snapshots: tuple[SnapshotsHook, ...] = ()
    limits: ReceiverLimits = field(default_factory=ReceiverLimits)

    def __post_init__(self) -> None:
        names = [hook.connection for hook in self.gumroad]
        if len(set(names)) != len(names):
            raise InvalidInput("each Gumroad connection may have only one webhook secret")
        for hook in self.gumroad:
            _check_secret(hook)
        if len(set(self.gumroad_secrets())) != len(self.gumroad):
            raise InvalidInput("two Gumroad connections share a webhook secret")

    @classmethod
    def from_values(
        cls,
        *,
        gumroad: Mapping[str, tuple[str, str]] | None = None,
        snapshots: Mapping[str, bytes | str | Ed25519PublicKey] | None = None,
        limits: ReceiverLimits | None = None,
    ) -> ReceiverConfig:
        """From plain values: gumroad {secret: (connection, seller_id)}, snapshots {connection: key}."""
        return cls(
            gumroad=tuple(
                GumroadHook(Secret(secret), connection, seller_id)
                for secret, (connection, seller_id) in (gumroad or {}).items()
            ),
            snapshots=tuple(
                SnapshotsHook(name, load_public_key(key)) for name, key in (snapshots or {}).items()
            ),
            limits=limits or ReceiverLimits(),
        )

    def gumroad_secrets(self) -> Iterable[Secret]:
        return (hook.secret for hook in self.gumroad)


def _check_secret(hook: GumroadHook) -> None:
    # Checked through the Secret so the value never lands in a message.
    value = hook.secret.reveal()
    if len(value) < MIN_WEBHOOK_SECRET_LENGTH or not set(value) <= _URLSAFE:
        raise InvalidInput(
            f"the webhook secret of Gumroad connection {hook.connection!r} must be at least "
            f"{MIN_WEBHOOK_SECRET_LENGTH} URL-safe characters (A-Z a-z 0-9 - _)"
        )


def find_gumroad_hook(config: ReceiverConfig, token: str) -> GumroadHook | None:
    """The connection whose secret is `token`, or None.

    Every known secret is compared, in constant time, without stopping at a match: how long this takes says
    nothing about which secret (or how much of one) was guessed.
    """
    candidate = Secret(token)
    found: GumroadHook | None = None
    for hook in config.gumroad:
        if hook.secret == candidate:  # Secret.__eq__ is hmac.compare_digest
            found = hook
    return found


def check_webhook_key(key: str) -> None:
    """InvalidInput (not naming the key) unless it is an Ed25519 public key the receiver can verify with."""
    load_public_key(key)


def _checked_key(key: str) -> str:
    if len(key) > MAX_DEDUPE_KEY_LENGTH:
        raise InvalidInput(f"an id in the webhook is too long ({len(key)} characters in its dedupe key, at "
                           f"most {MAX_DEDUPE_KEY_LENGTH})")
    if "\x00" in key:
        # PostgreSQL text cannot hold NUL: every attempt would fail to commit, and its batch with it.
        raise InvalidInput("an id in the webhook holds a NUL character")
    return key


def _gumroad_kind(event: GumroadEvent) -> str:
    if isinstance(event, SaleEvent) and event.resource_name is None:
        return "test_ping"
    assert event.resource_name is not None
    return event.resource_name.value


def gumroad_inbound(
    hook: GumroadHook, body: bytes, content_type: str | None, *, now: datetime, max_body_bytes: int
) -> tuple[GumroadEvent, NewInboundEvent]:
    """The parsed Ping or resource-subscription post and the row to store for it.

    InvalidInput for an unreadable body; WebhookRejected when it names another seller than the connection's.
    The payload is the folded body as sent, so the deriver re-reads it with the same parser.
    """
    event = parse_gumroad_webhook(body, content_type, max_body_bytes=max_body_bytes)
    check_seller(event, hook.seller_id)
    key = event.dedupe_key
    if isinstance(event, SaleEvent) and event.partial_refund:
        # Kept per delivery (a second partial refund pings exactly as the first); the deriver re-keys it by
        # what the API then says is refundable, so a repeated delivery of one refund is still derived once.
        key = f"{key}:delivery:{secrets.token_hex(8)}"
    check_storable(event.fields)
    row = NewInboundEvent(
        source=EventSource.GUMROAD,
        connection=hook.connection,
        dedupe_key=_checked_key(key),
        kind=_gumroad_kind(event),
        received_at=now,
        payload=dict(event.fields),
    )
    return event, row


def location_dedupe_key(location: Location) -> str:
    """One key per state of a location (its id and update time), whether a webhook or a poll brought it."""
    # Full precision: two updates within one second are two states.
    version = location.updated_at.astimezone(UTC).isoformat() if location.updated_at else "unversioned"
    return f"snapshots:location:{location.location_id}:{version}"


def snapshots_dedupe_key(event: SnapshotsWebhookEvent) -> str:
    """The same key however often (and to whichever receiver) a webhook is sent.

    A location webhook carries the location's fields, `updated_at` among them, so it is keyed by the state it
    shows, as the locations poller keys what it reads: one change seen both ways is one event. A customer
    webhook, or a location one without `updated_at`, is keyed by its webhook id.
    """
    if isinstance(event, CustomerUpdateEvent) or event.location.updated_at is None:
        return f"snapshots:webhook:{event.webhook_id}"
    return location_dedupe_key(event.location)


def snapshots_inbound(
    config: ReceiverConfig, body: bytes, headers: Mapping[str, str], *, now: datetime
) -> tuple[SnapshotsWebhookEvent, NewInboundEvent]:
    """The verified Snapshots webhook and the row to store for it.

    WebhookRejected when no configured key verifies the signature, or the timestamp is stale or too far ahead;
    InvalidInput when a correctly signed body is malformed. Replays are not refused here: the dedupe key (the
    location state, else the webhook id) is checked inside the store transaction, so a commit that failed
    never makes its retry a replay.
    """
    hook = _verifying_hook(config.snapshots, body, headers)
    event = parse_snapshots_webhook(body)
    limits = config.limits
    check_freshness(event.timestamp, now, max_age=limits.max_age, max_future_skew=limits.max_future_skew)
    payload = json.loads(body)  # parsed once already, so it is a JSON object
    check_storable(payload)
    row = NewInboundEvent(
        source=EventSource.SNAPSHOTS,
        connection=hook.connection,
        dedupe_key=_checked_key(snapshots_dedupe_key(event)),
        kind=event.type.value,
        received_at=now,
        payload=payload,
    )
    return event, row


def _verifying_hook(hooks: Sequence[SnapshotsHook], body: bytes, headers: Mapping[str, str]) -> SnapshotsHook:
    if not hooks:
        raise WebhookRejected("no Snapshots webhook key is configured")
    first: WebhookRejected | None = None
    # Several keys: one per connection, or the old and new key while one is rotated (no key-id header exists).
    for hook in hooks:
        try:
            check_signature(body, headers, hook.public_key)
        except WebhookRejected as exc:
            first = first or exc
            continue
        return hook
    assert first is not None
    raise first


@dataclass(frozen=True)
class CommitStats:
    """What the group committer has done so far; `batches` counts store transactions."""

    batches: int
    events: int
    largest_batch: int
    failed_batches: int
    backlog: int


@dataclass(slots=True)
class _Waiting:
    event: NewInboundEvent
    future: asyncio.Future[InsertResult]
    deadline: float  # loop time past which the request is answered "retry later"


class GroupCommitter:
    """Collects inbound events from concurrent requests and stores each group in one transaction.

    Runs on the serving event loop; the store call (synchronous SQL) runs on one dedicated worker thread, so
    SQLite sees a single writer, and each batch crosses to that thread and back once. Each request awaits its
    own InsertResult, or StoreUnavailable.
    """

    def __init__(
        self,
        insert: Callable[[Sequence[NewInboundEvent]], list[InsertResult]],
        limits: ReceiverLimits | None = None,
        on_commit: Callable[[], object] | None = None,
    ) -> None:
        self._insert = insert
        self._limits = limits or ReceiverLimits()
        self._on_commit = on_commit
        self._queue: list[_Waiting] = []
        # Every request not answered yet, oldest first. The commit timeout is the same for all, so deadlines
        # come in order and one timer, set for the oldest, serves them all (not one timer per request).
        self._unanswered: deque[_Waiting] = deque()
        self._expiry: asyncio.TimerHandle | None = None
        self._pending = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._batches = self._events = self._largest = self._failed = 0

    @property
    def stats(self) -> CommitStats:
        return CommitStats(self._batches, self._events, self._largest, self._failed, self._pending)

    async def start(self) -> None:
        if self._task is not None:
            return
        self._closing = False
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-commit")
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Commit what is already queued, then stop; later submissions get StoreUnavailable."""
        if self._task is None or self._wake is None:
            return
        self._closing = True
        self._wake.set()
        await self._task
        self._task = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._unanswered.clear()  # every one was answered when its batch ended
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, event: NewInboundEvent) -> InsertResult:
        """The stored row's id (duplicate=True when the dedupe key was already there) once it is committed."""
        if self._task is None or self._wake is None or self._closing:
            raise StoreUnavailable("the receiver is not accepting events (starting or shutting down)")
        if self._pending >= self._limits.max_backlog:
            raise StoreUnavailable(f"the receiver has {self._pending} events waiting to commit; retry later")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[InsertResult] = loop.create_future()
        waiting = _Waiting(event, future, loop.time() + self._limits.commit_timeout_seconds)
        self._queue.append(waiting)
        self._unanswered.append(waiting)
        self._pending += 1
        self._wake.set()
        if self._expiry is None:
            self._expiry = loop.call_at(waiting.deadline, self._expire_overdue)
        return await future

    def _expire_overdue(self) -> None:
        # An overdue request is answered "retry later" while its event stays in its batch: if the commit
        # succeeds after all, the sender's retry is recognised as a duplicate. Done futures are skipped.
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._expiry = None
        unanswered = self._unanswered
        while unanswered:
            oldest = unanswered[0]
            if not oldest.future.done():
                if oldest.deadline > now:
                    self._expiry = loop.call_at(oldest.deadline, self._expire_overdue)
                    return
                seconds = self._limits.commit_timeout_seconds
                oldest.future.set_exception(StoreUnavailable(f"the store did not commit within {seconds:g}s"))
            unanswered.popleft()

    def _forget_answered(self) -> None:
        unanswered = self._unanswered
        while unanswered and unanswered[0].future.done():
            unanswered.popleft()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            limits = self._limits
            if limits.linger_seconds and len(self._queue) < limits.max_batch and not self._closing:
                await asyncio.sleep(limits.linger_seconds)
            batch = self._queue[: self._limits.max_batch]
            del self._queue[: len(batch)]
            try:
                await self._commit(batch)
            except Exception as exc:
                # A bug here must not stop the collector: every later request would wait for its timeout.
                log.error("action=group_commit_error events=%d error=%s", len(batch), type(exc).__name__)
                _fail(batch, StoreUnavailable("the events could not be stored"), cause=exc)
            finally:
                self._pending -= len(batch)
                self._forget_answered()

    async def _commit(self, batch: list[_Waiting]) -> None:
        loop = asyncio.get_running_loop()
        events = [item.event for item in batch]
        try:
            results = await loop.run_in_executor(self._executor, self._insert, events)
        except StoreUnavailable as exc:
            self._failed += 1
            log.warning("action=group_commit_failed events=%d reason=%s", len(batch), redact_text(str(exc)))
            _fail(batch, exc)
            return
        except Exception as exc:
            # Not an outage: something in the batch cannot be stored. Commit one by one so a single bad event
            # cannot keep refusing the others that happened to share its transaction.
            self._failed += 1
            log.error("action=group_commit_error events=%d error=%s", len(batch), type(exc).__name__)
            if len(batch) == 1:
                if isinstance(exc, InvalidInput) and not batch[0].future.done():
                    batch[0].future.set_exception(exc)  # the database refused a value in it: 400, not retried
                else:
                    _fail(batch, StoreUnavailable("the event could not be stored"), cause=exc)
                return
            for item in batch:
                await self._commit([item])
            return
        self._batches += 1
        self._events += len(batch)
        self._largest = max(self._largest, len(batch))
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)
        if self._on_commit is not None and any(not result.duplicate for result in results):
            try:
                self._on_commit()
            except Exception as exc:
                log.error("action=on_commit_failed error=%s", type(exc).__name__)


def _fail(batch: list[_Waiting], error: StoreUnavailable, cause: BaseException | None = None) -> None:
    for item in batch:
        if not item.future.done():
            # One exception object per waiter: each request raises it with its own traceback.
            mine = StoreUnavailable(str(error))
            mine.__cause__ = cause or error.__cause__ or error
            item.future.set_exception(mine)

