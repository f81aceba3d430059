"""What an error repeats of an API's answer: redacted with the known secrets before it is cut (a key across the
cut leaves no half behind), and cut to a bounded length (the API's message at 300 characters, an excerpt at
500), at the limit and one past it. Snapshots' decoder directly; every app through `run_action`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from snapbridge.catalog import get_action, run_action
from snapbridge.connectors.snapshots import SnapshotsClient, decode_error, unwrap
from snapbridge.connectors.snapshots.decode import EXCERPT_CHARS, MESSAGE_CHARS
from snapbridge.errors import DeliveryError, Permanent, Retryable
from snapbridge.security import Secret

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
KEY = "pit-0123abcd-4567-89ef-0123-456789abcdef"
LONG_KEY = "sk_" + "q1w2e3r4t5" * 20  # 203 characters: redacting it shrinks the text a lot


def parts_of(key: str, text: str) -> list[str]:
    """The pieces of `key` (6 characters or more) that `text` holds."""
    return [key[i:i + 6] for i in range(len(key) - 5) if key[i:i + 6] in text]


def raw(body: object) -> bytes:
    return json.dumps(body).encode()


def said(error: DeliveryError) -> str:
    """The API's words in the error: what follows the first ": " of its message."""
    return error.message.split(": ", 1)[1]


# ---- the message -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "shown"), [(MESSAGE_CHARS, "m" * MESSAGE_CHARS),
                                                (MESSAGE_CHARS + 1, "m" * MESSAGE_CHARS + "…"),
                                                (1_000_000, "m" * MESSAGE_CHARS + "…")])
def test_the_api_message_is_cut_at_the_limit(length: int, shown: str) -> None:
    error = decode_error(422, raw({"message": "m" * length}), {}, operation="o", scope=None, now=NOW)
    assert said(error) == shown


def test_a_list_of_messages_is_cut_too() -> None:
    body = raw({"message": [f"field{i} is wrong" for i in range(60_000)]})
    error = decode_error(422, body, {}, operation="o", scope=None, now=NOW)
    assert said(error).startswith("field0 is wrong; field1 is wrong") and len(said(error)) == MESSAGE_CHARS + 1


def test_the_whole_message_still_decides_the_error() -> None:
    body = raw({"message": "x" * 1000 + " The token is not authorized for this scope."})
    error = decode_error(401, body, {}, operation="o", scope="events.write", now=NOW)
    assert type(error).__name__ == "ScopeMissing"


@pytest.mark.parametrize("before", [MESSAGE_CHARS - 20, MESSAGE_CHARS - 1, MESSAGE_CHARS, 10_000])
def test_a_key_across_the_message_cut_leaves_no_part(before: int) -> None:
    body = raw({"message": "m" * before + KEY + " and more"})
    error = decode_error(500, body, {}, operation="o", scope=None, now=NOW, secrets=[Secret(KEY)])
    assert parts_of(KEY, str(error)) == [] and parts_of(KEY, error.excerpt) == []


def test_a_long_key_repeated_past_what_is_read_leaves_no_part() -> None:
    # Redacted, the read part shrinks below the shown length: a key cut by the end of what is read is dropped.
    body = raw({"message": (LONG_KEY + " ") * 500})
    error = decode_error(500, body, {}, operation="o", scope=None, now=NOW, secrets=[LONG_KEY])
    assert parts_of(LONG_KEY, str(error)) == [] and parts_of(LONG_KEY, error.excerpt) == []
    assert error.message.endswith("…") and error.excerpt.endswith("…")


# ---- the excerpt -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "cut"), [(EXCERPT_CHARS, False), (EXCERPT_CHARS + 1, True),
                                             (10_000_000, True)])
def test_the_excerpt_is_cut_at_the_limit(length: int, cut: bool) -> None:
    error = decode_error(502, b"e" * length, {}, operation="o", scope=None, now=NOW)
    assert error.excerpt == "e" * min(length, EXCERPT_CHARS) + ("…" if cut else "")


