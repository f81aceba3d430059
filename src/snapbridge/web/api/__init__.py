"""The management API under /api/v1: endpoints, models, the OpenAPI document, and the shared web context."""

from snapbridge.web.api.context import SESSION_COOKIE, ApiProblem, Principal, WebContext
from snapbridge.web.api.ops import Operations
from snapbridge.web.api.routes import API_PREFIX, Endpoint, api_routes, endpoints, openapi_document

__all__ = [
    "API_PREFIX",
    "ApiProblem",
    "Endpoint",
    "Operations",
    "Principal",
    "SESSION_COOKIE",
    "WebContext",
    "api_routes",
    "endpoints",
    "openapi_document",
]
