"""Seeded data: deterministic per seed, Gumroad-shaped ids, and every kind of record the issue asks for."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from snapbridge.errors import InvalidInput
from snapbridge.sandbox.gumroad import GumroadSandbox
from snapbridge.sandbox.gumroad.models import SaleState

ANCHOR = datetime(2025, 6, 1, tzinfo=UTC)
EXTERNAL_ID = re.compile(r"^[A-Za-z0-9_-]{22}==$")


def _fingerprint(sandbox: GumroadSandbox) -> list[tuple[object, ...]]:
    state = sandbox.state
    sales = [(s.id, s.order_id, s.buyer.email, s.buyer.full_name, s.price_cents, s.created_at, s.state)
             for s in state.sales.values()]
    products = [(p.id, p.name, p.unique_permalink, p.price_cents) for p in state.products.values()]
    subs = [(s.id, s.numeric_id, s.created_at, s.cancelled_at) for s in state.subscriptions.values()]
    licenses = [(lic.id, lic.serial) for lic in state.licenses.values()]
    return [*sales, *products, *subs, *licenses, (sandbox.access_token, sandbox.seller_id)]


def test_the_same_seed_gives_the_same_world_and_another_seed_a_different_one() -> None:
    one = GumroadSandbox(seed=5, anchor=ANCHOR)
    again = GumroadSandbox(seed=5, anchor=ANCHOR)
    other = GumroadSandbox(seed=6, anchor=ANCHOR)
    assert _fingerprint(one) == _fingerprint(again)
    assert one.access_token != other.access_token and one.seller_id != other.seller_id
    assert {s.id for s in one.state.sales.values()}.isdisjoint({s.id for s in other.state.sales.values()})


def test_ids_have_gumroad_formats() -> None:
    sandbox = GumroadSandbox(seed=1, anchor=ANCHOR)
    state = sandbox.state
    external = [sandbox.seller_id, *state.products, *state.sales, *state.subscriptions, *state.offer_codes,
                *state.variants, *state.variant_categories, *state.payouts, *state.licenses]
    assert all(EXTERNAL_ID.match(i) for i in external)
    assert len(set(external)) == len(external)
    orders = [s.order_id for s in state.sales.values()]
    assert len(set(orders)) == len(orders) and all(9 <= len(str(o)) <= 10 for o in orders)
    buyers = [s.buyer.purchaser_id for s in state.sales.values() if s.buyer.purchaser_id]
    user_ids = [state.seller.user_id, *buyers]
    assert all(re.fullmatch(r"\d{13}", u or "") for u in user_ids)
    assert all(re.fullmatch(r"([0-9A-F]{8}-){3}[0-9A-F]{8}", lic.serial) for lic in state.licenses.values())
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", sandbox.access_token)


def test_the_seed_covers_every_kind_of_record() -> None:
    sandbox = GumroadSandbox(seed=1, anchor=ANCHOR)
    state = sandbox.state
    listed = state.listed_sales()
    assert len(listed) >= 35  # several pages of ten
    products = [p for p in state.products.values() if not p.foreign]
    assert any(state.product_variant_categories(p) for p in products)
    assert any(state.product_custom_fields(p) for p in products)
    assert {c.universal for c in state.offer_codes.values()} == {True, False}
    assert {p.currency for p in products} >= {"usd", "eur", "jpy"}
    assert any(p.is_physical for p in products) and any(p.is_tiered_membership for p in products)
    assert any(not name.isascii() for name in (s.buyer.full_name for s in listed))
    emails = [s.buyer.email for s in listed]
    assert len(set(emails)) < len(emails)  # repeat buyers
    assert any(s.fully_refunded for s in listed) and any(s.partially_refunded for s in listed)
    assert any(s.chargedback and not s.dispute_won for s in listed) and any(s.dispute_won for s in listed)
    assert any(s.offer_code_id for s in listed) and any(s.is_recurring_charge for s in listed)
    assert any(s.state is SaleState.NOT_CHARGED for s in listed)  # a free-trial sign-up is listed
    every = list(state.sales.values())
    assert any(s.is_test for s in every) and any(s.is_gift_receiver for s in every)
    statuses = {state.subscription_status(s, ANCHOR) for s in state.subscriptions.values()}
    assert statuses == {"alive", "pending_cancellation", "pending_failure", "failed_payment",
                        "fixed_subscription_period_ended", "cancelled"}
    assert state.licenses and any(lic.disabled for lic in state.licenses.values())
    assert len(state.payouts) > 10
    pks = [s.pk for s in sorted(state.sales.values(), key=lambda s: s.created_at)]
    assert pks == sorted(pks)  # keys grow with time, as database ids do


@pytest.mark.parametrize("factor", [0, -1])
def test_time_factor_must_be_positive(factor: float) -> None:
    with pytest.raises(InvalidInput):
        GumroadSandbox(time_factor=factor)
