"""The filters of the mapping language, each as a table of inputs and outputs, through the mapping engine."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from snapbridge.errors import InvalidInput
from snapbridge.workflows.countries import COUNTRIES, Country, Region, find_country
from snapbridge.workflows.filters import FILTER_DOCS, FILTERS
from snapbridge.workflows.mapping import compile_mapping


def render(source: str, **scope: object) -> object:
    return compile_mapping(source).render(scope)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1234, "usd", "12.34"),
        (1234, "USD", "12.34"),
        (5, "eur", "0.05"),
        (0, "gbp", "0.00"),
        (-250, "usd", "-2.50"),
        ("1234", "usd", "12.34"),
        (1234.0, "usd", "12.34"),
        (1234, "jpy", "1234"),
        (1234, "krw", "1234"),
        (1234, "kwd", "1.234"),
        (None, "usd", None),
    ],
)
def test_cents_to_money(amount: object, currency: str, expected: str | None) -> None:
    assert render("{{ amount | cents_to_money(currency) }}", amount=amount, currency=currency) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (12.5, "usd", "expects a whole number of minor units"),
        ("12.34", "usd", "expects a whole number of minor units"),
        ("ten", "usd", "cannot read 'ten' as a number"),
        (True, "usd", "expects a whole number of minor units, got a boolean"),
        (100, "dollars", "expects a 3-letter currency code"),
        ([1], "usd", "got a list"),
    ],
)
def test_cents_to_money_refuses(amount: object, currency: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        render("{{ amount | cents_to_money(currency) }}", amount=amount, currency=currency)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-01-05T19:38:56Z", "2021-01-05T19:38:56Z"),
        ("2021-01-05T20:38:56+01:00", "2021-01-05T19:38:56Z"),
        ("2021-01-05T19:38:56", "2021-01-05T19:38:56Z"),
        ("2021-01-05T19:38:56.250000Z", "2021-01-05T19:38:56.250000Z"),
        ("2021-01-05", "2021-01-05T00:00:00Z"),
        (datetime(2021, 1, 5, 21, 38, 56, tzinfo=ZoneInfo("Europe/Athens")), "2021-01-05T19:38:56Z"),
        (datetime(2021, 1, 5, 19, 38, 56), "2021-01-05T19:38:56Z"),
        (date(2021, 1, 5), "2021-01-05T00:00:00Z"),
        (1609875536, "2021-01-05T19:38:56Z"),
        (None, None),
    ],
)
def test_iso8601(value: object, expected: str | None) -> None:
    assert render("{{ value | iso8601 }}", value=value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [("yesterday", "cannot read 'yesterday'"), (10**20, "Unix seconds"), ([], "expects a time, got a list")],
)
def test_iso8601_refuses(value: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        render("{{ value | iso8601 }}", value=value)


@pytest.mark.parametrize(
    ("country", "zone", "region"),
    [
        ("United States", "America/New_York", "NA"),
        ("US", "America/New_York", "NA"),
        ("us", "America/New_York", "NA"),
        ("U.S.A.", "America/New_York", "NA"),
        ("United Kingdom", "Europe/London", "EU"),
        ("  germany ", "Europe/Berlin", "EU"),
        ("Korea, Republic of", "Asia/Seoul", "APAC"),
        ("JP", "Asia/Tokyo", "APAC"),
        ("Australia", "Australia/Sydney", "APAC"),
        ("Brazil", "America/Sao_Paulo", "LATAM"),
        ("Mexico", "America/Mexico_City", "LATAM"),
        ("South Africa", "Africa/Johannesburg", "MEA"),
        ("United Arab Emirates", "Asia/Dubai", "MEA"),
        ("Atlantis", "UTC", None),
        ("", "UTC", None),
        (None, "UTC", None),
    ],
)
def test_timezone_and_region_for_country(country: str | None, zone: str, region: str | None) -> None:
    assert render("{{ c | timezone_for_country }}", c=country) == zone
    assert render("{{ c | region_for_country }}", c=country) == region


def test_country_fallbacks_can_be_chosen() -> None:
    assert render("{{ 'Atlantis' | timezone_for_country('Etc/GMT') }}") == "Etc/GMT"
    assert render("{{ 'Atlantis' | region_for_country('OTHER') }}") == "OTHER"


@pytest.mark.parametrize("country", COUNTRIES, ids=lambda c: c.code)
def test_every_country_has_a_real_zone_and_is_found_by_code_and_names(country: Country) -> None:
    ZoneInfo(country.timezone)
    assert isinstance(country.region, Region)
    for name in (country.code, country.code.lower(), country.name, *country.aliases):
        assert find_country(name) is country


def test_country_codes_and_names_are_unique() -> None:
    names = [n.casefold() for c in COUNTRIES for n in (c.code, c.name, *c.aliases)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Café Olé Pro!", "cafe-ole-pro"),
        ("  Hello   World  ", "hello-world"),
        ("ÄÖÜ straße", "aou-strae"),
        ("---", ""),
        ("Pro Plan 2024", "pro-plan-2024"),
        (42, "42"),
        (None, None),
    ],
)
def test_slug(value: object, expected: str | None) -> None:
    assert render("{{ v | slug }}", v=value) == expected


def test_slug_cuts_at_max_length_without_a_trailing_dash() -> None:
    assert render("{{ 'abc def ghi' | slug(4) }}") == "abc"
    with pytest.raises(InvalidInput, match="max_length must be a positive whole number"):
        render("{{ 'abc' | slug(0) }}")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("vip, Beta ,, beta,early  adopter", ["vip", "beta", "early adopter"]),
        (["VIP", " vip", "new", None, 7], ["vip", "new", "7"]),
        ("", []),
        (None, []),
    ],
)
def test_tag_list(value: object, expected: list[str]) -> None:
    assert render("{{ v | tag_list }}", v=value) == expected


def test_tag_list_refuses_objects() -> None:
    with pytest.raises(InvalidInput, match="tag_list expects text or a list, got an object"):
        render("{{ v | tag_list }}", v={"a": 1})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'Ada' | lower }}", "ada"),
        ("{{ 'Ada' | upper }}", "ADA"),
        ("{{ \"ada o'neil-smith\" | title }}", "Ada O'neil-smith"),
        ("{{ none | title }}", None),
        ("{{ '  x ' | trim }}", "x"),
        ("{{ 'abc' | length }}", 3),
        ("{{ ' 42 ' | int }}", 42),
        ("{{ 4.0 | int }}", 4),
        ("{{ '2.5' | float }}", 2.5),
        ("{{ [3, 4] | first }}", 3),
        ("{{ [3, 4] | last }}", 4),
        ("{{ v | default('x') }}", "x"),
        ("{{ 0 | default('x') }}", 0),
        ("{{ 0 | default('x', true) }}", "x"),
    ],
)
def test_general_filters(source: str, expected: object) -> None:
    assert render(source, v=None) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'x' | int }}", "int cannot read 'x' as a whole number"),
        ("{{ 4.5 | int }}", "int expects a number or text, got a number"),
        ("{{ [] | first }}", "first expects a non-empty list or text"),
        ("{{ {'a': 1} | lower }}", "lower expects text, got an object"),
        ("{{ 'x' | slug(1, 2, 3) }}", "filter slug failed"),
    ],
)
def test_general_filters_refuse(source: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        render(source)


def test_every_filter_is_documented() -> None:
    assert sorted(FILTERS) == sorted(FILTER_DOCS)
    for name, text in FILTER_DOCS.items():
        assert text.startswith(name), name


def test_now_is_not_available_to_mappings() -> None:
    # Mappings are pure: the time comes from the event, never from the clock.
    with pytest.raises(InvalidInput, match="now is undefined"):
        render("{{ now }}", event={"occurred_at": datetime(2024, 1, 1, tzinfo=UTC)})
