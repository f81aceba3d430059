"""Whose turn it is to write a SQLite file: one writer at a time, first among this process's threads, then
among every process on the file.

SQLite lets one connection write at a time, and a writer that finds the file locked polls it from its busy
handler, sleeping 1, 2, 5, 10 … 25 ms between tries: a busy thread or process that writes again at once
starves the others, and each wait costs at least a millisecond. Here threads queue on a lock and processes on
an exclusive `flock` of a file beside the database (`<db>-writer`), tried every 0.05-0.5 ms, so the turn passes
within half a millisecond of its release (or of its holder's death). Both waits are bounded as SQLite's own
is: a write that cannot have its turn in time fails as unavailable, rather than hanging a process (and its
shutdown) behind a stopped one. SQLite's busy handler stays as the fallback for writers that do not take part
(the sqlite3 shell, another program), and for a process that cannot open the lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import threading
import time

from sqlalchemy.engine import Engine

__all__ = ["SqliteWriters", "sqlite_writers"]

log = logging.getLogger(__name__)

_LOCK_SUFFIX = "-writer"  # beside SQLite's own "-wal" and "-shm"
_FIRST_PAUSE = 0.00005
_LONGEST_PAUSE = 0.0005


class SqliteWriters:
    """The write turn of one SQLite file in this process. `writing.active` tells whether a thread holds it."""

    def __init__(self, database: str | None) -> None:
        self._threads = threading.Lock()
        self.writing = threading.local()
        self._database = database
        self._fd: int | None = None
        self._opened = database is None  # nothing to open for a database that is not a file

    def acquire(self, timeout: float, other_processes: float) -> bool:
        """False when this process's other writers held the turn for `timeout` seconds, or another process's
        writer for `other_processes` seconds."""
        if not self._threads.acquire(timeout=timeout):
            return False
        try:
            fd = self._lock_file()
            if fd is None or _flock(fd, other_processes):
                return True
        except BaseException:
            self._threads.release()
            raise
        self._threads.release()
        return False

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _lock_file(self) -> int | None:
        if not self._opened:
            self._opened = True
            assert self._database is not None
            self._fd = _open_lock_file(self._database)
        return self._fd


def _flock(fd: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    pause = _FIRST_PAUSE
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
        time.sleep(pause)  # releases the GIL
        pause = min(pause * 2, _LONGEST_PAUSE)


def _open_lock_file(database: str) -> int | None:
    """The lock file's descriptor, made with the database's permissions and owner (as SQLite makes its -wal and
    -shm files), so whoever writes first does not lock the others out; None (and a warning) if it cannot be."""
    path = database + _LOCK_SUFFIX
    try:
        stat = os.stat(database)
        mode = stat.st_mode & 0o666
    except OSError:
        stat, mode = None, 0o600  # not created yet: SQLite makes it on first use, with this process's rights
    try:
        # O_CLOEXEC: a child process must open its own (an inherited descriptor shares this lock).
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    except OSError as exc:
        log.warning("action=sqlite_writer_lock_unusable path=%s error=%s (writers of other processes are told "
                    "apart by SQLite's busy timeout only)", path, exc.strerror or type(exc).__name__)
        return None
    if stat is not None:
        with contextlib.suppress(OSError):  # not the file's owner: whoever made it set it so already
            os.fchmod(fd, mode)  # the umask would have taken the group's write permission off
            if os.geteuid() == 0:
                os.fchown(fd, stat.st_uid, stat.st_gid)
    return fd


_WRITERS: dict[tuple[int, str], SqliteWriters] = {}
_WRITERS_GUARD = threading.Lock()


@functools.lru_cache(maxsize=64)
def _file_key(database: str) -> str:
    # realpath walks the path with a system call per part: once per file, not once per write.
    return os.path.realpath(database)


def sqlite_writers(engine: Engine) -> SqliteWriters:
    """The one SqliteWriters of this process for the engine's file, shared by every Store and engine on it.

    Looked up per write (a dictionary read): a Store made before a fork must not use its parent's turn."""
    database = engine.url.database or ""
    on_disk = bool(database) and database != ":memory:" and not database.startswith("file:")
    key = _file_key(database) if on_disk else f"pool:{id(engine.pool)}"
    pid = os.getpid()
    writers = _WRITERS.get((pid, key))
    if writers is None:
        with _WRITERS_GUARD:
            writers = _WRITERS.setdefault((pid, key), SqliteWriters(key if on_disk else None))
    return writers
