"""The HTTP client factory and `send`: pooled, time-bounded, size-bounded, never following redirects, guarded.

Every request URL is checked by the guard twice: by a request hook (scheme, literal addresses, names such as
localhost; no DNS) and at connect time by the network backend, which resolves the name itself, refuses an
internal answer and connects to exactly the address it checked, so DNS rebinding cannot slip past the check.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from snapbridge import __version__
from snapbridge.errors import Permanent, Retryable
from snapbridge.http.guard import AllowList, Resolver, check_host, default_resolve, literal_address, url_host
from snapbridge.security import Secret, redact_text, redact_url

__all__ = ["DEFAULT_USER_AGENT", "HttpResponse", "create_client", "excerpt", "send"]

DEFAULT_USER_AGENT = f"snapbridge/{__version__}"
DEFAULT_MAX_RESPONSE_BYTES = 10_485_760
KEEPALIVE_SECONDS = 30.0

log = logging.getLogger("snapbridge.http")


# Longer than any credential: what is redacted beyond the shown part of a text, and never shown (see bounded).
_MARGIN = 4096


def bounded(text: str, limit: int, secrets: Sequence[Secret | str] = (), *, more: bool = False) -> str:
    """`text` with the known `secrets` and anything token-like redacted, at most `limit` characters (then "…").

    Redacted before the cut, so a secret the cut splits is still recognised whole. Only a window of the text is
    redacted, so a megabyte costs what a page does; a secret that the window's end (or the caller's cut: `more`)
    splits lies in its last characters, which are dropped.
    """
    window = text[: limit + 2 * _MARGIN]
    more = more or len(window) < len(text)
    shown = redact_text(window, secrets)
    if more:
        shown = shown[:-_MARGIN]
    return shown if len(shown) <= limit and not more else shown[:limit] + "…"


def excerpt(content: bytes, limit: int = 500, secrets: Sequence[Secret | str] = ()) -> str:
    """The start of a body as redacted text (see `bounded`), at most `limit` characters (plus "…" when cut)."""
    window = content[: 4 * (limit + 2 * _MARGIN)]  # enough bytes for the characters `bounded` reads
    return bounded(window.decode("utf-8", errors="replace"), limit, secrets, more=len(window) < len(content))


@dataclass(frozen=True)
class HttpResponse:
    """A fully read response. `url` is redacted (safe for logs and history); `operation` names the call."""

    status: int
    headers: httpx.Headers
    content: bytes
    elapsed_ms: float
    url: str
    operation: str = ""

    def json(self) -> object:
        """The body parsed as JSON; Permanent("response is not JSON") when it is not (retry won't help)."""
        try:
            return jsonlib.loads(self.content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Permanent("response is not JSON", operation=self.operation, status=self.status,
                            request_id=None, excerpt=excerpt(self.content)) from exc

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks and connects to the checked address, so the guard sees what the socket reaches."""

    def __init__(self, allow: AllowList, resolve: Resolver, resolve_timeout: float) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow = allow
        self._resolve = resolve
        self._resolve_timeout = resolve_timeout

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        url = f"//{host}:{port}"
        if self._allow.permits_name(host):
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        literal = literal_address(host)
        if literal is not None:
            check_host(host, self._allow, url=url, resolve=None)
            # Connect to the address as we read it, not as the system's parser might read the spelling.
            return await self._inner.connect_tcp(str(literal), port, timeout, local_address, socket_options)
        try:
            resolved = await asyncio.wait_for(asyncio.to_thread(self._resolve, host),
                                              timeout or self._resolve_timeout)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = check_host(host, self._allow, url=url, resolve=lambda _name: resolved) or []
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolved to no address")
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout, local_address,
                                                     socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used by snapbridge clients")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, *, limits: httpx.Limits, backend: _GuardedBackend) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx builds its pool without a way to pass a network backend; build the same pool with ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


def create_client(base_url: str, *, allowed_hosts: Sequence[str] = (), timeout: float = 10.0,
                  max_connections: int = 20, user_agent: str = DEFAULT_USER_AGENT,
                  resolve: Resolver | None = None) -> httpx.AsyncClient:
    """An async client for one API: base URL checked by the guard, every later request and connection too.

    `trust_env` is off: proxy variables and .netrc would route around the guard or add credentials.
    `resolve` replaces the system resolver (tests use it; it must return address strings).
    """
    allow = AllowList.parse(allowed_hosts)
    resolver = resolve or default_resolve
    check_host(url_host(base_url), allow, url=base_url, resolve=resolver)

    async def guard_request(request: httpx.Request) -> None:
        check_host(url_host(request.url), allow, url=str(request.url), resolve=None)

    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                          keepalive_expiry=KEEPALIVE_SECONDS)
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(connect=timeout, read=timeout, write=timeout, pool=timeout),
        limits=limits,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": user_agent},
        event_hooks={"request": [guard_request]},
        transport=_GuardedTransport(limits=limits, backend=_GuardedBackend(allow, resolver, timeout)),
    )


async def send(client: httpx.AsyncClient, method: str, url: str, *, operation: str,
               headers: Mapping[str, str] | None = None, params: Any = None, json: Any = None,
               data: Any = None, content: bytes | None = None,
               max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> HttpResponse:
    """Send one request and read the whole body, up to `max_response_bytes` (decoded).

    Network errors, timeouts and protocol errors → Retryable; a body past the limit or an unusable URL →
    Permanent; UnsafeURL from the guard propagates. A 3xx comes back as a response, never followed.
    """
    started = time.perf_counter()
    shown = redact_url(str(url))
    try:
        request = client.build_request(method, url, headers=headers, params=params, json=json, data=data,
                                       content=content)
        shown = redact_url(str(request.url))
        response = await client.send(request, stream=True)
        try:
            body = await _read_limited(response, max_response_bytes, operation=operation)
        finally:
            await response.aclose()
    except httpx.TimeoutException as exc:
        kind = type(exc).__name__
        raise Retryable(f"{method} {shown} timed out ({kind})", operation=operation) from exc
    except httpx.LocalProtocolError as exc:
        raise Permanent(f"{method} {shown} could not be sent: {redact_text(str(exc))}",
                        operation=operation) from exc
    except httpx.UnsupportedProtocol as exc:
        raise Permanent(f"{method} {shown}: unsupported URL scheme", operation=operation) from exc
    except (httpx.TransportError, httpx.DecodingError) as exc:
        # Connection refused or reset, a dropped or garbled response: the same request may work next time.
        kind = type(exc).__name__
        raise Retryable(f"{method} {shown} failed ({kind}): {redact_text(str(exc))}",
                        operation=operation) from exc
    except httpx.InvalidURL as exc:
        raise Permanent(f"{method} {shown}: invalid request URL", operation=operation) from exc
    elapsed_ms = (time.perf_counter() - started) * 1000
    log.debug("action=http.request operation=%s method=%s url=%s status=%d elapsed_ms=%.1f",
              operation, method, shown, response.status_code, elapsed_ms)
    return HttpResponse(status=response.status_code, headers=response.headers, content=body,
                        elapsed_ms=elapsed_ms, url=shown, operation=operation)


async def _read_limited(response: httpx.Response, limit: int, *, operation: str) -> bytes:
    def too_large() -> Permanent:
        return Permanent(f"response larger than {limit} bytes", operation=operation,
                         status=response.status_code)

    declared = response.headers.get("Content-Length", "")
    encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    if declared.isdigit() and int(declared) > limit and not encoded:
        raise too_large()  # refuse before reading a byte
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)
