"""The client and `send` against small apps on loopback: limits, redirects, timeouts, refusals, the guard."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from snapbridge.errors import Permanent, Retryable, UnsafeURL
from snapbridge.http import create_client, excerpt, send
from snapbridge.sandbox.server import ServerThread

CANARY = "canary-91c4d2b8-do-not-leak"
LIMIT = 1000
METADATA_URL = "http://169.254.169.254/latest/meta-data/"


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.release = asyncio.Event()
    yield


async def fixed(request: Request) -> Response:
    return Response(b"x" * int(request.path_params["n"]), media_type="application/octet-stream")


async def streamed(request: Request) -> Response:
    total = int(request.path_params["n"])

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, total, 100):
            yield b"y" * min(100, total - start)

    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def gzipped(request: Request) -> Response:
    body = gzip.compress(b"0" * int(request.path_params["n"]))
    return Response(body, headers={"Content-Encoding": "gzip"}, media_type="text/plain")


async def redirect(request: Request) -> Response:
    return RedirectResponse(METADATA_URL, status_code=302)


async def slow(request: Request) -> Response:
    release: asyncio.Event = request.app.state.release
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(release.wait(), 10)
    return Response(b"late")


async def echo(request: Request) -> Response:
    client = request.client
    return JSONResponse({
        "host": request.headers.get("host"),
        "user_agent": request.headers.get("user-agent"),
        "client_port": client.port if client else None,
        "query": str(request.query_params),
    })


async def not_json(request: Request) -> Response:
    return Response(f"<html>token={CANARY}</html>", media_type="text/html")


class CutShort:
    """Promises 100 bytes, sends 10, then fails, so the connection drops mid-body."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
        await send({"type": "http.response.body", "body": b"0123456789", "more_body": True})
        raise ConnectionResetError("dropped on purpose")


app = Starlette(
    routes=[
        Route("/bytes/{n:int}", fixed),
        Route("/stream/{n:int}", streamed),
        Route("/gzip/{n:int}", gzipped),
        Route("/redirect", redirect),
        Route("/slow", slow),
        Route("/echo", echo),
        Route("/not-json", not_json),
        Route("/cut", CutShort()),
    ],
    lifespan=lifespan,
)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    thread = ServerThread(app).start()
    try:
        yield thread
    finally:
        loop = thread.loop
        if loop is not None:
            loop.call_soon_threadsafe(app.state.release.set)
        thread.stop()


@pytest.fixture
async def client(server: ServerThread) -> AsyncIterator[httpx.AsyncClient]:
    async with create_client(server.base_url, allowed_hosts=["127.0.0.1"], timeout=5.0) as made:
        yield made


@pytest.mark.parametrize("path", ["/bytes", "/stream"], ids=["content-length", "chunked"])
async def test_a_body_at_the_limit_is_read(client: httpx.AsyncClient, path: str) -> None:
    response = await send(client, "GET", f"{path}/{LIMIT}", operation="t.limit", max_response_bytes=LIMIT)
    assert response.status == 200
    assert len(response.content) == LIMIT


@pytest.mark.parametrize("path", ["/bytes", "/stream", "/gzip"], ids=["content-length", "chunked", "gzip"])
async def test_a_body_one_past_the_limit_is_refused(client: httpx.AsyncClient, path: str) -> None:
    with pytest.raises(Permanent, match=f"response larger than {LIMIT} bytes") as caught:
        await send(client, "GET", f"{path}/{LIMIT + 1}", operation="t.limit", max_response_bytes=LIMIT)
    assert caught.value.operation == "t.limit"
    assert caught.value.status == 200


async def test_a_small_gzip_body_is_decoded(client: httpx.AsyncClient) -> None:
    response = await send(client, "GET", f"/gzip/{LIMIT}", operation="t.gzip", max_response_bytes=LIMIT)
    assert response.content == b"0" * LIMIT


async def test_a_redirect_is_returned_not_followed(client: httpx.AsyncClient) -> None:
    response = await send(client, "GET", "/redirect", operation="t.redirect")
    assert response.status == 302
    assert response.headers["location"] == METADATA_URL


@pytest.mark.parametrize(
    "url",
    [METADATA_URL, "http://10.0.0.5/next?page=2", "http://2130706434/", "http://0xa9fea9fe/", "http://[::1]:1/",
     "ftp://x.org/"],
)
async def test_an_absolute_url_to_an_internal_address_is_refused(client: httpx.AsyncClient, url: str) -> None:
    with pytest.raises(UnsafeURL, match="refused"):
        await send(client, "GET", url, operation="t.next_page")


async def test_following_the_redirect_by_hand_is_refused(client: httpx.AsyncClient) -> None:
    response = await send(client, "GET", "/redirect", operation="t.redirect")
    with pytest.raises(UnsafeURL, match=r"169\.254\.169\.254 is a cloud metadata address"):
        await send(client, "GET", response.headers["location"], operation="t.redirect")


