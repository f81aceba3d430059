"""Gumroad webhooks in: parse a Ping or resource-subscription body, check the seller, verify by fetching."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from snapbridge.connectors.gumroad.client import GumroadClient
from snapbridge.connectors.gumroad.events import GumroadEvent, SaleEvent, event_from_fields
from snapbridge.connectors.gumroad.formdata import MAX_FORM_FIELDS, fold_form
from snapbridge.connectors.gumroad.models import Sale, Subscriber
from snapbridge.errors import InvalidInput, NotFound, WebhookRejected

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "FetchPlan",
    "FetchTarget",
    "GumroadConnectionOptions",
    "check_seller",
    "dedupe_key",
    "needs_fetch",
    "parse_webhook",
    "refund_state_key",
    "verify_by_fetch",
]

DEFAULT_MAX_BODY_BYTES = 1_048_576

_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"


@dataclass(frozen=True)
class GumroadConnectionOptions:
    """Per-connection webhook settings."""

    # Gumroad does not sign its posts; re-reading the sale (or subscriber) with the seller's token before
    # acting is the only proof that the event is real, so it is on unless a seller turns it off.
    verify_by_fetch: bool = True


def _media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def parse_webhook(
    body: bytes,
    content_type: str | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_fields: int = MAX_FORM_FIELDS,
) -> GumroadEvent:
    """The typed event of one Ping or resource-subscription POST.

    Form encoding is Gumroad's default; JSON is what it sends to Zapier hosts. Without a content type the body
    is sniffed (a JSON object starts with "{"). Anything unreadable is InvalidInput naming the problem.
    """
    if len(body) > max_body_bytes:
        raise InvalidInput(f"webhook body is {len(body)} bytes, more than the {max_body_bytes} allowed")
    if not body.strip():
        raise InvalidInput("webhook body is empty")
    media = _media_type(content_type)
    if media is None:
        media = _JSON if body.lstrip().startswith(b"{") else _FORM
    if media == _FORM:
        return event_from_fields(fold_form(body, max_fields=max_fields))
    if media == _JSON or media.endswith("+json"):
        try:
            fields = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"webhook body is not valid JSON: {exc}") from exc
        except RecursionError:
            raise InvalidInput("webhook body is nested too deeply") from None
        if not isinstance(fields, dict):
            raise InvalidInput(f"webhook JSON body must be an object, not {type(fields).__name__}")
        return event_from_fields(fields)
    raise InvalidInput(f"webhook content type {media!r} is not supported; expected {_FORM} or {_JSON}")


def dedupe_key(event: GumroadEvent) -> str:
    """A key equal for every delivery of one event (retries, re-sends, a Ping URL and a subscription)."""
    return event.dedupe_key


def check_seller(event: GumroadEvent, expected_seller_id: str) -> None:
    """Refuse a sale-type event for another seller; subscription posts carry no seller id to check."""
    if isinstance(event, SaleEvent) and event.seller_id != expected_seller_id:
        raise WebhookRejected(
            f"Gumroad {event.resource_name or 'test ping'} event for sale {event.sale_id}"
            " names another seller"
        )


class FetchTarget(StrEnum):
    SALE = "sale"
    SUBSCRIBER = "subscriber"


@dataclass(frozen=True)
class FetchPlan:
    """Which object to re-read to confirm an event, and what it must belong to."""

    target: FetchTarget
    id: str
    product_id: str


def needs_fetch(
    event: GumroadEvent, options: GumroadConnectionOptions | None = None
) -> FetchPlan | None:
    """The read that confirms this event, or None when the connection turned verification off."""
    if options is not None and not options.verify_by_fetch:
        return None
    return _plan(event)


def _plan(event: GumroadEvent) -> FetchPlan:
    if isinstance(event, SaleEvent):
        return FetchPlan(FetchTarget.SALE, event.sale_id, event.product_id)
    return FetchPlan(FetchTarget.SUBSCRIBER, event.subscription_id, event.product_id)


async def verify_by_fetch(
    client: GumroadClient, event: GumroadEvent, *, expected_seller_id: str | None = None
) -> Sale | Subscriber:
    """The object the event describes, read back with the seller's token: the truth to act on.

    WebhookRejected when Gumroad does not know it for this seller or it belongs to another product or seller.
    Delivery errors other than not-found (network, 5xx, auth) propagate, so the caller can retry later.
    """
    plan = _plan(event)
    try:
        truth: Sale | Subscriber = (
            await client.get_sale(plan.id)
            if plan.target is FetchTarget.SALE
            else await client.get_subscriber(plan.id)
        )
    except NotFound as exc:
        raise WebhookRejected(f"Gumroad has no {plan.target.value} {plan.id} for this seller") from exc
    if truth.product_id != plan.product_id:
        raise WebhookRejected(
            f"{plan.target.value} {plan.id} belongs to product {truth.product_id}, not {plan.product_id}"
        )
    seller = expected_seller_id or (event.seller_id if isinstance(event, SaleEvent) else None)
    if isinstance(truth, Sale) and seller is not None and truth.seller_id != seller:
        raise WebhookRejected(f"sale {plan.id} belongs to another seller")
    return truth


def refund_state_key(key: str, sale: Sale) -> str:
    """A partial refund's dedupe key once the sale is read back: the ping's key and the amount then refundable.

    Gumroad's partial-refund pings carry no amount or refund id, so one refund delivered twice and two refunds
    look the same; what the API says is still refundable tells them apart. Two refunds made before either ping
    is derived read the same amount and count once (UNCONFIRMED that Gumroad offers anything finer: no refund
    object or id is exposed, reference §4.1).
    """
    return f"{key}:refundable:{sale.amount_refundable_in_currency or 'unknown'}"
