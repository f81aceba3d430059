"""The filters of the mapping language: plain functions over JSON-like values, documented in FILTER_DOCS."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from jinja2 import Undefined

from snapbridge.errors import InvalidInput
from snapbridge.workflows.countries import find_country

__all__ = ["FILTERS", "FILTER_DOCS", "minor_unit_digits"]

# ISO 4217 currencies whose minor unit is not the cent. Gumroad's own zero-decimal set (jpy, krw, clp, vnd)
# is a subset; workflows may not import the connectors, so the table lives here too.
_ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "isk", "jpy", "kmf", "krw", "pyg", "rwf", "ugx", "uyi", "vnd", "vuv", "xaf",
     "xof", "xpf"}
)
_THREE_DECIMAL = frozenset({"bhd", "iqd", "jod", "kwd", "lyd", "omr", "tnd"})


def minor_unit_digits(currency: str) -> int:
    """How many decimal digits the minor unit of an ISO 4217 currency has (2 unless listed otherwise)."""
    code = currency.strip().lower()
    if code in _ZERO_DECIMAL:
        return 0
    return 3 if code in _THREE_DECIMAL else 2


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, Sequence):
        return "a list"
    return f"a {type(value).__name__}"


def _text(value: object, filter_name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput(f"{filter_name} expects text, got {_kind(value)}")


def default(value: object, fallback: object = "", boolean: bool = False) -> object:
    """The fallback when the value is missing or null (with boolean=true also when empty, false or 0)."""
    # Unlike jinja's own default, null counts as missing: optional event fields arrive as null.
    if isinstance(value, Undefined) or value is None or (boolean and not value):
        return fallback
    return value


def lower(value: object) -> str | None:
    return None if value is None else _text(value, "lower").lower()


def upper(value: object) -> str | None:
    return None if value is None else _text(value, "upper").upper()


def title(value: object) -> str | None:
    # str.title() capitalises after apostrophes ("O'neil"); capitalise words split on whitespace only.
    if value is None:
        return None
    return " ".join(word[:1].upper() + word[1:].lower() for word in _text(value, "title").split(" "))


def trim(value: object) -> str | None:
    return None if value is None else _text(value, "trim").strip()


def length(value: object) -> int:
    if isinstance(value, str | Mapping | Sequence):
        return len(value)
    raise InvalidInput(f"length expects text, a list or an object, got {_kind(value)}")


def to_int(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError as exc:
            raise InvalidInput(f"int cannot read {value[:40]!r} as a whole number") from exc
    raise InvalidInput(f"int expects a number or text, got {_kind(value)}")


def to_float(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError as exc:
            raise InvalidInput(f"float cannot read {value[:40]!r} as a number") from exc
    raise InvalidInput(f"float expects a number or text, got {_kind(value)}")


def first(value: object) -> object:
    if isinstance(value, str | Sequence) and len(value) > 0:
        return value[0]
    raise InvalidInput(f"first expects a non-empty list or text, got {_kind(value)}")


def last(value: object) -> object:
    if isinstance(value, str | Sequence) and len(value) > 0:
        return value[-1]
    raise InvalidInput(f"last expects a non-empty list or text, got {_kind(value)}")


def cents_to_money(amount: object, currency: object = "usd") -> str | None:
    """Minor units ("cents") of `currency` as a decimal string: 1234 usd → "12.34", 1234 jpy → "1234"."""
    if amount is None:
        return None
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        raise InvalidInput(f"cents_to_money expects a whole number of minor units, got {_kind(amount)}")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency.strip()):
        raise InvalidInput(f"cents_to_money expects a 3-letter currency code, got {currency!r}")
    try:
        number = Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise InvalidInput(f"cents_to_money cannot read {str(amount)[:40]!r} as a number") from exc
    if not number.is_finite() or number != number.to_integral_value():
        raise InvalidInput(f"cents_to_money expects a whole number of minor units, got {str(amount)[:40]!r}")
    digits = minor_unit_digits(currency)
    return f"{number.scaleb(-digits):.{digits}f}"


def iso8601(value: object) -> str | None:
    """A datetime, date, ISO text or Unix seconds as ISO 8601 in UTC ("2024-05-01T12:00:00Z")."""
    if value is None:
        return None
    moment: datetime
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            moment = datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise InvalidInput(f"iso8601 cannot read {value!r} as Unix seconds") from exc
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise InvalidInput(f"iso8601 cannot read {value[:40]!r} as an ISO 8601 time") from exc
    else:
        raise InvalidInput(f"iso8601 expects a time, got {_kind(value)}")
    # A time without an offset is taken as UTC, like Gumroad's own timestamps.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def timezone_for_country(value: object, fallback: str = "UTC") -> str:
    """The primary IANA zone of a country given by ISO code or English name; `fallback` when unknown."""
    if value is None:
        return fallback
    country = find_country(_text(value, "timezone_for_country"))
    return country.timezone if country else fallback


def region_for_country(value: object, fallback: str | None = None) -> str | None:
    """NA, EU, APAC, LATAM or MEA for a country given by ISO code or English name; `fallback` when unknown."""
    if value is None:
        return fallback
    country = find_country(_text(value, "region_for_country"))
    return country.region.value if country else fallback


def slug(value: object, max_length: int = 80) -> str | None:
    """Lower-case ASCII words joined by '-': "Café Olé Pro!" → "cafe-ole-pro"."""
    if value is None:
        return None
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise InvalidInput(f"slug max_length must be a positive whole number, got {max_length!r}")
    ascii_text = unicodedata.normalize("NFKD", _text(value, "slug")).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return words[:max_length].rstrip("-")


def tag_list(value: object) -> list[str]:
    """Comma-separated text or a list as trimmed, lower-case, de-duplicated tags in first-seen order."""
    if value is None:
        return []
    if isinstance(value, str):
        items: list[object] = list(value.split(","))
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        raise InvalidInput(f"tag_list expects text or a list, got {_kind(value)}")
    tags: list[str] = []
    seen: set[str] = set()
    for item in items:
        if item is None:
            continue
        tag = " ".join(_text(item, "tag_list").split()).lower()
        if tag and tag not in seen:
            seen.add(tag)
            tags.append(tag)
    return tags


FILTERS: Mapping[str, Callable[..., object]] = {
    "cents_to_money": cents_to_money,
    "default": default,
    "first": first,
    "float": to_float,
    "int": to_int,
    "iso8601": iso8601,
    "last": last,
    "length": length,
    "lower": lower,
    "region_for_country": region_for_country,
    "slug": slug,
    "tag_list": tag_list,
    "timezone_for_country": timezone_for_country,
    "title": title,
    "trim": trim,
    "upper": upper,
}

FILTER_DOCS: Mapping[str, str] = {
    "cents_to_money": "cents_to_money(currency='usd'): minor units as a decimal string; "
    "1234|cents_to_money('usd') → '12.34', 1234|cents_to_money('jpy') → '1234', "
    "1234|cents_to_money('kwd') → '1.234'. Gumroad's `price` is always USD cents whatever the product "
    "currency.",
    "default": "default(fallback='', boolean=false): the fallback when the value is missing or null (with "
    "boolean=true also when empty, false or 0).",
    "first": "first: the first item of a list or character of text.",
    "float": "float: a number from a number or numeric text.",
    "int": "int: a whole number from a number or numeric text.",
    "iso8601": "iso8601: a datetime, date, ISO text or Unix seconds as ISO 8601 UTC, '2024-05-01T12:00:00Z'; "
    "a time without an offset is taken as UTC.",
    "last": "last: the last item of a list or character of text.",
    "length": "length: the number of characters, items or keys.",
    "lower": "lower: lower-case text (null stays null).",
    "region_for_country": "region_for_country(fallback=null): NA, EU, APAC, LATAM or MEA for an ISO "
    "alpha-2 code or English country name ('United States' → 'NA').",
    "slug": "slug(max_length=80): lower-case ASCII words joined by '-' ('Café Olé Pro!' → 'cafe-ole-pro').",
    "tag_list": "tag_list: comma-separated text or a list → trimmed, lower-case, unique tags in first-seen "
    "order.",
    "timezone_for_country": "timezone_for_country(fallback='UTC'): the primary IANA zone of a country by ISO "
    "alpha-2 code or English name ('United States' → 'America/New_York', 'JP' → 'Asia/Tokyo').",
    "title": "title: each space-separated word capitalised (null stays null).",
    "trim": "trim: text without surrounding whitespace (null stays null).",
    "upper": "upper: upper-case text (null stays null).",
}
