"""The dashboard: server-rendered pages (Jinja2) over the same operations as the management API."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from snapbridge.catalog import Kind, select
from snapbridge.errors import InvalidInput, SnapbridgeError
from snapbridge.store import RunStatus
from snapbridge.web.api import SESSION_COOKIE, ApiProblem, Operations, Principal, WebContext
from snapbridge.web.dashboard.charts import usage_chart
from snapbridge.workflows import EVENT_SPECS, LOCAL_ACTIONS

__all__ = ["dashboard_routes"]

Page = Callable[[Request, Principal], Awaitable[Response]]

STARTER_YAML = """name: my-workflow
description: A new workflow
enabled: false
trigger:
  app: gumroad
  event: [purchase]
steps:
  - id: event
    action: snapshots.events.create
    input:
      event_id: "gumroad-{{ event.type }}-{{ event.inbound_id }}"
      type: "{{ event.type }}"
      timestamp: "{{ event.occurred_at | iso8601 }}"
      customer_id: "{{ event.customer.email }}"
"""


CUSTOMERS_PAGE = 100


def _page_cursor(text: str) -> int | None:
    """A paging id from the query string; anything else (or out of range) starts from the beginning."""
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None


def _paths(value: object, prefix: str) -> list[str]:
    """Every leaf path of a sample event, for the builder's field picker."""
    if isinstance(value, Mapping):
        out: list[str] = []
        for key, inner in value.items():
            out.extend(_paths(inner, f"{prefix}.{key}"))
        return out
    return [prefix]


