"""Deterministic seeded data: memberships in every state, test and gift purchases, payouts, and the token.

`seed_state` is the entry point; the catalogue and one-off sales come from seed_catalog.py. All sales
are recorded in time order at the end, so sale keys grow with `created_at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from snapbridge.sandbox.gumroad.commerce import Purchase, record_sale
from snapbridge.sandbox.gumroad.models import (
    Buyer,
    CancelledBy,
    Payout,
    Product,
    Recurrence,
    Sale,
    SaleState,
    Subscription,
    Variant,
)
from snapbridge.sandbox.gumroad.seed_catalog import ALL_SCOPES, Catalog, SalePlan, Seeder
from snapbridge.sandbox.gumroad.state import SandboxState

__all__ = ["ALL_SCOPES", "seed_state"]

_PERIOD_DAYS = {Recurrence.MONTHLY: 30, Recurrence.YEARLY: 365}


@dataclass(frozen=True)
class _Member:
    buyer: Buyer
    product: Product
    tier: Variant | None
    recurrence: Recurrence
    start_days_ago: float
    charges: int
    fate: str  # alive | pending_cancellation | pending_failure | failed_payment | ended | cancelled | trial
    is_test: bool = False


def _members(seeder: Seeder, c: Catalog) -> list[_Member]:
    b = seeder.buyers
    basic, pro = c.tiers
    seller = _seller_buyer(seeder)
    monthly, yearly = Recurrence.MONTHLY, Recurrence.YEARLY
    return [
        _Member(b[1], c.course, pro, monthly, 95, 4, "alive"),
        _Member(b[3], c.course, basic, yearly, 200, 1, "alive"),
        _Member(b[4], c.newsletter, None, monthly, 70, 3, "pending_cancellation"),
        _Member(b[7], c.newsletter, None, monthly, 75, 2, "pending_failure"),
        _Member(b[8], c.course, basic, monthly, 110, 2, "failed_payment"),
        _Member(b[10], c.course, pro, monthly, 118, 3, "ended"),
        _Member(b[12], c.newsletter, None, monthly, 100, 2, "cancelled"),
        _Member(b[15], c.course, pro, monthly, 2, 1, "trial"),
        _Member(seller, c.newsletter, None, monthly, 20, 1, "alive", is_test=True),
    ]


def _seller_buyer(seeder: Seeder) -> Buyer:
    seller = seeder.state.seller
    return Buyer(seller.email, seller.name, seller.user_id, "United States", "US")


def _membership_plans(seeder: Seeder, members: list[_Member]) -> list[SalePlan]:
    state = seeder.state
    plans: list[SalePlan] = []
    starts = [(seeder.at(m.start_days_ago), m) for m in members]
    for start, m in sorted(starts, key=lambda pair: pair[0]):  # subscriptions too are created in time order
        price = m.tier.recurrence_prices[m.recurrence.value] if m.tier else m.product.price_cents
        sub = Subscription(
            pk=state.next_pk(),
            id=state.ids.external_id(),
            numeric_id=state.ids.numeric_id(),
            product_id=m.product.id,
            email=m.buyer.email,
            user_id=m.buyer.purchaser_id,
            recurrence=m.recurrence,
            created_at=start,
            tier_id=m.tier.id if m.tier else None,
            price_cents=price,
            is_test=m.is_test,
            custom_fields={"Discord handle": f"@{m.buyer.email.split('@')[0]}"},
        )
        state.subscriptions[sub.id] = sub
        period = timedelta(days=_PERIOD_DAYS[m.recurrence])
        sale_state = SaleState.TEST_SUCCESSFUL if m.is_test else SaleState.SUCCESSFUL
        for k in range(m.charges):
            when = start + period * k
            purchase = Purchase(
                m.product, m.buyer, when,
                state=SaleState.NOT_CHARGED if m.fate == "trial" else sale_state,
                variants=[m.tier] if m.tier else [],
                subscription=sub,
                recurring_charge=k > 0,
                price_override_cents=price,
                custom_fields=dict(sub.custom_fields) if k == 0 else {},
            )
            plans.append(SalePlan(purchase))
        last = start + period * (m.charges - 1)
        _apply_fate(seeder, m, sub, last, period, plans)
    return plans


def _apply_fate(
    seeder: Seeder, m: _Member, sub: Subscription, last: datetime, period: timedelta, plans: list[SalePlan]
) -> None:
    anchor = seeder.anchor
    if m.fate == "trial":
        sub.free_trial_ends_at = anchor + timedelta(days=5)
    elif m.fate == "pending_cancellation":
        sub.cancelled_at = anchor + timedelta(days=20)  # access lasts to the end of the paid period
        sub.cancelled_by = CancelledBy.BUYER
        sub.user_requested_cancellation_at = anchor - timedelta(days=2, hours=3)
    elif m.fate in ("pending_failure", "failed_payment"):
        failed = Purchase(m.product, m.buyer, last + period, state=SaleState.FAILED, subscription=sub,
                          recurring_charge=True, price_override_cents=sub.price_cents)
        plans.append(SalePlan(failed))
        if m.fate == "pending_failure":
            sub.pending_failure = True
        else:
            sub.failed_at = last + period + timedelta(days=3)
            sub.deactivated_at = sub.failed_at
    elif m.fate == "ended":
        sub.charge_occurrence_count = m.charges
        sub.ended_at = last + period
        sub.deactivated_at = sub.ended_at
    elif m.fate == "cancelled":
        sub.user_requested_cancellation_at = last + timedelta(days=5)
        sub.cancelled_at = last + period
        sub.cancelled_by = CancelledBy.SELLER
        sub.deactivated_at = sub.cancelled_at


def _special_plans(seeder: Seeder, c: Catalog) -> list[SalePlan]:
    """Test purchases, a gift pair, and a sale of another seller's product."""
    seller = _seller_buyer(seeder)
    b = seeder.buyers
    plans = [
        SalePlan(Purchase(c.brushes, seller, seeder.at(8), state=SaleState.TEST_SUCCESSFUL,
                          variants=[c.formats[0]])),
        SalePlan(Purchase(c.font, seller, seeder.at(23), state=SaleState.TEST_SUCCESSFUL)),
        SalePlan(Purchase(c.foreign, b[0], seeder.at(30))),
    ]
    gift_at = seeder.at(12)
    giftee = Buyer("mia.schroeder@example.at", "Mia Schröder", None, "Austria", "AT")
    sender = Purchase(c.kochbuch, b[6], gift_at)
    receiver = Purchase(c.kochbuch, giftee, gift_at + timedelta(seconds=1), state=SaleState.GIFT_RECEIVER,
                        price_override_cents=0)
    holder: dict[str, Sale] = {}

    def mark_sender(sale: Sale) -> None:
        sale.is_gift_sender = True
        sale.giftee_email = giftee.email
        holder["sender"] = sale

    def mark_receiver(sale: Sale) -> None:
        sale.is_gift_receiver = True
        partner = holder["sender"]
        sale.gift_partner_id = partner.id
        partner.gift_partner_id = sale.id

    plans += [SalePlan(sender, mark_sender), SalePlan(receiver, mark_receiver)]
    return plans


