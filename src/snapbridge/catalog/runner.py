"""The generic action runner: any catalog action, validated against its record, sent, decoded into our errors.

Rate limiting and retries belong to the pipeline; the runner raises our typed errors (Retryable carries
retry_after), which is what that machinery needs. Every error that leaves `run_action` has the credential
redacted from its message and excerpt, and both bounded, whichever app's decoder or layer built it: a key the
API echoes back, or a megabyte of message, must reach no attempt row, job error or log line.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

import httpx

from snapbridge.catalog.decode import highlevel_error
from snapbridge.catalog.model import BodyEncoding, Operation, ParamIn, ParamType
from snapbridge.catalog.pagination import next_page_params
from snapbridge.connectors.gumroad import decode_response as gumroad_decode
from snapbridge.connectors.snapshots import decode_error as snapshots_error
from snapbridge.connectors.snapshots import unwrap as snapshots_unwrap
from snapbridge.errors import DeliveryError, InvalidInput, Permanent, SnapbridgeError
from snapbridge.http import HttpResponse, RateLimitState, bounded, excerpt, send
from snapbridge.security import Secret

__all__ = [
    "ERROR_CHARS",
    "EXCERPT_CHARS",
    "ActionResult",
    "PreparedRequest",
    "iterate_action",
    "prepare_request",
    "run_action",
    "validate_params",
]

DEFAULT_MAX_RESPONSE_BYTES = 10_485_760
MAX_IDEMPOTENCY_KEY_LENGTH = 255
REPLAYED_HEADER = "Idempotent-Replayed"
# The most an error's message and excerpt hold (then "…"); decoders cut the API's own words shorter still.
ERROR_CHARS = 1000
EXCERPT_CHARS = 500

_TYPE_NAMES = {
    ParamType.STRING: "a string", ParamType.INTEGER: "an integer", ParamType.NUMBER: "a number",
    ParamType.BOOLEAN: "true or false", ParamType.ARRAY: "a list", ParamType.OBJECT: "an object",
}


@dataclass(frozen=True)
class PreparedRequest:
    """What the runner will send, before the credential is added; pure data, safe to print."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    json: object | None = None
    form: tuple[tuple[str, str], ...] | None = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionResult:
    """The outcome of one successful call: the payload under the record's response key, and the whole body."""

    operation: str
    status: int
    payload: object
    body: object
    replayed: bool = False
    rate_limit: RateLimitState | None = None
    elapsed_ms: float = 0.0


def _matches(type_: ParamType, value: object) -> bool:
    if type_ is ParamType.STRING:
        return isinstance(value, str)
    if type_ is ParamType.INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ is ParamType.NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_ is ParamType.BOOLEAN:
        return isinstance(value, bool)
    if type_ is ParamType.ARRAY:
        return isinstance(value, list | tuple)
    return isinstance(value, Mapping)


def validate_params(op: Operation, params: Mapping[str, object]) -> dict[str, object]:
    """The given parameters, checked against the record; None counts as absent. Every problem in one error."""
    problems: list[str] = []
    known = [p.name for p in op.params]
    unknown = sorted(name for name in params if op.param(name) is None)
    if unknown:
        listed = ", ".join(known) if known else "none"
        problems.append(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                        f"(known: {listed})")
    checked: dict[str, object] = {}
    for param in op.params:
        value = params.get(param.name)
        if value is None:
            if param.required:
                problems.append(f"missing required parameter {param.name} ({param.type.value})")
            continue
        if not _matches(param.type, value):
            problems.append(f"parameter {param.name} must be {_TYPE_NAMES[param.type]}, "
                            f"got {type(value).__name__}")
            continue
        if param.items is not None and isinstance(value, list | tuple):
            bad = [i for i, item in enumerate(value) if not _matches(param.items, item)]
            if bad:
                problems.append(f"parameter {param.name}[{bad[0]}] must be {_TYPE_NAMES[param.items]}")
                continue
        if param.enum and value not in param.enum:
            problems.append(f"parameter {param.name} must be one of {', '.join(param.enum)}, got {value!r}")
            continue
        if param.where is ParamIn.PATH and isinstance(value, str) and not value.strip():
            problems.append(f"parameter {param.name} must not be empty")
            continue
        checked[param.name] = list(value) if isinstance(value, tuple) else value
    if problems:
        raise InvalidInput(f"{op.name}: {'; '.join(problems)}")
    return checked


