"""The rows the store takes and gives: frozen records and status enums, tz-aware datetimes throughout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "AttemptOutcome",
    "AttemptRecord",
    "AttemptRow",
    "BucketState",
    "ClaimedJob",
    "DEFAULT_WORKSPACE",
    "DeadLetter",
    "EventMark",
    "EventSource",
    "EventStatus",
    "InboundEvent",
    "InsertResult",
    "JobDead",
    "JobDone",
    "JobOutcome",
    "JobReleased",
    "JobRetry",
    "JobStatus",
    "NewInboundEvent",
    "NewJob",
    "NewRun",
    "Profile",
    "RunDetail",
    "RunStatus",
    "RunSummary",
    "StepDetail",
    "UsageSample",
    "UsageWindow",
    "WorkflowRecord",
]

# The workspace of everything made before workspaces existed, and of what the CLI makes by default.
DEFAULT_WORKSPACE = 1


class EventSource(StrEnum):
    GUMROAD = "gumroad"
    SNAPSHOTS = "snapshots"
    POLLER = "poller"
    REPLAY = "replay"


class EventStatus(StrEnum):
    RECEIVED = "received"  # stored, not yet derived
    DERIVED = "derived"  # runs and jobs were made from it (possibly none)
    IGNORED = "ignored"  # nothing to do; `note` says why
    REJECTED = "rejected"  # could not be derived (e.g. verify-by-fetch failed); `note` says why


class RunStatus(StrEnum):
    PENDING = "pending"  # no step claimed yet
    RUNNING = "running"  # a step is in flight or queued behind a finished one
    FAILED = "failed"  # a step's last attempt failed; it waits for a retry
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # a step became a dead letter; the later steps are cancelled until a replay


class JobStatus(StrEnum):
    QUEUED = "queued"
    LEASED = "leased"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    DEAD = "dead"
    FENCED = "fenced"  # finished by a worker whose lease had been taken over; the job was left alone


@dataclass(frozen=True)
class NewInboundEvent:
    source: EventSource
    connection: str
    dedupe_key: str
    kind: str
    payload: Mapping[str, object]
    received_at: datetime
    status: EventStatus = EventStatus.RECEIVED
    note: str = ""


@dataclass(frozen=True)
class InboundEvent:
    id: int
    source: EventSource
    connection: str
    dedupe_key: str
    kind: str
    payload: Mapping[str, object]
    received_at: datetime
    status: EventStatus
    derived_at: datetime | None
    note: str


@dataclass(frozen=True)
class EventMark:
    """What derivation made of one inbound event; `note` says why it was ignored or rejected."""

    event_id: int
    status: EventStatus
    note: str = ""


@dataclass(frozen=True)
class InsertResult:
    """One row of a batch insert: its id, and whether the key was there already (then `id` is that row)."""

    id: int
    key: str
    duplicate: bool


@dataclass(frozen=True)
class Profile:
    connection: str
    email: str  # stored lowercased
    first_seen_at: datetime
    updated_at: datetime
    name: str | None = None
    plan: str | None = None
    location_id: str | None = None
    timezone: str | None = None
    region: str | None = None
    tier: str | None = None
    tags: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    attributes: Mapping[str, object] = field(default_factory=dict)
    last_activity_at: datetime | None = None
    lifetime_value_cents: int = 0
    purchases: int = 0
    id: int | None = None


@dataclass(frozen=True)
class WorkflowRecord:
    name: str
    source_yaml: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    id: int | None = None
    workspace_id: int = 1


@dataclass(frozen=True)
class NewRun:
    workflow_name: str
    inbound_event_id: int | None
    event_type: str
    customer_key: str
    created_at: datetime
    workspace_id: int = 1  # the workflow's


@dataclass(frozen=True)
class NewJob:
    """One planned step. `deferred` maps input fields to what fills them later; see `Tx.enqueue`."""

    run_id: int
    step_index: int
    step_id: str
    action: str
    connection: str
    ordering_key: str
    idempotency_key: str
    input: Mapping[str, object]
    deferred: Mapping[str, object] = field(default_factory=dict)
    next_attempt_at: datetime | None = None  # None: due at once


@dataclass(frozen=True)
class ClaimedJob:
    """A job under this worker's lease. `lease_token` fences it: a later claim of the same job moves it on."""

    id: int
    run_id: int
    workflow_name: str
    inbound_event_id: int | None
    step_index: int
    step_id: str
    action: str
    connection: str
    ordering_key: str
    idempotency_key: str
    input: Mapping[str, object]  # with the deferred fields already filled in
    deferred: Mapping[str, object]  # only the deferred fields still missing from `input`
    step_outputs: Mapping[str, object]  # outputs of the run's earlier succeeded steps, by step id
    attempt: int  # 1 for the first try; every claim counts
    lease_token: int
    lease_expires_at: datetime
    leased_by: str


