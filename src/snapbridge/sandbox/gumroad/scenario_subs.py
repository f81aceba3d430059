"""Membership scenarios: start, renewal, plan change, cancellation, end and restart (gumroad-api.md §6)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from snapbridge.sandbox.gumroad.commerce import Purchase, record_sale
from snapbridge.sandbox.gumroad.models import (
    Buyer,
    CancelledBy,
    Product,
    Recurrence,
    Sale,
    SaleState,
    Subscription,
    Variant,
    WebhookEvent,
)
from snapbridge.sandbox.gumroad.payloads import iso
from snapbridge.sandbox.gumroad.scenario_tools import Outcome, ScenarioError, Tools

__all__ = [
    "cancellation",
    "plan_change",
    "renewal",
    "subscription_end",
    "subscription_restart",
    "subscription_start",
]

_PERIOD_DAYS = {
    Recurrence.MONTHLY: 30,
    Recurrence.QUARTERLY: 91,
    Recurrence.BIANNUALLY: 182,
    Recurrence.YEARLY: 365,
    Recurrence.EVERY_TWO_YEARS: 730,
}
_ENDED_REASONS = ("cancelled", "failed_payment", "fixed_subscription_period_ended")


def _tiers(t: Tools, product: Product) -> list[Variant]:
    return [v for c in t.state.product_variant_categories(product) for v in t.state.category_variants(c)]


def _price(t: Tools, product: Product, tier: Variant | None, recurrence: Recurrence) -> int:
    if tier is None:
        return product.price_cents
    if recurrence.value not in tier.recurrence_prices:
        raise ScenarioError(f"tier {tier.name!r} has no {recurrence.value} price")
    return tier.recurrence_prices[recurrence.value]


def _recurrence(t: Tools, params: dict[str, Any], default: Recurrence) -> Recurrence:
    value = t.opt_str(params, "recurrence")
    if value is None:
        return default
    try:
        return Recurrence(value)
    except ValueError as exc:
        known = ", ".join(r.value for r in Recurrence)
        raise ScenarioError(f"unknown recurrence {value!r}; known: {known}") from exc


def _period_end(t: Tools, sub: Subscription) -> datetime:
    """When the paid period ends: the last charge plus one period, at least a day from now."""
    sales = t.state.sales
    charges = [sales[i].created_at for i in sub.purchase_ids if i in sales] or [sub.created_at]
    end = max(charges) + timedelta(days=_PERIOD_DAYS[sub.recurrence])
    return max(end, t.state.now() + timedelta(days=1))


def _living(t: Tools) -> list[Subscription]:
    now = t.state.now()
    subs = t.state.subscriptions.values()
    return [s for s in subs if not s.is_test and not t.state.subscription_over(s, now)]


def _charge(
    t: Tools, sub: Subscription, *, recurring: bool, trial: bool = False, buyer: Buyer | None = None
) -> Sale:
    product = t.state.products[sub.product_id]
    buyer = buyer or next((t.state.sales[i].buyer for i in sub.purchase_ids if i in t.state.sales), None)
    if buyer is None:
        raise ScenarioError(f"subscription {sub.id} has no purchases")
    tier = t.state.variants.get(sub.tier_id) if sub.tier_id else None
    return record_sale(
        t.state,
        Purchase(
            product, buyer, t.state.stamp(), state=SaleState.NOT_CHARGED if trial else SaleState.SUCCESSFUL,
            variants=[tier] if tier else [], subscription=sub, recurring_charge=recurring,
            price_override_cents=sub.price_cents, custom_fields={} if recurring else dict(sub.custom_fields),
        ),
    )


def subscription_start(t: Tools, params: dict[str, Any]) -> Outcome:
    """A buyer starts a membership (optionally with a free trial); its first charge is a sale."""
    memberships = t.memberships()
    tiered = [p for p in memberships if p.is_tiered_membership]
    product = t.product_param(params, default=tiered[0] if tiered else t.pick(memberships))
    if not product.is_recurring or product.subscription_duration is None:
        raise ScenarioError(f"{product.name} is not a membership")
    recurrence = _recurrence(t, params, product.subscription_duration)
    tiers = _tiers(t, product) if product.is_tiered_membership else []
    tier_name = t.opt_str(params, "tier")
    named = (v for v in tiers if v.name == tier_name)
    tier = next(named, None) if tier_name else (t.pick(tiers) if tiers else None)
    if tier_name and tier is None:
        raise ScenarioError(f"no tier {tier_name!r}; known: {', '.join(v.name for v in tiers)}")
    email = t.opt_str(params, "email")
    past = [s for s in t.state.listed_sales() if s.buyer.email == email] if email else []
    if past:
        buyer = past[0].buyer
    else:
        buyer = t.new_buyer(email, t.opt_str(params, "full_name"), t.opt_bool(params, "has_account"))
    trial = t.opt_bool(params, "free_trial") is True
    custom = t.opt_dict(params, "custom_fields")
    now = t.state.stamp()
    sub = Subscription(
        pk=t.state.next_pk(), id=t.state.ids.external_id(), numeric_id=t.state.ids.numeric_id(),
        product_id=product.id, email=buyer.email, user_id=buyer.purchaser_id, recurrence=recurrence,
        created_at=now, tier_id=tier.id if tier else None, price_cents=_price(t, product, tier, recurrence),
        free_trial_ends_at=now + timedelta(days=7) if trial else None,
        custom_fields=t.sample_custom_fields(product) if custom is None else custom,
    )
    t.state.subscriptions[sub.id] = sub
    sale = _charge(t, sub, recurring=False, trial=trial, buyer=buyer)
    return Outcome({**t.sale_result(sale), "subscription_id": sub.id},
                   [WebhookEvent("sale", sale.created_at, sale_id=sale.id)])


def renewal(t: Tools, params: dict[str, Any]) -> Outcome:
    """A recurring charge: a sale ping with is_recurring_charge=true."""
    sub = t.subscription_param(params, [s for s in _living(t) if s.cancelled_at is None])
    if t.state.subscription_over(sub, t.state.now()):
        raise ScenarioError(f"subscription {sub.id} has ended; restart it first")
    sale = _charge(t, sub, recurring=True)
    return Outcome({**t.sale_result(sale), "subscription_id": sub.id},
                   [WebhookEvent("sale", sale.created_at, sale_id=sale.id)])


def _plan(tier: Variant | None, recurrence: Recurrence, price: int, quantity: int) -> dict[str, Any]:
    return {
        "tier": {"id": tier.id if tier else None, "name": tier.name if tier else None},
        "recurrence": recurrence.value,
        "price_cents": price,
        "quantity": quantity,
    }


def plan_change(t: Tools, params: dict[str, Any]) -> Outcome:
    """An upgrade or downgrade of a tiered membership (`subscription_updated`)."""
    candidates = [s for s in _living(t) if t.state.products[s.product_id].is_tiered_membership]
    sub = t.subscription_param(params, candidates)
    product = t.state.products[sub.product_id]
    if not product.is_tiered_membership:
        raise ScenarioError("plan changes are sent for tiered memberships only")
    if t.state.subscription_over(sub, t.state.now()):
        raise ScenarioError(f"subscription {sub.id} has ended")
    old_tier = t.state.variants.get(sub.tier_id) if sub.tier_id else None
    tiers = _tiers(t, product)
    tier_name = t.opt_str(params, "tier")
    if tier_name is not None and all(v.name != tier_name for v in tiers):
        raise ScenarioError(f"no tier {tier_name!r}; known: {', '.join(v.name for v in tiers)}")
    wanted_recurrence = _recurrence(t, params, sub.recurrence) if params.get("recurrence") else None
    direction = t.opt_str(params, "direction")
    if direction not in (None, "upgrade", "downgrade"):
        raise ScenarioError("'direction' must be upgrade or downgrade")
    options = [
        (v, Recurrence(r), cents)
        for v in tiers
        for r, cents in v.recurrence_prices.items()
        if (tier_name is None or v.name == tier_name)
        and (wanted_recurrence is None or r == wanted_recurrence.value)
        and cents != sub.price_cents
        and (direction is None or (cents > sub.price_cents) == (direction == "upgrade"))
    ]
    same_recurrence = [o for o in options if o[1] is sub.recurrence]
    if not options:
        raise ScenarioError("no plan fits: the change would cost the same or the tier does not exist")
    new_tier, recurrence, new_price = t.pick(same_recurrence or options)
    kind = "upgrade" if new_price > sub.price_cents else "downgrade"
    # Upgrades apply at once; downgrades at the end of the paid period.
    effective = t.state.now() if kind == "upgrade" else _period_end(t, sub)
    additional = {
        "type": kind,
        "effective_as_of": iso(effective),
        "old_plan": _plan(old_tier, sub.recurrence, sub.price_cents, sub.quantity),
        "new_plan": _plan(new_tier, recurrence, new_price, sub.quantity),
    }
    sub.tier_id, sub.recurrence, sub.price_cents = new_tier.id, recurrence, new_price
    event = WebhookEvent("subscription_updated", t.state.now(), subscription_id=sub.id, additional=additional)
    return Outcome({"subscription_id": sub.id, "type": kind, "effective_as_of": iso(effective)}, [event])


def cancellation(t: Tools, params: dict[str, Any]) -> Outcome:
    """The buyer, seller or an admin cancels (access lasts to the period's end), or payments failed."""
    sub = t.subscription_param(params, [s for s in _living(t) if s.cancelled_at is None])
    now = t.state.now()
    if sub.cancelled_at is not None or t.state.subscription_over(sub, now):
        raise ScenarioError(f"subscription {sub.id} is already cancelled or over")
    by = t.opt_str(params, "by") or "buyer"
    if by == "payment_failure":
        sub.failed_at = now
        sub.deactivated_at = now
    elif by in ("buyer", "seller", "admin"):
        sub.cancelled_at = _period_end(t, sub)
        sub.cancelled_by = CancelledBy(by)
        sub.user_requested_cancellation_at = now
    else:
        raise ScenarioError("'by' must be buyer, seller, admin or payment_failure")
    event = WebhookEvent("cancellation", now, subscription_id=sub.id)
    result = {"subscription_id": sub.id, "cancelled_at": iso(sub.cancelled_at or sub.failed_at)}
    return Outcome(result, [event])


def subscription_end(t: Tools, params: dict[str, Any]) -> Outcome:
    """The membership actually ends: cancelled, failed payment, or a fixed number of charges reached."""
    living = _living(t)
    preferred = [s for s in living if s.cancelled_at is not None] or living
    sub = t.subscription_param(params, preferred)
    now = t.state.now()
    if t.state.subscription_over(sub, now):
        raise ScenarioError(f"subscription {sub.id} has already ended")
    reason = t.opt_str(params, "reason") or "cancelled"
    if reason not in _ENDED_REASONS:
        raise ScenarioError(f"'reason' must be one of {', '.join(_ENDED_REASONS)}")
    if reason == "cancelled":
        sub.cancelled_at = now
        sub.cancelled_by = sub.cancelled_by or CancelledBy.BUYER
    elif reason == "failed_payment":
        sub.failed_at = now
    else:
        sub.ended_at = now
        sub.charge_occurrence_count = len(sub.purchase_ids)
    sub.deactivated_at = now
    event = WebhookEvent("subscription_ended", now, subscription_id=sub.id)
    return Outcome({"subscription_id": sub.id, "ended_at": iso(now), "ended_reason": reason}, [event])


def subscription_restart(t: Tools, params: dict[str, Any]) -> Outcome:
    """A terminated (or pending-cancellation) membership is restarted; a terminated one is charged again."""
    now = t.state.now()
    restartable = [
        s for s in t.state.subscriptions.values()
        if not s.is_test and s.ended_at is None and (t.state.subscription_over(s, now) or s.cancelled_at)
    ]
    sub = t.subscription_param(params, restartable)
    over = t.state.subscription_over(sub, now)
    pending_cancellation = sub.cancelled_at is not None and not over
    if not over and not pending_cancellation:
        raise ScenarioError(f"subscription {sub.id} is alive; nothing to restart")
    sub.user_requested_cancellation_at = None
    sub.cancelled_at = None
    sub.cancelled_by = None
    sub.deactivated_at = None
    sub.ended_at = None
    sub.pending_failure = False
    if not pending_cancellation:
        sub.failed_at = None
    restarted = {"restarted_at": iso(now)}
    events = [WebhookEvent("subscription_restarted", now, subscription_id=sub.id, additional=restarted)]
    result: dict[str, Any] = {"subscription_id": sub.id, "restarted_at": iso(now)}
    if over:
        sale = _charge(t, sub, recurring=True)
        events.append(WebhookEvent("sale", sale.created_at, sale_id=sale.id))
        result["sale_id"] = sale.id
    return Outcome(result, events)
