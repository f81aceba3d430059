"""The pure parts of the generic runner, as tables: input validation, request building, next pages, and
HighLevel's error decoding."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from snapbridge.catalog import (
    Operation,
    Pagination,
    Param,
    ParamIn,
    ParamType,
    get_action,
    highlevel_error,
    highlevel_message,
    next_page_params,
    prepare_request,
    validate_params,
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

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


# ---- validation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "params", "message"), [
    ("highlevel.contacts.create", {}, "missing required parameter locationId (string)"),
    ("highlevel.contacts.create", {"locationId": "l", "emial": "x"},
     "unknown parameter emial (known: locationId, firstName"),
    ("highlevel.contacts.create", {"locationId": 7}, "parameter locationId must be a string, got int"),
    ("highlevel.contacts.create", {"locationId": "l", "tags": "vip"}, "parameter tags must be a list"),
    ("highlevel.contacts.create", {"locationId": "l", "tags": ["a", 2]},
     "parameter tags[1] must be a string"),
    ("highlevel.contacts.create", {"locationId": "l", "dnd": "yes"}, "parameter dnd must be true or false"),
    ("highlevel.locations.search", {"limit": True}, "parameter limit must be an integer, got bool"),
    ("highlevel.locations.search", {"order": "up"}, "parameter order must be one of asc, desc, got 'up'"),
    ("gumroad.sales.get", {"sale_id": "  "}, "parameter sale_id must not be empty"),
    ("snapshots.events.batch", {"events": [1]}, "parameter events[0] must be an object"),
])
def test_bad_input_is_refused_with_the_parameter_named(name: str, params: dict[str, object],
                                                       message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_params(get_action(name), params)
    assert str(caught.value).startswith(f"{name}: ")
    assert message in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_params(get_action("highlevel.contacts.create"), {"x": 1, "y": 2, "dnd": 1})
    text = str(caught.value)
    assert "unknown parameters x, y" in text
    assert "missing required parameter locationId" in text and "parameter dnd must be true or false" in text


def test_none_counts_as_absent_and_tuples_become_lists() -> None:
    op = get_action("highlevel.contacts.create")
    assert validate_params(op, {"locationId": "l", "email": None, "tags": ("a",)}) == {"locationId": "l",
                                                                                       "tags": ["a"]}


# ---- request building ------------------------------------------------------------------------------------


def test_gumroad_write_is_form_encoded_with_string_booleans() -> None:
    request = prepare_request(get_action("gumroad.offer_codes.create"),
                              {"product_id": "a/b==", "name": "SAVE", "amount_off": 5, "universal": True})
    assert request.method == "POST"
    assert request.path == "/v2/products/a%2Fb%3D%3D/offer_codes"
    assert request.form == (("name", "SAVE"), ("amount_off", "5"), ("universal", "true"))
    assert request.content == b"name=SAVE&amount_off=5&universal=true"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Version" not in request.headers and request.json is None


def test_gumroad_custom_field_name_is_one_path_segment() -> None:
    request = prepare_request(get_action("gumroad.custom_fields.update"),
                              {"product_id": "p", "name": "Size [cm]/x", "required": False})
    assert request.path == "/v2/products/p/custom_fields/Size%20%5Bcm%5D%2Fx"
    assert request.form == (("required", "false"),)


def test_gumroad_read_puts_input_in_the_query() -> None:
    request = prepare_request(get_action("gumroad.subscribers.list"), {"product_id": "p", "paginated": True})
    assert request.query == (("paginated", "true"),)
    assert request.content is None and request.form is None


def test_highlevel_write_is_json_with_its_version() -> None:
    request = prepare_request(get_action("highlevel.contact_tags.remove"), {"contactId": "c", "tags": ["x"]})
    assert (request.method, request.path) == ("DELETE", "/contacts/c/tags")
    assert request.json == {"tags": ["x"]}
    assert request.headers["Version"] == "2021-07-28"


def test_highlevel_saas_uses_its_own_version_and_query() -> None:
    op = get_action("highlevel.saas.get_subscription")
    request = prepare_request(op, {"locationId": "l", "companyId": "c"})
    assert request.headers["Version"] == "2021-04-15"
    assert request.query == (("companyId", "c"),)


def test_highlevel_array_query_repeats_the_key() -> None:
    op = Operation(app="highlevel", name="highlevel.things.list", method="GET", path="/things",
                   summary="x",
                   params=(Param("ids", ParamIn.QUERY, ParamType.ARRAY, items=ParamType.STRING),))
    assert prepare_request(op, {"ids": ["a", "b"]}).query == (("ids", "a"), ("ids", "b"))


def test_multipart_upload_is_deterministic() -> None:
    op = get_action("highlevel.location_custom_fields.upload")
    params = {"locationId": "l", "id": "f", "file": "hello"}
    first, second = prepare_request(op, params), prepare_request(op, params)
    assert first.content == second.content and first.content is not None
    assert first.headers["Content-Type"].startswith("multipart/form-data; boundary=snapbridge-")
    assert b'name="file"; filename="file.txt"' in first.content and b"\r\nhello\r\n" in first.content


def test_snapshots_write_carries_json_and_version() -> None:
    request = prepare_request(get_action("snapshots.customers.upsert"), {"customer_id": "c 1", "plan": "pro"})
    assert (request.path, request.json) == ("/customers/c%201", {"plan": "pro"})
    assert request.headers["Version"] == "2021-07-28"


# ---- next pages ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "params", "body", "expected"), [
    ("gumroad.sales.list", {"email": "a"}, {"sales": [{}], "next_page_key": "k1"},
     {"email": "a", "page_key": "k1"}),
    ("gumroad.sales.list", {}, {"sales": [{}]}, None),
    ("snapshots.locations.list", {"limit": 2}, {"locations": [{}], "meta": {"startAfterId": "L2"}},
     {"limit": 2, "startAfterId": "L2"}),
    ("snapshots.locations.list", {}, {"locations": [{}], "meta": {"startAfterId": None}}, None),
    ("snapshots.locations.list", {}, {"locations": [], "meta": {"startAfterId": "L2"}}, None),
    ("highlevel.contacts.list", {"locationId": "l"},
     {"contacts": [{}], "meta": {"startAfterId": "c", "startAfter": 9}},
     {"locationId": "l", "startAfterId": "c", "startAfter": 9}),
    ("highlevel.locations.search", {"limit": 2}, {"locations": [{}, {}]}, {"limit": 2, "skip": 2}),
    ("highlevel.locations.search", {"limit": 2, "skip": 2}, {"locations": [{}]}, None),
    ("highlevel.locations.search", {}, {"locations": [{}]}, {"skip": 1}),
    ("highlevel.locations.search", {"skip": 1}, {"locations": []}, None),
    ("highlevel.saas.list_saas_locations", {"page": 1}, {"locations": [], "pagination": {"hasNext": True}},
     {"page": 2}),
    ("highlevel.saas.list_saas_locations", {"page": 2}, {"locations": [], "pagination": {"hasNext": False}},
     None),
    ("highlevel.snapshots.list_pushes", {"limit": 1, "lastDoc": ""}, {"data": [{"id": "p1"}]},
     {"limit": 1, "lastDoc": "p1"}),
    ("highlevel.snapshots.list_pushes", {"limit": 2}, {"data": [{"id": "p1"}]}, None),
    ("highlevel.contacts.search", {"pageLimit": 2}, {"contacts": [{}, {}]}, {"pageLimit": 2, "page": 2}),
    ("highlevel.contacts.search", {"pageLimit": 2, "page": 3}, {"contacts": [{}]}, None),
    ("highlevel.contacts.search", {"pageLimit": 500, "page": 19},
     {"contacts": [{"searchAfter": [5, "x"]}] * 500},
     {"pageLimit": 500, "page": 20}),
    ("highlevel.contacts.search", {"pageLimit": 500, "page": 20},
     {"contacts": [{"searchAfter": [5, "x"]}] * 500},
     {"pageLimit": 500, "searchAfter": [5, "x"]}),
    ("highlevel.contacts.search", {"pageLimit": 1, "searchAfter": [1, "a"]},
     {"contacts": [{"searchAfter": [2, "b"]}]}, {"pageLimit": 1, "searchAfter": [2, "b"]}),
    ("highlevel.contacts.get", {"contactId": "c"}, {"contact": {}}, None),
])
def test_next_page(name: str, params: dict[str, object], body: object,
                   expected: dict[str, object] | None) -> None:
    op = get_action(name)
    assert next_page_params(op, params, body) == expected


def test_pagination_styles_in_use() -> None:
    used = {get_action(n).pagination for n in ("gumroad.sales.list", "snapshots.events.list",
                                               "highlevel.locations.search", "highlevel.contacts.search",
                                               "highlevel.saas.list_saas_locations",
                                               "highlevel.snapshots.list_pushes")}
    assert used == set(Pagination) - {Pagination.NONE}


# ---- HighLevel errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "kind", "text"), [
    (401, b'{"statusCode":401,"message":"The token is not authorized for this scope."}', ScopeMissing,
     "lacks contacts.write"),
    (401, b'{"statusCode":401,"message":"Invalid JWT","error":"Unauthorized"}', AuthFailed, "Invalid JWT"),
    (401, b'{"statusCode":401,"message":"E-102. This AuthClass is not yet supported!"}', AuthFailed, "E-102"),
    (403, b'{"statusCode":403,"message":"The token does not have access to this location."}', Permanent,
     "no access"),
    (404, b'{"statusCode":404,"message":"Location not found"}', NotFound, "Location not found"),
    (400, b'{"statusCode":400,"message":"Contact with id x not found"}', NotFound, "Contact with id x"),
    (400, b'{"statusCode":400,"message":"This location does not allow duplicated contacts.",'
          b'"meta":{"contactId":"c9","matchingField":"email"}}', Conflict, "duplicated"),
    (422, b'{"statusCode":422,"message":["name should not be empty","x must be a string"]}', Permanent,
     "name should not be empty, x must be a string"),
    (429, b"", Retryable, "could not answer now"),
    (500, b'{"statusCode":500,"message":"Internal Server Error"}', Retryable, "Internal Server Error"),
    (400, b"<html>bad gateway page</html>", Permanent, "refused the request"),
])
def test_highlevel_errors(status: int, body: bytes, kind: type[DeliveryError], text: str) -> None:
    error = highlevel_error(status, {"Retry-After": "7"}, body, operation="highlevel.contacts.upsert",
                            scopes=("contacts.write",), now=NOW)
    assert type(error) is kind
    assert text in str(error) and error.status == status
    if isinstance(error, Conflict):
        assert error.existing_id == "c9"
    if isinstance(error, Retryable):
        assert error.retry_after == 7.0


def test_highlevel_error_never_shows_the_token() -> None:
    secret = "pit-0123456789abcdef0123456789abcdef"
    body = f'{{"statusCode":401,"message":"bad token {secret}"}}'.encode()
    error = highlevel_error(401, {}, body, operation="op", scopes=(), now=NOW, secrets=(secret,))
    assert secret not in str(error) and secret not in error.excerpt


@pytest.mark.parametrize(("body", "expected"), [
    ({"message": "a"}, "a"), ({"message": ["a", "b"]}, "a, b"), ({"error": "e"}, "e"), ({"detail": "d"}, "d"),
    ({"message": []}, ""), ("text", ""),
])
def test_highlevel_message(body: object, expected: str) -> None:
    assert highlevel_message(body) == expected
