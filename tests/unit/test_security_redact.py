"""Redaction tables: text, URLs, headers and JSON; the logging filter with a planted canary."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snapbridge.security.redact as redact_module
from snapbridge.security import (
    RedactingFilter,
    Secret,
    is_sensitive_name,
    redact_headers,
    redact_json,
    redact_json_text,
    redact_text,
    redact_url,
)

CANARY = "canary-5b1d0e77-do-not-leak"
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /v2/sales?access_token=abc123&page=2 failed", "GET /v2/sales?access_token=****&page=2 failed"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: ****"),
        ("sent with Bearer abc.def-ghi~+/= ok", "sent with Bearer **** ok"),
        ("X-Api-Key: sk_live_123", "X-Api-Key: ****"),
        ("Cookie: a=b; c=d", "Cookie: ****"),
        ("Set-Cookie: session=1; Path=/; HttpOnly", "Set-Cookie: ****"),
        ('{"token": "abc", "name": "ann"}', '{"token": "****", "name": "ann"}'),
        ('{"api_key":"k","apiKey":"k2","password":null}',
         '{"api_key":"****","apiKey":"****","password":null}'),
        ('{"client_secret": "a\\"b", "n": 1}', '{"client_secret": "****", "n": 1}'),
        ('{"pin": 1, "token": 12345}', '{"pin": 1, "token": "****"}'),
        ("{'access_token': 'abc', 'x': 1}", "{'access_token': '****', 'x': 1}"),
        ('body "{\\"refresh_token\\": \\"abc\\"}"', 'body "{\\"refresh_token\\": \\"****\\"}"'),
        (f"jwt {JWT} here", "jwt **** here"),
        ("https://user:pw@host/path", "https://****@host/path"),
        ("password=hunter2&email=a@b.c", "password=****&email=a@b.c"),
        ('secret="quoted value" next', "secret=**** next"),
        ("apikey=1;token=2,auth=3", "apikey=****;token=****,auth=****"),
        ("user[password]=x&user[name]=y", "user[password]=****&user[name]=y"),
        ("idempotency_key=evt_1 next_page_key=abc", "idempotency_key=evt_1 next_page_key=abc"),
        ("email=ann@example.com&price=100", "email=ann@example.com&price=100"),
        ("nothing to see", "nothing to see"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "template",
    ["plain {c} text", "url /hooks/gumroad/{c}?x=1", "encoded {q}", "plus {p}", "twice {c} and {c}"],
)
def test_known_secrets_are_removed_in_any_spelling(template: str) -> None:
    value = CANARY + " /&?"
    text = template.format(c=value, q="canary-5b1d0e77-do-not-leak%20%2F%26%3F",
                           p="canary-5b1d0e77-do-not-leak+%2F%26%3F")
    for known in (Secret(value), value):
        redacted = redact_text(text, [known])
        assert CANARY not in redacted
        assert "****" in redacted


@pytest.mark.parametrize("quoted", [
    "Illegal header value b'Bearer {r}'",  # an HTTP library refusing a pasted token, repr-escaped
    'the body said {{"token": "{j}"}}',  # JSON-escaped
])
def test_known_secrets_are_removed_when_an_error_message_escapes_them(quoted: str) -> None:
    value = "OHOQy4_F3wAD3jvPx\nBbEdgOJ1eqI4djFWmb\t\"GmotDvKk"
    text = quoted.format(r=repr(value)[1:-1], j=json.dumps(value)[1:-1])
    redacted = redact_text(text, [Secret(value)])
    assert "BbEdgOJ1" not in redacted and "GmotDvKk" not in redacted and "OHOQy4" not in redacted, redacted


def test_very_short_known_secrets_are_not_searched() -> None:
    assert redact_text("a cab", [Secret("a")]) == "a cab"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.gumroad.com/v2/sales?access_token=abc&page_key=2",
         "https://api.gumroad.com/v2/sales?access_token=****&page_key=2"),
        ("https://u:p@h.com/a?x=1", "https://h.com/a?x=1"),
        ("https://h.com/a?apikey=1&API_KEY=2&Token=3&ok=4", "https://h.com/a?apikey=****&API_KEY=****&Token=****&ok=4"),
        ("https://h.com/cb#access_token=abc&state=s", "https://h.com/cb#access_token=****&state=s"),
        ("https://h.com/a?access%5Ftoken=abc", "https://h.com/a?access%5Ftoken=****"),
        ("https://h.com/a?token=", "https://h.com/a?token="),
        ("https://h.com/a?idempotency_key=k", "https://h.com/a?idempotency_key=k"),
        (f"https://h.com/a/{JWT}", "https://h.com/a/****"),
        ("http://[::1", "http://[::1"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_url_removes_known_secrets_in_the_path() -> None:
    assert redact_url(f"https://h.com/hooks/gumroad/{CANARY}", [Secret(CANARY)]) == "https://h.com/hooks/gumroad/****"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("Authorization", "Bearer abc", "****"),
        ("authorization", "Basic dXNlcjpwYXNz", "****"),
        ("Proxy-Authorization", "x", "****"),
        ("Cookie", "a=b", "****"),
        ("Set-Cookie", "a=b", "****"),
        ("X-Api-Key", "k", "****"),
        ("X-Auth-Token", "k", "****"),
        ("X-GHL-Signature", "sig", "****"),
        ("Location", "https://h/x?access_token=abc", "https://h/x?access_token=****"),
        ("Content-Type", "application/json", "application/json"),
        ("Idempotency-Key", "evt_1:step_0", "evt_1:step_0"),
        ("X-RateLimit-Remaining", "99", "99"),
    ],
)
def test_redact_headers(name: str, value: str, expected: str) -> None:
    assert redact_headers({name: value}) == {name: expected}


def test_redact_json_recursively() -> None:
    body = {
        "token": "a",
        "user": {"name": "ann", "password": "p", "apiKey": "k", "refresh_token": None},
        "items": [{"authorization": "Bearer x"}, "Bearer abc", ("access_token=abc",)],
        "credentials": {"any": "shape"},
        "count": 3,
        "known": f"has {CANARY}",
        "secret_obj": Secret(CANARY),
    }
    assert redact_json(body, [CANARY]) == {
        "token": "****",
        "user": {"name": "ann", "password": "****", "apiKey": "****", "refresh_token": None},
        "items": [{"authorization": "****"}, "Bearer ****", ["access_token=****"]],
        "credentials": "****",
        "count": 3,
        "known": "has ****",
        "secret_obj": "****",
    }
    assert body["token"] == "a"  # the input is not changed


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [("access_token", True), ("accessToken", True), ("X-Api-Key", True), ("client_secret", True),
     ("password", True), ("key", True), ("license_key", True), ("publicKey", False), ("monkey", False),
     ("author", False), ("idempotency_key", False), ("next_page_key", False), ("email", False)],
)
def test_is_sensitive_name(name: str, sensitive: bool) -> None:
    assert is_sensitive_name(name) is sensitive


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, RedactingFilter]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s %(body)s"))
    redacting = RedactingFilter()
    handler.addFilter(redacting)
    logger = logging.getLogger("test.redact.canary")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield logger, stream, redacting
    finally:
        logger.removeHandler(handler)


def test_the_logging_filter_removes_a_canary_everywhere(
    captured: tuple[logging.Logger, io.StringIO, RedactingFilter],
) -> None:
    logger, stream, redacting = captured
    redacting.register(Secret(CANARY))
    logger.info("calling %s", f"https://h/x?access_token={CANARY}", extra={"body": "-"})
    logger.info("headers %s", {"Authorization": f"Bearer {CANARY}"}, extra={"body": "-"})
    logger.info("plain text with %s inside", CANARY, extra={"body": "-"})
    logger.info("extra field", extra={"body": f'{{"note": "{CANARY}"}}'})
    logger.info(f"built with an f-string {CANARY}", extra={"body": "-"})
    logger.info("bad format %d", CANARY, extra={"body": "-"})
    try:
        raise ValueError(f"failed with {CANARY}")
    except ValueError:
        logger.exception("boom", extra={"body": "-"})
    output = stream.getvalue()
    assert output.count("\nINFO ") + output.startswith("INFO ") >= 6
    assert "ValueError: failed with ****" in output
    assert CANARY not in output


def test_the_logging_filter_without_registration_still_removes_token_shapes(
    captured: tuple[logging.Logger, io.StringIO, RedactingFilter],
) -> None:
    logger, stream, _ = captured
    logger.warning("retrying %s", f"GET /v2/sales?access_token={CANARY}", extra={"body": f"Bearer {CANARY}"})
    assert CANARY not in stream.getvalue()
    assert "access_token=****" in stream.getvalue()


@pytest.mark.parametrize(
    "hostile",
    [("eyJ" + "a" * 50 + ".") * 6000, "a." * 150_000, "a://" * 75_000, "a:" * 150_000, "'a': '" * 50_000,
     '"token": "a\\' * 30_000, "token==" * 50_000, "[" * 300_000],
    ids=["jwt-ish", "dotted", "schemes", "colons", "open-quotes", "escapes", "equals", "brackets"],
)
def test_redaction_stays_linear_on_hostile_input(hostile: str) -> None:
    started = time.perf_counter()
    redact_text(hostile)
    # A quadratic pattern takes tens of seconds on these; a linear one well under a second.
    assert time.perf_counter() - started < 2.0


def test_json_text_redacts_keys_values_and_patterns_in_one_pass() -> None:
    secret = "sk_live_" + "q" * 24
    value = {"api_key": "plain-but-keyed", "note": f"sent with {secret}", "nested": [{"auth": "Bearer abc.def"},
             {"url": "https://user:pw@host/x?access_token=zzz"}], "password": None, "count": 3}
    text = redact_json_text(value, [secret])
    assert json.loads(text)["count"] == 3
    assert json.loads(text)["password"] is None  # "no password was sent" stays visible
    for leaked in ("plain-but-keyed", secret, "abc.def", "pw@", "zzz"):
        assert leaked not in text, leaked


def test_json_text_kept_prefix_is_the_same_as_redacting_everything() -> None:
    secret = "tok_" + "s" * 40
    events = [{"event_id": f"e{i}", "note": f"Bearer {secret}" if i % 7 == 0 else "x", "api_key": "k" * 20}
              for i in range(400)]
    whole = redact_json_text({"events": events}, [secret])
    kept = redact_json_text({"events": events}, [secret], keep=500)
    assert len(kept) < len(whole)
    assert kept[:500] == whole[:500]
    assert secret not in kept and "k" * 20 not in kept


# The name gate: redact_text skips the name-based patterns when no name in the text can be sensitive. Texts
# built from credential-ish and harmless pieces must redact exactly as with the patterns always run.
_PIECES = ["api_key", "Api-Key", "token", "TOKEN", "key", "monkey", "pass", "passenger", "sid", "inside",
           "x", "value", "abc123", ":", ": ", "=", "&", "\"", "'", "\\\"", "{", "}", ",", " ", "\n", "-", "_",
           "Bearer", "auth", "author", "session_id", "password", "İ", "é"]


@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
@settings(max_examples=400, deadline=None)
def test_the_name_gate_changes_no_redaction(text: str) -> None:
    gated = redact_text(text)
    with _gate_open():
        assert redact_text(text) == gated


# An escape inside a key ("secr\net" is written secr\\net) must not hide it from the gate.
_JSON_KEYS = st.sampled_from(["api_key", "api\nkey", "secr\net", "tok\ten", "api\u0001key", "token", "note",
                              "event_id", "Key", "id", "author", "pass", "x"]) | st.text(max_size=6)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.sampled_from(_PIECES)
    | st.text(max_size=8) | st.just(Secret("a-secret-value")),
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=2).map(tuple)
    | st.dictionaries(_JSON_KEYS, inner, max_size=3),
    max_leaves=10,
)


@given(_JSON, st.sampled_from([None, 5, 40]))
@settings(max_examples=400, deadline=None)
def test_json_excerpts_redact_alike_with_and_without_the_gate(value: object, keep: int | None) -> None:
    gated = redact_json_text(value, ["a-secret-value"], keep=keep)
    with _gate_open():
        assert redact_json_text(value, ["a-secret-value"], keep=keep) == gated
    assert "a-secret-value" not in gated


@contextlib.contextmanager
def _gate_open() -> Iterator[None]:
    original = redact_module._may_name_sensitive
    redact_module._may_name_sensitive = lambda lower: True
    try:
        yield
    finally:
        redact_module._may_name_sensitive = original


def test_the_name_gate_lets_a_sensitive_name_through_to_the_patterns() -> None:
    assert redact_text('note: "api_key": "abc123"') == 'note: "api_key": "****"'
    assert redact_text("plain words: x=1, y=2") == "plain words: x=1, y=2"