async def test_a_read_timeout_is_retryable(server: ServerThread) -> None:
    async with create_client(server.base_url, allowed_hosts=["127.0.0.1"], timeout=0.2) as client:
        with pytest.raises(Retryable, match="timed out \\(ReadTimeout\\)") as caught:
            await send(client, "GET", "/slow", operation="t.slow")
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


async def test_a_refused_connection_is_retryable_and_hides_tokens() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound but not listening: connecting is refused
        port = closed.getsockname()[1]
        async with create_client(f"http://127.0.0.1:{port}", allowed_hosts=["127.0.0.1"]) as client:
            with pytest.raises(Retryable, match="ConnectError") as caught:
                await send(client, "GET", "/v2/sales", operation="t.refused", params={"access_token": CANARY})
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert CANARY not in str(caught.value)
    assert "access_token=****" in str(caught.value)


async def test_a_connection_dropped_mid_body_is_retryable(client: httpx.AsyncClient) -> None:
    with pytest.raises(Retryable, match="RemoteProtocolError"):
        await send(client, "GET", "/cut", operation="t.cut")


async def test_the_response_is_redacted_and_carries_what_callers_need(client: httpx.AsyncClient) -> None:
    response = await send(client, "GET", "/echo", operation="t.echo", params={"access_token": CANARY})
    body = response.json()
    assert isinstance(body, dict)
    assert body["query"] == f"access_token={CANARY}"  # the real value went on the wire
    assert CANARY not in response.url
    assert response.url.endswith("/echo?access_token=****")
    assert body["user_agent"] == "snapbridge/0.1.0"
    assert response.elapsed_ms > 0
    assert response.operation == "t.echo"


async def test_connections_are_kept_alive(client: httpx.AsyncClient) -> None:
    first = (await send(client, "GET", "/echo", operation="t.echo")).json()
    second = (await send(client, "GET", "/echo", operation="t.echo")).json()
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["client_port"] == second["client_port"]


async def test_a_body_that_is_not_json_is_permanent_and_redacted(client: httpx.AsyncClient) -> None:
    response = await send(client, "GET", "/not-json", operation="t.json")
    with pytest.raises(Permanent, match="response is not JSON") as caught:
        response.json()
    assert caught.value.excerpt == "<html>token=****</html>"
    assert CANARY not in str(caught.value)


def test_the_base_url_is_guarded_when_the_client_is_made() -> None:
    with pytest.raises(UnsafeURL, match="SNAPBRIDGE_ALLOWED_HOSTS"):
        create_client("http://127.0.0.1:9/")


async def test_a_name_is_connected_to_the_address_that_was_checked(server: ServerThread) -> None:
    def resolve(host: str) -> list[str]:
        return ["127.0.0.1"] if host == "sandbox.test" else []

    base = f"http://sandbox.test:{server.port}"
    async with create_client(base, allowed_hosts=["127.0.0.1"], resolve=resolve) as client:
        body = (await send(client, "GET", "/echo", operation="t.name")).json()
    assert isinstance(body, dict)
    assert body["host"] == f"sandbox.test:{server.port}"


async def test_dns_rebinding_is_refused_at_connect_time(server: ServerThread) -> None:
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])  # public when checked, loopback when connecting

    def resolve(host: str) -> list[str]:
        return next(answers)

    async with create_client(f"http://rebind.test:{server.port}", resolve=resolve) as client:
        with pytest.raises(UnsafeURL, match=r"rebind\.test resolves to 127\.0\.0\.1, a loopback"):
            await send(client, "GET", "/echo", operation="t.rebind")


@pytest.mark.parametrize(
    ("content", "limit", "expected"),
    [
        (b'{"error": "bad", "access_token": "abc"}', 500, '{"error": "bad", "access_token": "****"}'),
        (b"x" * 600, 500, "x" * 500 + "…"),
        (b"x" * 500, 500, "x" * 500),
        (b"\xff\xfe ok", 500, "\ufffd\ufffd ok"),
        (f"Authorization: Bearer {CANARY}".encode() + b"x" * 1000, 20, "Authorization: ****"),
        (f"Authorization: Bearer {CANARY} ".encode() + b"x" * 1000, 20, "Authorization: **** …"),
        (f"see Bearer {CANARY} ".encode() * 100, 30, "see Bearer **** see Bearer ***…"),
        ("é".encode() * 10, 10, "é" * 10),
        ("é".encode() * 11, 10, "é" * 10 + "…"),
        (b"", 500, ""),
    ],
)
def test_excerpt(content: bytes, limit: int, expected: str) -> None:
    assert excerpt(content, limit) == expected
