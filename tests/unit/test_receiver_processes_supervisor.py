"""ChildProcesses with real child processes (not snapbridge): a byte on the pipe wakes the deriver, a child
that fails ends `run` early with its reason logged, one that exits 0 (told to stop) stops the service, and
`stop` terminates the children."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import pytest

from snapbridge.runtime import ChildProcesses, wake_through


def _python(code: str) -> ChildProcesses:
    return ChildProcesses(2, lambda fd: [sys.executable, "-c", code.replace("FD", str(fd))])


async def test_a_wake_up_reaches_the_deriver_and_stop_ends_the_child() -> None:
    woken = asyncio.Event()
    stop = asyncio.Event()
    # Writes a wake-up, then waits to be terminated (the sleep is the child's life, ended by SIGTERM).
    children = _python("import os, time; os.write(FD, b'!'); time.sleep(60)")
    running = asyncio.create_task(children.run(woken.set, stop))
    await asyncio.wait_for(woken.wait(), timeout=30)
    stop.set()
    await asyncio.wait_for(running, timeout=30)  # returns only after the child has exited


async def test_a_child_that_exits_ends_run_early_and_says_how(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="snapbridge.runtime.receivers"):
        await asyncio.wait_for(_python("import sys; sys.exit(3)").run(lambda: None, stop), timeout=30)
    assert not stop.is_set()
    assert "action=receiver_process_ended number=2" in caplog.text and "exit_code=3" in caplog.text


async def test_a_child_that_was_told_to_stop_stops_the_service_cleanly() -> None:
    stop = asyncio.Event()
    await asyncio.wait_for(_python("import sys; sys.exit(0)").run(lambda: None, stop), timeout=30)
    assert stop.is_set()


def test_wake_through_never_blocks_on_a_full_pipe_or_a_gone_reader() -> None:
    read_end, write_end = os.pipe()
    wake = wake_through(write_end)
    try:
        for _ in range(100_000):  # far more than a pipe holds (64 KiB)
            wake()
        os.close(read_end)
        wake()  # the parent is gone: no BrokenPipeError
    finally:
        os.close(write_end)
