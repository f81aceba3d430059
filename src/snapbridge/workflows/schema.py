"""The published JSON Schema of workflow documents (schema.json), generated from the model and the catalog.

Regenerate with `python -m snapbridge.workflows.schema`; a test fails while schema.json is out of date.
"""

from __future__ import annotations

import json
import sys
from importlib.resources import files

from snapbridge.catalog import Kind, select
from snapbridge.workflows.events import EVENT_SPECS
from snapbridge.workflows.filters import FILTER_DOCS
from snapbridge.workflows.model import LOCAL_ACTIONS, Workflow

__all__ = ["published_schema", "render_schema", "workflow_json_schema"]

SCHEMA_ID = "urn:snapbridge:workflow:1"


def workflow_json_schema() -> dict[str, object]:
    """The model's schema, with the known event types and action names as enums for editors."""
    schema = Workflow.model_json_schema()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
    defs = schema["$defs"]
    assert isinstance(defs, dict)
    events = sorted({spec.name for spec in EVENT_SPECS})
    trigger = defs["TriggerSpec"]["properties"]
    trigger["event"]["anyOf"] = [
        {"type": "string", "enum": events},
        {"type": "array", "items": {"type": "string", "enum": events}, "minItems": 1, "uniqueItems": True},
    ]
    actions = sorted({r.name for r in select(kind=Kind.ACTION)} | set(LOCAL_ACTIONS))
    step = defs["Step"]["properties"]
    step["action"]["enum"] = actions
    step["input"]["description"] += ". Filters: " + ", ".join(sorted(FILTER_DOCS)) + "."
    return schema


def render_schema() -> str:
    return json.dumps(workflow_json_schema(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def published_schema() -> str:
    """The schema.json shipped in the package."""
    return (files("snapbridge.workflows") / "schema.json").read_text(encoding="utf-8")


if __name__ == "__main__":
    sys.stdout.write(render_schema())
