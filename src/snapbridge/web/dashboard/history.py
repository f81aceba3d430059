"""Dashboard pages about what happened: runs (filters, time window, detail), dead letters (filters, replay one,
matching or all, from the failed step or the trigger, superseded ones only when forced), customers, and usage
charts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from snapbridge.store import RunStatus
from snapbridge.web.api import ApiProblem, DeadFilter, Principal, query_window
from snapbridge.web.api.models import ReplayOut
from snapbridge.web.dashboard.charts import usage_view
from snapbridge.web.dashboard.kit import Kit

__all__ = ["REPLAY_FROM", "USAGE_WINDOWS", "history_routes"]

CUSTOMERS_PAGE = 100
RUNS_PAGE = 100
DEAD_PAGE = 200
MAX_ID = 2**62
# The window choices of the usage page, in minutes, with their words.
USAGE_WINDOWS = {60: "last hour", 180: "last 3 hours", 720: "last 12 hours", 1440: "last day", 10080: "last week"}
REPLAY_FROM = {"failed_step": "from the failed step", "trigger": "from the trigger"}
FORCE_LABEL = "Replay even if superseded"  # the checkbox of each replay form
DEAD_FIELDS = ("workflow", "connection", "reason", "since", "until")


def _page_cursor(text: str) -> int | None:
    """A paging id from the query string; anything else (or out of range) starts from the beginning."""
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None


def _replay_from(value: object) -> bool:
    """True for a replay from the trigger; 422 for a value the form does not offer."""
    text = value if isinstance(value, str) and value else "failed_step"
    if text not in REPLAY_FROM:
        raise ApiProblem(422, f"replay from must be one of {', '.join(REPLAY_FROM)}")
    return text == "trigger"


def _forced(value: object) -> bool:
    """The replay forms' force checkbox: ticked ("true") or absent; 422 for anything else."""
    if value is None or value == "":
        return False
    if value != "true":
        raise ApiProblem(422, "force must be true or absent")
    return True


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _replayed(out: ReplayOut, word: str, from_trigger: bool) -> str:
    """What a replay did, in words: how many were queued, and which were left out as superseded and why."""
    text = f"Replayed {_plural(out.replayed, word)}{' from the trigger' if from_trigger else ''}."
    skipped = out.superseded
    if len(skipped) == 1:
        text += f" Left out job {skipped[0].job_id} (run #{skipped[0].run_id}): {skipped[0].reason}."
    elif skipped:
        shown = ", ".join(str(s.job_id) for s in skipped[:5]) + (", …" if len(skipped) > 5 else "")
        text += (f" Left out {len(skipped)} superseded dead letters (jobs {shown}): a later job of the same "
                 "ordering key was delivered after each.")
    if skipped:
        text += f" Tick “{FORCE_LABEL}” to queue {'it' if len(skipped) == 1 else 'them'} anyway."
    return text


