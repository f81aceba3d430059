"""Planning benchmark: the sample events planned against the starter templates, with text-and-path mappings
rendered directly against the baseline of every mapping rendered through Jinja, in the same run.

    .venv/bin/python bench/plan.py [--plans 20000] [--rounds 3]

Every sample event that some starter triggers is planned as the deriver plans it (`plan_event`, with a known
customer's profile); one plan is one workflow planned for one event. Rounds alternate baseline and direct, and
each figure is the best round. Times are the process's CPU time, the cost planning adds to the deriver, which
other work on a busy machine disturbs less than the wall clock. Both ways must give equal plans, or the run stops.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime

from snapbridge.errors import InvalidInput
from snapbridge.workflows import (
    EVENT_SPECS,
    CompiledMapping,
    CustomerProfile,
    Event,
    Plan,
    Workflow,
    compile_mapping,
    load_templates,
    plan_event,
    render_scope,
)
from snapbridge.workflows.mapping import _jinja_only

PROFILE = CustomerProfile(email="ada@example.com", name="Ada Lovelace", plan="Pro", customer_id="cus_ada",
                          location_id="loc_7d1f3a", first_seen_at=datetime(2024, 5, 1, tzinfo=UTC))


def strings_in(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)


def starter_mappings(templates: Sequence[Workflow]) -> list[CompiledMapping]:
    """The starters' distinct mappings (filters, conditions, inputs that are not plain text)."""
    sources: set[str] = set()
    for workflow in templates:
        sources.update(strings_in(workflow.trigger.filter))
        for step in workflow.steps:
            sources.update(strings_in(step.condition))
            sources.update(s for s in strings_in(dict(step.input)) if "{{" in s or "{%" in s or "{#" in s)
    return [compile_mapping(source) for source in sorted(sources)]


def renders_of(mappings: Sequence[CompiledMapping], scope: Mapping[str, object]) -> list[CompiledMapping]:
    """The mappings that render in this scope (an event's own fields; earlier steps' outputs are unknown)."""
    found = []
    for mapping in mappings:
        try:
            mapping.render(scope)
        except InvalidInput:
            continue
        found.append(mapping)
    return found


def render_all(work: Sequence[tuple[Mapping[str, object], list[CompiledMapping]]],
               passes: int) -> tuple[float, int]:
    """(seconds, renders) for rendering each scope's mappings `passes` times."""
    began = time.process_time()
    for _ in range(passes):
        for scope, mappings in work:
            for mapping in mappings:
                mapping.render(scope)
    return time.process_time() - began, passes * sum(len(mappings) for _, mappings in work)


def plan_all(events: Sequence[Event], templates: Sequence[Workflow], passes: int) -> tuple[float, int]:
    """(seconds, plans made) for planning every event `passes` times."""
    made = 0
    began = time.process_time()
    for _ in range(passes):
        for event in events:
            made += len(plan_event(event, PROFILE, templates))
    return time.process_time() - began, made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=20_000, help="plans per round and way (about)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    templates = load_templates()
    events = [spec.sample_event() for spec in EVENT_SPECS if plan_event(spec.sample_event(), PROFILE, templates)]
    per_pass = sum(len(plan_event(event, PROFILE, templates)) for event in events)
    passes = max(1, args.plans // per_pass)

    def plans_now() -> list[tuple[Plan, ...]]:
        return [plan_event(event, PROFILE, templates) for event in events]

    direct_plans = plans_now()
    with _jinja_only():
        if plans_now() != direct_plans:
            raise SystemExit("the direct path and Jinja planned differently")
    mappings = starter_mappings(templates)
    direct = [m for m in mappings if m.direct]
    print(f"{len(events)} sample events, {per_pass} plans per pass, {passes} passes per round "
          f"({passes * per_pass:,} plans); {len(direct)} of {len(mappings)} distinct starter mappings render "
          "directly")

    plan_all(events, templates, max(1, passes // 10))  # warm the compile cache and the interpreter
    baseline = fast = float("inf")  # CPU seconds per plan, best round
    for _ in range(args.rounds):
        with _jinja_only():
            seconds, made = plan_all(events, templates, passes)
        baseline = min(baseline, seconds / made)
        seconds, made = plan_all(events, templates, passes)
        fast = min(fast, seconds / made)
    for label, per_plan in (("baseline: Jinja for every mapping", baseline), ("direct paths+filters+ops", fast)):
        print(f"{label:<36} {1 / per_plan:>9,.0f} plans/CPU-s {per_plan * 1e6:>8.1f} CPU-µs/plan")
    print(f"speed-up: {baseline / fast:.2f}x ({(1 - fast / baseline) * 100:.0f}% less time per plan)")

    # The same split for the directly rendered mappings alone, over the scopes the events produce.
    scopes = [render_scope(event, PROFILE) for event in events]
    work = [(scope, renders_of(direct, scope)) for scope in scopes]
    render_passes = max(1, args.plans // 20)
    with _jinja_only():
        jinja_seconds, renders = render_all(work, render_passes)
    direct_seconds, _ = render_all(work, render_passes)
    print(f"direct mappings alone, {renders:,} renders: Jinja {jinja_seconds / renders * 1e6:.1f} CPU-µs, "
          f"direct {direct_seconds / renders * 1e6:.1f} CPU-µs per render")


if __name__ == "__main__":
    main()
