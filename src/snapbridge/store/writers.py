"""Whose turn it is to write a SQLite file: one writer at a time, first among this process's threads, then
among every process on the file.

SQLite lets one connection write at a time, and a writer that finds the file locked polls it from its busy
handler, sleeping 1, 2, 5, 10 … 25 ms between tries: a busy thread or process that writes again at once
starves the others, and each wait costs at least a millisecond. Here threads queue on a lock (with a
timeout) and processes on an exclusive `flock` of a file beside the database, which the kernel hands to the
next waiter as soon as it is released (or its holder dies). SQLite's own busy handler stays as the fallback
for writers that do not take part (the sqlite3 shell, another program).
"""

from __future__ import annotations

import fcntl
import os
import threading

from sqlalchemy.engine import Engine

__all__ = ["SqliteWriters", "sqlite_writers"]

_LOCK_SUFFIX = "-writer"  # beside SQLite's own "-wal" and "-shm"


class SqliteWriters:
    """The write turn of one SQLite file in this process. `writing.active` tells whether a thread holds it."""

    def __init__(self, path: str | None) -> None:
        self._threads = threading.Lock()
        self.writing = threading.local()
        self._path = path + _LOCK_SUFFIX if path else None
        self._fd: int | None = None

    def acquire(self, timeout: float) -> bool:
        """False when this process's other writers held the turn for `timeout` seconds.

        Another process's writer is waited for without a limit: a process holding the turn holds SQLite's
        write lock too, so no write could succeed meanwhile, and its death releases both. Callers that must
        answer in time (the receiver) answer from their own deadline while this waits.
        """
        if not self._threads.acquire(timeout=timeout):
            return False
        try:
            if self._path is not None:
                if self._fd is None:
                    # O_CLOEXEC: a child process must open its own (an inherited descriptor shares this lock).
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        except BaseException:
            self._threads.release()
            raise
        return True

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


_WRITERS: dict[tuple[int, str], SqliteWriters] = {}
_WRITERS_GUARD = threading.Lock()


def sqlite_writers(engine: Engine) -> SqliteWriters:
    """The one SqliteWriters of this process for the engine's file, shared by every Store and engine on it."""
    database = engine.url.database or ""
    on_disk = bool(database) and database != ":memory:" and not database.startswith("file:")
    key = os.path.realpath(database) if on_disk else f"pool:{id(engine.pool)}"
    # Keyed by process too: after a fork the child needs its own lock file descriptor.
    with _WRITERS_GUARD:
        writers = _WRITERS.get((os.getpid(), key))
        if writers is None:
            writers = _WRITERS[(os.getpid(), key)] = SqliteWriters(key if on_disk else None)
        return writers
