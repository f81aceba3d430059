"""Shared pieces of the scenarios: the outcome type, the error, parameter readers and seeded choices."""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from snapbridge.sandbox.gumroad.models import Buyer, OfferCode, Product, Sale, Subscription, Variant
from snapbridge.sandbox.gumroad.seed_catalog import BUYERS
from snapbridge.sandbox.gumroad.state import SandboxState

__all__ = ["Outcome", "ScenarioError", "Tools"]

T = TypeVar("T")

_FIRST = ["Amélie", "Håkon", "Zeynep", "Dương", "Siobhán", "Małgorzata", "Ngozi", "Øyvind", "Fernão", "Лев",
          "Αλέξανδρος", "Noémie", "Kenji", "Ilse", "Thảo"]
_LAST = ["Lindqvist", "Çelik", "Nowak", "Okafor", "Ó Briain", "Ferreira", "Tanaka", "Воронов", "Παπαδόπουλος",
         "Rousseau", "Grünewald", "Nguyễn"]


class ScenarioError(Exception):
    """A scenario cannot run with these parameters (HTTP 400, or 404 for an unknown name)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Outcome:
    result: dict[str, Any]
    events: list[Any] = field(default_factory=list)  # WebhookEvent, in the order they happened


def _ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "".join(c if c.isalnum() else "." for c in plain).strip(".") or "customer"


class Tools:
    def __init__(self, state: SandboxState, rng: random.Random) -> None:
        self.state = state
        self.rng = rng
        # Ids a bulk run already touched: default choices skip them, because every post of a batch is
        # built when it is due, and a later step on the same object would change what an earlier one says.
        self.exclude: set[str] = set()

    # ---- parameters -------------------------------------------------------------------------------------

    def opt_str(self, params: dict[str, Any], name: str) -> str | None:
        value = params.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ScenarioError(f"'{name}' must be a non-empty string")
        return value.strip()

    def opt_int(self, params: dict[str, Any], name: str) -> int | None:
        value = params.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(f"'{name}' must be an integer")
        return value

    def opt_dict(self, params: dict[str, Any], name: str) -> dict[str, str] | None:
        value = params.get(name)
        if value is None:
            return None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ScenarioError(f"'{name}' must be an object of strings")
        return {str(k): v for k, v in value.items()}

    def pick(self, items: Sequence[T]) -> T:
        if not items:
            raise ScenarioError("nothing in the sandbox fits this scenario")
        return items[self.rng.randrange(len(items))]

    # ---- products, variants, codes -------------------------------------------------------------------

    def one_off_products(self) -> list[Product]:
        rows = [p for p in self.state.products.values() if p.published and not p.deleted and not p.foreign]
        return sorted((p for p in rows if not p.is_recurring), key=lambda p: p.pk)

    def memberships(self) -> list[Product]:
        rows = [p for p in self.state.products.values() if p.published and not p.deleted and not p.foreign]
        return sorted((p for p in rows if p.is_recurring), key=lambda p: p.pk)

    def product_param(self, params: dict[str, Any], default: Product) -> Product:
        ref = self.opt_str(params, "product_id")
        if ref is None:
            return default
        product = self.state.find_product(ref)
        if product is None or product.deleted:
            raise ScenarioError(f"unknown product {ref!r}")
        return product

    def variants_param(self, product: Product, params: dict[str, Any]) -> list[Variant]:
        """One option per variant category: by name from `variants` {category: option}, else seeded."""
        wanted = self.opt_dict(params, "variants") or {}
        chosen: list[Variant] = []
        for category in self.state.product_variant_categories(product):
            options = self.state.category_variants(category)
            name = wanted.get(category.title or "")
            if name is not None:
                match = next((v for v in options if v.name == name), None)
                if match is None:
                    known = ", ".join(v.name for v in options)
                    raise ScenarioError(f"no option {name!r} in {category.title!r}; known: {known}")
                chosen.append(match)
            elif options:
                chosen.append(self.pick(options))
        return chosen

    def offer_code_param(self, product: Product, params: dict[str, Any]) -> OfferCode | None:
        code = self.opt_str(params, "offer_code")
        if code is None:
            return None
        match = next((c for c in self.state.product_offer_codes(product) if c.code == code), None)
        if match is None:
            raise ScenarioError(f"offer code {code!r} does not apply to {product.name}")
        return match

    def sample_custom_fields(self, product: Product) -> dict[str, str]:
        fields = self.state.product_custom_fields(product)
        return {f.name: self.sample_field_value(f.name, f.type) for f in fields}

    def sample_field_value(self, name: str, kind: str) -> str:
        if kind in ("checkbox", "terms"):
            return "true"
        return self.pick(["Acme Studio", "für Oma 💐", "@night_owl", "Bitte schnell liefern!", "n/a"])

    # ---- buyers, sales, subscriptions ------------------------------------------------------------------

    def opt_bool(self, params: dict[str, Any], name: str) -> bool | None:
        value = params.get(name)
        if value is not None and not isinstance(value, bool):
            raise ScenarioError(f"'{name}' must be true or false")
        return value

    def known_email(self, email: str) -> bool:
        return email in self.state.buyer_emails

    def new_buyer(self, email: str | None, full_name: str | None, account: bool | None = None) -> Buyer:
        name = full_name or f"{self.pick(_FIRST)} {self.pick(_LAST)}"
        if email is None:
            base = _ascii_slug(name)
            n = 1
            while self.known_email(f"{base}.{n}@example.net"):
                n += 1
            email = f"{base}.{n}@example.net"
        _, _, iso2, country, city = self.pick(BUYERS)
        has_account = self.rng.random() < 0.5 if account is None else account
        return Buyer(
            email=email,
            full_name=name,
            purchaser_id=self.state.ids.user_id() if has_account else None,
            country=country,
            country_iso2=iso2,
            street_address=f"{self.rng.randint(1, 99)} Harbour Road",
            city=city,
            zip_code=str(self.rng.randint(10000, 99999)),
            card_visual=f"**** **** **** {self.rng.randint(1000, 9999)}",
            card_type=self.pick(["visa", "mastercard"]),
        )

    def sale_param(self, params: dict[str, Any], default: list[Sale]) -> Sale:
        ref = self.opt_str(params, "sale_id")
        if ref is None:
            return self.pick([s for s in default if s.id not in self.exclude])
        sale = self.state.own_sale(ref)
        if sale is None:
            raise ScenarioError(f"unknown sale {ref!r}")
        return sale

    def subscription_param(self, params: dict[str, Any], default: list[Subscription]) -> Subscription:
        ref = self.opt_str(params, "subscription_id")
        if ref is None:
            return self.pick(sorted((s for s in default if s.id not in self.exclude), key=lambda s: s.pk))
        sub = self.state.subscriptions.get(ref)
        if sub is None:
            raise ScenarioError(f"unknown subscription {ref!r}")
        return sub

    def sale_result(self, sale: Sale) -> dict[str, Any]:
        return {
            "sale_id": sale.id,
            "order_id": sale.order_id,
            "email": sale.buyer.email,
            "product_id": sale.product_id,
            "price": sale.price_cents,
            **({"subscription_id": sale.subscription_id} if sale.subscription_id else {}),
        }
