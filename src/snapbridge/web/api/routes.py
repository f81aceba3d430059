"""The management API under /api/v1: one table of endpoints drives both the routes and the OpenAPI document."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from snapbridge.errors import InvalidInput, StoreUnavailable, VaultError
from snapbridge.security import Role, new_api_token, token_digest
from snapbridge.store import RunStatus
from snapbridge.web.api import models as m
from snapbridge.web.api.body import NUL_MESSAGE, read_json
from snapbridge.web.api.context import CSRF_HEADER, ApiProblem, Principal, WebContext
from snapbridge.web.api.export import customers_csv
from snapbridge.web.api.openapi import API_PREFIX, Endpoint, openapi_document
from snapbridge.web.api.ops import DeadFilter, Operations
from snapbridge.web.api.params import Query, parse_instant, query_choice, query_int, query_window

__all__ = ["api_routes", "endpoints", "run_detail_out", "run_out"]

log = logging.getLogger(__name__)

def _error(status: int, message: str, problems: Sequence[dict[str, str]] = (),
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(m.ErrorOut(error=message, problems=[m.ProblemOut(**p) for p in problems])
                        .model_dump(mode="json"), status_code=status, headers=headers)


def _dump(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def _wrap(ctx: WebContext, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        try:
            principal = ctx.principal(request)
            if principal is None:
                return _error(401, "sign in or send an API token: Authorization: Bearer <token>",
                              headers={"WWW-Authenticate": 'Bearer realm="snapbridge"'})
            if any("\x00" in str(v) for v in request.path_params.values()):
                return _error(404, "not found")  # no name holds one; PostgreSQL would refuse to look
            nul = sorted({k for k, v in request.query_params.multi_items() if "\x00" in v})
            if nul:
                return _error(422, f"{nul[0]} {NUL_MESSAGE}", [{"path": k, "message": NUL_MESSAGE} for k in nul])
            # HEAD is GET without the body (Starlette routes it to the same handler): neither changes anything.
            if request.method not in ("GET", "HEAD") and not ctx.csrf_ok(principal, request.headers.get(CSRF_HEADER)):
                return _error(403, f"missing or wrong CSRF token (header {CSRF_HEADER})")
            if endpoint.admin and not principal.is_admin:
                return _error(403, "this needs the admin role")
            body = await read_json(request, endpoint.body) if endpoint.body is not None else None
            result = await endpoint.handler(request, principal, body)
        except ApiProblem as exc:
            return _error(exc.status, exc.message, exc.problems, exc.headers)
        except InvalidInput as exc:
            return _error(422, str(exc))
        except (StoreUnavailable, VaultError) as exc:
            log.warning("action=api_unavailable error=%s", type(exc).__name__)
            return JSONResponse({"error": "the store is unavailable; try again", "problems": []}, status_code=503,
                                headers={"Retry-After": "5"})
        if endpoint.status == 204:
            return Response(status_code=204)
        if isinstance(result, Response):
            return result
        return JSONResponse(_dump(result), status_code=endpoint.status)

    return handle


INSTANT = "ISO 8601 date-time, e.g. 2025-03-01T12:00:00Z (no offset: UTC)"
RUN_QUERY = (
    Query("status", "string", "one of " + ", ".join(s.value for s in RunStatus),
          choices=tuple(s.value for s in RunStatus)),
    Query("workflow", "string", "workflow name"),
    Query("customer", "string", "customer key (email)"),
    Query("before_id", "integer", "only runs older than this id (paging)", 1, 2**62),
    Query("limit", "integer", "at most this many", 1, 500),
    Query("since", "string", f"only runs created at or after this {INSTANT}", format="date-time"),
    Query("until", "string", f"only runs created before this {INSTANT}", format="date-time"),
)
DEAD_QUERY = (
    Query("workflow", "string", "workflow name"),
    Query("connection", "string", "connection name"),
    Query("reason", "string", "part of the reason, any case"),
    Query("since", "string", f"died at or after this {INSTANT}", format="date-time"),
    Query("until", "string", f"died before this {INSTANT}", format="date-time"),
    Query("limit", "integer", "at most this many", 1, 1000),
    Query("before_died_at", "string", "with before_job_id, the next page: only dead letters after this one "
          "(the died_at and job_id of the previous page's last)", format="date-time"),
    Query("before_job_id", "integer", "with before_died_at: the previous page's last job_id", 1, 2**62),
)
REPLAY_FORCE = Query("force", "boolean", "true: also queue dead letters a later job of the same ordering key "
                     "was delivered after (their older data would be written last); by default they are left out "
                     "and listed under superseded")
REPLAY_QUERY = (
    Query("from", "string", "failed_step: the dead step and those after it; trigger: every step of the run "
          "(same idempotency keys)", choices=("failed_step", "trigger")),
    REPLAY_FORCE,
)
CUSTOMER_FILTERS = (
    Query("segment", "string", "only customers in this segment (exact name)"),
    Query("search", "string", "part of the email or name, any case"),
)
CUSTOMER_QUERY = (
    *CUSTOMER_FILTERS,
    Query("limit", "integer", "at most this many", 1, 500),
    Query("after_id", "integer", "only customers after this id (paging)", 0, 2**62),
)
USAGE_QUERY = (
    Query("minutes", "integer", "how far back", 1, 10080),
    Query("connection", "string", "one connection only"),
)


def _forced(request: Request) -> bool:
    """The replay's `force` flag: true or false (absent: false); 422 for anything else."""
    raw = (request.query_params.get(REPLAY_FORCE.name) or "false").lower()
    if raw not in ("true", "false"):
        raise ApiProblem(422, "force must be true or false", [{"path": "force", "message": "not a boolean"}])
    return raw == "true"


