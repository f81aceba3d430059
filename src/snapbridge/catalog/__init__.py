"""The operations catalog: one declarative record per action and trigger of every app.

It drives the generic action runner, the generated docs (docs/catalog.md) and the HighLevel sandbox.
"""

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
from snapbridge.catalog.registry import APPS, all_records, counts, get_action, get_record, get_trigger, select
from snapbridge.catalog.triggers import DERIVED_TRIGGERS, GUMROAD_TRIGGERS, SNAPSHOTS_TRIGGERS

__all__ = [  # noqa: RUF022 -- plain sorted(), the order test_architecture checks
    "APPS",
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
    "Record",
    "SNAPSHOTS_TRIGGERS",
    "TokenKind",
    "Trigger",
    "TriggerSource",
    "all_records",
    "counts",
    "get_action",
    "get_record",
    "get_trigger",
    "highlevel_operations",
    "highlevel_rows",
    "select",
]
