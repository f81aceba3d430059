"""Snapshots decoding, pure: status + body → our error (a table), and JSON bodies → typed records."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from snapbridge.connectors.snapshots import (
    BatchItemResult,
    BatchItemStatus,
    Customer,
    CustomerChanges,
    Event,
    EventInput,
    Location,
    LocationChanges,
    LocationCreate,
    OnboardingStatus,
    Page,
    decode_error,
    error_message,
    unwrap,
)
from snapbridge.errors import (
    AuthFailed,
    Conflict,
    DeliveryError,
    InvalidInput,
    NotFound,
    Permanent,
    Retryable,
    ScopeMissing,
)
from snapbridge.security import Secret

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
SCOPE_401 = {"statusCode": 401, "message": "The token is not authorized for this scope."}


def raw(body: object) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


CASES: list[tuple[str, int, object, dict[str, str], type[DeliveryError], str, float | None]] = [
    ("scope", 401, SCOPE_401, {}, ScopeMissing, "lacks the scope 'saas/location.read'", None),
    ("bad-key", 401, {"statusCode": 401, "message": "Invalid token: access token is invalid",
                      "error": "Unauthorized"}, {}, AuthFailed, "refused: Invalid token", None),
    ("bad-key-no-body", 401, b"", {}, AuthFailed, "refused", None),
    ("location", 403, {"statusCode": 403, "message": "The token does not have access to this location.",
                       "error": "Forbidden"}, {}, Permanent, "no access to this location", None),
    ("missing", 404, {"statusCode": 404, "message": "Location loc_9 not found"}, {}, NotFound, "loc_9", None),
    ("conflict", 409, {"statusCode": 409, "message": "external_id exists", "meta": {"location_id": "loc_7"}},
     {}, Conflict, "external_id exists", None),
    ("conflict-no-meta", 409, {"statusCode": 409, "message": "event_id reused with another body"},
     {}, Conflict, "another body", None),
    ("invalid-list", 422, {"statusCode": 422, "message": ["name must be a string", "timezone is invalid"],
                           "error": "Unprocessable Entity"}, {}, Permanent,
     "name must be a string; timezone is invalid", None),
    ("invalid-string", 422, {"statusCode": 422, "message": "Idempotency-Key reused with another body"},
     {}, Permanent, "Idempotency-Key reused", None),
    ("bad-request", 400, {"statusCode": 400, "message": "bad"}, {}, Permanent, "bad", None),
    ("rate", 429, {"statusCode": 429, "message": "Too many requests"}, {"Retry-After": "7"},
     Retryable, "Too many requests", 7.0),
    ("rate-date", 429, b"", {"retry-after": "Wed, 01 Jul 2026 12:00:30 GMT"}, Retryable, "temporary", 30.0),
    ("rate-no-retry-after", 429, b"", {"X-RateLimit-Interval-Milliseconds": "10000"}, Retryable, "", 10.0),
    ("timeout", 408, b"", {}, Retryable, "temporary", None),
    ("server", 500, {"statusCode": 500, "message": "Internal Server Error"}, {}, Retryable, "Internal", None),
    ("gateway-html", 502, b"<html>bad gateway</html>", {"Retry-After": "2"}, Retryable, "temporary", 2.0),
    ("unavailable", 503, b"", {}, Retryable, "temporary", None),
    ("redirect", 302, b"", {"Location": "http://elsewhere"}, Permanent, "redirect", None),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "text", "retry_after"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_status_and_body_become_our_error(
    status: int, body: object, headers: dict[str, str], kind: type[DeliveryError], text: str,
    retry_after: float | None,
) -> None:
    error = decode_error(status, raw(body), headers, operation="locations.list", scope="saas/location.read",
                         now=NOW)
    assert type(error) is kind
    assert text in str(error)
    assert error.operation == "locations.list" and error.status == status
    assert "locations.list" in str(error)
    if isinstance(error, Retryable):
        assert error.retry_after == retry_after


def test_scope_missing_names_the_scope() -> None:
    error = decode_error(401, raw(SCOPE_401), {}, operation="events.create", scope="events.write", now=NOW)
    assert isinstance(error, ScopeMissing) and error.scopes == ("events.write",)


def test_a_conflict_carries_the_existing_location() -> None:
    body = {"statusCode": 409, "message": "exists", "meta": {"location_id": "loc_7"}}
    error = decode_error(409, raw(body), {}, operation="locations.create", scope=None, now=NOW)
    assert isinstance(error, Conflict) and error.existing_id == "loc_7"
    event = {"statusCode": 409, "message": "Event e1 already exists with a different body",
             "meta": {"event_id": "e1"}}
    clash = decode_error(409, raw(event), {}, operation="events.create", scope=None, now=NOW)
    assert isinstance(clash, Conflict) and clash.existing_id == "e1"
    plain = decode_error(409, raw({"message": "x"}), {}, operation="events.create", scope=None, now=NOW)
    assert isinstance(plain, Conflict) and plain.existing_id is None


def test_a_secret_echoed_by_the_server_is_redacted() -> None:
    key = "sk_live_canary_0123456789"
    body = {"statusCode": 401, "message": f"Invalid token {key}"}
    error = decode_error(401, raw(body), {}, operation="locations.list", scope=None, now=NOW,
                         secrets=[Secret(key)])
    assert key not in str(error) and key not in error.excerpt


def test_the_request_id_is_kept() -> None:
    body = raw({"message": "x", "traceId": "tr_1"})
    error = decode_error(500, body, {}, operation="o", scope=None, now=NOW)
    assert error.request_id == "tr_1"
    error = decode_error(500, b"", {"X-Request-Id": "rq_1"}, operation="o", scope=None, now=NOW)
    assert error.request_id == "rq_1"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"message": "one"}, "one"),
        ({"message": ["a", "b"]}, "a; b"),
        ({"message": [], "error": "Unauthorized"}, "Unauthorized"),
        ({"detail": "d"}, "d"),
        ([1], ""),
        (None, ""),
    ],
)
def test_error_message_accepts_a_string_or_a_list(body: object, expected: str) -> None:
    assert error_message(body) == expected


@pytest.mark.parametrize(
    ("content", "key", "message"),
    [(b"", "location", "not a JSON object"), (b"[]", "location", "not a JSON object"),
     (b'{"x": 1}', "location", "no 'location'")],
)
def test_unwrap_refuses_an_unexpected_success_body(content: bytes, key: str, message: str) -> None:
    with pytest.raises(Permanent, match=message):
        unwrap(content, key, operation="locations.get", status=200)


LOCATION = {
    "location_id": "loc_1", "name": "Studio", "timezone": "America/New_York", "email": "a@example.com",
    "region": "us", "onboarding_status": "paused", "tier": "pro", "snapshot_id": "snap_1",
    "external_id": "buyer@example.com", "created_at": "2026-01-02T03:04:05Z",
    "updated_at": "2026-01-02T03:04:05.123+00:00", "unknown_future_field": 1,
}


def test_a_location_parses_with_aware_datetimes() -> None:
    location = Location.from_json(LOCATION)
    assert location.onboarding_status is OnboardingStatus.PAUSED
    assert location.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert location.updated_at is not None and location.updated_at.tzinfo is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [({"location_id": None}, "location.location_id"), ({"name": 3}, "location.name"),
     ({"created_at": "2026-01-02"}, "has no timezone"), ({"onboarding_status": "x"}, "not one of")],
)
def test_a_bad_location_names_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Location.from_json({**LOCATION, **change})


def test_a_page_parses_items_cursor_and_total() -> None:
    body = {"locations": [LOCATION], "meta": {"total": 5, "startAfterId": "loc_1", "nextPageUrl": "u"}}
    page = Page.from_json(body, key="locations", parse=lambda d, p: Location.from_json(d, path=p))
    assert [loc.location_id for loc in page.items] == ["loc_1"]
    assert page.next_cursor == "loc_1" and page.total == 5
    with pytest.raises(InvalidInput, match=r"body.locations\[0\].name"):
        Page.from_json({"locations": [{"location_id": "x"}]}, key="locations",
                       parse=lambda d, p: Location.from_json(d, path=p))


def test_events_customers_and_batch_results_parse() -> None:
    event = Event.from_json({"event_id": "e1", "type": "purchase", "timestamp": "2026-07-01T00:00:00Z",
                             "data": {"amount": 100}})
    assert event.data == {"amount": 100} and event.customer_id is None
    customer = Customer.from_json({"customer_id": "c1", "tags": ["a"], "last_activity_at": None})
    assert customer.tags == ("a",) and customer.email is None
    item = {"event_id": "e1", "status": "error", "error": {"message": ["x"]}}
    result = BatchItemResult.from_json(item, "r")
    assert result.status is BatchItemStatus.ERROR and result.error == '{"message": ["x"]}'


def test_inputs_render_only_given_fields() -> None:
    assert LocationCreate(name="S", timezone="UTC", external_id="x").to_json() == {
        "name": "S", "timezone": "UTC", "external_id": "x",
    }
    changes = LocationChanges(onboarding_status=OnboardingStatus.ACTIVE)
    assert changes.to_json() == {"onboarding_status": "active"}
    assert CustomerChanges(tags=()).to_json() == {"tags": []}
    when = datetime(2026, 7, 1, 14, 0, tzinfo=UTC).astimezone()
    assert CustomerChanges(last_activity_at=when).to_json() == {"last_activity_at": "2026-07-01T14:00:00Z"}
    assert EventInput(event_id="e", type="refund", timestamp=when).to_json() == {
        "event_id": "e", "type": "refund", "timestamp": "2026-07-01T14:00:00Z", "data": {},
    }


@pytest.mark.parametrize(
    ("size", "ok"), [(16 * 1024, True), (16 * 1024 + 1, False)], ids=["at-limit", "one-past"]
)
def test_event_data_is_limited_to_16_kib(size: int, ok: bool) -> None:
    data = {"x": "a" * (size - len('{"x":""}'))}
    if ok:
        EventInput(event_id="e", type="t", timestamp=NOW, data=data)
    else:
        with pytest.raises(InvalidInput, match="more than 16384"):
            EventInput(event_id="e", type="t", timestamp=NOW, data=data)


@pytest.mark.parametrize(
    "build",
    [
        lambda: EventInput(event_id="e", type="t", timestamp=datetime(2026, 7, 1)),
        lambda: EventInput(event_id="", type="t", timestamp=NOW),
        lambda: EventInput(event_id="e", type="t", timestamp=NOW, data={"x": object()}),
        lambda: LocationCreate(name=" ", timezone="UTC"),
    ],
    ids=["naive", "no-id", "not-json", "blank-name"],
)
def test_bad_inputs_are_refused(build: object) -> None:
    assert callable(build)
    with pytest.raises(InvalidInput):
        build()
