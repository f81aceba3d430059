"""Helpers for the Gumroad sandbox tests: a scripted webhook receiver, a private sandbox, a waiting helper."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from snapbridge.sandbox.gumroad import GumroadSandbox
from snapbridge.sandbox.server import ServerThread

__all__ = ["Received", "Receiver", "private_sandbox", "wait_until"]


@dataclass(frozen=True)
class Received:
    name: str  # the path segment after /hook/
    body: bytes
    content_type: str
    at: float  # time.monotonic() on arrival


class Receiver:
    """A tiny webhook endpoint on loopback: POST /hook/{name} answers the scripted statuses in turn.

    `script(name, [500, 200])` makes the first post answer 500 and every later one 200 (the last status
    repeats). A negative status -N means: sleep N/10 seconds, then answer 200 (to provoke timeouts).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[int]] = {}
        self._seen: list[Received] = []
        self.server = ServerThread(Starlette(routes=[Route("/hook/{name}", self._hook, methods=["POST"])]))

    async def _hook(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        with self._lock:
            self._seen.append(Received(name, body, request.headers.get("content-type", ""), time.monotonic()))
            script = self._scripts.get(name, [200])
            status = script.pop(0) if len(script) > 1 else script[0]
        if status < 0:
            await asyncio.sleep(-status / 10)
            status = 200
        return PlainTextResponse("ok", status_code=status)

    def start(self) -> Receiver:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def url(self, name: str) -> str:
        return f"{self.server.base_url}/hook/{name}"

    def script(self, name: str, statuses: list[int]) -> None:
        with self._lock:
            self._scripts[name] = list(statuses)

    def received(self, name: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._seen if name is None or r.name == name]


@contextmanager
def private_sandbox(time_factor: float, seed: int = 7) -> Iterator[tuple[GumroadSandbox, httpx.Client]]:
    """A sandbox of one's own (settings and hooks do not leak into the shared one), with a client."""
    sandbox = GumroadSandbox(seed=seed, time_factor=time_factor)
    server = ServerThread(sandbox.app).start()
    sandbox.base_url = server.base_url
    client = httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {sandbox.access_token}"}, timeout=10
    )
    try:
        yield sandbox, client
    finally:
        client.close()
        server.stop()


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
