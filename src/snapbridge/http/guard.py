"""The base-URL guard: refuses a URL whose host is, spells or resolves to an internal address.

Refused: loopback, link-local (and so 169.254.169.254), cloud metadata addresses, private and shared ranges,
unspecified, multicast, reserved, their IPv6 forms (including IPv4 embedded in IPv6), numeric spellings
that `inet_aton` accepts (2130706433, 0x7f.1, 017700000001) and names that resolve to any of these.
An entry of the allow-list (SNAPBRIDGE_ALLOWED_HOSTS) lets one through: a host name, an address or a CIDR
range (the sandbox on loopback is allow-listed this way in the demo and the tests).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx

from snapbridge.errors import InvalidInput, UnsafeURL
from snapbridge.security import redact_url

__all__ = [
    "AllowList",
    "Resolver",
    "check_base_url",
    "check_host",
    "default_resolve",
    "literal_address",
    "refusal_reason",
    "url_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[str]]

ALLOW_SETTING = "SNAPBRIDGE_ALLOWED_HOSTS"

# Metadata services that are not all inside link-local: AWS (v4, ECS, v6), Azure wire server, Alibaba, Oracle.
_METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "168.63.129.16", "100.100.100.200", "192.0.0.192",
))
_METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_HOST_NAME = re.compile(r"^[a-z0-9_](?:[a-z0-9_\-.]*[a-z0-9_])?$")


@dataclass(frozen=True)
class AllowList:
    """Parsed SNAPBRIDGE_ALLOWED_HOSTS: names (exact, case-insensitive) and address ranges."""

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().strip("[]").lower().rstrip(".")
            if not entry:
                continue
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError as exc:
                    raise InvalidInput(f"{ALLOW_SETTING}: {raw!r} is not a valid CIDR range") from exc
                continue
            address = literal_address(entry)
            if address is not None:
                networks.append(ipaddress.ip_network(address))
            else:
                names.add(entry)
        return cls(frozenset(names), tuple(networks))

    def permits_name(self, host: str) -> bool:
        return _normal(host) in self.names

    def permits(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded)
        return any(candidate in network for candidate in candidates for network in self.networks)


def _normal(host: str) -> str:
    return host.strip("[]").lower().rstrip(".")


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address C's inet_aton reads in `host` (1-4 parts, decimal, 0-octal or 0x-hex), or None."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        if part[:2] == "0x":
            digits, base = part[2:] or "0", 16
        elif len(part) > 1 and part.startswith("0"):
            digits, base = part[1:], 8
        else:
            digits, base = part, 10
        try:
            if not digits.isascii() or not digits.isalnum():
                return None
            values.append(int(digits, base))
        except ValueError:
            return None
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (5 - len(values)):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (24 - 8 * index)
    return ipaddress.IPv4Address(number)


def literal_address(host: str) -> IPAddress | None:
    """The address a host spells literally (any IPv4 spelling, or IPv6 with or without brackets), or None."""
    host = _normal(host)
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    return _inet_aton(host) if host else None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if 1 < int(address) < 2**32:  # deprecated IPv4-compatible form ::a.b.c.d
        return ipaddress.IPv4Address(int(address))
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why the guard refuses this address ("loopback", "private", …), or None when it is public."""
    if address in _METADATA_ADDRESSES:
        return "cloud metadata"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        inner = refusal_reason(embedded)
        if inner is not None:
            return f"{inner} (IPv4 inside IPv6)"
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-public", not address.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


def default_resolve(host: str) -> list[str]:
    """Every address the system resolver gives for `host`, in its order, without duplicates."""
    found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def _refuse(url: str, host: str, address: IPAddress | None, reason: str) -> UnsafeURL:
    where = f"host {host} resolves to {address}, a" if address is not None else f"host {host} is a"
    also = f" or {address}" if address is not None else " (or its address, or a CIDR range containing it)"
    return UnsafeURL(
        f"refused {redact_url(url)}: {where} {reason} address; if this is intended, add {host}{also} "
        f"to {ALLOW_SETTING}"
    )


def check_host(host: str, allow: AllowList, *, url: str, resolve: Resolver | None) -> list[IPAddress] | None:
    """Refuse `host` unless it is allow-listed or public; with a resolver, also every address it resolves to.

    Returns the resolved addresses (so a caller can connect to exactly what was checked), or None when the
    host was allowed by name, is a literal address, or no resolver was given. A name that does not resolve
    is not refused here: connecting to it fails anyway, as a network error.
    """
    name = _normal(host)
    if allow.permits_name(name):
        return None
    literal = literal_address(name)
    if literal is not None:
        reason = refusal_reason(literal)
        if reason is not None and not allow.permits(literal):
            raise _refuse(url, host, None, reason)
        return None
    if ":" in name or _NUMERIC_LABEL.match(name.rpartition(".")[2]) or not _HOST_NAME.match(name):
        # A name ending in a number is read as an address by some resolvers; refuse what we cannot read.
        raise UnsafeURL(f"refused {redact_url(url)}: host {host} is neither a valid address nor a host name")
    if name == "localhost" or name.endswith(".localhost") or name in _METADATA_NAMES:
        reason = "cloud metadata" if name in _METADATA_NAMES else "loopback"
        raise _refuse(url, host, None, reason)
    if resolve is None:
        return None
    try:
        resolved = resolve(name)
    except (OSError, UnicodeError):  # UnicodeError: the IDNA codec refuses a label over 63 characters
        return None
    addresses: list[IPAddress] = []
    for text in resolved:
        try:
            address = ipaddress.ip_address(text)
        except ValueError as exc:
            raise UnsafeURL(f"refused {redact_url(url)}: {host} resolved to an unreadable address") from exc
        reason = refusal_reason(address)
        if reason is not None and not allow.permits(address):
            raise _refuse(url, host, address, reason)
        addresses.append(address)
    return addresses


def url_host(url: str | httpx.URL) -> str:
    """The host of an http(s) URL as httpx will connect to it (IDNA-encoded); UnsafeURL for anything else."""
    shown = redact_url(str(url))
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise UnsafeURL(f"refused {shown}: not a valid URL") from exc
    if parsed.scheme not in ("http", "https"):
        raise UnsafeURL(f"refused {shown}: only http and https URLs are allowed")
    host = parsed.raw_host.decode("ascii", errors="replace")
    if not host:
        raise UnsafeURL(f"refused {shown}: the URL has no host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise UnsafeURL(f"refused {shown}: the port must be 1-65535")
    return host


def check_base_url(url: str, allowed_hosts: Sequence[str] = (), *,
                   resolve: Resolver | None = None) -> None:
    """Raise UnsafeURL unless `url` is http(s) with a public or allow-listed host (names are resolved)."""
    host = url_host(url)
    check_host(host, AllowList.parse(allowed_hosts), url=url, resolve=resolve or default_resolve)
