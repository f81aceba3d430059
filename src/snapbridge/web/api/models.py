"""The management API's shapes: input models (what a client sends) and output models (what it gets back)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from snapbridge.errors import InvalidInput
from snapbridge.runtime import check_webhook_key
from snapbridge.security import MIN_PASSWORD_LENGTH
from snapbridge.web.api.params import INSTANT_EXAMPLE, as_utc

__all__ = [
    "ApiTokenCreated",
    "ApiTokenIn",
    "ApiTokenOut",
    "AttemptOut",
    "ConnectionIn",
    "ConnectionOut",
    "ConnectionTest",
    "Counts",
    "CredentialIn",
    "CsvText",
    "CustomerOut",
    "DeadLetterOut",
    "DryRunIn",
    "DryRunOut",
    "ErrorOut",
    "PlanOut",
    "ProblemOut",
    "ReplayFilterIn",
    "ReplayOut",
    "RequestOut",
    "RunDetailOut",
    "RunOut",
    "RunTestOut",
    "RunTestStepOut",
    "ScopeOut",
    "StepOut",
    "SupersededOut",
    "TemplateOut",
    "UsageOut",
    "UsageWindowOut",
    "UserIn",
    "UserOut",
    "WorkflowIn",
    "WorkflowOut",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=200_000)


class ProblemOut(BaseModel):
    path: str
    message: str


class ErrorOut(BaseModel):
    error: str
    problems: list[ProblemOut] = []


class ScopeOut(BaseModel):
    scope: str
    held: bool
    required: bool
    needed_for: str


class ConnectionTest(BaseModel):
    ok: bool
    message: str  # plain words: the account reached, or what went wrong
    account: str = ""
    missing_scopes: list[ScopeOut] = []
    scopes: list[ScopeOut] = []


def _usable_public_key(value: str | None) -> str | None:
    """A key the receiver can verify signatures with: a bad one stored would stop it loading any hook."""
    if value is not None:
        try:
            check_webhook_key(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
    return value


class ConnectionIn(_In):
    app: Literal["gumroad", "snapshots"]
    name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$")
    # Visible ASCII only: it travels in an HTTP header, where anything else cannot be encoded (was a 500).
    credential: str = Field(min_length=1, max_length=4000, pattern=r"^[!-~]+$",
                            description="write-only: never returned")
    webhook_public_key: str | None = Field(default=None, max_length=20000, description="write-only")
    base_url: str | None = Field(default=None, max_length=2000)

    _key_usable = field_validator("webhook_public_key")(_usable_public_key)


class CredentialIn(_In):
    """A new credential for a stored connection (rotation): tested before it replaces the old one."""

    credential: str = Field(min_length=1, max_length=4000, pattern=r"^[!-~]+$",
                            description="write-only: never returned")
    webhook_public_key: str | None = Field(default=None, max_length=20000,
                                           description="write-only (Snapshots API); left out keeps the stored one")

    _key_usable = field_validator("webhook_public_key")(_usable_public_key)


class ConnectionOut(BaseModel):
    name: str
    app: str
    base_url: str
    account: str
    scopes: list[str]
    has_webhook_key: bool
    created_at: datetime
    updated_at: datetime


class WorkflowIn(_In):
    yaml: str = Field(min_length=1, max_length=200_000)


class WorkflowOut(BaseModel):
    name: str
    enabled: bool
    valid: bool
    trigger: str
    steps: int
    description: str
    source_yaml: str
    updated_at: datetime


class DryRunIn(_In):
    yaml: str = Field(min_length=1, max_length=200_000)
    sample: str | None = Field(default=None, max_length=200, description="event type; default the first")


class RequestOut(BaseModel):
    step_id: str
    action: str
    method: str | None
    url: str
    headers: dict[str, str]
    body: str | None
    condition: str | None
    deferred: dict[str, str]


class PlanOut(BaseModel):
    workflow: str
    event_id: str
    error: str | None
    steps: list[RequestOut]
    skipped: list[str]


class DryRunOut(BaseModel):
    event_type: str
    matched: bool
    plans: list[PlanOut]
    text: str


class TemplateOut(BaseModel):
    name: str
    workflow: str
    description: str
    trigger: str
    steps: int
    installed: bool


class RunOut(BaseModel):
    id: int
    workflow: str
    event_type: str
    customer: str
    status: str
    created_at: datetime
    finished_at: datetime | None
    steps: int
    steps_succeeded: int
    attempts: int
    last_error: str | None


class CustomerOut(BaseModel):
    id: int
    connection: str
    email: str
    name: str | None
    plan: str | None
    location_id: str | None
    timezone: str | None
    region: str | None
    tier: str | None
    tags: list[str]
    segments: list[str]
    attributes: dict[str, object]
    lifetime_value_cents: int
    purchases: int
    first_seen_at: datetime
    last_activity_at: datetime | None
    updated_at: datetime


class CsvText(RootModel[str]):
    """A CSV file (text/csv) with a header row."""


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: float
    http_status: int | None
    outcome: str
    request_excerpt: str
    response_excerpt: str
    error: str


class StepOut(BaseModel):
    job_id: int
    step_index: int
    step_id: str
    action: str
    connection: str
    status: str
    attempts: int
    last_error: str | None
    attempt_log: list[AttemptOut]


class RunDetailOut(BaseModel):
    run: RunOut
    steps: list[StepOut]


class DeadLetterOut(BaseModel):
    job_id: int
    run_id: int
    workflow: str
    customer: str
    step_id: str
    action: str
    connection: str
    attempts: int
    reason: str
    died_at: datetime
    superseded_by: int | None = Field(
        default=None, description="a later job of the same ordering key, delivered (or being delivered now): a "
                                  "replay leaves this dead letter out unless forced")
    superseded_reason: str | None = None


class ReplayFilterIn(_In):
    """Which dead letters to replay (the filters combine; at least one is needed) and from where."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": [name]} for name in ("workflow", "connection", "reason", "since", "until")]})

    workflow: str | None = Field(default=None, min_length=1, max_length=200)
    connection: str | None = Field(default=None, min_length=1, max_length=100)
    reason: str | None = Field(default=None, max_length=500, description="part of the reason, any case")
    since: datetime | None = Field(default=None, description="died at or after this (no offset: UTC)")
    until: datetime | None = Field(default=None, description="died before this (no offset: UTC)")
    from_: Literal["failed_step", "trigger"] = Field(
        default="failed_step", alias="from",
        description="failed_step: the dead step and the steps after it; trigger: every step of the run again, "
                    "with the same idempotency keys, so a write already made is not doubled")

    @field_validator("reason")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("since", "until", mode="before")
    @classmethod
    def _text_only(cls, value: object) -> object:
        # Lax parsing would read a number as Unix seconds or milliseconds, by its size; the document says text.
        if value is not None and not isinstance(value, str):
            raise ValueError(f"an ISO 8601 date-time string such as {INSTANT_EXAMPLE}")
        return value

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    @model_validator(mode="after")
    def _bounded(self) -> ReplayFilterIn:
        if not any((self.workflow, self.connection, self.reason, self.since, self.until)):
            raise ValueError("say which dead letters: workflow, connection, reason, since or until "
                             "(replay-all takes every one)")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


