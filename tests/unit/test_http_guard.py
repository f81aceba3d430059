"""The base-URL guard: every refused form, every allow-list form, names resolving inward; no real DNS."""

from __future__ import annotations

import re
import socket

import pytest

from snapbridge.errors import InvalidInput, UnsafeURL
from snapbridge.http import check_base_url

PUBLIC = "93.184.216.34"
NAMES = {
    "api.gumroad.com": [PUBLIC],
    "internal.example": ["10.1.2.3"],
    "loop.example": ["127.0.0.1"],
    "meta.example": ["169.254.169.254"],
    "v6loop.example": ["::1"],
    "v6mapped.example": ["::ffff:10.0.0.1"],
    "mixed.example": [PUBLIC, "192.168.0.10"],
    "dual.example": [PUBLIC, "2606:4700::1111"],
}


def resolve(host: str) -> list[str]:
    if host not in NAMES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return NAMES[host]


def no_dns(host: str) -> list[str]:
    raise AssertionError(f"a literal address must not be resolved ({host})")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.8.9.10:8080/x", "loopback"),
        ("http://localhost/", "loopback"),
        ("http://LOCALHOST./", "loopback"),
        ("http://api.localhost/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://169.254.1.1/", "link-local"),
        ("http://metadata.google.internal/", "cloud metadata"),
        ("http://168.63.129.16/", "cloud metadata"),
        ("http://100.100.100.200/", "cloud metadata"),
        ("http://10.0.0.1/", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://100.64.0.1/", "non-public"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "private"),
        ("http://255.255.255.255/", "private"),
        ("http://[::1]/", "loopback"),
        ("http://[::]/", "unspecified"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fe80::1%25eth0]/", "link-local"),
        ("http://[fc00::1]/", "private"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://[fec0::1]/", "site-local"),
        ("http://[ff02::1]/", "multicast"),
        ("http://[::ffff:127.0.0.1]/", "loopback (IPv4 inside IPv6)"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata (IPv4 inside IPv6)"),
        ("http://[::ffff:7f00:1]/", "loopback (IPv4 inside IPv6)"),
        ("http://[2002:7f00:1::]/", "loopback (IPv4 inside IPv6)"),
        ("http://[64:ff9b::a9fe:a9fe]/", "cloud metadata (IPv4 inside IPv6)"),
        ("http://[::127.0.0.1]/", "loopback (IPv4 inside IPv6)"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://0X7F.0.0.1/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("http://017700000001/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://127.0.1/", "loopback"),
        ("http://127.0.0.1./", "loopback"),
        ("http://0/", "unspecified"),
        ("http://2852039166/", "cloud metadata"),
        ("http://0xa9.0xfe.0xa9.0xfe/", "cloud metadata"),
    ],
)
def test_internal_addresses_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURL, match=re.escape(f"is a {reason} address")) as caught:
        check_base_url(url, resolve=no_dns)
    assert "SNAPBRIDGE_ALLOWED_HOSTS" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "address", "reason"),
    [
        ("https://internal.example/", "10.1.2.3", "private"),
        ("https://loop.example/", "127.0.0.1", "loopback"),
        ("https://meta.example/", "169.254.169.254", "cloud metadata"),
        ("https://v6loop.example/", "::1", "loopback"),
        ("https://v6mapped.example/", "::ffff:a00:1", "private (IPv4 inside IPv6)"),
        ("https://mixed.example/", "192.168.0.10", "private"),
    ],
)
def test_names_resolving_to_internal_addresses_are_refused(url: str, address: str, reason: str) -> None:
    with pytest.raises(UnsafeURL, match=re.escape(f"resolves to {address}, a {reason} address")) as caught:
        check_base_url(url, resolve=resolve)
    host = url.split("/")[2]
    assert f"add {host} or {address} to SNAPBRIDGE_ALLOWED_HOSTS" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://api.gumroad.com/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/", "only http and https"),
        ("api.gumroad.com/v2", "only http and https"),
        ("http:///v2", "has no host"),
        ("http://", "has no host"),
        ("http://1.2.3.4.5/", "neither a valid address nor a host name"),
        ("http://999.1.1.1/", "not a valid URL"),
        ("http://0177.0.0.1/", "not a valid URL"),  # httpx refuses dotted quads with leading zeros itself
        ("http://08.1.1.1/", "not a valid URL"),
        ("http://1.2.3.0x1ff/", "neither a valid address nor a host name"),
        ("http://08/", "neither a valid address nor a host name"),
        ("http://exa mple.com/", "neither a valid address nor a host name"),
        ("http://-dash.example/", "neither a valid address nor a host name"),
        ("http://[::1/", "not a valid URL"),
        ("http://example.com:99999/", "the port must be 1-65535"),
        ("http://example.com:0/", "the port must be 1-65535"),
    ],
)
def test_malformed_and_non_http_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(UnsafeURL, match=message):
        check_base_url(url, resolve=resolve)


