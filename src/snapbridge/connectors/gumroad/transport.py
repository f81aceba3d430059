"""The one request path of the Gumroad client: build the URL, authenticate, send, decode the envelope."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Generic, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from snapbridge.connectors.gumroad.decode import decode_response, payload, payload_list
from snapbridge.connectors.gumroad.operations import operation
from snapbridge.connectors.gumroad.pagination import next_page_params
from snapbridge.errors import InvalidInput, Permanent
from snapbridge.http import send
from snapbridge.security import Secret

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "Page", "ParamValue", "Transport", "form_value", "parse_model"]

DEFAULT_MAX_RESPONSE_BYTES = 10_485_760

log = logging.getLogger("snapbridge.connectors.gumroad")

T = TypeVar("T")
ParamValue = str | int | bool | date | Secret | None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list; `next_params` is the query for the next page, None on the last one."""

    items: tuple[T, ...]
    next_page_key: str | None
    next_params: dict[str, str] | None

    @property
    def is_last(self) -> bool:
        return self.next_params is None


def form_value(value: ParamValue) -> str | None:
    """How Gumroad wants a parameter: booleans as "true"/"false" (its handlers compare strings), dates ISO."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _clean(values: Mapping[str, ParamValue] | None) -> dict[str, str]:
    cleaned: dict[str, str] = {}
    for name, value in (values or {}).items():
        text = form_value(value)
        if text is not None:
            cleaned[name] = text
    return cleaned


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Transport:
    """The base URL, the pooled HTTP client and the token; every endpoint method goes through `_call`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        access_token: Secret,
        *,
        base_url: str,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not isinstance(access_token, Secret):
            raise TypeError("access_token must be a Secret")
        self._http = http
        self._token = access_token
        # Settings hold the host ("https://api.gumroad.com"); the version segment is the client's business.
        self._api_root = base_url.rstrip("/") + "/v2"
        self._max_response_bytes = max_response_bytes
        self._clock = clock

    def _url(self, template: str, path_params: Mapping[str, str]) -> str:
        segments: dict[str, str] = {}
        for name, value in path_params.items():
            if not value:
                raise InvalidInput(f"{name} must not be empty")
            # Ids end in "==" and custom-field names may hold spaces or slashes: encode every character.
            segments[name] = quote(value, safe="")
        return self._api_root + template.format(**segments)

    async def _call(
        self,
        name: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, ParamValue] | None = None,
        data: Mapping[str, ParamValue] | None = None,
        idempotency_key: str | None = None,
        secrets: Iterable[Secret | str] = (),
    ) -> tuple[dict[str, object], str]:
        """The decoded success envelope and the request's URL path (for following next_page_url)."""
        op = operation(name)
        if op.is_write:
            if not idempotency_key:
                raise InvalidInput(f"gumroad.{name} is a write and needs an idempotency_key")
            # Gumroad has no Idempotency-Key header, so the key is not sent: it is logged here, and the
            # caller's job record (which made the key) is what prevents a second send.
            log.info("action=gumroad.write operation=%s idempotency_key=%s", name, idempotency_key)
        url = self._url(op.path, path_params or {})
        headers = {"Accept": "application/json"}
        if op.needs_token:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        query = _clean(params)
        form = _clean(data)
        response = await send(
            self._http,
            op.method,
            url,
            operation=f"gumroad.{name}",
            headers=headers,
            params=query or None,
            data=form or None,
            max_response_bytes=self._max_response_bytes,
        )
        body = decode_response(
            response.status,
            response.headers,
            response.content,
            operation=f"gumroad.{name}",
            scopes=op.scopes,
            now=self._clock(),
            secrets=(self._token, *secrets),
        )
        return body, urlsplit(url).path

    async def _one(
        self,
        name: str,
        key: str,
        parse: Callable[[Mapping[str, object], str], T],
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, ParamValue] | None = None,
        data: Mapping[str, ParamValue] | None = None,
        idempotency_key: str | None = None,
        secrets: Iterable[Secret | str] = (),
    ) -> T:
        body, _ = await self._call(
            name, path_params=path_params, params=params, data=data, idempotency_key=idempotency_key,
            secrets=secrets,
        )
        return parse_model(parse, payload(body, key, operation=f"gumroad.{name}"), key, name)

    async def _many(
        self,
        name: str,
        key: str,
        parse: Callable[[Mapping[str, object], str], T],
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, ParamValue] | None = None,
    ) -> tuple[T, ...]:
        page = await self._page(name, key, parse, path_params=path_params, params=params)
        return page.items

    async def _page(
        self,
        name: str,
        key: str,
        parse: Callable[[Mapping[str, object], str], T],
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, ParamValue] | None = None,
    ) -> Page[T]:
        body, path = await self._call(name, path_params=path_params, params=params)
        items = payload_list(body, key, operation=f"gumroad.{name}")
        parsed = tuple(parse_model(parse, item, f"{key}[{index}]", name) for index, item in enumerate(items))
        page_key = body.get("next_page_key")
        following = next_page_params(body, _clean(params), path=path, operation=f"gumroad.{name}")
        return Page(parsed, page_key if isinstance(page_key, str) and page_key else None, following)

    async def _delete(
        self,
        name: str,
        *,
        path_params: Mapping[str, str],
        idempotency_key: str,
        secrets: Iterable[Secret | str] = (),
    ) -> None:
        await self._call(name, path_params=path_params, idempotency_key=idempotency_key, secrets=secrets)

    async def _iterate(
        self,
        name: str,
        key: str,
        parse: Callable[[Mapping[str, object], str], T],
        params: Mapping[str, ParamValue] | None,
        *,
        path_params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[T]:
        while params is not None:
            page = await self._page(name, key, parse, path_params=path_params, params=params)
            for item in page.items:
                yield item
            params = page.next_params


def parse_model(
    parse: Callable[[Mapping[str, object], str], T], data: Mapping[str, object], where: str, name: str
) -> T:
    """A model from Gumroad's JSON; a shape we cannot read is a Permanent error of the operation."""
    try:
        return parse(data, where)
    except InvalidInput as exc:
        # A shape we cannot read is Gumroad's (or the fake's) fault, and retrying will not change it.
        raise Permanent(f"Gumroad's answer is malformed: {exc}", operation=f"gumroad.{name}") from exc
