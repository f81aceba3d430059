"""Scenarios: named changes to the sandbox's world, each returning what it made and the events to post.

`run_scenario(state, name, params)` runs under the state lock and never sends anything itself; the
caller hands the returned events to the webhook sender. Unknown ids or impossible requests raise
`ScenarioError`. Choices the caller leaves open are made with a seeded generator, so a given seed and
sequence of calls gives the same results.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from snapbridge.sandbox.gumroad.commerce import Purchase, apply_refund, record_sale
from snapbridge.sandbox.gumroad.models import Buyer, Product, SaleState, WebhookEvent
from snapbridge.sandbox.gumroad.scenario_subs import (
    cancellation,
    plan_change,
    renewal,
    subscription_end,
    subscription_restart,
    subscription_start,
)
from snapbridge.sandbox.gumroad.scenario_tools import Outcome, ScenarioError, Tools
from snapbridge.sandbox.gumroad.state import SandboxState

__all__ = ["SCENARIOS", "ScenarioError", "run_scenario"]


def first_purchase(t: Tools, params: dict[str, Any]) -> Outcome:
    """A new customer buys a one-off product."""
    email = t.opt_str(params, "email")
    if email and t.known_email(email):
        raise ScenarioError(f"{email} has bought before; use repeat_purchase")
    buyer = t.new_buyer(email, t.opt_str(params, "full_name"), t.opt_bool(params, "has_account"))
    product = t.product_param(params, default=t.pick(t.one_off_products()))
    return _purchase(t, product, buyer, params)


def repeat_purchase(t: Tools, params: dict[str, Any]) -> Outcome:
    """A customer who bought before buys again (by default a product they do not own yet)."""
    email = t.opt_str(params, "email")
    listed = t.state.listed_sales()
    past = [s for s in listed if email is None or s.buyer.email == email]
    if not past:
        raise ScenarioError(f"no earlier purchase by {email}" if email else "no earlier purchases")
    buyer = past[0].buyer if email else t.pick(past).buyer
    owned = {s.product_id for s in listed if s.buyer.email == buyer.email}
    fresh = [p for p in t.one_off_products() if p.id not in owned] or t.one_off_products()
    product = t.product_param(params, default=t.pick(fresh))
    return _purchase(t, product, buyer, params)


def test_purchase(t: Tools, params: dict[str, Any]) -> Outcome:
    """The seller buys their own product: pinged with test=true, never listed by /v2/sales."""
    seller = t.state.seller
    buyer = Buyer(seller.email, seller.name, seller.user_id, "United States", "US")
    product = t.product_param(params, default=t.one_off_products()[0])
    return _purchase(t, product, buyer, params, state=SaleState.TEST_SUCCESSFUL)


def gift_purchase(t: Tools, params: dict[str, Any]) -> Outcome:
    """A buyer gifts a product: the sender's sale is listed but not pinged; the giftee's is pinged only."""
    gifter = t.new_buyer(t.opt_str(params, "email"), t.opt_str(params, "full_name"))
    giftee = t.new_buyer(t.opt_str(params, "giftee_email"), None)
    product = t.product_param(params, default=t.pick(t.one_off_products()))
    sender = record_sale(t.state, Purchase(product, gifter, t.state.stamp()))
    receiver = record_sale(
        t.state,
        Purchase(product, giftee, t.state.stamp(), state=SaleState.GIFT_RECEIVER, price_override_cents=0),
    )
    sender.is_gift_sender, sender.giftee_email, sender.gift_partner_id = True, giftee.email, receiver.id
    receiver.is_gift_receiver, receiver.gift_partner_id = True, sender.id
    event = WebhookEvent("sale", receiver.created_at, sale_id=receiver.id)
    return Outcome({"sale_id": sender.id, "giftee_sale_id": receiver.id, "email": gifter.email}, [event])


def _purchase(
    t: Tools, product: Product, buyer: Buyer, params: dict[str, Any], state: SaleState = SaleState.SUCCESSFUL
) -> Outcome:
    if product.is_recurring:
        raise ScenarioError(f"{product.name} is a membership; use subscription_start")
    variants = t.variants_param(product, params)
    offer = t.offer_code_param(product, params)
    quantity = t.opt_int(params, "quantity") or 1
    custom = t.opt_dict(params, "custom_fields")
    if custom is None:
        custom = t.sample_custom_fields(product)
    sale = record_sale(
        t.state,
        Purchase(
            product, buyer, t.state.stamp(), state=state, variants=variants, offer_code=offer,
            quantity=quantity, custom_fields=custom, referrer=t.opt_str(params, "referrer") or "direct",
        ),
    )
    url_params = t.opt_dict(params, "url_params") or {}
    event = WebhookEvent("sale", sale.created_at, sale_id=sale.id, url_params=url_params)
    return Outcome(t.sale_result(sale), [event])


def refund(t: Tools, params: dict[str, Any]) -> Outcome:
    """A full refund, or a partial one with `amount_cents` (in the sale's currency)."""
    candidates = [s for s in t.state.listed_sales() if s.refundable_cents > 0 and not s.fully_refunded]
    sale = t.sale_param(params, default=candidates)
    problem = apply_refund(sale, t.opt_int(params, "amount_cents"))
    if problem:
        raise ScenarioError(problem)
    result = {
        **t.sale_result(sale),
        "refunded": sale.fully_refunded,
        "partially_refunded": sale.partially_refunded,
    }
    return Outcome(result, [WebhookEvent("refund", t.state.now(), sale_id=sale.id)])


def dispute(t: Tools, params: dict[str, Any]) -> Outcome:
    """A chargeback opens on a sale."""
    open_ = [s for s in t.state.listed_sales() if s.price_cents and not s.chargedback]
    sale = t.sale_param(params, default=open_)
    if sale.chargedback:
        raise ScenarioError(f"sale {sale.id} is already disputed")
    sale.chargedback = True
    return Outcome(t.sale_result(sale), [WebhookEvent("dispute", t.state.now(), sale_id=sale.id)])


def dispute_won(t: Tools, params: dict[str, Any]) -> Outcome:
    """A chargeback is reversed in the seller's favour."""
    disputed = [s for s in t.state.listed_sales() if s.chargedback and not s.dispute_won]
    sale = t.sale_param(params, default=disputed)
    if not sale.chargedback or sale.dispute_won:
        raise ScenarioError(f"sale {sale.id} has no open dispute")
    sale.dispute_won = True
    return Outcome(t.sale_result(sale), [WebhookEvent("dispute_won", t.state.now(), sale_id=sale.id)])


# Bulk mix: (weight, scenario); a step that finds nothing to act on becomes a first purchase.
_MIX: list[tuple[int, str]] = [
    (28, "first_purchase"),
    (18, "repeat_purchase"),
    (10, "subscription_start"),
    (8, "renewal"),
    (8, "refund"),
    (6, "cancellation"),
    (5, "plan_change"),
    (4, "subscription_end"),
    (3, "subscription_restart"),
    (4, "dispute"),
    (3, "dispute_won"),
    (3, "test_purchase"),
]
MAX_BULK = 500


def bulk(t: Tools, params: dict[str, Any]) -> Outcome:
    """N realistic events of mixed kinds, posted as one batch in the order they happened."""
    count = t.opt_int(params, "count")
    count = 20 if count is None else count
    if not 1 <= count <= MAX_BULK:
        raise ScenarioError(f"count must be between 1 and {MAX_BULK}")
    seed = t.opt_int(params, "seed")
    rng = random.Random(seed) if seed is not None else t.rng
    weights = [w for w, _ in _MIX]
    steps: list[dict[str, Any]] = []
    events: list[WebhookEvent] = []
    while len(events) < count:
        name = rng.choices([n for _, n in _MIX], weights)[0]
        try:
            outcome = SCENARIOS[name](t, {})
        except ScenarioError:
            name, outcome = "first_purchase", first_purchase(t, {})
        steps.append({"scenario": name, **outcome.result})
        events.extend(outcome.events)
        for event in outcome.events:
            t.exclude.update(i for i in (event.sale_id, event.subscription_id) if i)
        t.exclude.update(str(outcome.result[k]) for k in ("sale_id", "subscription_id") if k in outcome.result)
    return Outcome({"count": len(events), "steps": steps}, events[:count])


SCENARIOS: dict[str, Callable[[Tools, dict[str, Any]], Outcome]] = {
    "bulk": bulk,
    "cancellation": cancellation,
    "dispute": dispute,
    "dispute_won": dispute_won,
    "first_purchase": first_purchase,
    "gift_purchase": gift_purchase,
    "plan_change": plan_change,
    "refund": refund,
    "renewal": renewal,
    "repeat_purchase": repeat_purchase,
    "subscription_end": subscription_end,
    "subscription_restart": subscription_restart,
    "subscription_start": subscription_start,
    "test_purchase": test_purchase,
}


def run_scenario(state: SandboxState, rng: random.Random, name: str, params: dict[str, Any]) -> Outcome:
    """Run one scenario under the state lock; raises ScenarioError for unknown names or bad params."""
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}", status=404)
    if not isinstance(params, dict):
        raise ScenarioError("parameters must be a JSON object")
    with state.lock:
        return scenario(Tools(state, rng), params)