def _dead_cursor(request: Request) -> tuple[datetime, int] | None:
    """The (died_at, job_id) a dead-letter page starts after: both given, or neither (422 otherwise)."""
    raw = (request.query_params.get(DEAD_QUERY[6].name) or "").strip()
    try:
        at = parse_instant(raw) if raw else None
    except ValueError as exc:
        raise ApiProblem(400, f"before_died_at is {exc}", [{"path": "before_died_at", "message": str(exc)}]
                         ) from None
    job_id = query_int(request, DEAD_QUERY[7], None)
    if (at is None) != (job_id is None):
        raise ApiProblem(422, "before_died_at and before_job_id go together (the previous page's last dead "
                              "letter)", [{"path": "before_died_at" if at is None else "before_job_id",
                                           "message": "missing"}])
    return (at, job_id) if at is not None and job_id is not None else None


def run_out(r: Any) -> m.RunOut:
    return m.RunOut(id=r.id, workflow=r.workflow_name, event_type=r.event_type, customer=r.customer_key,
                    status=str(r.status), created_at=r.created_at, finished_at=r.finished_at, steps=r.steps,
                    steps_succeeded=r.steps_succeeded, attempts=r.attempts, last_error=r.last_error)


def run_detail_out(d: Any) -> m.RunDetailOut:
    return m.RunDetailOut(run=run_out(d.run), steps=[
        m.StepOut(job_id=s.job_id, step_index=s.step_index, step_id=s.step_id, action=s.action,
                  connection=s.connection, status=str(s.status), attempts=s.attempts, last_error=s.last_error,
                  attempt_log=[m.AttemptOut(attempt=a.attempt, started_at=a.started_at, duration_ms=a.duration_ms,
                                            http_status=a.http_status, outcome=str(a.outcome),
                                            request_excerpt=a.request_excerpt, response_excerpt=a.response_excerpt,
                                            error=a.error) for a in s.attempt_log])
        for s in d.steps])


