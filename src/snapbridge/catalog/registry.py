"""The whole catalog in one place: every record of every app, looked up by name, filtered and counted."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable
from functools import cache

from snapbridge.catalog.gumroad import gumroad_operations
from snapbridge.catalog.highlevel import highlevel_operations
from snapbridge.catalog.model import Kind, Operation, Record, Trigger
from snapbridge.catalog.snapshots import snapshots_operations
from snapbridge.catalog.triggers import DERIVED_TRIGGERS, GUMROAD_TRIGGERS, SNAPSHOTS_TRIGGERS
from snapbridge.errors import InvalidInput

__all__ = ["APPS", "all_records", "counts", "get_action", "get_record", "get_trigger", "select"]

APPS = ("gumroad", "snapshots", "highlevel", "snapbridge")


@cache
def all_records() -> tuple[Record, ...]:
    """Every action and trigger, app by app; names are checked unique on first use."""
    records: tuple[Record, ...] = (
        *gumroad_operations(), *GUMROAD_TRIGGERS,
        *snapshots_operations(), *SNAPSHOTS_TRIGGERS,
        *highlevel_operations(),
        *DERIVED_TRIGGERS,
    )
    seen = Counter(r.name for r in records)
    twice = sorted(name for name, n in seen.items() if n > 1)
    if twice:
        raise InvalidInput(f"catalog: names used more than once: {twice}")
    routes = Counter((r.app, r.method, r.path) for r in records if isinstance(r, Operation))
    clash = sorted(f"{app} {m} {p}" for (app, m, p), n in routes.items() if n > 1)
    if clash:
        raise InvalidInput(f"catalog: routes described more than once: {clash}")
    return records


@cache
def _by_name() -> dict[str, Record]:
    return {r.name: r for r in all_records()}


def _unknown(name: str, known: Iterable[str], what: str) -> InvalidInput:
    names = sorted(known)
    near = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(near)}?" if near else f"; known: {', '.join(names)}"
    return InvalidInput(f"unknown {what} {name!r}{hint}")


def get_record(name: str) -> Record:
    try:
        return _by_name()[name]
    except KeyError:
        raise _unknown(name, _by_name(), "catalog operation") from None


@cache
def appending_actions() -> frozenset[str]:
    """Actions that add a record (POST: an event, a note) rather than set one: a later one of these never makes
    an earlier one stale, so a replay never leaves one out as superseded."""
    return frozenset(r.name for r in all_records() if isinstance(r, Operation) and r.method == "POST")


def get_action(name: str) -> Operation:
    record = _by_name().get(name)
    if isinstance(record, Operation):
        return record
    raise _unknown(name, (r.name for r in all_records() if isinstance(r, Operation)), "action")


def get_trigger(name: str) -> Trigger:
    record = _by_name().get(name)
    if isinstance(record, Trigger):
        return record
    raise _unknown(name, (r.name for r in all_records() if isinstance(r, Trigger)), "trigger")


def _text(record: Record) -> str:
    parts = [record.name, record.summary, record.notes, *record.scopes]
    if isinstance(record, Operation):
        parts += [record.method, record.path, record.source]
    else:
        parts += [record.event, record.source.value]
    return " ".join(parts).lower()


def select(app: str | None = None, kind: Kind | None = None, search: str = "") -> tuple[Record, ...]:
    """The records of `app` and `kind` whose text holds every word of `search` (case-insensitive)."""
    if app is not None and app not in APPS:
        raise _unknown(app, APPS, "app")
    words = search.lower().split()
    return tuple(
        r for r in all_records()
        if (app is None or r.app == app) and (kind is None or r.kind is kind)
        and all(w in _text(r) for w in words)
    )


def counts(records: Iterable[Record] | None = None) -> dict[tuple[str, Kind], int]:
    """How many records there are per (app, kind), in catalog order."""
    found: Counter[tuple[str, Kind]] = Counter((r.app, r.kind) for r in (records or all_records()))
    return dict(found)
