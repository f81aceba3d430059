"""The management API under /api/v1: endpoints, models, the OpenAPI document, and the shared web context."""

from snapbridge.web.api.context import SESSION_COOKIE, ApiProblem, Principal, WebContext
from snapbridge.web.api.openapi import API_PREFIX, Endpoint, openapi_document
from snapbridge.web.api.ops import DeadFilter, Operations
from snapbridge.web.api.params import parse_instant, query_window
from snapbridge.web.api.routes import api_routes, endpoints

__all__ = [
    "API_PREFIX",
    "ApiProblem",
    "DeadFilter",
    "Endpoint",
    "Operations",
    "Principal",
    "SESSION_COOKIE",
    "WebContext",
    "api_routes",
    "endpoints",
    "openapi_document",
    "parse_instant",
    "query_window",
]