def endpoints(ctx: WebContext) -> list[Endpoint]:
    def ops(principal: Principal) -> Operations:
        return Operations(ctx, principal.workspace_id)

    async def list_connections(_r: Request, p: Principal, _b: None) -> object:
        return ops(p).connections()

    async def create_connection(_r: Request, p: Principal, body: m.ConnectionIn) -> object:
        saved, words = await ops(p).add_connection(body)
        if saved is None:
            raise ApiProblem(422, words.message, [{"path": "credential", "message": words.message}])
        return saved

    async def test_connection(r: Request, p: Principal, _b: None) -> object:
        return await ops(p).test_connection(r.path_params["name"])

    async def rotate_credential(r: Request, p: Principal, body: m.CredentialIn) -> object:
        saved, words = await ops(p).rotate_credential(r.path_params["name"], body)
        if saved is None:
            raise ApiProblem(422, words.message, [{"path": "credential", "message": words.message}])
        return saved

    async def remove_connection(r: Request, p: Principal, _b: None) -> object:
        ops(p).remove_connection(r.path_params["name"])
        return None

    async def list_workflows(_r: Request, p: Principal, _b: None) -> object:
        return ops(p).workflows()

    async def get_workflow(r: Request, p: Principal, _b: None) -> object:
        return ops(p).workflow(r.path_params["name"])

    async def save_workflow(_r: Request, p: Principal, body: m.WorkflowIn) -> object:
        return ops(p).save_workflow(body.yaml)

    async def enable(r: Request, p: Principal, _b: None) -> object:
        return ops(p).set_enabled(r.path_params["name"], True)

    async def disable(r: Request, p: Principal, _b: None) -> object:
        return ops(p).set_enabled(r.path_params["name"], False)

    async def dry_run(_r: Request, p: Principal, body: m.DryRunIn) -> object:
        return ops(p).dry_run(body.yaml, body.sample)

    async def test_run(_r: Request, p: Principal, body: m.DryRunIn) -> object:
        return await ops(p).test_run(body.yaml, body.sample)

    async def list_users(_r: Request, p: Principal, _b: None) -> object:
        return [m.UserOut(username=u.username, role=u.role, created_at=u.created_at)
                for u in ctx.users.users_of(p.workspace_id)]

    async def create_user(_r: Request, p: Principal, body: m.UserIn) -> object:
        user = await ctx.password_work(lambda: ctx.create_user(body.username, body.password, Role(body.role),
                                                               workspace=p.workspace_id))
        return m.UserOut(username=user.username, role=user.role, created_at=user.created_at)

    async def list_templates(_r: Request, p: Principal, _b: None) -> object:
        return ops(p).templates()

    async def install_template(r: Request, p: Principal, _b: None) -> object:
        return ops(p).install_template(r.path_params["name"])

    async def list_runs(r: Request, p: Principal, _b: None) -> object:
        status_text = r.query_params.get("status") or None
        try:
            status = RunStatus(status_text) if status_text else None
        except ValueError:
            known = ", ".join(s.value for s in RunStatus)
            raise ApiProblem(422, f"unknown status {(status_text or '')[:40]!r}; known: {known}",
                             [{"path": "status", "message": "unknown status"}]) from None
        since, until = query_window(r.query_params)
        runs = ops(p).runs(status=status, workflow=r.query_params.get("workflow") or None,
                          customer=r.query_params.get("customer") or None, since=since, until=until,
                          before_id=query_int(r, RUN_QUERY[3], None), limit=query_int(r, RUN_QUERY[4], 50) or 50)
        return [run_out(x) for x in runs]

    async def get_run(r: Request, p: Principal, _b: None) -> object:
        return run_detail_out(ops(p).run_detail(r.path_params["run_id"]))

    async def list_dead(r: Request, p: Principal, _b: None) -> object:
        q = r.query_params
        since, until = query_window(q)
        wanted = DeadFilter(workflow=q.get("workflow") or None, connection=q.get("connection") or None,
                            reason=q.get("reason") or None, since=since, until=until)
        return ops(p).dead_letters(wanted, query_int(r, DEAD_QUERY[5], 500) or 500, _dead_cursor(r))

    async def replay_one(r: Request, p: Principal, _b: None) -> object:
        from_trigger = query_choice(r, REPLAY_QUERY[0], "failed_step") == "trigger"
        return ops(p).replay_one(r.path_params["job_id"], from_trigger=from_trigger, force=_forced(r))

    async def replay_matching(r: Request, p: Principal, body: m.ReplayFilterIn) -> object:
        wanted = DeadFilter(workflow=body.workflow, connection=body.connection, reason=body.reason,
                            since=body.since, until=body.until)
        return ops(p).replay_matching(wanted, from_trigger=body.from_ == "trigger", force=_forced(r))

    async def replay_all(r: Request, p: Principal, _b: None) -> object:
        return ops(p).replay_all(force=_forced(r))

    async def list_customers(r: Request, p: Principal, _b: None) -> object:
        return ops(p).customers(segment=r.query_params.get("segment") or None,
                             search=r.query_params.get("search") or None,
                             limit=query_int(r, CUSTOMER_QUERY[2], 100) or 100,
                             after_id=query_int(r, CUSTOMER_QUERY[3], None))

    async def export_customers(r: Request, p: Principal, _b: None) -> object:
        found = ops(p).all_customers(segment=r.query_params.get("segment") or None,
                                  search=r.query_params.get("search") or None)
        return PlainTextResponse(customers_csv(found), media_type="text/csv", headers={
            "Content-Disposition": 'attachment; filename="customers.csv"', "Cache-Control": "no-store"})

    async def usage(r: Request, p: Principal, _b: None) -> object:
        return ops(p).usage(query_int(r, USAGE_QUERY[0], 60) or 60, r.query_params.get("connection") or None)

    async def counts(_r: Request, p: Principal, _b: None) -> object:
        return ops(p).counts()

    async def list_tokens(_r: Request, p: Principal, _b: None) -> object:
        return [m.ApiTokenOut(id=t.id, name=t.name, role=t.role, created_at=t.created_at,
                              last_used_at=t.last_used_at) for t in ctx.users.tokens(p.user_id)]

    async def create_token(_r: Request, p: Principal, body: m.ApiTokenIn) -> object:
        role = Role(body.role)
        if role is Role.ADMIN and not p.is_admin:
            raise ApiProblem(403, "only an admin may make an admin token")
        token = new_api_token()
        t = ctx.users.create_token(p.user_id, body.name, token_digest(token), role, now=ctx.clock())
        return m.ApiTokenCreated(id=t.id, name=t.name, role=t.role, created_at=t.created_at, last_used_at=None,
                                 token=token)

    async def delete_token(r: Request, p: Principal, _b: None) -> object:
        token_id = r.path_params["token_id"]
        # Scoped to the caller: another user's token is "not found", not "forbidden".
        if token_id >= 2**62 or not ctx.users.delete_token(p.user_id, token_id):
            raise ApiProblem(404, "no such token")
        return None

    E = Endpoint
    return [
        E("GET", "/connections", list_connections, "List connections (secrets are never returned)",
          response=list[m.ConnectionOut]),
        E("POST", "/connections", create_connection, "Test a credential and store it if the test passes",
          admin=True, body=m.ConnectionIn, response=m.ConnectionOut, status=201),
        E("POST", "/connections/{name}/test", test_connection, "Test a stored connection", admin=True,
          response=m.ConnectionTest),
        E("POST", "/connections/{name}/rotate", rotate_credential, "Replace a connection's credential once the "
          "new one passes a test against the same account (the old one stays until then)", admin=True,
          body=m.CredentialIn, response=m.ConnectionOut),
        E("DELETE", "/connections/{name}", remove_connection, "Remove a connection", admin=True, status=204),
        E("GET", "/workflows", list_workflows, "List installed workflows", response=list[m.WorkflowOut]),
        E("POST", "/workflows", save_workflow, "Create or update a workflow from YAML (422 lists problems)",
          admin=True, body=m.WorkflowIn, response=m.WorkflowOut),
        E("POST", "/workflows/dry-run", dry_run, "Plan a workflow for a sample event; send nothing",
          body=m.DryRunIn, response=m.DryRunOut),
        E("POST", "/workflows/test-run", test_run, "Send a workflow's steps for a sample event through your "
          "connections now (keys prefixed test-: a repeat is an API replay); nothing is kept in the history",
          admin=True, body=m.DryRunIn, response=m.RunTestOut),
        E("GET", "/workflows/{name}", get_workflow, "One workflow", response=m.WorkflowOut),
        E("POST", "/workflows/{name}/enable", enable, "Enable a workflow", admin=True, response=m.WorkflowOut),
        E("POST", "/workflows/{name}/disable", disable, "Disable a workflow", admin=True, response=m.WorkflowOut),
        E("GET", "/templates", list_templates, "List starter templates", response=list[m.TemplateOut]),
        E("POST", "/templates/{name}/install", install_template, "Install a template (replaces one of that name)",
          admin=True, response=m.WorkflowOut),
        E("GET", "/runs", list_runs, "List runs, newest first", response=list[m.RunOut], query=RUN_QUERY),
        E("GET", "/runs/{run_id:int}", get_run, "A run with its steps and attempts", response=m.RunDetailOut),
        E("GET", "/dead-letters", list_dead, "List dead letters, newest first, with filters",
          response=list[m.DeadLetterOut], query=DEAD_QUERY),
        E("POST", "/dead-letters/{job_id:int}/replay", replay_one, "Replay one dead letter", admin=True,
          response=m.ReplayOut, query=REPLAY_QUERY),
        E("POST", "/dead-letters/replay", replay_matching, "Replay every dead letter a filter matches",
          admin=True, body=m.ReplayFilterIn, response=m.ReplayOut, query=(REPLAY_FORCE,)),
        E("POST", "/dead-letters/replay-all", replay_all, "Replay every dead letter", admin=True,
          response=m.ReplayOut, query=(REPLAY_FORCE,)),
        E("GET", "/customers", list_customers, "List customer profiles in id order, with filters",
          response=list[m.CustomerOut], query=CUSTOMER_QUERY),
        E("GET", "/customers/export.csv", export_customers, "Every matching customer profile as CSV",
          response=m.CsvText, query=CUSTOMER_FILTERS, media_type="text/csv"),
        E("GET", "/usage", usage, "Requests per connection per minute, with the quota", response=m.UsageOut,
          query=USAGE_QUERY),
        E("GET", "/counts", counts, "Counts for the overview", response=m.Counts),
        E("GET", "/users", list_users, "The users of your workspace", admin=True, response=list[m.UserOut]),
        E("POST", "/users", create_user, "Add a user to your workspace", admin=True, body=m.UserIn,
          response=m.UserOut, status=201),
        E("GET", "/tokens", list_tokens, "Your API tokens", response=list[m.ApiTokenOut]),
        E("POST", "/tokens", create_token, "Make an API token (shown once)", body=m.ApiTokenIn,
          response=m.ApiTokenCreated, status=201),
        E("DELETE", "/tokens/{token_id:int}", delete_token, "Delete one of your API tokens", status=204),
    ]


