"""Dry runs, pure: a planned step as the exact request it would send, with run-time values marked, as text.

Parameters go where the catalog record says (path, query, body), encoded as the catalog runner encodes them;
a test checks the two agree. The credential is never part of a preview: only the fact that one is sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from snapbridge.catalog import BodyEncoding, ParamIn
from snapbridge.workflows.model import find_action
from snapbridge.workflows.planner import Plan, PlannedStep

__all__ = ["RequestPreview", "format_plan", "preview_step"]


@dataclass(frozen=True)
class RequestPreview:
    """The request one step would send; `deferred` maps parameters known only at run time to their mapping."""

    step: PlannedStep
    method: str | None  # None for a local action, which sends no request
    url: str
    headers: Mapping[str, str]
    body: str | None
    authorized: bool
    deferred: Mapping[str, str]


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _form_pairs(values: Mapping[str, object]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in values.items():
        if isinstance(value, list):
            pairs.extend((f"{name}[]", _text(item)) for item in value)
        else:
            pairs.append((name, _text(value)))
    return pairs


def _query_pairs(values: Mapping[str, object]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in values.items():
        pairs.extend((name, _text(item)) for item in (value if isinstance(value, list) else [value]))
    return pairs


def _source(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def preview_step(step: PlannedStep, base_urls: Mapping[str, str]) -> RequestPreview:
    """The request of a planned step; deferred parameters stay `{name}` in paths, mapping text elsewhere."""
    action = find_action(step.action)
    deferred = {name: _source(value) for name, value in step.deferred.items()}
    values: dict[str, object] = {**step.input, **{name: deferred[name] for name in deferred}}
    op = action.operation
    if op is None:
        body = json.dumps(values, indent=2, ensure_ascii=False)
        return RequestPreview(step, None, action.name, {}, body, False, deferred)
    path = op.path
    query: dict[str, object] = {}
    body_values: dict[str, object] = {}
    for param in op.params:
        if param.name not in values:
            continue
        value = values[param.name]
        if param.where is ParamIn.PATH:
            if param.name not in deferred:
                path = path.replace("{" + param.name + "}", quote(str(value), safe=""))
        elif param.where is ParamIn.QUERY:
            query[param.name] = value
        else:
            body_values[param.name] = value
    headers = {"Accept": "application/json"}
    if op.version:
        headers["Version"] = op.version
    text: str | None = None
    if op.body_encoding is BodyEncoding.JSON:
        headers["Content-Type"] = "application/json"
        text = json.dumps(body_values, indent=2, ensure_ascii=False)
    elif op.body_encoding is BodyEncoding.FORM:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        text = urlencode(_form_pairs(body_values))
    elif op.body_encoding is BodyEncoding.MULTIPART:
        headers["Content-Type"] = "multipart/form-data"
        text = json.dumps(body_values, indent=2, ensure_ascii=False)
    if op.idempotency_header and op.is_write:
        headers["Idempotency-Key"] = step.idempotency_key
    base = base_urls.get(op.app, "").rstrip("/")
    url = f"{base}{path}" + (f"?{urlencode(_query_pairs(query))}" if query else "")
    return RequestPreview(step, op.method, url, headers, text, bool(op.token_kinds), deferred)


def format_plan(plan: Plan, base_urls: Mapping[str, str], authorization: str) -> str:
    """A plan as text, one block per step: the request line, headers, body and run-time values.

    `authorization` is what to show for the credential, e.g. "Bearer ****"; it never holds the secret.
    """
    if plan.error:
        return f"workflow {plan.workflow}: not run: {plan.error}\n"
    lines = [f"workflow {plan.workflow} · event {plan.event_id} · ordering key "
             f"{plan.steps[0].ordering_key if plan.steps else '-'}"]
    for number, step in enumerate(plan.steps, start=1):
        preview = preview_step(step, base_urls)
        runs_if = f" · runs if {step.condition}" if step.condition else ""
        lines.append("")
        lines.append(f"{number}. {step.step_id} · {step.action}{runs_if}")
        if preview.method is None:
            lines.append("   (snapbridge itself; no request)")
        else:
            lines.append(f"   {preview.method} {preview.url}")
            headers = dict(preview.headers)
            if preview.authorized:
                headers["Authorization"] = authorization
            lines.extend(f"   {name}: {headers[name]}" for name in sorted(headers))
        if preview.body is not None:
            lines.extend(f"   {line}" for line in preview.body.splitlines())
        lines.extend(f"   {name} ← {source}  (at run time)" for name, source in preview.deferred.items())
    for step_id in plan.skipped:
        lines.append(f"skipped: {step_id} (condition false)")
    return "\n".join(lines) + "\n"