def history_routes(kit: Kit) -> list[BaseRoute]:
    ops, render, back, guarded = kit.ops, kit.render, kit.back, kit.guarded

    async def runs(request: Request, principal: Principal) -> Response:
        q = request.query_params
        filters = {k: q.get(k, "") for k in ("status", "workflow", "customer", "since", "until")}
        statuses = [s.value for s in RunStatus]
        status = filters["status"] or None
        if status is not None and status not in statuses:
            raise ApiProblem(422, f"unknown status {status!r}")
        try:
            since, until = query_window(q)
        except ApiProblem as exc:
            # The form again, with what went wrong beside it, rather than an error page.
            return render(request, "runs.html", principal, exc.status, runs=[], statuses=statuses,
                          filters=filters, error=exc.message)
        found = ops(principal).runs(status=RunStatus(status) if status else None, workflow=filters["workflow"] or None,
                           customer=filters["customer"] or None, since=since, until=until, limit=RUNS_PAGE)
        return render(request, "runs.html", principal, runs=found, statuses=statuses, filters=filters, error="")

    async def run_detail(request: Request, principal: Principal) -> Response:
        run_id = request.path_params["run_id"]
        return render(request, "run.html", principal, detail=ops(principal).run_detail(run_id))

    async def customers(request: Request, principal: Principal) -> Response:
        q = request.query_params
        filters = {"search": q.get("search", ""), "segment": q.get("segment", "")}
        after = q.get("after_id", "")
        found = ops(principal).profiles(segment=filters["segment"] or None, search=filters["search"] or None,
                                    limit=CUSTOMERS_PAGE + 1, after_id=_page_cursor(after))
        page = found[:CUSTOMERS_PAGE]
        kept = {k: v for k, v in filters.items() if v}
        next_url = f"/customers?{urlencode({**kept, 'after_id': page[-1].id})}" if len(found) > len(page) else ""
        return render(request, "customers.html", principal, customers=page, filters=filters, next_url=next_url,
                      export_url="/api/v1/customers/export.csv" + (f"?{urlencode(kept)}" if kept else ""))

    def dead_filter(values: Mapping[str, object]) -> DeadFilter:
        """From a query string or a form; 400 for a time that is not ISO 8601."""
        since, until = query_window(values)
        text = {k: v.strip() if isinstance(v := values.get(k), str) else "" for k in ("workflow", "connection",
                                                                                          "reason")}
        return DeadFilter(workflow=text["workflow"] or None, connection=text["connection"] or None,
                          reason=text["reason"] or None, since=since, until=until)

    async def dead_letters(request: Request, principal: Principal) -> Response:
        filters = {k: request.query_params.get(k, "") for k in DEAD_FIELDS}
        try:
            wanted = dead_filter(request.query_params)
        except ApiProblem as exc:
            return render(request, "dead_letters.html", principal, exc.status, dead=[], filters=filters,
                          filtered=True, replay_from=REPLAY_FROM, superseded={}, force_label=FORCE_LABEL,
                          error=exc.message, next_url="", more=False)
        found = ops(principal).dead_letter_rows(wanted, DEAD_PAGE + 1,
                                                _page_cursor(request.query_params.get("after_job", "")))
        dead = found[:DEAD_PAGE]
        kept = {k: v for k, v in filters.items() if v}
        more = len(found) > len(dead)
        next_url = f"/dead-letters?{urlencode({**kept, 'after_job': dead[-1].job_id})}" if more else ""
        return render(request, "dead_letters.html", principal, dead=dead, filters=filters, filtered=wanted.is_set,
                      replay_from=REPLAY_FROM, superseded=ops(principal).superseded(dead), force_label=FORCE_LABEL,
                      error="", next_url=next_url, more=more)

    async def replay(request: Request, principal: Principal) -> Response:
        form = await request.form()
        from_trigger = _replay_from(form.get("from"))
        out = ops(principal).replay_one(request.path_params["job_id"], from_trigger=from_trigger,
                                        force=_forced(form.get("force")))
        return back("/dead-letters", _replayed(out, "dead letter", from_trigger))

    async def replay_matching(request: Request, principal: Principal) -> Response:
        form = await request.form()
        from_trigger = _replay_from(form.get("from"))
        out = ops(principal).replay_matching(dead_filter(form), from_trigger=from_trigger,
                                             force=_forced(form.get("force")))
        return back("/dead-letters", _replayed(out, "matching dead letter", from_trigger))

    async def replay_all(request: Request, principal: Principal) -> Response:
        out = ops(principal).replay_all(force=_forced((await request.form()).get("force")))
        return back("/dead-letters", _replayed(out, "dead letter", False))

    async def usage(request: Request, principal: Principal) -> Response:
        q = request.query_params
        text = q.get("minutes") or "60"
        if not text.isdigit() or int(text) not in USAGE_WINDOWS:
            raise ApiProblem(422, f"minutes must be one of {', '.join(map(str, USAGE_WINDOWS))}")
        minutes, connection = int(text), q.get("connection") or None
        names = sorted({c.name for c in ops(principal).connections()} | ({connection} if connection else set()))
        view = usage_view(ops(principal).usage(minutes, connection), now=kit.ctx.clock(), minutes=minutes)
        return render(request, "usage.html", principal, usage=view, windows=USAGE_WINDOWS, names=names,
                      connection=connection or "")

    return [
        Route("/customers", guarded(customers), methods=["GET"]),
        Route("/runs", guarded(runs), methods=["GET"]),
        Route("/runs/{run_id:int}", guarded(run_detail), methods=["GET"]),
        Route("/dead-letters", guarded(dead_letters), methods=["GET"]),
        Route("/dead-letters/replay", guarded(replay_matching, write=True), methods=["POST"]),
        Route("/dead-letters/replay-all", guarded(replay_all, write=True), methods=["POST"]),
        Route("/dead-letters/{job_id:int}/replay", guarded(replay, write=True), methods=["POST"]),
        Route("/usage", guarded(usage), methods=["GET"]),
    ]