class _AnyMethod:
    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive))
        await response(scope, receive, send)


def api_routes(ctx: WebContext) -> list[BaseRoute]:
    table = endpoints(ctx)
    document = openapi_document(table)

    async def serve_openapi(_request: Request) -> Response:
        return JSONResponse(document)

    routes: list[BaseRoute] = [Route(API_PREFIX + "/openapi.json", serve_openapi, methods=["GET"])]
    routes.extend(Route(API_PREFIX + e.path, _wrap(ctx, e), methods=[e.method]) for e in table)
    known = list(routes)

    async def unmatched(request: Request) -> Response:
        """Anything else under the prefix, in the API's error shape: 405 with Allow for a known path, else
        404 (a trailing slash is not redirected: the redirect's absolute URL can drop the scheme, and with it
        the token)."""
        allowed = sorted({m for r in known if isinstance(r, Route) and r.methods
                          and r.matches(request.scope)[0] is Match.PARTIAL for m in r.methods})
        if allowed:
            return _error(405, f"{request.method} is not allowed here; allowed: {', '.join(allowed)}",
                          headers={"Allow": ", ".join(allowed)})
        path = request.url.path[:300]
        trimmed = path.rstrip("/")
        if trimmed != path and any(isinstance(r, Route) and r.path_regex.match(trimmed) for r in known):
            return _error(404, f"no endpoint at {path}; did you mean {trimmed}?")
        return _error(404, f"no endpoint at {path}; see {API_PREFIX}/openapi.json")

    # After the table, so these take only what it leaves; as an ASGI app (not a function) a route takes every method.
    routes.append(Route(API_PREFIX, _AnyMethod(unmatched)))
    routes.append(Route(API_PREFIX + "/{rest:path}", _AnyMethod(unmatched)))
    return routes