def dashboard_routes(ctx: WebContext) -> list[BaseRoute]:
    env = jinja2.Environment(loader=jinja2.PackageLoader("snapbridge.web.dashboard", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    ops = Operations(ctx)
    store = ctx.store

    def render(request: Request, name: str, principal: Principal | None, status: int = 200,
               **values: Any) -> HTMLResponse:
        html = env.get_template(name).render(
            principal=principal, csrf=ctx.csrf_for(principal) if principal else "",
            path=request.url.path, message=request.query_params.get("msg", ""), **values)
        return HTMLResponse(html, status_code=status, headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                       "frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"})

    def back(to: str, message: str = "") -> RedirectResponse:
        return RedirectResponse(to + (f"?msg={quote(message)}" if message else ""), status_code=303)

    def guarded(page: Page, *, write: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if ctx.needs_setup():
                return back("/setup")
            principal = ctx.principal(request)
            if principal is None:
                return back("/signin")
            if request.method == "POST":
                form = await request.form()
                offered = form.get("csrf")
                if not ctx.csrf_ok(principal, offered if isinstance(offered, str) else None):
                    return render(request, "error.html", principal, 403, error="The form has expired or did not "
                                  "come from this dashboard (CSRF check failed). Reload the page and try again.")
                if write and not principal.is_admin:
                    return render(request, "error.html", principal, 403, error="This needs the admin role.")
            try:
                return await page(request, principal)
            except ApiProblem as exc:
                return render(request, "error.html", principal, exc.status, error=exc.message,
                              problems=exc.problems)
            except SnapbridgeError as exc:
                return render(request, "error.html", principal, 422 if isinstance(exc, InvalidInput) else 503,
                              error=str(exc), problems=[])
        return handle

    async def form_text(request: Request, name: str) -> str:
        value = (await request.form()).get(name)
        return value if isinstance(value, str) else ""

    # first run, sign-in, sign-out

    async def setup(request: Request) -> Response:
        if not ctx.needs_setup():
            return back("/signin")
        if request.method == "GET":
            return render(request, "setup.html", None, error="")
        try:
            ctx.create_first_admin(await form_text(request, "username"), await form_text(request, "password"))
        except (InvalidInput, ApiProblem) as exc:
            return render(request, "setup.html", None, 422, error=str(exc))
        return back("/signin", "Admin created; sign in.")

    async def signin(request: Request) -> Response:
        if ctx.needs_setup():
            return back("/setup")
        if request.method == "GET":
            return render(request, "signin.html", None, error="")
        try:
            token = ctx.sign_in(await form_text(request, "username"), await form_text(request, "password"))
        except ApiProblem as exc:
            return render(request, "signin.html", None, exc.status, error=exc.message)
        response = back("/")
        response.set_cookie(SESSION_COOKIE, token, max_age=int(ctx.session_lifetime.total_seconds()), path="/",
                            httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    async def signout(request: Request, principal: Principal) -> Response:
        ctx.sign_out(principal)
        response = back("/signin", "Signed out.")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # pages

    async def overview(request: Request, principal: Principal) -> Response:
        usage = ops.usage(60, None)
        return render(request, "overview.html", principal, counts=ops.counts(), chart=usage_chart(
            usage.windows, usage.quota_per_minute, now=ctx.clock(), minutes=60),
            runs=store.runs(limit=10))

    async def connections(request: Request, principal: Principal) -> Response:
        return render(request, "connections.html", principal, connections=ops.connections(), result=None)

    async def add_connection(request: Request, principal: Principal) -> Response:
        from snapbridge.web.api.models import ConnectionIn

        form = await request.form()
        # Stripped: a pasted token often brings a newline, which the credential's pattern refuses.
        wanted = ("app", "name", "credential", "webhook_public_key", "base_url")
        fields = {k: v.strip() for k, v in form.items() if k in wanted and isinstance(v, str) and v.strip()}
        try:
            body = ConnectionIn.model_validate(fields)
        except ValueError as exc:
            raise ApiProblem(422, f"the connection form is not valid: {exc.__class__.__name__}") from None
        saved, words = await ops.add_connection(body)
        return render(request, "connections.html", principal, 200 if saved else 422,
                      connections=ops.connections(), result=words, saved=saved)

    async def test_connection(request: Request, principal: Principal) -> Response:
        words = await ops.test_connection(request.path_params["name"])
        return render(request, "connections.html", principal, connections=ops.connections(), result=words)

    async def remove_connection(request: Request, _p: Principal) -> Response:
        ops.remove_connection(request.path_params["name"])
        return back("/connections", "Connection removed.")

    async def templates(request: Request, principal: Principal) -> Response:
        return render(request, "templates.html", principal, templates=ops.templates())

    async def install(request: Request, _p: Principal) -> Response:
        out = ops.install_template(request.path_params["name"])
        return back("/workflows", f"Installed {out.name} ({'enabled' if out.enabled else 'disabled'}).")

    async def workflows(request: Request, principal: Principal) -> Response:
        return render(request, "workflows.html", principal, workflows=ops.workflows())

    async def toggle(request: Request, _p: Principal) -> Response:
        enabled = request.path_params["action"] == "enable"
        out = ops.set_enabled(request.path_params["name"], enabled)
        return back("/workflows", f"{out.name} {'enabled' if out.enabled else 'disabled'}.")

    async def builder(request: Request, principal: Principal) -> Response:
        name = request.query_params.get("name")
        text = ops.workflow(name).source_yaml if name else STARTER_YAML
        if request.method == "POST":
            text = await form_text(request, "yaml")
            try:
                saved = ops.save_workflow(text)
            except ApiProblem as exc:
                return render(request, "builder.html", principal, 422, yaml=text, problems=exc.problems,
                              **_pickers())
            return back("/workflows", f"Saved {saved.name}.")
        return render(request, "builder.html", principal, yaml=text, problems=[], **_pickers())

    def _pickers() -> dict[str, Any]:
        actions = sorted([*(op.name for app in ("snapshots", "gumroad") for op in select(app, Kind.ACTION)),
                          *LOCAL_ACTIONS])
        triggers = [(f"{s.app.value}:{s.name}", f"{s.app.value} · {s.name} — {s.description}") for s in EVENT_SPECS]
        fields = {f"{s.app.value}:{s.name}": _paths(s.sample, "event") for s in EVENT_SPECS}
        return {"actions": actions, "triggers": triggers, "fields": fields}

    async def runs(request: Request, principal: Principal) -> Response:
        q = request.query_params
        status = q.get("status") or None
        if status is not None and status not in {s.value for s in RunStatus}:
            raise ApiProblem(422, f"unknown status {status!r}")
        found = store.runs(status=RunStatus(status) if status else None, workflow=q.get("workflow") or None,
                           customer=q.get("customer") or None, limit=100)
        return render(request, "runs.html", principal, runs=found, statuses=[s.value for s in RunStatus],
                      filters={"status": status or "", "workflow": q.get("workflow", ""),
                               "customer": q.get("customer", "")})

    async def customers(request: Request, principal: Principal) -> Response:
        q = request.query_params
        filters = {"search": q.get("search", ""), "segment": q.get("segment", "")}
        after = q.get("after_id", "")
        found = store.list_profiles(segment=filters["segment"] or None, search=filters["search"] or None,
                                    limit=CUSTOMERS_PAGE + 1, after_id=_page_cursor(after))
        page = found[:CUSTOMERS_PAGE]
        kept = {k: v for k, v in filters.items() if v}
        next_url = f"/customers?{urlencode({**kept, 'after_id': page[-1].id})}" if len(found) > len(page) else ""
        return render(request, "customers.html", principal, customers=page, filters=filters, next_url=next_url,
                      export_url="/api/v1/customers/export.csv" + (f"?{urlencode(kept)}" if kept else ""))

    async def run_detail(request: Request, principal: Principal) -> Response:
        run_id = request.path_params["run_id"]
        detail = store.run_detail(run_id) if run_id < 2**62 else None
        if detail is None:
            raise ApiProblem(404, "no such run")
        return render(request, "run.html", principal, detail=detail)

    async def dead_letters(request: Request, principal: Principal) -> Response:
        return render(request, "dead_letters.html", principal, dead=store.dead_letters(limit=200))

    async def replay(request: Request, _p: Principal) -> Response:
        job_id = request.path_params["job_id"]
        count = store.replay(job_ids=[job_id]) if job_id < 2**62 else 0
        if count == 0:
            raise ApiProblem(404, "no such dead letter")
        return back("/dead-letters", f"Replayed {count} dead letter{'s' if count != 1 else ''}.")

    async def replay_all(_r: Request, _p: Principal) -> Response:
        count = store.replay(all_dead=True)
        return back("/dead-letters", f"Replayed {count} dead letter{'s' if count != 1 else ''}.")

    static = StaticFiles(packages=[("snapbridge.web.dashboard", "static")])
    return [
        Route("/setup", setup, methods=["GET", "POST"]),
        Route("/signin", signin, methods=["GET", "POST"]),
        Route("/signout", guarded(signout), methods=["POST"]),
        Route("/", guarded(overview), methods=["GET"]),
        Route("/connections", guarded(connections), methods=["GET"]),
        Route("/connections", guarded(add_connection, write=True), methods=["POST"]),
        Route("/connections/{name}/test", guarded(test_connection, write=True), methods=["POST"]),
        Route("/connections/{name}/remove", guarded(remove_connection, write=True), methods=["POST"]),
        Route("/templates", guarded(templates), methods=["GET"]),
        Route("/templates/{name}/install", guarded(install, write=True), methods=["POST"]),
        Route("/workflows", guarded(workflows), methods=["GET"]),
        Route("/workflows/builder", guarded(builder), methods=["GET"]),
        Route("/workflows/builder", guarded(builder, write=True), methods=["POST"]),
        Route("/workflows/{name}/{action:str}", guarded(toggle, write=True), methods=["POST"]),
        Route("/customers", guarded(customers), methods=["GET"]),
        Route("/runs", guarded(runs), methods=["GET"]),
        Route("/runs/{run_id:int}", guarded(run_detail), methods=["GET"]),
        Route("/dead-letters", guarded(dead_letters), methods=["GET"]),
        Route("/dead-letters/replay-all", guarded(replay_all, write=True), methods=["POST"]),
        Route("/dead-letters/{job_id:int}/replay", guarded(replay, write=True), methods=["POST"]),
        Mount("/static", app=static, name="static"),
    ]


