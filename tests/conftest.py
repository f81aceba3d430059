"""Shared fixtures: both sandbox servers on loopback, started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from snapbridge.sandbox import Sandboxes, start_sandboxes

# Delays in the sandboxes (webhook retry schedule, rate windows) are scaled by this factor in tests.
TIME_FACTOR = 0.001


@pytest.fixture(scope="session")
def sandboxes() -> Iterator[Sandboxes]:
    boxes = start_sandboxes(seed=1, time_factor=TIME_FACTOR)
    try:
        yield boxes
    finally:
        boxes.stop()
