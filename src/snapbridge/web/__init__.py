"""The ASGI app: webhook endpoints, the management API and the dashboard."""

from snapbridge.web.app import create_app
from snapbridge.web.hooks import HookEndpoints, not_found

__all__ = ["HookEndpoints", "create_app", "not_found"]
