"""Lenient readers for Gumroad values: JSON types, or form strings in which empty means null."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from snapbridge.errors import InvalidInput

# Currencies with no minor unit: an amount in "cents" is a whole number of units ("single_unit" in Gumroad's
# config/currencies.json).
ZERO_DECIMAL_CURRENCIES = frozenset({"jpy", "krw", "clp", "vnd"})

_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


def parse_time(value: object, where: str) -> datetime:
    """An ISO-8601 timestamp as an aware UTC datetime; a value without an offset is read as UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise InvalidInput(f"{where}: {value!r} is not an ISO-8601 timestamp") from exc
    else:
        raise InvalidInput(f"{where}: expected an ISO-8601 timestamp, got {value!r}")
    # Gumroad writes UTC with a trailing Z; a bare value is taken as UTC rather than local time.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past the last moment a datetime holds
        raise InvalidInput(f"{where}: {value!r} is out of the range of dates") from None


def major_to_minor(amount: object, currency: str, where: str) -> int:
    """A decimal amount in major units ("150.00", 8) as an integer of minor units of `currency`."""
    try:
        number = Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise InvalidInput(f"{where}: {amount!r} is not a decimal amount") from exc
    if not number.is_finite():
        raise InvalidInput(f"{where}: {amount!r} is not a decimal amount")
    scaled = number if currency.lower() in ZERO_DECIMAL_CURRENCIES else number * 100
    if scaled != scaled.to_integral_value():
        raise InvalidInput(f"{where}: {amount!r} has more decimals than {currency.upper()} allows")
    return int(scaled)


class Reader:
    """Reads typed values out of one JSON object (or folded form body), naming the path in every error."""

    def __init__(self, data: Mapping[str, object], where: str) -> None:
        self.data = data
        self.where = where

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _value(self, key: str) -> object:
        value = self.data.get(key)
        # Form bodies carry null as an empty value; treat both the same.
        return None if value == "" else value

    def has(self, key: str) -> bool:
        return self._value(key) is not None

    def text(self, key: str) -> str:
        value = self.opt_text(key)
        if value is None:
            raise InvalidInput(f"{self._path(key)} is missing")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._value(key)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        raise InvalidInput(f"{self._path(key)}: expected text, got {type(value).__name__}")

    def raw_text(self, key: str) -> str:
        """Text that may legitimately be empty (a referrer, a card type): missing reads as ""."""
        return self.opt_text(key) or ""

    def integer(self, key: str) -> int:
        value = self.opt_integer(key)
        if value is None:
            raise InvalidInput(f"{self._path(key)} is missing")
        return value

    def opt_integer(self, key: str) -> int | None:
        value = self._value(key)
        if value is None:
            return None
        if isinstance(value, bool):
            raise InvalidInput(f"{self._path(key)}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise InvalidInput(f"{self._path(key)}: expected an integer, got {value!r}")

    def flag(self, key: str) -> bool:
        """A boolean that Gumroad may leave out when false (`test`, `is_recurring_charge`, `refunded`)."""
        value = self.opt_flag(key)
        return bool(value)

    def opt_flag(self, key: str) -> bool | None:
        value = self._value(key)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise InvalidInput(f"{self._path(key)}: expected true or false, got {value!r}")

    def time(self, key: str) -> datetime:
        value = self._value(key)
        if value is None:
            raise InvalidInput(f"{self._path(key)} is missing")
        return parse_time(value, self._path(key))

    def opt_time(self, key: str) -> datetime | None:
        value = self._value(key)
        return None if value is None else parse_time(value, self._path(key))

    def sub(self, key: str) -> Reader | None:
        value = self._value(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise InvalidInput(f"{self._path(key)}: expected an object, got {type(value).__name__}")
        return Reader(value, self._path(key))

    def text_map(self, key: str) -> dict[str, str]:
        """An object of names to values (variants, custom fields, url params), each value as text."""
        sub = self.sub(key)
        if sub is None:
            return {}
        result: dict[str, str] = {}
        for name in sub.data:
            text = sub.opt_text(str(name))
            result[str(name)] = "" if text is None else text
        return result

    def text_list(self, key: str) -> tuple[str, ...]:
        value = self._value(key)
        if value is None:
            return ()
        if isinstance(value, str):
            # A form body sends an empty array as `key[]=`, which folds to [""]; a lone string is one item.
            return (value,)
        if not isinstance(value, list | tuple):
            raise InvalidInput(f"{self._path(key)}: expected a list, got {type(value).__name__}")
        items: list[str] = []
        for index, item in enumerate(value):
            if item is None or item == "":
                continue
            if not isinstance(item, str | int):
                raise InvalidInput(f"{self._path(key)}[{index}]: expected text, got {type(item).__name__}")
            items.append(str(item))
        return tuple(items)

    def opt_text_list(self, key: str) -> tuple[str, ...] | None:
        return None if self._value(key) is None else self.text_list(key)

    def objects(self, key: str) -> list[Reader]:
        value = self._value(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise InvalidInput(f"{self._path(key)}: expected a list, got {type(value).__name__}")
        readers: list[Reader] = []
        for index, item in enumerate(value):
            if not isinstance(item, Mapping):
                kind = type(item).__name__
                raise InvalidInput(f"{self._path(key)}[{index}]: expected an object, got {kind}")
            readers.append(Reader(item, f"{self._path(key)}[{index}]"))
        return readers
