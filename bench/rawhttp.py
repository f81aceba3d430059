"""What the benchmarks share: reading a keep-alive HTTP/1.1 answer cheaply, and stopping child processes."""

from __future__ import annotations

import asyncio
import signal
import subprocess


async def read_status(reader: asyncio.StreamReader) -> int:
    """Read one response (head and Content-Length body) and return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


def stop_children(children: list[subprocess.Popen[bytes]], *, graceful: bool = True) -> None:
    """SIGTERM and wait (graceful), then kill whatever is still running."""
    if graceful:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(timeout=30)
    for child in children:
        if child.poll() is None:
            child.kill()
