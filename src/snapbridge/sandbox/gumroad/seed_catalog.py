"""Seeded catalogue, buyers with unicode names and one-off sales (with refunds, disputes, licenses).

Everything comes from `random.Random(seed)` and the id factory, so a seed always yields the same ids,
names, amounts and time offsets. Times are offsets from `anchor` (by default today 00:00 UTC), so the data
is always recent and pending cancellations and free trials always lie in the future.
Objects of one kind are created in time order, so their internal keys grow with `created_at` like
database ids, which Gumroad's cursor condition relies on.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from snapbridge.sandbox.gumroad.commerce import Purchase
from snapbridge.sandbox.gumroad.models import (
    Buyer,
    CustomField,
    OfferCode,
    Product,
    Recurrence,
    Sale,
    Variant,
    VariantCategory,
)
from snapbridge.sandbox.gumroad.state import SandboxState

__all__ = ["ALL_SCOPES", "BUYERS", "Catalog", "SalePlan", "Seeder"]

ALL_SCOPES = frozenset(
    {
        "view_public",
        "view_profile",
        "edit_products",
        "view_sales",
        "mark_sales_as_shipped",
        "refund_sales",
        "edit_sales",
        "view_payouts",
        "account",
    }
)

# (full name, email, ISO2, country name as Gumroad writes it, city)
BUYERS = [
    ("Zoë Müller", "zoe.mueller@example.de", "DE", "Germany", "Berlin"),
    ("José Álvarez", "jose.alvarez@example.es", "ES", "Spain", "Sevilla"),
    ("Søren Nørgaard", "soren.norgaard@example.dk", "DK", "Denmark", "København"),
    ("Ayşe Yılmaz", "ayse.yilmaz@example.com.tr", "TR", "Turkey", "İstanbul"),
    ("Łukasz Żółć", "lukasz.zolc@example.pl", "PL", "Poland", "Łódź"),
    ("李小龙", "xiaolong.li@example.cn", "CN", "China", "上海"),
    ("佐藤 花子", "hanako.sato@example.jp", "JP", "Japan", "東京"),
    ("Ольга Петрова", "olga.petrova@example.kz", "KZ", "Kazakhstan", "Алматы"),
    ("محمد علي", "mohamed.ali@example.eg", "EG", "Egypt", "القاهرة"),
    ("Chloé Dubois", "chloe.dubois@example.fr", "FR", "France", "Marseille"),
    ("Björn Ångström", "bjorn.angstrom@example.se", "SE", "Sweden", "Göteborg"),
    ("Nguyễn Văn An", "an.nguyen@example.vn", "VN", "Vietnam", "Hà Nội"),
    ("Renée O'Connor", "renee.oconnor@example.ie", "IE", "Ireland", "Dún Laoghaire"),
    ("Ana Lúcia Araújo", "ana.araujo@example.com.br", "BR", "Brazil", "São Paulo"),
    ("Emily Chen", "emily.chen@example.com", "US", "United States", "San Francisco"),
    ("Priya Raghunathan", "priya.r@example.in", "IN", "India", "Bengaluru"),
    ("Kwame Mensah", "kwame.mensah@example.gh", "GH", "Ghana", "Accra"),
    ("Jürgen & Maëlle Weiß-Lefèvre", "weiss.lefevre@example.ch", "CH", "Switzerland", "Genève"),
]


@dataclass
class SalePlan:
    """A sale to record, and what to do to it afterwards (refund, ship, dispute...)."""

    purchase: Purchase
    after: Callable[[Sale], None] | None = None


@dataclass
class Catalog:
    brushes: Product
    kochbuch: Product
    course: Product
    newsletter: Product
    notebook: Product
    wallpaper: Product
    font: Product
    foreign: Product
    formats: list[Variant]
    tiers: list[Variant]
    colors: list[Variant]
    launch10: OfferCode
    fiveoff: OfferCode
    welcome: OfferCode


class Seeder:
    def __init__(self, state: SandboxState, anchor: datetime) -> None:
        self.state = state
        self.anchor = anchor
        self.rng = random.Random(state.seed)
        self.buyers = [self._buyer(row) for row in BUYERS]

    def at(self, days_ago: float, *, exact: bool = False) -> datetime:
        moment = self.anchor - timedelta(days=days_ago)
        if exact:
            return moment
        return moment.replace(hour=0, minute=0, second=0) + timedelta(seconds=self.rng.randint(0, 86_399))

    def _buyer(self, row: tuple[str, str, str, str, str]) -> Buyer:
        name, email, iso2, country, city = row
        has_account = self.rng.random() < 0.6
        return Buyer(
            email=email,
            full_name=name,
            purchaser_id=self.state.ids.user_id() if has_account else None,
            country=country,
            country_iso2=iso2,
            street_address=f"{self.rng.randint(1, 240)} {'Hauptstraße' if iso2 == 'DE' else 'Main Street'}",
            city=city,
            state="CA" if iso2 == "US" else None,
            zip_code=f"{self.rng.randint(10000, 99999)}",
            card_visual=f"**** **** **** {self.rng.randint(1000, 9999)}",
            card_type=self.rng.choice(["visa", "mastercard", "amex"]),
        )

    # ---- catalogue --------------------------------------------------------------------------------------

    def product(self, name: str, price: int, currency: str, days_ago: int, **extra: object) -> Product:
        s = self.state
        product = Product(
            pk=s.next_pk(),
            id=s.ids.external_id(),
            name=name,
            unique_permalink=s.ids.permalink(),
            price_cents=price,
            currency=currency,
            created_at=self.at(days_ago),
            description=f"<p>{name}: seeded by the Gumroad sandbox.</p>",
        )
        for key, value in extra.items():
            setattr(product, key, value)
        s.products[product.id] = product
        return product

    def category(
        self, product: Product, title: str, options: list[tuple[str, int, dict[str, int]]]
    ) -> list[Variant]:
        s = self.state
        category = VariantCategory(s.ids.external_id(), product.id, title)
        s.variant_categories[category.id] = category
        product.variant_category_ids.append(category.id)
        variants = []
        for name, diff, prices in options:
            variant = Variant(s.ids.external_id(), category.id, name, f"{name} option", diff,
                              recurrence_prices=prices)
            s.variants[variant.id] = variant
            category.variant_ids.append(variant.id)
            variants.append(variant)
        return variants

    def field(self, products: list[Product], name: str, kind: str = "text", required: bool = False) -> None:
        field = CustomField(self.state.ids.external_id(), name, kind, required, [p.id for p in products])
        self.state.custom_fields[field.id] = field
        for product in products:
            product.custom_field_ids.append(field.id)

    def code(
        self, code: str, products: list[Product], *, percent: int | None = None, cents: int | None = None
    ) -> OfferCode:
        offer = OfferCode(self.state.ids.external_id(), code, not products, [p.id for p in products],
                          amount_cents=cents, percent_off=percent, max_purchase_count=100)
        self.state.offer_codes[offer.id] = offer
        return offer

    def catalog(self) -> Catalog:
        p = self.product
        brushes = p("Pixel Brushes Pack", 1200, "usd", 400, custom_permalink="brushes", is_licensed=True,
                    tags=["brushes", "procreate"], custom_summary="120 brushes for Procreate and Photoshop")
        kochbuch = p("Kochbuch für Anfänger", 900, "eur", 380, tags=["kochen"])
        course = p("Ultimate Course", 1000, "usd", 360, subscription_duration=Recurrence.MONTHLY,
                   is_tiered_membership=True, is_licensed=True, is_multiseat_license=True)
        newsletter = p("Monthly Newsletter", 500, "usd", 350, subscription_duration=Recurrence.MONTHLY)
        notebook = p("Hand-bound Notebook", 3000, "usd", 340, is_physical=True, shipping_cents=500)
        wallpaper = p("Free Wallpaper", 0, "usd", 330, customizable_price=True)
        font = p("Retro Font", 1500, "jpy", 320, is_licensed=True)
        p("Draft Template", 1500, "usd", 300, published=False)
        p("Old Product", 700, "usd", 290, deleted=True)
        foreign = p("Another Seller's Plugin", 2000, "usd", 280, foreign=True, is_licensed=True)
        formats = self.category(brushes, "Format", [("Procreate", 0, {}), ("Photoshop", 300, {})])
        tiers = self.category(course, "Tier", [
            ("Basic", 0, {"monthly": 1000, "yearly": 10000}),
            ("Pro", 0, {"monthly": 2500, "yearly": 25000}),
        ])
        colors = self.category(notebook, "Color", [("Red", 0, {}), ("Blue", 0, {})])
        self.field([brushes], "Company")
        self.field([kochbuch], "Widmung [Name]")  # brackets in a name are escaped in pings (§5.1)
        self.field([course, newsletter], "Discord handle")
        self.field([notebook], "Gift message", "long_text")
        self.field([font], "I accept the license", "terms", required=True)
        return Catalog(
            brushes, kochbuch, course, newsletter, notebook, wallpaper, font, foreign, formats, tiers, colors,
            launch10=self.code("LAUNCH10", [brushes], percent=10),
            fiveoff=self.code("FIVEOFF", [notebook], cents=500),
            welcome=self.code("WELCOME", [], percent=20),
        )

    # ---- sales ------------------------------------------------------------------------------------------

    def one_off_plans(self, c: Catalog) -> list[SalePlan]:
        plans: list[SalePlan] = []

        def add(when: datetime, product: Product, buyer: Buyer, after: Callable[[Sale], None] | None = None,
                **kw: Any) -> None:
            plans.append(SalePlan(Purchase(product, buyer, when, **kw), after))

        b = self.buyers
        products = [c.brushes, c.kochbuch, c.notebook, c.wallpaper, c.font]
        for i in range(24):
            product = products[i % len(products)]
            buyer = b[(i * 7) % len(b)]
            kw: dict[str, Any] = {"referrer": self.rng.choice(["direct", "https://twitter.com/", "https://www.google.com/"])}
            if product is c.brushes:
                kw["variants"] = [c.formats[i % 2]]
                kw["custom_fields"] = {"Company": f"{buyer.full_name.split()[0]} GmbH"}
                if i % 3 == 0:
                    kw["offer_code"] = c.launch10
            if product is c.kochbuch and i % 2:
                kw["custom_fields"] = {"Widmung [Name]": "Für Oma 💐"}
            if product is c.notebook:
                kw["variants"] = [c.colors[i % 2]]
                kw["custom_fields"] = {"Gift message": "Happy birthday!\nLove, me"}
                if i % 4 == 2:
                    kw["offer_code"] = c.fiveoff
            if product is c.font:
                kw["custom_fields"] = {"I accept the license": "true"}
            if product is c.wallpaper:
                kw["price_override_cents"] = 0 if i % 2 else 300  # pay what you want
            if i % 6 == 5:
                kw["affiliate_email"] = "affiliate@partners.example"
            add(self.at(3 + i * 4.5), product, buyer, **kw)
        # Boundaries for `after` (inclusive) and `before` (exclusive): a sale at exactly 00:00:00 UTC.
        add(self.at(10, exact=True), c.brushes, b[2], variants=[c.formats[0]])
        # Two sales with the very same created_at: the id breaks the tie in the order and the cursor.
        tie = self.at(17)
        add(tie, c.kochbuch, b[5])
        add(tie, c.font, b[6])
        # Repeat customers: the same buyers again.
        add(self.at(1.5), c.kochbuch, b[0])
        add(self.at(2.2), c.font, b[0], offer_code=c.welcome)
        # Shipped, refunded, disputed and revoked sales.
        add(self.at(40), c.notebook, b[14], lambda s: self._ship(s), variants=[c.colors[1]])
        add(self.at(55), c.brushes, b[9], lambda s: self._refund(s, s.displayed_price_cents),
            variants=[c.formats[1]])
        add(self.at(62), c.font, b[10], lambda s: self._refund(s, s.displayed_price_cents))
        add(self.at(33), c.kochbuch, b[11], lambda s: self._refund(s, 300))
        add(self.at(27), c.brushes, b[12], lambda s: self._refund(s, 500), variants=[c.formats[0]])
        add(self.at(70), c.brushes, b[13], lambda s: self._dispute(s, won=False), variants=[c.formats[1]])
        add(self.at(85), c.notebook, b[15], lambda s: self._dispute(s, won=True), variants=[c.colors[0]])
        add(self.at(44), c.brushes, b[16], lambda s: setattr(s, "access_revoked", True),
            variants=[c.formats[0]])
        add(self.at(48), c.font, b[17], lambda s: self._disable_license(s))
        return plans

    def _ship(self, sale: Sale) -> None:
        sale.shipped = True
        sale.tracking_url = f"https://tracking.example/{sale.order_id}"

    def _refund(self, sale: Sale, amount: int) -> None:
        sale.refunded_cents += amount
        sale.ever_refunded = True

    def _dispute(self, sale: Sale, *, won: bool) -> None:
        sale.chargedback = True
        sale.dispute_won = won

    def _disable_license(self, sale: Sale) -> None:
        license_ = self.state.sale_license(sale)
        if license_ is not None:
            license_.disabled = True
            license_.uses = 3
