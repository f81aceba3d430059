"""The sandbox's own control API under /_sandbox: keys, faults, journal, webhook subscribers and deliveries.

None of it needs an API key, none of it is journaled or rate limited: it is the test bench, not the API.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from snapbridge.sandbox.snapshots.faults import fault_problems
from snapbridge.sandbox.snapshots.pipeline import Parts
from snapbridge.sandbox.snapshots.state import (
    DEFAULT_BURST_LIMIT,
    DEFAULT_BURST_WINDOW_MS,
    DEFAULT_DAILY_LIMIT,
)

__all__ = ["control_routes", "http_error"]


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scopes: list[str]
    company_id: str | None = None
    location_id: str | None = None
    burst_limit: int = Field(DEFAULT_BURST_LIMIT, ge=1)
    burst_window_ms: int = Field(DEFAULT_BURST_WINDOW_MS, ge=1)
    daily_limit: int = Field(DEFAULT_DAILY_LIMIT, ge=1)


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    retry_interval_seconds: float | None = Field(None, ge=0)


def _invalid(problems: list[str]) -> JSONResponse:
    return JSONResponse({"statusCode": 422, "message": problems, "error": "Unprocessable Entity"}, 422)


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"Body is not valid JSON: {exc}") from exc


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405/400 in the same JSON shape as the API's errors."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal Server Error"
    return JSONResponse({"statusCode": status, "message": detail}, status)


def control_routes(parts: Parts) -> list[BaseRoute]:
    state, faults, journal, sender = parts.state, parts.faults, parts.journal, parts.sender

    async def create_key(request: Request) -> Response:
        try:
            wanted = KeyRequest.model_validate(await _json(request))
            key = state.add_key(
                frozenset(wanted.scopes), wanted.company_id or state.company_id, wanted.location_id,
                wanted.burst_limit, wanted.burst_window_ms, wanted.daily_limit,
            )
        except ValidationError as exc:
            return _invalid(fault_problems(exc))
        except ValueError as exc:
            return _invalid([str(exc)])
        return JSONResponse(key.to_json(), 201)

    async def get_faults(request: Request) -> Response:
        return JSONResponse(faults.to_json())

    async def set_faults(request: Request) -> Response:
        changes = await _json(request)
        if not isinstance(changes, dict):
            return _invalid(["body must be a JSON object"])
        try:
            faults.set(**changes)
        except ValidationError as exc:
            return _invalid(fault_problems(exc))
        return JSONResponse(faults.to_json())

    async def clear_faults(request: Request) -> Response:
        faults.clear()
        return JSONResponse(faults.to_json())

    async def get_journal(request: Request) -> Response:
        q = request.query_params
        found = journal.entries(method=q.get("method"), path=q.get("path"), entity=q.get("entity"))
        return JSONResponse({"entries": [e.to_json() for e in found]})

    def _webhook_state() -> dict[str, Any]:
        return {"subscribers": sender.subscribers(), "retry_interval_seconds": sender.retry_interval_seconds,
                "public_key": sender.signer.public_key_b64}

    async def add_webhook(request: Request) -> Response:
        try:
            wanted = WebhookSettings.model_validate(await _json(request))
            if wanted.url is None and wanted.retry_interval_seconds is None:
                return _invalid(["url or retry_interval_seconds should not be empty"])
            if wanted.url is not None:
                sender.subscribe(wanted.url)
            if wanted.retry_interval_seconds is not None:
                sender.set_retry_interval(wanted.retry_interval_seconds)
        except ValidationError as exc:
            return _invalid(fault_problems(exc))
        except ValueError as exc:
            return _invalid([str(exc)])
        return JSONResponse(_webhook_state(), 201)

    async def list_webhooks(request: Request) -> Response:
        return JSONResponse(_webhook_state())

    async def remove_webhooks(request: Request) -> Response:
        sender.unsubscribe_all()
        return JSONResponse(_webhook_state())

    async def deliveries(request: Request) -> Response:
        return JSONResponse({"deliveries": [d.to_json() for d in sender.deliveries()]})

    async def info(request: Request) -> Response:
        return JSONResponse({"company_id": state.company_id,
                             "webhook_public_key": sender.signer.public_key_b64})

    return [
        Route("/keys", create_key, methods=["POST"]),
        Route("/faults", get_faults, methods=["GET"]),
        Route("/faults", set_faults, methods=["POST"]),
        Route("/faults", clear_faults, methods=["DELETE"]),
        Route("/journal", get_journal, methods=["GET"]),
        Route("/webhooks", list_webhooks, methods=["GET"]),
        Route("/webhooks", add_webhook, methods=["POST"]),
        Route("/webhooks", remove_webhooks, methods=["DELETE"]),
        Route("/webhooks/deliveries", deliveries, methods=["GET"]),
        Route("/info", info, methods=["GET"]),
    ]
