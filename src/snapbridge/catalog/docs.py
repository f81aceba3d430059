"""Renders the catalog as markdown (docs/catalog.md) and as JSON-ready dicts (the CLI's --json).

Regenerate the page with `snapbridge catalog --markdown > docs/catalog.md`; a test fails when it is stale.
"""

from __future__ import annotations

from collections.abc import Sequence

from snapbridge.catalog.model import Kind, Operation, Record, TokenKind, Trigger
from snapbridge.catalog.registry import APPS, all_records, counts

__all__ = ["describe", "render_markdown"]

_APP_TITLES = {
    "gumroad": "Gumroad API v2 (base URL: the Gumroad host; paths carry /v2)",
    "snapshots": "Snapshots API contract (snapshots-contract.md)",
    "highlevel": "HighLevel API: SaaS, Snapshots, Locations, Contacts (highlevel-operations.tsv)",
    "snapbridge": "Derived events (snapbridge's own triggers)",
}
_TOKENS = {TokenKind.AGENCY: "agency", TokenKind.LOCATION: "sub-account", TokenKind.USER: "seller"}


def describe(record: Record) -> dict[str, object]:
    """A record as plain JSON data (what `snapbridge catalog --json` prints)."""
    base: dict[str, object] = {
        "name": record.name, "app": record.app, "kind": record.kind.value, "summary": record.summary,
        "scopes": list(record.scopes), "notes": record.notes,
    }
    if isinstance(record, Operation):
        base.update(
            method=record.method, path=record.path, response_key=record.response_key,
            pagination=record.pagination.value, idempotent=record.idempotent,
            idempotency_header=record.idempotency_header, version=record.version,
            token_kinds=[k.value for k in record.token_kinds], deprecated=record.deprecated,
            source=record.source, input_schema=record.input_schema(),
        )
    else:
        base.update(event=record.event, source=record.source.value, payload_schema=record.payload_schema())
    return base


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _scopes(record: Record) -> str:
    if not record.scopes:
        return "none" if isinstance(record, Trigger) or not record.token_kinds else "any"
    return " or ".join(f"`{s}`" for s in record.scopes)


def _action_row(op: Operation) -> str:
    required = [p.name for p in op.params if p.required]
    tokens = ", ".join(_TOKENS[k] for k in op.token_kinds) or "no token"
    flags = [f"`Version: {op.version}`"] if op.version else []
    if op.pagination.value != "none":
        flags.append(f"pages: {op.pagination.value}")
    if op.deprecated:
        flags.append("deprecated")
    cells = [f"`{op.name}`", f"`{op.method} {op.path}`", _scopes(op), tokens,
             ", ".join(required) or "—", "; ".join(flags) or "—", op.summary]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _trigger_row(trigger: Trigger) -> str:
    required = [f.name for f in trigger.fields if f.required]
    shown = ", ".join(required[:8]) + (", …" if len(required) > 8 else "")
    cells = [f"`{trigger.name}`", f"`{trigger.event}`", trigger.source.value, _scopes(trigger), shown or "—",
             trigger.summary]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render_markdown(records: Sequence[Record] | None = None) -> str:
    """The whole catalog page: counts, then one table of actions and one of triggers per app."""
    chosen = tuple(records if records is not None else all_records())
    found = counts(chosen)
    lines = [
        "# Operations catalog",
        "",
        "Generated from the catalog records (`snapbridge.catalog`); do not edit by hand. Regenerate with",
        "`snapbridge catalog --markdown > docs/catalog.md`; search with `snapbridge catalog --search WORDS`.",
        "",
        "Scopes: a credential holding any one of the listed scopes may call the operation.",
        "",
        "| app | actions | triggers |",
        "|---|---:|---:|",
    ]
    for app in APPS:
        lines.append(f"| {app} | {found.get((app, Kind.ACTION), 0)} | {found.get((app, Kind.TRIGGER), 0)} |")
    total_actions = sum(n for (_, kind), n in found.items() if kind is Kind.ACTION)
    total_triggers = sum(n for (_, kind), n in found.items() if kind is Kind.TRIGGER)
    lines += [f"| **total** | **{total_actions}** | **{total_triggers}** |", ""]
    for app in APPS:
        mine = [r for r in chosen if r.app == app]
        if not mine:
            continue
        lines += [f"## {_APP_TITLES.get(app, app)}", ""]
        actions = [r for r in mine if isinstance(r, Operation)]
        if actions:
            lines += [f"### Actions ({len(actions)})", "",
                      "| name | request | scopes | token | required input | notes | summary |",
                      "|---|---|---|---|---|---|---|"]
            lines += [_action_row(op) for op in actions]
            lines.append("")
        triggers = [r for r in mine if isinstance(r, Trigger)]
        if triggers:
            lines += [f"### Triggers ({len(triggers)})", "",
                      "| name | event | source | scopes | payload fields always present | summary |",
                      "|---|---|---|---|---|---|"]
            lines += [_trigger_row(t) for t in triggers]
            lines.append("")
    return "\n".join(lines)