@pytest.mark.parametrize(
    "url",
    ["https://api.gumroad.com", "https://api.gumroad.com/v2/", "https://dual.example:8443/x", f"http://{PUBLIC}/",
     "http://[2606:4700::1111]/", "https://unknown.example/"],
)
def test_public_urls_pass(url: str) -> None:
    check_base_url(url, resolve=resolve)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://localhost:8080/", ["localhost"]),
        ("http://LocalHost:8080/", ["localhost."]),
        ("http://127.0.0.1:8080/", ["127.0.0.1"]),
        ("http://2130706433/", ["127.0.0.1"]),
        ("http://127.0.0.1:8080/", ["127.0.0.0/8"]),
        ("http://[::ffff:127.0.0.1]/", ["127.0.0.1"]),
        ("http://[::1]:9000/", ["::1"]),
        ("http://[::1]:9000/", ["[::1]"]),
        ("http://[fd12::5]/", ["fd00::/8"]),
        ("http://10.1.2.3/", [" 10.0.0.0/8 ", ""]),
        ("https://internal.example/", ["10.0.0.0/8"]),
        ("https://internal.example/", ["10.1.2.3"]),
        ("https://internal.example/", ["internal.example"]),
        ("https://mixed.example/", ["192.168.0.0/16"]),
        ("http://169.254.169.254/", ["169.254.169.254"]),
    ],
)
def test_allow_list_entries_let_a_host_through(url: str, allowed: list[str]) -> None:
    check_base_url(url, allowed, resolve=resolve)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://192.168.1.1/", ["10.0.0.0/8"]),
        ("http://127.0.0.2/", ["127.0.0.1"]),
        ("http://localhost/", ["127.0.0.1"]),
        ("https://loop.example/", ["localhost"]),
        ("https://mixed.example/", [PUBLIC]),
        ("http://169.254.169.254/", ["127.0.0.0/8"]),
        ("http://[::1]/", ["127.0.0.1"]),
    ],
)
def test_allow_list_entries_let_only_their_own_host_through(url: str, allowed: list[str]) -> None:
    with pytest.raises(UnsafeURL):
        check_base_url(url, allowed, resolve=resolve)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "10.0.0.0/abc", "not/a/range"])
def test_a_bad_cidr_in_the_allow_list_is_invalid_input(entry: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid CIDR range"):
        check_base_url("https://api.gumroad.com/", [entry], resolve=resolve)


def test_the_refusal_names_the_host_and_hides_tokens() -> None:
    with pytest.raises(UnsafeURL) as caught:
        check_base_url("http://user:pw-canary@127.0.0.1:9/x?access_token=tok-canary", resolve=no_dns)
    message = str(caught.value)
    assert "host 127.0.0.1 is a loopback address" in message
    assert "add 127.0.0.1 (or its address, or a CIDR range containing it) to SNAPBRIDGE_ALLOWED_HOSTS" in (
        message
    )
    assert "canary" not in message
