"""What every dashboard page uses: templates, the security headers, redirects with a message, and the guard that
checks sign-in, CSRF and role before a page runs and turns its errors into an error page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from snapbridge.errors import InvalidInput, SnapbridgeError
from snapbridge.web.api import ApiProblem, Operations, Principal, WebContext

__all__ = ["Kit", "Page"]

Page = Callable[[Request, Principal], Awaitable[Response]]
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}


class Kit:
    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.env = jinja2.Environment(loader=jinja2.PackageLoader("snapbridge.web.dashboard", "templates"),
                                      autoescape=True, undefined=jinja2.StrictUndefined)

    def ops(self, principal: Principal) -> Operations:
        """The operations in the principal's workspace: nothing of another workspace is found."""
        return Operations(self.ctx, principal.workspace_id)

    def render(self, request: Request, name: str, principal: Principal | None, status: int = 200,
               **values: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(
            principal=principal, csrf=self.ctx.csrf_for(principal) if principal else "",
            path=request.url.path, message=request.query_params.get("msg", ""), **values)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    @staticmethod
    def back(to: str, message: str = "") -> RedirectResponse:
        return RedirectResponse(to + (f"?msg={quote(message)}" if message else ""), status_code=303)

    @staticmethod
    async def form_text(request: Request, name: str) -> str:
        value = (await request.form()).get(name)
        return value if isinstance(value, str) else ""

    def guarded(self, page: Page, *, write: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """The page, for a signed-in user; a POST needs the session's CSRF token, and `write` the admin role."""
        ctx = self.ctx

        async def handle(request: Request) -> Response:
            if ctx.needs_setup():
                return self.back("/setup")
            principal = ctx.principal(request)
            if principal is None:
                return self.back("/signin")
            if request.method == "POST":
                form = await request.form()
                offered = form.get("csrf")
                if not ctx.csrf_ok(principal, offered if isinstance(offered, str) else None):
                    return self.render(request, "error.html", principal, 403, error="The form has expired or did "
                                       "not come from this dashboard (CSRF check failed). Reload the page and try "
                                       "again.")
                if write and not principal.is_admin:
                    return self.render(request, "error.html", principal, 403, error="This needs the admin role.")
            try:
                return await page(request, principal)
            except ApiProblem as exc:
                return self.render(request, "error.html", principal, exc.status, error=exc.message,
                                   problems=exc.problems)
            except SnapbridgeError as exc:
                return self.render(request, "error.html", principal, 422 if isinstance(exc, InvalidInput) else 503,
                                   error=str(exc), problems=[])
        return handle