def _payouts(seeder: Seeder) -> None:
    state = seeder.state
    listed = state.listed_sales()
    for k in range(11, -1, -1):  # oldest first, so keys grow with time
        created = seeder.anchor - timedelta(days=7 + 14 * k, hours=-9)
        window = [s for s in listed if created - timedelta(days=14) < s.created_at <= created]
        paypal = k % 4 == 3
        status = "pending" if k == 0 else ("failed" if k == 5 else "completed")
        payout = Payout(
            pk=state.next_pk(),
            id=state.ids.external_id(),
            numeric_id=state.ids.numeric_id(),
            amount_cents=sum(s.price_cents - s.fee_cents for s in window if not s.fully_refunded),
            currency="usd",
            status=status,
            created_at=created,
            processed_at=created + timedelta(days=1) if status == "completed" else None,
            payment_processor="paypal" if paypal else "stripe",
            bank_account_visual=None if paypal else "******6789",
            paypal_email=state.seller.email if paypal else None,
            sale_ids=[s.id for s in window],
            refunded_sale_ids=[s.id for s in window if s.ever_refunded],
            disputed_sale_ids=[s.id for s in window if s.chargedback],
        )
        state.payouts[payout.id] = payout


def seed_state(state: SandboxState, anchor: datetime) -> None:
    """Fill an empty state with the seeded world; the caller holds the lock."""
    seeder = Seeder(state, anchor)
    state.add_token("full", ALL_SCOPES)
    catalog = seeder.catalog()
    plans = seeder.one_off_plans(catalog)
    plans += _membership_plans(seeder, _members(seeder, catalog))
    plans += _special_plans(seeder, catalog)
    for plan in sorted(plans, key=lambda p: p.purchase.created_at):  # stable: ties keep plan order
        sale = record_sale(state, plan.purchase)
        if plan.after is not None:
            plan.after(sale)
    _payouts(seeder)
