"""Gumroad-shaped identifiers, made deterministic from the seed, and the opaque page_key cursor."""

from __future__ import annotations

import base64
import hashlib
import random
import re
from datetime import UTC, datetime

__all__ = [
    "IdFactory",
    "InvalidPageKey",
    "decode_page_key",
    "encode_page_key",
    "looks_like_external_id",
]

_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9_-]{22}==$")
_PAGE_KEY = re.compile(r"^(\d{14})(\d{6})-(\d+)$")


def looks_like_external_id(value: str) -> bool:
    """True when `value` has the shape of an external id (what ObfuscateIds.decrypt would accept)."""
    return bool(_EXTERNAL_ID.match(value))


class InvalidPageKey(ValueError):
    """The page_key cannot be decoded."""


def encode_page_key(created_at: datetime, numeric_id: int) -> str:
    """`created_at` as YYYYMMDDHHMMSS plus 6 microsecond digits, `-`, the record's numeric id (§3)."""
    return created_at.astimezone(UTC).strftime("%Y%m%d%H%M%S%f") + "-" + str(numeric_id)


def decode_page_key(key: str) -> tuple[datetime, int]:
    match = _PAGE_KEY.match(key)
    if match is None:
        raise InvalidPageKey(key)
    stamp, micros, numeric = match.groups()
    try:
        moment = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(microsecond=int(micros), tzinfo=UTC)
    except ValueError as exc:
        raise InvalidPageKey(key) from exc
    number = int(numeric)
    if number == 0:  # the real decoder refuses 0 ("obfuscated_id.to_i == 0")
        raise InvalidPageKey(key)
    return moment, number


class IdFactory:
    """Mints every id of one sandbox; the same seed always yields the same ids in the same order."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._counter = 0
        # A private stream, so adding seeded objects elsewhere does not shift these numbers.
        self._rng = random.Random(f"gumroad-ids:{seed}")
        self._numbers: set[int] = set()
        self._user_ids: set[str] = set()
        self._serials: set[str] = set()

    def external_id(self) -> str:
        """24 characters of URL-safe base64 ending in `==`, like an AES-encrypted 16-byte block."""
        self._counter += 1
        digest = hashlib.sha256(f"gumroad-sandbox:{self._seed}:{self._counter}".encode()).digest()
        return base64.urlsafe_b64encode(digest[:16]).decode("ascii")

    def numeric_id(self) -> int:
        """An order number (sale `order_id`, ping `order_number`): a unique integer of 9 or 10 digits."""
        while True:
            number = self._rng.randint(100_000_000, 4_294_967_295)
            if number not in self._numbers:
                self._numbers.add(number)
                return number

    def user_id(self) -> str:
        """A user's numeric id as a 13-digit string, e.g. "5530311507811"."""
        while True:
            value = str(self._rng.randint(10**12, 10**13 - 1))
            if value not in self._user_ids:
                self._user_ids.add(value)
                return value

    def license_key(self) -> str:
        """Gumroad's license serial: four groups of 8 upper-case hex digits."""
        while True:
            serial = "-".join(f"{self._rng.getrandbits(32):08X}" for _ in range(4))
            if serial not in self._serials:
                self._serials.add(serial)
                return serial

    def permalink(self, length: int = 5) -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        return "".join(self._rng.choice(alphabet) for _ in range(length))

    def token(self, label: str) -> str:
        """A 43-character URL-safe token like Doorkeeper's, derived from the seed and a label."""
        digest = hashlib.sha256(f"gumroad-sandbox-token:{self._seed}:{label}".encode()).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
