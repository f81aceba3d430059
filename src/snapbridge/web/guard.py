"""What every request outside the webhook endpoints passes through: a cap on the body, a same-origin check on
anything that changes state, and the security headers. A pure ASGI middleware, so the webhook path pays one
prefix test and nothing else (the webhook endpoints enforce their own limits and answers)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["WebGuard"]

_HOOKS_PREFIX = "/hooks/"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# On every answer; the dashboard's pages add their Content-Security-Policy themselves.
_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)
_API_PREFIX = "/api/"


def _cross_origin(headers: Headers) -> bool:
    """True when a browser says the request comes from another site. Requests without Origin (curl, the CLI,
    servers) pass: the check exists against a page elsewhere submitting a form with the user's cookies."""
    if headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    if origin == "null":  # sandboxed frames and some redirects: never this dashboard
        return True
    offered = urlsplit(origin).netloc.lower()
    # Behind a proxy the browser's host arrives as X-Forwarded-Host when the proxy rewrites Host.
    hosts = {h.strip().lower() for h in (headers.get("host", ""), *headers.get("x-forwarded-host", "").split(","))}
    return offered not in hosts


def _route_path(scope: Scope) -> str:
    """The path the router matches: without the root_path a proxy mounts the app under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root + "/") else path


class WebGuard:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _route_path(scope).startswith(_HOOKS_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["method"] not in _SAFE_METHODS and _cross_origin(headers):
            await self._refuse(scope, receive, send, 403, "cross-site requests are refused; use this dashboard "
                               "or send an API token without an Origin header")
            return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(scope, receive, send, 413, f"the body is over {self.max_body_bytes} bytes")
            return
        no_store = _route_path(scope).startswith(_API_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in _ALWAYS:
                    if name.decode() not in out:
                        out.raw.append((name, value))
                if no_store and "cache-control" not in out:
                    out.raw.append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, self._capped(receive), send_with_headers)

    def _capped(self, receive: Receive) -> Receive:
        """A body sent without Content-Length (chunked) is cut off at the same cap; the app's error handler
        turns the HTTPException into the 413 answer."""
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(413, f"the body is over {self.max_body_bytes} bytes")
            return message

        return capped

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        response = JSONResponse({"error": message, "problems": []}, status_code=status,
                                headers={k.decode(): v.decode() for k, v in _ALWAYS})
        await response(scope, receive, send)
