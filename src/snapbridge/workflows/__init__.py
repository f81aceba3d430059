"""Workflows: the YAML model, the mapping language, trigger matching, segments and planning; pure code."""

from snapbridge.workflows.countries import COUNTRIES, Country, Region, find_country
from snapbridge.workflows.events import (
    EVENT_SPECS,
    App,
    CustomerProfile,
    Event,
    EventSpec,
    event_spec,
    field_problem,
    parse_event,
)
from snapbridge.workflows.filters import FILTER_DOCS, FILTERS
from snapbridge.workflows.loader import Problem, check_workflow, load_data, load_workflow, parse_document
from snapbridge.workflows.mapping import CompiledMapping, MappingEngine, MappingLimits, compile_mapping
from snapbridge.workflows.matching import filter_holds, render_scope, trigger_matches, triggered_by
from snapbridge.workflows.model import LOCAL_ACTIONS, ActionSpec, Step, TriggerSpec, Workflow, find_action
from snapbridge.workflows.planner import (
    Plan,
    PlannedStep,
    ResolvedStep,
    idempotency_key,
    ordering_key,
    plan_event,
    resolve_step,
)
from snapbridge.workflows.preview import RequestPreview, format_plan, preview_step
from snapbridge.workflows.schema import published_schema, render_schema, workflow_json_schema
from snapbridge.workflows.segments import (
    DEFAULT_SEGMENTS,
    SegmentRule,
    check_segments,
    evaluate_segments,
    refresh_segments,
)
from snapbridge.workflows.starters import load_template, load_templates, template_names, template_text

__all__ = [
    "ActionSpec",
    "App",
    "COUNTRIES",
    "CompiledMapping",
    "Country",
    "CustomerProfile",
    "DEFAULT_SEGMENTS",
    "EVENT_SPECS",
    "Event",
    "EventSpec",
    "FILTERS",
    "FILTER_DOCS",
    "LOCAL_ACTIONS",
    "MappingEngine",
    "MappingLimits",
    "Plan",
    "PlannedStep",
    "Problem",
    "Region",
    "RequestPreview",
    "ResolvedStep",
    "SegmentRule",
    "Step",
    "TriggerSpec",
    "Workflow",
    "check_segments",
    "check_workflow",
    "compile_mapping",
    "evaluate_segments",
    "event_spec",
    "field_problem",
    "filter_holds",
    "find_action",
    "find_country",
    "format_plan",
    "idempotency_key",
    "load_data",
    "load_template",
    "load_templates",
    "load_workflow",
    "ordering_key",
    "parse_document",
    "parse_event",
    "plan_event",
    "preview_step",
    "published_schema",
    "refresh_segments",
    "render_schema",
    "render_scope",
    "resolve_step",
    "template_names",
    "template_text",
    "trigger_matches",
    "triggered_by",
    "workflow_json_schema",
]