class SupersededOut(BaseModel):
    """A dead letter a replay left out: sending it again would write older data after newer."""

    job_id: int
    run_id: int
    ordering_key: str
    superseded_by: int = Field(description="the later job of the same ordering key")
    delivered_at: datetime | None = Field(description="when that job was delivered; null while it is being "
                                                      "delivered")
    reason: str


class ReplayOut(BaseModel):
    replayed: int = Field(description="dead letters queued again")
    superseded: list[SupersededOut] = Field(
        default_factory=list, description="dead letters left out because a later job of the same ordering key was "
                                          "delivered after them; force=true queues them too")


class UsageWindowOut(BaseModel):
    connection: str
    window_start: datetime
    requests: int
    errors: int
    throttled: int
    mean_latency_ms: float


class UsageOut(BaseModel):
    since: datetime
    quota_per_minute: dict[str, float]
    windows: list[UsageWindowOut]


class Counts(BaseModel):
    jobs: dict[str, int]
    runs: dict[str, int]
    workflows: int
    workflows_enabled: int
    connections: int
    dead_letters: int


class RunTestStepOut(BaseModel):
    step_id: str
    action: str
    status: str = Field(description="sent | replayed | skipped | local | failed")
    detail: str
    http_status: int | None = None


class RunTestOut(BaseModel):
    event_type: str
    matched: bool
    workflow: str
    error: str | None = None
    steps: list[RunTestStepOut]


class UserIn(_In):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1000)
    role: Literal["admin", "viewer"] = "viewer"


class UserOut(BaseModel):
    username: str
    role: str
    created_at: datetime


class ApiTokenIn(_In):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "viewer"] = "viewer"


class ApiTokenOut(BaseModel):
    id: int
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None


class ApiTokenCreated(ApiTokenOut):
    token: str = Field(description="shown once; only its digest is kept")
