"""The dashboard: server-rendered pages (Jinja2) over the same operations as the management API. This module
has sign-in, the overview, connections, templates and workflows; history.py the runs, dead letters and usage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from snapbridge.catalog import Kind, select
from snapbridge.errors import InvalidInput
from snapbridge.web.api import SESSION_COOKIE, ApiProblem, Principal, WebContext
from snapbridge.web.api.models import ConnectionIn, CredentialIn
from snapbridge.web.dashboard.charts import usage_view
from snapbridge.web.dashboard.history import history_routes
from snapbridge.web.dashboard.kit import Kit
from snapbridge.workflows import EVENT_SPECS, LOCAL_ACTIONS

__all__ = ["dashboard_routes"]

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

OVERVIEW_MINUTES = 60


def _form_problem(what: str, exc: ValidationError) -> ApiProblem:
    """422 naming each bad field; pydantic's messages never quote the value, so no credential is echoed."""
    problems = [{"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
    return ApiProblem(422, f"the {what} form is not valid", problems)


def _paths(value: object, prefix: str) -> list[str]:
    """Every leaf path of a sample event, for the builder's field picker."""
    if isinstance(value, Mapping):
        out: list[str] = []
        for key, inner in value.items():
            out.extend(_paths(inner, f"{prefix}.{key}"))
        return out
    return [prefix]


def dashboard_routes(ctx: WebContext) -> list[BaseRoute]:
    kit = Kit(ctx)
    ops, render, back, form_text = kit.ops, kit.render, kit.back, kit.form_text
    guarded = kit.guarded

    # first run, sign-in, sign-out

    async def setup(request: Request) -> Response:
        if not ctx.needs_setup():
            return back("/signin")
        if request.method == "GET":
            return render(request, "setup.html", None, error="")
        try:
            username, password = await form_text(request, "username"), await form_text(request, "password")
            await ctx.password_work(lambda: ctx.create_first_admin(username, password))
        except (InvalidInput, ApiProblem) as exc:
            return render(request, "setup.html", None, 422, error=str(exc))
        return back("/signin", "Admin created; sign in.")

    async def signin(request: Request) -> Response:
        if ctx.needs_setup():
            return back("/setup")
        if request.method == "GET":
            return render(request, "signin.html", None, error="")
        try:
            address = request.client.host if request.client else ""
            token = await ctx.sign_in_from(address, await form_text(request, "username"),
                                           await form_text(request, "password"))
        except ApiProblem as exc:
            page = render(request, "signin.html", None, exc.status, error=exc.message)
            page.headers.update(exc.headers or {})
            return page
        except InvalidInput:  # a name no account can have (the database refused it): as any wrong name
            return render(request, "signin.html", None, 401, error="wrong user name or password")
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
        view = usage_view(ops(principal).usage(OVERVIEW_MINUTES, None), now=ctx.clock(), minutes=OVERVIEW_MINUTES)
        return render(request, "overview.html", principal, counts=ops(principal).counts(), usage=view,
                      runs=ops(principal).runs(limit=10))

    async def connections(request: Request, principal: Principal) -> Response:
        return render(request, "connections.html", principal, connections=ops(principal).connections(), result=None)

    async def fields(request: Request, wanted: tuple[str, ...]) -> dict[str, str]:
        # Stripped: a pasted token often brings a newline, which the credential's pattern refuses.
        form = await request.form()
        return {k: v.strip() for k, v in form.items() if k in wanted and isinstance(v, str) and v.strip()}

    async def add_connection(request: Request, principal: Principal) -> Response:
        try:
            body = ConnectionIn.model_validate(await fields(request, (
                "app", "name", "credential", "webhook_public_key", "base_url")))
        except ValidationError as exc:
            raise _form_problem("connection", exc) from None
        saved, words = await ops(principal).add_connection(body)
        return render(request, "connections.html", principal, 200 if saved else 422,
                      connections=ops(principal).connections(), result=words)

    async def rotate_credential(request: Request, principal: Principal) -> Response:
        given = await fields(request, ("name", "credential", "webhook_public_key"))
        name = given.pop("name", "")
        try:
            body = CredentialIn.model_validate(given)
        except ValidationError as exc:
            raise _form_problem("rotation", exc) from None
        saved, words = await ops(principal).rotate_credential(name, body)
        return render(request, "connections.html", principal, 200 if saved else 422,
                      connections=ops(principal).connections(), result=words)

    async def test_connection(request: Request, principal: Principal) -> Response:
        words = await ops(principal).test_connection(request.path_params["name"])
        return render(request, "connections.html", principal, connections=ops(principal).connections(), result=words)

    async def remove_connection(request: Request, principal: Principal) -> Response:
        ops(principal).remove_connection(request.path_params["name"])
        return back("/connections", "Connection removed.")

    async def templates(request: Request, principal: Principal) -> Response:
        return render(request, "templates.html", principal, templates=ops(principal).templates())

    async def install(request: Request, principal: Principal) -> Response:
        out = ops(principal).install_template(request.path_params["name"])
        return back("/workflows", f"Installed {out.name} ({'enabled' if out.enabled else 'disabled'}).")

    async def workflows(request: Request, principal: Principal) -> Response:
        return render(request, "workflows.html", principal, workflows=ops(principal).workflows())

    async def toggle(request: Request, principal: Principal) -> Response:
        action = request.path_params["action"]
        if action not in ("enable", "disable"):
            raise ApiProblem(404, f"there is no workflow action {action!r}; use enable or disable")
        enabled = action == "enable"
        out = ops(principal).set_enabled(request.path_params["name"], enabled)
        return back("/workflows", f"{out.name} {'enabled' if out.enabled else 'disabled'}.")

    async def builder(request: Request, principal: Principal) -> Response:
        name = request.query_params.get("name")
        text = ops(principal).workflow(name).source_yaml if name else STARTER_YAML
        if request.method == "POST":
            text = await form_text(request, "yaml")
            try:
                saved = ops(principal).save_workflow(text)
            except ApiProblem as exc:
                return render(request, "builder.html", principal, 422, yaml=text, problems=exc.problems,
                              **_pickers())
            return back("/workflows", f"Saved {saved.name}.")
        return render(request, "builder.html", principal, yaml=text, problems=[], **_pickers())

    async def test_run(request: Request, principal: Principal) -> Response:
        """The builder's "Test run": the steps for the trigger's sample event, sent through the connections."""
        text = await form_text(request, "yaml")
        try:
            result = await ops(principal).test_run(text, None)
        except ApiProblem as exc:
            return render(request, "builder.html", principal, 422, yaml=text, problems=exc.problems or [
                {"path": "", "message": exc.message}], **_pickers())
        return render(request, "builder.html", principal, yaml=text, problems=[], test=result, **_pickers())

    def _pickers() -> dict[str, Any]:
        actions = sorted([*(op.name for app in ("snapshots", "gumroad") for op in select(app, Kind.ACTION)),
                          *LOCAL_ACTIONS])
        triggers = [(f"{s.app.value}:{s.name}", f"{s.app.value} · {s.name} — {s.description}") for s in EVENT_SPECS]
        fields = {f"{s.app.value}:{s.name}": _paths(s.sample, "event") for s in EVENT_SPECS}
        return {"actions": actions, "triggers": triggers, "fields": fields}

    static = StaticFiles(packages=[("snapbridge.web.dashboard", "static")])
    return [
        Route("/setup", setup, methods=["GET", "POST"]),
        Route("/signin", signin, methods=["GET", "POST"]),
        Route("/signout", guarded(signout), methods=["POST"]),
        Route("/", guarded(overview), methods=["GET"]),
        Route("/connections", guarded(connections), methods=["GET"]),
        Route("/connections", guarded(add_connection, write=True), methods=["POST"]),
        Route("/connections/rotate", guarded(rotate_credential, write=True), methods=["POST"]),
        Route("/connections/{name}/test", guarded(test_connection, write=True), methods=["POST"]),
        Route("/connections/{name}/remove", guarded(remove_connection, write=True), methods=["POST"]),
        Route("/templates", guarded(templates), methods=["GET"]),
        Route("/templates/{name}/install", guarded(install, write=True), methods=["POST"]),
        Route("/workflows", guarded(workflows), methods=["GET"]),
        Route("/workflows/builder", guarded(builder), methods=["GET"]),
        Route("/workflows/builder", guarded(builder, write=True), methods=["POST"]),
        Route("/workflows/builder/test", guarded(test_run, write=True), methods=["POST"]),
        Route("/workflows/{name}/{action:str}", guarded(toggle, write=True), methods=["POST"]),
        *history_routes(kit),
        Mount("/static", app=static, name="static"),
    ]


