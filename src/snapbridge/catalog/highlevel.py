"""The HighLevel records: the reference TSV's SaaS, Snapshots, Locations and Contacts rows, plus details."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources

import yaml

from snapbridge.catalog.model import (
    BodyEncoding,
    Operation,
    Pagination,
    Param,
    ParamIn,
    ParamType,
    TokenKind,
)
from snapbridge.errors import InvalidInput

__all__ = ["AREAS", "TSV_COLUMNS", "highlevel_operations", "highlevel_rows"]

APP = "highlevel"
AREAS = ("saas", "snapshots", "locations", "contacts")
TSV_FILE = "highlevel-operations.tsv"
DETAILS_FILE = "highlevel-details.yaml"
TSV_COLUMNS = (
    "area", "method", "path", "operationId", "scope", "summary", "token_types", "version_header",
    "deprecated", "in_spec", "scope_source",
)

# How the specs' security scheme names translate into token kinds (snapshots-api.md §1.6).
_TOKEN_SCHEMES: dict[str, TokenKind] = {
    "Agency-Access": TokenKind.AGENCY,
    "Location-Access": TokenKind.LOCATION,
    "bearer": TokenKind.LOCATION,  # rendered as "Sub-Account token" on the docs site
}
_SPEC = re.compile(r"^(?P<type>string|integer|number|boolean|object|array(?:<(?P<items>\w+)>)?)"
                   r"(?:\((?P<enum>[^)]*)\))?(?P<required>!)?$")
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DETAIL_KEYS = {
    "name", "query", "body", "path", "response", "pagination", "status", "idempotent", "scopes",
    "also_scopes", "tokens", "encoding", "notes",
}


def _read(name: str) -> str:
    return resources.files("snapbridge.catalog").joinpath("data", name).read_text(encoding="utf-8")


def highlevel_rows() -> list[dict[str, str]]:
    """The TSV rows shipped in the package, as read (one dict per row, keyed by column)."""
    reader = csv.DictReader(io.StringIO(_read(TSV_FILE)), delimiter="\t", quoting=csv.QUOTE_NONE)
    if tuple(reader.fieldnames or ()) != TSV_COLUMNS:
        raise InvalidInput(
            f"catalog: {TSV_FILE} has columns {reader.fieldnames}, expected {list(TSV_COLUMNS)}"
        )
    return [dict(row) for row in reader]


def parse_param(name: str, spec: str, where: ParamIn, *, context: str) -> Param:
    match = _SPEC.match(spec.strip())
    if match is None:
        raise InvalidInput(f"catalog: {context}: parameter {name}: cannot read type {spec!r}")
    type_name = match["type"]
    items = ParamType(match["items"]) if match["items"] else None
    enum = tuple(v for v in (match["enum"] or "").split("|") if v)
    return Param(
        name=name,
        where=where,
        type=ParamType.ARRAY if type_name.startswith("array") else ParamType(type_name),
        required=bool(match["required"]) or where is ParamIn.PATH,
        enum=enum,
        items=items,
    )


def _params(path: str, detail: Mapping[str, object], context: str) -> tuple[Param, ...]:
    overrides = detail.get("path") or {}
    if not isinstance(overrides, dict):
        raise InvalidInput(f"catalog: {context}: `path` must be a mapping")
    params = [
        parse_param(name, str(overrides.get(name, "string")), ParamIn.PATH, context=context)
        for name in _PATH_PARAM.findall(path)
    ]
    for where in (ParamIn.QUERY, ParamIn.BODY):
        section = detail.get(where.value) or {}
        if not isinstance(section, dict):
            raise InvalidInput(f"catalog: {context}: `{where.value}` must be a mapping")
        params.extend(parse_param(str(n), str(s), where, context=context) for n, s in section.items())
    return tuple(params)


def _strings(detail: Mapping[str, object], key: str, context: str) -> list[str]:
    value = detail.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput(f"catalog: {context}: `{key}` must be a list of strings")
    return list(value)


def _scopes(row: Mapping[str, str], detail: Mapping[str, object], context: str) -> tuple[str, ...]:
    # "saas/company.read | docs-site: saas/company.write": the sources disagree, so either is accepted.
    listed = [part.split(":", 1)[-1].strip() for part in row["scope"].split("|") if part.strip()]
    chosen = _strings(detail, "scopes", context)
    if listed and chosen:
        raise InvalidInput(f"catalog: {context}: the TSV names {listed}; `scopes` may only fill a gap")
    if not listed and not chosen:
        raise InvalidInput(f"catalog: {context}: no scope in the TSV; choose one with `scopes`")
    extra = _strings(detail, "also_scopes", context)
    return tuple(dict.fromkeys([*listed, *chosen, *extra]))


def _token_kinds(row: Mapping[str, str], detail: Mapping[str, object], context: str) -> tuple[TokenKind, ...]:
    chosen = _strings(detail, "tokens", context)
    if chosen:
        return tuple(TokenKind(t) for t in chosen)
    kinds = [_TOKEN_SCHEMES[s] for s in row["token_types"].split() if s in _TOKEN_SCHEMES]
    if not kinds:
        raise InvalidInput(f"catalog: {context}: no token kind in the TSV; choose one with `tokens`")
    return tuple(dict.fromkeys(kinds))


def _operation(row: Mapping[str, str], detail: Mapping[str, object]) -> Operation:
    method, path = row["method"], row["path"]
    context = f"{DETAILS_FILE} {method} {path}"
    unknown = set(detail) - _DETAIL_KEYS
    if unknown:
        raise InvalidInput(
            f"catalog: {context}: unknown keys {sorted(unknown)}; known: {sorted(_DETAIL_KEYS)}"
        )
    params = _params(path, detail, context)
    versions = tuple(row["version_header"].split())
    has_body = any(p.where is ParamIn.BODY for p in params)
    encoding = BodyEncoding(str(detail.get("encoding", "json" if has_body else "none")))
    response = detail.get("response")
    return Operation(
        app=APP,
        name=str(detail["name"]),
        method=method,
        path=path,
        summary=row["summary"],
        params=params,
        scopes=_scopes(row, detail, context),
        response_key=str(response) if response is not None else None,
        pagination=Pagination(str(detail.get("pagination", "none"))),
        idempotent=bool(detail.get("idempotent", method != "POST")),
        idempotency_header=False,  # HighLevel documents no Idempotency-Key
        # One value per operation: the classic one where the API has it, since shapes differ by version.
        version=versions[0] if versions else None,
        versions=versions,
        token_kinds=_token_kinds(row, detail, context),
        body_encoding=encoding,
        success_status=int(str(detail.get("status", 200))),
        deprecated=row["deprecated"] == "yes",
        source=row["operationId"],
        notes=str(detail.get("notes", "")),
    )


@cache
def highlevel_operations() -> tuple[Operation, ...]:
    """One record per TSV row, in TSV order; read from package data on first use."""
    details = yaml.safe_load(_read(DETAILS_FILE))
    if not isinstance(details, dict):
        raise InvalidInput(f"catalog: {DETAILS_FILE} must map 'METHOD /path' to details")
    rows = highlevel_rows()
    keys = [f"{row['method']} {row['path']}" for row in rows]
    missing = sorted(set(keys) - set(details))
    extra = sorted(set(details) - set(keys))
    if missing or extra:
        raise InvalidInput(f"catalog: {DETAILS_FILE} lacks {missing} and has rows not in the TSV: {extra}")
    return tuple(_operation(row, details[key]) for row, key in zip(rows, keys, strict=True))
