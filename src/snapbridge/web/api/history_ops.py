"""What the API and the dashboard read of the history and replay: dead letters, runs, customers, usage."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from snapbridge.catalog import appending_actions
from snapbridge.store import DeadLetter, Profile, RunDetail, RunStatus, RunSummary
from snapbridge.web.api.context import ApiProblem, WebContext
from snapbridge.web.api.export import customer_out
from snapbridge.web.api.models import (
    CustomerOut,
    DeadLetterOut,
    ReplayOut,
    SupersededOut,
    UsageOut,
    UsageWindowOut,
)

__all__ = ["EXPORT_PAGE", "MAX_JOB_ID", "DeadFilter", "HistoryOperations"]

MAX_JOB_ID = 2**62
EXPORT_PAGE = 500


@dataclass(frozen=True)
class DeadFilter:
    """Which dead letters: of a workflow, on a connection, whose reason holds some text, dead in [since, until)."""

    workflow: str | None = None
    connection: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def is_set(self) -> bool:
        return any((self.workflow, self.connection, self.reason, self.since, self.until))


def _replayed(queued: int, superseded: Iterable[object]) -> ReplayOut:
    return ReplayOut(replayed=queued,
                     superseded=[SupersededOut.model_validate(s, from_attributes=True) for s in superseded])


class HistoryOperations:
    """The history half of Operations (one workspace's, like the rest)."""

    ctx: WebContext
    workspace: int

    # dead letters

    def dead_letter_rows(self, wanted: DeadFilter, limit: int, before: tuple[datetime, int] | int | None = None
                         ) -> list[DeadLetter]:
        return self.ctx.store.dead_letters(limit, workflow=wanted.workflow, connection=wanted.connection,
                                           reason=wanted.reason, since=wanted.since, until=wanted.until,
                                           workspace=self.workspace, before=before)

    def superseded(self, letters: Sequence[DeadLetter]) -> dict[int, SupersededOut]:
        """The listed dead letters a replay would leave out as superseded, by job id."""
        found = self.ctx.store.supersessions([d.job_id for d in letters], appending_actions())
        return {job_id: SupersededOut.model_validate(s, from_attributes=True) for job_id, s in found.items()}

    def dead_letters(self, wanted: DeadFilter, limit: int, before: tuple[datetime, int] | None = None
                     ) -> list[DeadLetterOut]:
        rows = self.dead_letter_rows(wanted, limit, before)
        superseded = self.superseded(rows)
        out: list[DeadLetterOut] = []
        for d in rows:
            later = superseded.get(d.job_id)
            out.append(DeadLetterOut(
                job_id=d.job_id, run_id=d.run_id, workflow=d.workflow_name, customer=d.customer_key,
                step_id=d.step_id, action=d.action, connection=d.connection, attempts=d.attempts, reason=d.reason,
                died_at=d.died_at, superseded_by=later.superseded_by if later else None,
                superseded_reason=later.reason if later else None))
        return out

    def replay_one(self, job_id: int, *, from_trigger: bool, force: bool = False) -> ReplayOut:
        """Replay one dead letter: from its failed step, or every step of its run (same idempotency keys); a
        superseded one only with `force` (otherwise it is reported, and nothing is queued)."""
        outcome = self.ctx.store.replay(job_ids=[job_id], from_start=from_trigger, force=force,
                                        workspace=self.workspace, appends=appending_actions()
                                        ) if job_id < MAX_JOB_ID else None
        if outcome is None or not (outcome.queued or outcome.superseded):
            raise ApiProblem(404, "no such dead letter")
        return _replayed(outcome.queued, outcome.superseded)

    def replay_matching(self, wanted: DeadFilter, *, from_trigger: bool, force: bool = False) -> ReplayOut:
        if not wanted.is_set:
            raise ApiProblem(422, "say which dead letters: workflow, connection, reason, since or until "
                                  "(replay-all takes every one)")
        outcome = self.ctx.store.replay_matching(workflow=wanted.workflow, connection=wanted.connection,
                                                 reason=wanted.reason, since=wanted.since, until=wanted.until,
                                                 from_start=from_trigger, force=force, workspace=self.workspace,
                                                 appends=appending_actions())
        return _replayed(outcome.queued, outcome.superseded)

    def replay_all(self, *, force: bool = False) -> ReplayOut:
        outcome = self.ctx.store.replay(all_dead=True, force=force, workspace=self.workspace,
                                        appends=appending_actions())
        return _replayed(outcome.queued, outcome.superseded)

    def runs(self, *, status: RunStatus | None = None, workflow: str | None = None, customer: str | None = None,
             since: datetime | None = None, until: datetime | None = None, before_id: int | None = None,
             limit: int = 50) -> list[RunSummary]:
        return self.ctx.store.runs(status=status, workflow=workflow, customer=customer, since=since, until=until,
                                   before_id=before_id, limit=limit, workspace=self.workspace)

    def run_detail(self, run_id: int) -> RunDetail:
        detail = self.ctx.store.run_detail(run_id, workspace=self.workspace) if run_id < MAX_JOB_ID else None
        if detail is None:
            raise ApiProblem(404, "no such run")
        return detail

    # history and usage

    def profiles(self, *, segment: str | None, search: str | None, limit: int, after_id: int | None
                 ) -> list[Profile]:
        return self.ctx.store.list_profiles(segment=segment, search=search, limit=limit, after_id=after_id,
                                            workspace=self.workspace)

    def customers(self, *, segment: str | None, search: str | None, limit: int,
                  after_id: int | None) -> list[CustomerOut]:
        return [customer_out(p) for p in self.profiles(segment=segment, search=search, limit=limit,
                                                       after_id=after_id)]

    def all_customers(self, *, segment: str | None, search: str | None) -> Iterator[Profile]:
        """Every matching profile, read a page at a time."""
        after: int | None = None
        while True:
            page = self.profiles(segment=segment, search=search, limit=EXPORT_PAGE, after_id=after)
            yield from page
            if len(page) < EXPORT_PAGE:
                return
            after = page[-1].id

    def usage(self, minutes: int, connection: str | None) -> UsageOut:
        since = self.ctx.clock() - timedelta(minutes=minutes)
        windows = self.ctx.store.usage(connection, since, workspace=self.workspace)
        quotas: dict[str, float] = {}
        for name in sorted({w.connection for w in windows}):
            bucket = self.ctx.store.get_bucket(name)
            if bucket is not None:
                quotas[name] = round(bucket.refill_per_second * 60, 2)
        return UsageOut(since=since, quota_per_minute=quotas, windows=[
            UsageWindowOut(connection=w.connection, window_start=w.window_start, requests=w.requests,
                           errors=w.errors, throttled=w.throttled, mean_latency_ms=round(w.mean_latency_ms, 1))
            for w in windows])
