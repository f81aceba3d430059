"""Reading an API request's JSON body: declared JSON, within the size cap, one value per key, no NUL character
(PostgreSQL refuses it, SQLite keeps it), then validated by the endpoint's model; each failure an ApiProblem."""

from __future__ import annotations

import json
from collections.abc import Iterator

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from snapbridge.errors import InvalidInput
from snapbridge.web.api.context import ApiProblem
from snapbridge.web.hooks import is_json, media_type, read_body

__all__ = ["MAX_JSON_BYTES", "NUL_MESSAGE", "nul_paths", "read_json"]

MAX_JSON_BYTES = 1_000_000


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Parsers disagree on which of two values for one key wins (a proxy may check one, we would use the other).
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def nul_paths(value: object, loc: tuple[int | str, ...] = ()) -> Iterator[str]:
    """Where the parsed JSON holds a NUL character: PostgreSQL refuses it in text, SQLite keeps it."""
    if isinstance(value, str):
        if "\x00" in value:
            yield _loc(loc)
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield _loc(loc)
            yield from nul_paths(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from nul_paths(item, (*loc, i))


NUL_MESSAGE = "holds a NUL character"


async def read_json(request: Request, model: type[BaseModel]) -> BaseModel:
    if not is_json(media_type(request.headers)):
        # A form or text/plain is what a page elsewhere can send without asking; and the document says JSON.
        raise ApiProblem(415, "send the body as JSON, with Content-Type: application/json")
    try:
        # Refused by Content-Length before reading, when it is declared.
        raw = await read_body(request.receive, request.headers, MAX_JSON_BYTES)
    except InvalidInput as exc:
        raise ApiProblem(400, str(exc)) from None
    if raw is None:
        raise ApiProblem(413, f"the body is over {MAX_JSON_BYTES} bytes")
    try:
        data = json.loads(raw or b"null", object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise ApiProblem(400, f"the body has the key {str(exc)[:40]!r} more than once") from None
    except RecursionError:
        raise ApiProblem(400, "the body is nested too deeply") from None
    except ValueError:  # not JSON, not UTF-8, or a number with more digits than Python reads
        raise ApiProblem(400, "the body is not JSON") from None
    nul = list(nul_paths(data))
    if nul:
        raise ApiProblem(422, "the body is not valid", [{"path": p, "message": NUL_MESSAGE} for p in nul])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [{"path": _loc(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        raise ApiProblem(422, "the body is not valid", problems) from None
