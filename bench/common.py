"""What the benchmarks share: a private database, reading a keep-alive HTTP/1.1 answer cheaply, stopping
child processes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from snapbridge.store import open_engine


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


@contextlib.contextmanager
def database(engine: str, home: Path, admin_url: str) -> Iterator[str]:
    """A fresh SQLite file, or a fresh PostgreSQL database dropped on the way out."""
    if engine == "sqlite":
        yield f"sqlite:///{home / 'snapbridge.db'}"
        return
    name = f"sb_bench_{uuid.uuid4().hex[:12]}"
    admin = open_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
