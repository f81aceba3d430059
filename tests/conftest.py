"""Shared fixtures: both sandbox servers on loopback, started once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from snapbridge.sandbox import Sandboxes

# Delays in the sandboxes (webhook retry schedule, rate windows) are scaled by this factor in tests.
TIME_FACTOR = 0.001


@pytest.fixture(scope="session")
def sandboxes() -> Iterator[Sandboxes]:
    from snapbridge.sandbox import start_sandboxes

    boxes = start_sandboxes(seed=1, time_factor=TIME_FACTOR)
    try:
        yield boxes
    finally:
        boxes.stop()
