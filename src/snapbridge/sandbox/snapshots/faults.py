"""Faults the Snapshots sandbox injects on request, settable while it runs: delays, errors, 429s, resets."""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["FaultSettings", "FaultState", "ValidationError", "fault_problems"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class FaultSettings(BaseModel):
    """Every fault knob; zero or None means off. Durations are wall-clock, not scaled by the time factor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: int = Field(default=0, ge=0, le=120_000)  # added before each API request is handled
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)  # fraction of API requests answered 5xx
    error_statuses: tuple[Literal[500, 502, 503], ...] = Field(default=(500, 502, 503), min_length=1)
    storm_requests: int = Field(default=0, ge=0)  # the next N API requests get 429
    storm_seconds: float = Field(default=0.0, ge=0.0, le=3600.0)  # every API request gets 429 this long
    reset_writes: int = Field(default=0, ge=0)  # the next N matching writes are applied, then reset
    reset_method: str | None = None  # only writes with this method (any write if None)
    reset_path: str | None = None  # only writes to this exact path (any path if None)
    slow_body_chunk_bytes: int = Field(default=0, ge=0)  # stream each response body in chunks this big
    slow_body_delay_ms: int = Field(default=0, ge=0, le=60_000)  # pause between those chunks


def fault_problems(error: ValidationError) -> list[str]:
    """Pydantic's complaints as one-line messages, for a 422 from the control API."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "body"
        problems.append(f"{where}: {item['msg']}")
    return problems


class FaultState:
    """The live settings plus what they have used up (counts, the storm's end, the error generator)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._settings = FaultSettings()
        self._storm_until = 0.0
        self._rng = random.Random(f"snapshots-faults:{seed}")

    @property
    def settings(self) -> FaultSettings:
        with self._lock:
            return self._settings

    def set(self, **changes: Any) -> FaultSettings:
        """Merge these changes into the current settings; raises pydantic's ValidationError on a bad one."""
        with self._lock:
            merged = FaultSettings.model_validate({**self._settings.model_dump(), **changes})
            if "storm_seconds" in changes:
                self._storm_until = time.monotonic() + merged.storm_seconds
            if "error_rate" in changes:
                # Reseeding on every change makes a test's sequence of injected errors repeatable.
                self._rng = random.Random(f"snapshots-faults:{self._seed}")
            self._settings = merged
            return merged

    def clear(self) -> None:
        with self._lock:
            self._settings = FaultSettings()
            self._storm_until = 0.0

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            data = self._settings.model_dump(mode="json")
            data["storm_seconds_left"] = round(max(0.0, self._storm_until - time.monotonic()), 3)
            return data

    def latency_seconds(self) -> float:
        return self.settings.latency_ms / 1000

    def take_storm(self, now: float, time_factor: float) -> float | None:
        """None when this request passes; else how long the client should wait, in seconds.

        A timed storm tells the time left; a counted one says one (scaled) second, as it has no end time.
        """
        with self._lock:
            if now < self._storm_until:
                return self._storm_until - now
            if self._settings.storm_requests > 0:
                left = self._settings.storm_requests - 1
                self._settings = self._settings.model_copy(update={"storm_requests": left})
                return 1.0 * time_factor
            return None

    def take_error(self) -> int | None:
        """The status of an injected server error for this request, or None."""
        with self._lock:
            rate = self._settings.error_rate
            if rate <= 0 or self._rng.random() >= rate:
                return None
            return self._rng.choice(self._settings.error_statuses)

    def take_reset(self, method: str, path: str) -> bool:
        """True when this applied write must lose its answer; uses up one of the armed resets."""
        with self._lock:
            s = self._settings
            if s.reset_writes <= 0 or method not in WRITE_METHODS:
                return False
            if s.reset_method is not None and s.reset_method.upper() != method:
                return False
            if s.reset_path is not None and s.reset_path != path:
                return False
            self._settings = s.model_copy(update={"reset_writes": s.reset_writes - 1})
            return True

    def slow_body(self) -> tuple[int, float] | None:
        """(chunk size, seconds between chunks) while slow bodies are on."""
        s = self.settings
        if s.slow_body_chunk_bytes <= 0:
            return None
        return s.slow_body_chunk_bytes, s.slow_body_delay_ms / 1000
