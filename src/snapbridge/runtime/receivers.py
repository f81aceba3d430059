"""More processes beside `serve`, so that webhooks are answered, and jobs delivered, on more than one core.

`serve --receivers N` starts N-1 processes that run only the receiver (webhooks, API, dashboard), each on its own
socket bound to the same address with SO_REUSEPORT, so the kernel spreads new connections over all N. They store
what they receive in the same database (on SQLite, writers take turns: store/writers.py); the serving process
derives. Python runs one thread at a time per process, and a webhook costs its process ~0.3 ms of CPU, so one
process answers about 3,000-4,000 a second; a second process adds most of another core.

`serve --worker-processes N` starts N processes that only deliver (as `snapbridge worker` does), instead of the
worker in the serving process: delivering is most of a ping's CPU, and it then runs beside receiving and deriving
rather than taking turns with them. They see new jobs through the store (PostgreSQL NOTIFY; on SQLite a watch on
commits, store/notify.py).

Each child has a pipe to the parent. A byte on it means "I committed new events", so the deriver starts at once
rather than at its next idle look; the pipe's end means the child is gone: if it was told to stop (exit code 0:
SIGTERM, or Ctrl+C, which reaches the whole process group) the service stops cleanly too; otherwise it stops like
any part that fails. A child stops by itself when its parent is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["ChildProcesses", "wake_through", "watch_parent"]

log = logging.getLogger(__name__)

STOP_SECONDS = 30.0  # how long a child may take to finish its answers after SIGTERM
PARENT_CHECK_SECONDS = 1.0
_TOLD_TO_STOP = frozenset({0, -signal.SIGTERM, -signal.SIGINT})  # a clean exit, or one of those signals


Command = Callable[[int], Sequence[str]]  # fd → a child's argv, told to write its wake-ups to that descriptor


@dataclass
class _Child:
    role: str  # "receiver" or "worker", as the log names it
    number: int
    process: subprocess.Popen[bytes]
    pipe: int  # the parent's (reading) end


class ChildProcesses:
    """Starts, watches and stops the extra processes of one `serve`."""

    def __init__(self, receivers: int, receiver: Command, *, workers: int = 0, worker: Command | None = None
                 ) -> None:
        """`receivers`: processes receiving in all, this one included (children numbered 2 and up);
        `workers`: delivering processes, numbered 1 and up."""
        if workers and worker is None:
            raise ValueError("worker processes need their command")
        self.count = receivers
        self._plan = [("receiver", number, receiver) for number in range(2, receivers + 1)]
        self._plan += [("worker", number, worker) for number in range(1, workers + 1) if worker is not None]
        self._watching: set[asyncio.Future[None]] = set()

    @property
    def part(self) -> str:
        """What the service calls these processes when one of them ends it."""
        roles = [role for role in ("receiver", "worker") if any(planned[0] == role for planned in self._plan)]
        return " and ".join(roles) + " processes"

    async def run(self, wake: Callable[[], object], stop: asyncio.Event) -> None:
        """Run the children until `stop` is set; return early (with the reason logged) if one of them ends."""
        loop = asyncio.get_running_loop()
        children: list[_Child] = []
        ended = asyncio.Event()
        try:
            for role, number, command in self._plan:
                children.append(self._start(role, number, command))
                child = children[-1]
                loop.add_reader(child.pipe, self._readable, child, wake, stop, ended)
            for role in ("receiver", "worker"):
                pids = [str(c.process.pid) for c in children if c.role == role]
                if pids:
                    log.info("action=%ss_started processes=%d pids=%s", role, len(pids), ",".join(pids))
            stopping = asyncio.ensure_future(stop.wait())
            gone = asyncio.ensure_future(ended.wait())
            try:
                await asyncio.wait({stopping, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                gone.cancel()
        finally:
            for child in children:
                loop.remove_reader(child.pipe)
                os.close(child.pipe)
            await asyncio.gather(*(asyncio.to_thread(_stop, child) for child in children))
            await asyncio.gather(*self._watching, return_exceptions=True)

    @staticmethod
    def _start(role: str, number: int, command: Command) -> _Child:
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(list(command(write_end)), pass_fds=(write_end,))  # noqa: S603
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)  # the child holds it now; its exit closes the pipe
        os.set_blocking(read_end, False)
        return _Child(role, number, process, read_end)

    def _readable(self, child: _Child, wake: Callable[[], object], stop: asyncio.Event, ended: asyncio.Event
                  ) -> None:
        try:
            data = os.read(child.pipe, 4096)
        except BlockingIOError:
            return
        if data:
            wake()
            return
        # End of the pipe: the child is exiting (or closed it, which it never does on purpose).
        asyncio.get_running_loop().remove_reader(child.pipe)
        watching = asyncio.ensure_future(self._ended(child, stop, ended))
        self._watching.add(watching)
        watching.add_done_callback(self._watching.discard)

    async def _ended(self, child: _Child, stop: asyncio.Event, ended: asyncio.Event) -> None:
        code = await asyncio.to_thread(_exit_code, child.process)
        if code in _TOLD_TO_STOP or stop.is_set():
            # Told to stop (SIGTERM or Ctrl+C reach every process of a group at once; before its handlers are set
            # up they end it): the service stops too, cleanly, not as a failure because the child was faster.
            # Seen at the default level when the child stopped first: a SIGTERM sent to it alone stops the
            # whole service, and whoever sent it should see why the service stopped.
            level = logging.INFO if stop.is_set() else logging.WARNING
            log.log(level, "action=%s_process_stopped number=%d pid=%d %s: stopping the service", child.role,
                    child.number, child.process.pid, _how(code))
            stop.set()
            return
        log.error("action=%s_process_ended number=%d pid=%d %s", child.role, child.number, child.process.pid,
                  _how(code))
        ended.set()


def _how(code: int | None) -> str:
    if code is None:
        return "exit_code=unknown"  # closed its pipe, still running: _stop ends it
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal={signal.Signals(-code).name}"
    return f"exit_code={code}"


def _exit_code(process: subprocess.Popen[bytes]) -> int | None:
    """The exit code of a child whose pipe has closed (it is exiting; None if it has not within a few seconds)."""
    try:
        return process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return None


def _stop(child: _Child) -> None:
    process = child.process
    if process.poll() is None:
        process.terminate()  # SIGTERM: finish the answers in flight, then exit
        try:
            process.wait(timeout=STOP_SECONDS)
            return
        except subprocess.TimeoutExpired:
            log.error("action=%s_process_killed number=%d pid=%d", child.role, child.number, process.pid)
            process.kill()
    process.wait()


def wake_through(fd: int) -> Callable[[], None]:
    """The child's side of the pipe: tell the parent new events were committed (never blocks)."""
    os.set_blocking(fd, False)

    def wake() -> None:
        # A full pipe already holds a wake-up; a closed one means the parent is gone (watch_parent stops us).
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(fd, b"!")

    return wake


async def watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set `stop` once the process that started this one is gone (a child must not outlive its `serve`)."""
    while not stop.is_set():
        if os.getppid() != parent_pid:
            log.warning("action=parent_gone parent_pid=%d", parent_pid)
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PARENT_CHECK_SECONDS)
