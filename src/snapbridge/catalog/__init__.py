"""The operations catalog: one declarative record per action and trigger of every app.

It drives the generic action runner, the generated docs (docs/catalog.md) and the HighLevel sandbox.
"""

from snapbridge.catalog.decode import highlevel_error, highlevel_message
from snapbridge.catalog.docs import describe, render_markdown
from snapbridge.catalog.highlevel import AREAS as HIGHLEVEL_AREAS
from snapbridge.catalog.highlevel import highlevel_operations, highlevel_rows
from snapbridge.catalog.model import (
    BodyEncoding,
    Kind,
    Operation,
    Pagination,
    Param,
    ParamIn,
    ParamType,
    Record,
    TokenKind,
    Trigger,
    TriggerSource,
)
from snapbridge.catalog.pagination import items_of, next_page_params
from snapbridge.catalog.registry import (
    APPS,
    all_records,
    appending_actions,
    counts,
    get_action,
    get_record,
    get_trigger,
    select,
)
from snapbridge.catalog.runner import (
    ActionResult,
    PreparedRequest,
    iterate_action,
    prepare_request,
    run_action,
    validate_params,
)
from snapbridge.catalog.triggers import DERIVED_TRIGGERS, GUMROAD_TRIGGERS, SNAPSHOTS_TRIGGERS

__all__ = [
    "APPS",
    "ActionResult",
    "BodyEncoding",
    "DERIVED_TRIGGERS",
    "GUMROAD_TRIGGERS",
    "HIGHLEVEL_AREAS",
    "Kind",
    "Operation",
    "Pagination",
    "Param",
    "ParamIn",
    "ParamType",
    "PreparedRequest",
    "Record",
    "SNAPSHOTS_TRIGGERS",
    "TokenKind",
    "Trigger",
    "TriggerSource",
    "all_records",
    "appending_actions",
    "counts",
    "describe",
    "get_action",
    "get_record",
    "get_trigger",
    "highlevel_error",
    "highlevel_message",
    "highlevel_operations",
    "highlevel_rows",
    "items_of",
    "iterate_action",
    "next_page_params",
    "prepare_request",
    "render_markdown",
    "run_action",
    "select",
    "validate_params",
]
