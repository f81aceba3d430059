"""Runs an ASGI app on a loopback socket in a background thread, for tests, benchmarks and the demo."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import uvicorn
import uvloop

__all__ = ["ServerThread", "bind_socket", "new_event_loop", "run_async"]

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop (libuv): the same asyncio API, with the loop's own work in C. A webhook answered by
    uvicorn costs ~10% less CPU on it, and the receiver's one core is what limits how many are answered."""
    return uvloop.new_event_loop()


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on new_event_loop()."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


def bind_socket(host: str = "127.0.0.1", port: int = 0, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket; port 0 lets the kernel pick a free one, so parallel runs never collide.

    `reuse_port`: other processes may listen on the same port with their own socket (SO_REUSEPORT); the kernel
    spreads new connections over them, where one shared socket lets whichever process wakes first take most.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only then; without it every response waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


class ServerThread:
    """One uvicorn server in its own thread and event loop; `start` returns once it accepts connections."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, root_path: str = "") -> None:
        """`root_path`: the app is mounted under it, as behind a proxy that forwards /prefix/… (uvicorn's)."""
        self._sock = bind_socket(host, port)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", root_path=root_path)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"sandbox-{self.port}", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        self.loop = new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._server.serve(sockets=[self._sock]))
        finally:
            self.loop.close()

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        # uvicorn has no start callback; poll its flag briefly (typically ready within a few ms).
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.base_url} did not start")
            time.sleep(0.005)
        return self

    def call_soon(self, make: Callable[[], Awaitable[Any]]) -> None:
        """Schedule a coroutine on the server's loop from another thread."""
        if self.loop is None:
            raise RuntimeError("server is not running")
        self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(make()))

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()
