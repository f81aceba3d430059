"""The receiver's shared body deadline (web/hooks.py _Deadlines): an overdue read ends in _BodyTimeout, a read
that finishes in time is untouched, a cancellation from elsewhere stays a cancellation, and an app served again
on a new event loop still times out (its timer died with the old loop)."""

from __future__ import annotations

import asyncio

import pytest

from snapbridge.web.hooks import _BodyTimeout, _Deadlines


async def _stall() -> bytes:
    await asyncio.sleep(30)
    return b"never"


async def _quick() -> bytes:
    return b"body"


async def _overdue(deadlines: _Deadlines) -> None:
    with pytest.raises(_BodyTimeout):
        await asyncio.wait_for(deadlines.within(_stall(), 0.2), timeout=5)


def test_an_overdue_read_times_out_and_a_quick_one_does_not() -> None:
    deadlines = _Deadlines()

    async def main() -> None:
        assert await deadlines.within(_quick(), 0.2) == b"body"
        await _overdue(deadlines)

    asyncio.run(main())


def test_a_cancellation_from_elsewhere_is_not_a_timeout() -> None:
    deadlines = _Deadlines()

    async def main() -> None:
        task = asyncio.create_task(deadlines.within(_stall(), 10))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_served_again_on_a_new_loop_it_still_times_out() -> None:
    deadlines = _Deadlines()
    asyncio.run(deadlines.within(_quick(), 30))  # leaves its sweep timer scheduled on a loop that then closes
    asyncio.run(_overdue(deadlines))
