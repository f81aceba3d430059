"""The sandbox's own control API under /_sandbox: scenarios, Ping URL, deliveries, settings, tokens, journal.

Not part of Gumroad; JSON in and out, no auth (the sandbox listens on loopback). Errors are
{"error": "..."} with 400, or 404 for an unknown scenario.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from snapbridge.errors import InvalidInput
from snapbridge.sandbox.gumroad.scenarios import SCENARIOS, ScenarioError

if TYPE_CHECKING:
    from snapbridge.sandbox.gumroad.sandbox import GumroadSandbox

__all__ = ["control_routes"]


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_object(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("the body must be a JSON object") from exc
    if not isinstance(parsed, dict):
        raise InvalidInput("the body must be a JSON object")
    return parsed


def control_routes(sandbox: GumroadSandbox) -> list[Route]:
    async def scenario(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            params = await _json_object(request)
            return JSONResponse(sandbox.run_scenario(name, params))
        except ScenarioError as exc:
            known = {"known": sorted(SCENARIOS)} if exc.status == 404 else {}
            return JSONResponse({"error": exc.message, **known}, status_code=exc.status)
        except InvalidInput as exc:
            return _error(str(exc))

    async def scenarios(request: Request) -> Response:
        return JSONResponse({"scenarios": sorted(SCENARIOS)})

    async def ping_url(request: Request) -> Response:
        if request.method == "POST":
            try:
                url = (await _json_object(request)).get("url")
                sandbox.set_ping_url(url)
            except InvalidInput as exc:
                return _error(str(exc))
        return JSONResponse({"url": sandbox.ping_url})

    async def deliveries(request: Request) -> Response:
        if request.method == "DELETE":
            sandbox.clear_deliveries()
            return JSONResponse({"deliveries": []})
        wanted = {k: v for k, v in request.query_params.items() if k in ("resource_name", "url", "event_id")}
        rows = [d.to_json() for d in sandbox.deliveries()]
        rows = [r for r in rows if all(str(r[k]) == v for k, v in wanted.items())]
        return JSONResponse({"deliveries": rows, "outstanding": sandbox.sender.outstanding})

    async def settings(request: Request) -> Response:
        if request.method == "POST":
            try:
                sandbox.configure(**await _json_object(request))
            except InvalidInput as exc:
                return _error(str(exc))
        return JSONResponse(asdict(sandbox.settings))

    async def tokens(request: Request) -> Response:
        try:
            body = await _json_object(request)
            scopes = body.get("scopes", [])
            app_id = body.get("application_id")
            if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                raise InvalidInput("'scopes' must be a list of strings")
            if app_id is not None and not isinstance(app_id, str):
                raise InvalidInput("'application_id' must be a string")
        except InvalidInput as exc:
            return _error(str(exc))
        token = sandbox.create_token(scopes, application_id=app_id)
        return JSONResponse({"access_token": token, "scopes": sorted(sandbox.token_scopes(token))})

    async def revoke(request: Request) -> Response:
        try:
            token = (await _json_object(request)).get("access_token")
            if not isinstance(token, str) or not sandbox.revoke_token(token):
                raise InvalidInput("unknown access_token")
        except InvalidInput as exc:
            return _error(str(exc))
        return JSONResponse({"revoked": True})

    async def journal(request: Request) -> Response:
        return JSONResponse({"entries": [e.to_json() for e in sandbox.journal.entries()]})

    async def info(request: Request) -> Response:
        return JSONResponse(sandbox.info())

    return [
        Route("/_sandbox/scenarios", scenarios, methods=["GET"]),
        Route("/_sandbox/scenarios/{name}", scenario, methods=["POST"]),
        Route("/_sandbox/ping_url", ping_url, methods=["GET", "POST"]),
        Route("/_sandbox/deliveries", deliveries, methods=["GET", "DELETE"]),
        Route("/_sandbox/settings", settings, methods=["GET", "POST"]),
        Route("/_sandbox/tokens", tokens, methods=["POST"]),
        Route("/_sandbox/tokens/revoke", revoke, methods=["POST"]),
        Route("/_sandbox/journal", journal, methods=["GET"]),
        Route("/_sandbox/info", info, methods=["GET"]),
    ]