@dataclass(frozen=True)
class AttemptRecord:
    """What the worker saw on one try; excerpts must already be redacted."""

    started_at: datetime
    duration_ms: float
    http_status: int | None = None
    request_excerpt: str = ""
    response_excerpt: str = ""
    error: str = ""


@dataclass(frozen=True)
class JobDone:
    """The job succeeded; `output` (any JSON value; None for a skipped step) feeds later steps."""

    job: ClaimedJob
    output: object
    attempt: AttemptRecord


@dataclass(frozen=True)
class JobRetry:
    """The attempt failed and may succeed later: try again at `at`."""

    job: ClaimedJob
    at: datetime
    attempt: AttemptRecord
    error: str


@dataclass(frozen=True)
class JobDead:
    """The job cannot succeed: a dead letter with `reason`."""

    job: ClaimedJob
    attempt: AttemptRecord
    reason: str


@dataclass(frozen=True)
class JobReleased:
    """Handed back untried (shutdown)."""

    job: ClaimedJob


JobOutcome = JobDone | JobRetry | JobDead | JobReleased


@dataclass(frozen=True)
class AttemptRow:
    id: int
    job_id: int
    attempt: int
    started_at: datetime
    duration_ms: float
    http_status: int | None
    outcome: AttemptOutcome
    request_excerpt: str
    response_excerpt: str
    error: str


@dataclass(frozen=True)
class RunSummary:
    id: int
    workflow_name: str
    inbound_event_id: int | None
    event_type: str
    customer_key: str
    status: RunStatus
    created_at: datetime
    finished_at: datetime | None
    payload_pruned: bool
    steps: int
    steps_succeeded: int
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class StepDetail:
    job_id: int
    step_index: int
    step_id: str
    action: str
    connection: str
    status: JobStatus
    attempts: int
    next_attempt_at: datetime
    ordering_key: str
    idempotency_key: str
    input: Mapping[str, object]
    deferred: Mapping[str, object]
    output: object
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    attempt_log: tuple[AttemptRow, ...]


@dataclass(frozen=True)
class RunDetail:
    run: RunSummary
    steps: tuple[StepDetail, ...]


@dataclass(frozen=True)
class DeadLetter:
    job_id: int
    run_id: int
    workflow_name: str
    customer_key: str
    step_id: str
    action: str
    connection: str
    ordering_key: str
    idempotency_key: str
    attempts: int
    reason: str
    died_at: datetime


@dataclass(frozen=True)
class BucketState:
    """One token bucket. `tokens` may be fractional; a request needs a whole one."""

    name: str
    capacity: float
    tokens: float
    refill_per_second: float
    updated_at: datetime
    blocked_until: datetime | None = None


@dataclass(frozen=True)
class UsageSample:
    """One request to an app: `status` None for a network failure; `throttled` for a 429."""

    connection: str
    at: datetime
    status: int | None
    latency_ms: float
    throttled: bool = False


@dataclass(frozen=True)
class UsageWindow:
    connection: str
    window_start: datetime
    requests: int
    errors: int
    throttled: int
    latency_ms_sum: float
    latency_count: int

    @property
    def mean_latency_ms(self) -> float:
        return self.latency_ms_sum / self.latency_count if self.latency_count else 0.0
