"""When the receiver reads the stored connections again, so that a connection added, rotated or removed by
another process (`snapbridge connect`, another receiver process's API) is taken without a restart.

A webhook for an unknown secret (or one no key verifies) waits for a read that began after it arrived before it
is answered 404 (401): Gumroad does not retry a 404, nor the Snapshots API a 401, so the first webhook of a new
connection must not be refused on a read from before the connection existed. Reads run one at a time, begin at
most every MIN_GAP_SECONDS (a stream of unknown secrets costs at most that many reads), and a webhook waits at
most WAIT_SECONDS for one. Besides, any webhook starts a read in the background once the last is a minute old,
so a removed connection stops being accepted everywhere. A read that began before the connections were changed
in this process (`changed`) is not applied over that change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Rereads"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MIN_GAP_SECONDS = 0.25
WAIT_SECONDS = 3.0
STALE_SECONDS = 60.0
HUNG_SECONDS = 30.0  # a read running this long is given up on (its thread may still end; its result is not used)


class Rereads(Generic[T]):
    def __init__(self, load: Callable[[], T], apply: Callable[[T], None]) -> None:
        self._load = load
        self._apply = apply
        self._generation = 0  # bumped by every change made here, so an older read is not applied over it
        self._loaded_at = time.monotonic()
        self._last_began = float("-inf")
        self._current: asyncio.Future[bool] | None = None
        self._current_began = float("-inf")
        self._loop: asyncio.AbstractEventLoop | None = None

    def changed(self) -> None:
        """The connections were changed in this process (and applied): reads begun before do not count."""
        self._generation += 1
        self._loaded_at = time.monotonic()

    async def fresh(self, arrived: float) -> bool:
        """Wait (at most WAIT_SECONDS) for a read that began at or after `arrived` (time.monotonic()); True when
        one has ended, and so the connections in use are at least that new."""
        self._bind()
        deadline = arrived + WAIT_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            current = self._current
            if current is None:
                if self._last_began >= arrived:
                    return True  # a read that began after this webhook arrived has ended
                delay = self._last_began + MIN_GAP_SECONDS - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(min(delay, left))
                    continue
                current = self._begin()
            began = self._current_began
            try:
                ok = await asyncio.wait_for(asyncio.shield(current), left)
            except TimeoutError:
                return False
            if began >= arrived:
                return ok
        return False

    def refresh_if_stale(self) -> None:
        """Start a read in the background when the last is STALE_SECONDS old (cheap when it is not)."""
        if time.monotonic() - self._loaded_at > STALE_SECONDS:
            self._bind()
            if self._current is None:
                self._begin()

    def _bind(self) -> None:
        # Futures belong to one event loop: an app served again (tests) starts clean.
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._current = loop, None
        elif self._current is not None and time.monotonic() - self._current_began > HUNG_SECONDS:
            log.warning("action=hooks_reload_hung seconds=%d", int(HUNG_SECONDS))
            self._current = None

    def _begin(self) -> asyncio.Future[bool]:
        now = time.monotonic()
        self._last_began = self._current_began = now
        self._loaded_at = now  # also when it fails: the next stale check is a minute on
        current = self._current = asyncio.ensure_future(self._read(self._generation))
        return current

    async def _read(self, generation: int) -> bool:
        try:
            found = await asyncio.to_thread(self._load)
        except Exception as exc:  # the connections in use stay; the next miss or minute tries again
            log.warning("action=hooks_reload_failed error=%s", type(exc).__name__)
            return False
        finally:
            if self._current is asyncio.current_task():
                self._current = None
        if generation == self._generation:
            self._apply(found)
        return True