def _text(value: object) -> str:
    # Gumroad compares form strings ("true"), and query strings have no types anyway.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _pairs(values: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for name, value in values.items():
        if isinstance(value, list):
            pairs.extend((f"{name}[]" if name else name, _text(item)) for item in value)
        else:
            pairs.append((name, _text(value)))
    return tuple(pairs)


def _query_pairs(values: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        pairs.extend((name, _text(item)) for item in items)
    return tuple(pairs)


def _multipart(values: Mapping[str, object], file_field: str = "file") -> tuple[bytes, str]:
    # A boundary derived from the content, never random, so the same input sends the same bytes.
    digest = hashlib.sha256(repr(sorted((k, _text(v)) for k, v in values.items())).encode()).hexdigest()
    boundary = f"snapbridge-{digest[:32]}"
    chunks: list[bytes] = []
    for name, value in values.items():
        disposition = f'form-data; name="{name}"'
        extra = ""
        if name == file_field:
            disposition += f'; filename="{name}.txt"'
            extra = "Content-Type: text/plain; charset=utf-8\r\n"
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n{extra}\r\n".encode()
                      + _text(value).encode() + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def prepare_request(op: Operation, params: Mapping[str, object]) -> PreparedRequest:
    """Validate, then place each parameter in the path, the query or the body as the record says."""
    values = validate_params(op, params)
    path = op.path
    query: dict[str, object] = {}
    body: dict[str, object] = {}
    for param in op.params:
        if param.name not in values:
            continue
        value = values[param.name]
        if param.where is ParamIn.PATH:
            path = path.replace("{" + param.name + "}", quote(str(value), safe=""))
        elif param.where is ParamIn.QUERY:
            query[param.name] = value
        else:
            body[param.name] = value
    headers = {"Accept": "application/json"}
    if op.version:
        headers["Version"] = op.version
    encoding = op.body_encoding
    if encoding is BodyEncoding.JSON:
        return PreparedRequest(op.method, path, _query_pairs(query), json=body, headers=headers)
    if encoding is BodyEncoding.FORM:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        form = _pairs(body)
        return PreparedRequest(op.method, path, _query_pairs(query), form=form,
                               content=urlencode(form).encode("ascii"), headers=headers)
    if encoding is BodyEncoding.MULTIPART:
        content, content_type = _multipart(body)
        headers["Content-Type"] = content_type
        return PreparedRequest(op.method, path, _query_pairs(query), content=content, headers=headers)
    return PreparedRequest(op.method, path, _query_pairs(query), headers=headers)


def _check_key(key: str) -> str:
    if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        limit = MAX_IDEMPOTENCY_KEY_LENGTH
        raise InvalidInput(f"idempotency key must be 1-{limit} printable ASCII characters")
    return key


def _said(text: str, secrets: Sequence[str], limit: int) -> str:
    """An error's words, at most `limit` characters (then "…"), with a secret in them redacted.

    Decoders redact what they quote of an answer already; the text is only redacted (all of it, our words too)
    when a secret is in it anyway: redacting every message would hide harmless words, as in "the token: E-102".
    """
    if any(secret in text for secret in secrets):
        return bounded(text, limit, secrets)
    return text if len(text) <= limit else text[:limit] + "…"


def _redact_error(error: SnapbridgeError, secrets: Sequence[str], content: bytes | None) -> None:
    """Remove the secrets from what the error says and shows, and bound both, in place (its type, status,
    retry_after and cause stay). With the answer's `content`, the excerpt is made again from it, the secrets
    removed before the cut: a decoder that cuts first leaves the start of a key that straddles its cut."""
    if isinstance(error, DeliveryError):
        error.message = _said(error.message, secrets, ERROR_CHARS)
        error.excerpt = (excerpt(content, EXCERPT_CHARS, secrets) if content is not None
                         else bounded(error.excerpt, EXCERPT_CHARS, secrets))
        error.args = (error.message,)
    else:
        error.args = tuple(_said(arg, secrets, ERROR_CHARS) if isinstance(arg, str) else arg
                           for arg in error.args)


def _payload(op: Operation, response: HttpResponse, credential: str, now: datetime) -> tuple[object, object]:
    """(payload, body) of a success; raises our error for anything else, by the app's own rules (run_action
    redacts, bounds and gives it its excerpt)."""
    secrets = (credential,)
    if op.app == "gumroad":
        body: object = gumroad_decode(response.status, response.headers, response.content, operation=op.name,
                                      scopes=op.scopes, now=now, secrets=secrets)
    elif op.app == "snapshots":
        if not 200 <= response.status < 300:
            raise snapshots_error(response.status, response.content, response.headers, operation=op.name,
                                  scope=op.scopes[0] if op.scopes else None, now=now, secrets=secrets)
        body = snapshots_unwrap(response.content, None, operation=op.name, status=response.status,
                                secrets=secrets)
    else:
        if not 200 <= response.status < 300:
            raise highlevel_error(response.status, response.headers, response.content, operation=op.name,
                                  scopes=op.scopes, now=now, secrets=secrets)
        body = response.json() if response.content.strip() else None
    if op.response_key is None:
        return body, body
    if not isinstance(body, Mapping) or op.response_key not in body:
        raise Permanent(f"the answer has no {op.response_key!r}", operation=op.name, status=response.status)
    return body[op.response_key], body


async def run_action(
    op: Operation,
    params: Mapping[str, object],
    *,
    http: httpx.AsyncClient,
    credential: Secret,
    idempotency_key: str | None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ActionResult:
    """Run one action with `http` (whose base URL is the app's) and the credential.

    The input is validated before any request; the Idempotency-Key goes on writes of APIs that honour it.
    """
    request = prepare_request(op, params)
    headers = dict(request.headers)
    secret = credential.reveal()  # the auth step: the one place the runner reads the value
    if op.token_kinds:
        if not secret:
            raise InvalidInput(f"{op.name}: needs a credential")
        headers["Authorization"] = f"Bearer {secret}"
    if op.idempotency_header and op.is_write and idempotency_key is not None:
        headers["Idempotency-Key"] = _check_key(idempotency_key)
    # Whatever layer or decoder built it, no error leaves an action call with the key in it, or unbounded.
    try:
        response = await send(
            http, op.method, request.path, operation=op.name, headers=headers,
            params=list(request.query) or None, json=request.json, content=request.content,
            max_response_bytes=max_response_bytes,
        )
    except SnapbridgeError as exc:
        _redact_error(exc, (secret,), None)
        raise
    try:
        payload, body = _payload(op, response, secret, clock())
    except SnapbridgeError as exc:
        _redact_error(exc, (secret,), response.content)
        raise
    return ActionResult(
        operation=op.name,
        status=response.status,
        payload=payload,
        body=body,
        replayed=response.headers.get(REPLAYED_HEADER, "").lower() == "true",
        rate_limit=RateLimitState.from_headers(response.headers),
        elapsed_ms=response.elapsed_ms,
    )


async def iterate_action(
    op: Operation,
    params: Mapping[str, object],
    *,
    http: httpx.AsyncClient,
    credential: Secret,
    max_pages: int = 1000,
) -> AsyncIterator[ActionResult]:
    """Every page of a list action, following the record's pagination style; reads only (no key needed)."""
    current: Mapping[str, object] | None = params
    pages = 0
    while current is not None and pages < max_pages:
        result = await run_action(op, current, http=http, credential=credential, idempotency_key=None)
        yield result
        pages += 1
        current = next_page_params(op, current, result.body)
