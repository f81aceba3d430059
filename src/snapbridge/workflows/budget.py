"""The budget of one render, shared by the Jinja path and the direct path: limits, a deadline, iterations."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from snapbridge.errors import InvalidInput

__all__ = ["ITERATE_FILTER", "RENDER_BUDGET", "MappingLimits", "RenderBudget", "current_budget"]

# The filter every loop's iterable goes through, so that each iteration draws from the budget.
ITERATE_FILTER = "_snapbridge_iterate"


@dataclass(frozen=True)
class MappingLimits:
    """What one mapping may cost. Normal mappings stay far below every limit."""

    max_source_chars: int = 8192
    max_value_chars: int = 65536
    max_range: int = 1000
    max_iterations: int = 10_000
    max_int_bits: int = 256
    max_nesting: int = 32
    max_seconds: float = 1.0
    cache_size: int = 4096


class RenderBudget:
    """The budget of one render: loop iterations left and a deadline."""

    __slots__ = ("clock", "deadline", "iterations", "limits")

    def __init__(self, limits: MappingLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.clock = clock
        self.deadline = clock() + limits.max_seconds
        self.iterations = 0

    def tick(self) -> None:
        self.iterations += 1
        if self.iterations > self.limits.max_iterations:
            raise InvalidInput(f"loops ran more than {self.limits.max_iterations} iterations")
        self.check_time()

    def check_time(self) -> None:
        if self.clock() > self.deadline:
            raise InvalidInput(f"rendering took longer than {self.limits.max_seconds} s")


RENDER_BUDGET: ContextVar[RenderBudget | None] = ContextVar("snapbridge_mapping_run", default=None)


def current_budget() -> RenderBudget:
    run = RENDER_BUDGET.get()
    if run is None:
        # Jinja folds constant expressions while compiling; refusing here keeps all work inside a budget.
        raise InvalidInput("a mapping is evaluated only while rendering")
    return run