@pytest.mark.parametrize("before", [EXCERPT_CHARS - 20, EXCERPT_CHARS - 1, 20_000, 40_000])
def test_a_key_across_the_excerpt_cut_leaves_no_part(before: int) -> None:
    content = b"<p>" + b"x" * before + KEY.encode() + b"</p>" + b"x" * 50_000
    error = decode_error(502, content, {}, operation="o", scope=None, now=NOW, secrets=[Secret(KEY)])
    assert parts_of(KEY, error.excerpt) == [] and len(error.excerpt) <= EXCERPT_CHARS + 1


@pytest.mark.parametrize("content", [
    b"<html>client " + KEY.encode() + b"</html>",  # not JSON
    b'["' + KEY.encode() + b'"]',  # not an object
    b'{"note": "' + b"x" * 480 + KEY.encode() + b'"}',  # no "customer", the key across the cut
])
def test_a_success_body_that_cannot_be_used_is_redacted(content: bytes) -> None:
    with pytest.raises(Permanent) as caught:
        unwrap(content, "customer", operation="o", status=200, secrets=[Secret(KEY)])
    assert parts_of(KEY, caught.value.excerpt) == [] and "****" in caught.value.excerpt


# ---- through run_action: every app ---------------------------------------------------------------------------


async def call(action: str, params: dict[str, object], answer: Callable[[str], httpx.Response]) -> DeliveryError:
    """Run the action against a transport that answers `answer(the request's key)`; the error it raises."""
    def handler(request: httpx.Request) -> httpx.Response:
        return answer(request.headers["authorization"].partition(" ")[2])

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://api.test") as http:
        with pytest.raises(DeliveryError) as caught:
            await run_action(get_action(action), params, http=http, credential=Secret(KEY), idempotency_key="k1")
    return caught.value


CALLS: dict[str, tuple[str, dict[str, object]]] = {
    "snapshots": ("snapshots.customers.upsert", {"customer_id": "c1", "plan": "pro"}),
    "highlevel": ("highlevel.contacts.upsert", {"locationId": "l1", "email": "a@example.com"}),
    "gumroad": ("gumroad.sales.list", {}),
}


@pytest.mark.parametrize("app", sorted(CALLS))
@pytest.mark.parametrize(("status", "body"), [
    (200, lambda key: f"<html>client {key}</html>"),
    (200, lambda key: "<p>" + "x" * 490 + key + "x" * 9000),
    (200, lambda key: json.dumps({"client": key, "success": False, "message": "x" * 290 + key})),
    (401, lambda key: json.dumps({"message": f"bad token {key}", "error": key})),
    (500, lambda key: "<p>" + "x" * 490 + key + "x" * 9000),
])
async def test_no_error_leaves_an_action_call_with_the_key(app: str, status: int,
                                                           body: Callable[[str], str]) -> None:
    action, params = CALLS[app]
    error = await call(action, params, lambda key: httpx.Response(status, text=body(key)))
    assert parts_of(KEY, str(error)) == [] and parts_of(KEY, error.excerpt) == []
    assert KEY not in repr(error.args)


@pytest.mark.parametrize("app", sorted(CALLS))
async def test_no_error_leaves_an_action_call_unbounded(app: str) -> None:
    action, params = CALLS[app]
    big = json.dumps({"message": "m" * 1_000_000, "success": False})
    error = await call(action, params, lambda key: httpx.Response(503, text=big))
    assert isinstance(error, Retryable)
    assert len(error.message) <= 1001 and len(str(error)) < 1100 and len(error.excerpt) <= EXCERPT_CHARS + 1


async def test_the_typed_client_removes_the_key_an_unusable_2xx_answer_echoes() -> None:
    # Pollers and `connect` read through SnapshotsClient, not run_action.
    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers["authorization"].split(" ", 1)[1]
        return httpx.Response(200, text=f"<html>upstream error for client {key}</html>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = SnapshotsClient(http, Secret(KEY), base_url="http://api.test")
        with pytest.raises(Permanent) as refused:
            await client.get_location("loc_1")
    assert KEY not in refused.value.excerpt and "****" in refused.value.excerpt
