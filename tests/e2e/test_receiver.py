"""The webhook endpoints over real HTTP on a real store (SQLite and PostgreSQL): each answer, what is kept."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from test_receiver_support import (
    FORM,
    GUMROAD_DATA,
    LIMIT,
    OTHER_SECRET,
    SECRET,
    WRONG_KEY,
    Served,
    gumroad_body,
    sale_form,
    serve,
    signature,
    snapshots_body,
    wait_for,
    write_lock,
)

from snapbridge.runtime import ReceiverLimits
from snapbridge.store import Store, is_sqlite, open_engine


@pytest.fixture
def served(migrated: Engine, tmp_path: Path) -> Iterator[Served]:
    with serve(migrated, tmp_path) as made:
        yield made


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


# ---- Gumroad ------------------------------------------------------------------------------------------


def test_a_form_ping_is_stored_then_answered_200(served: Served, http: httpx.Client) -> None:
    body, content_type = gumroad_body("sale.txt")
    answer = http.post(served.gumroad_url(), content=body, headers={"Content-Type": content_type})
    assert answer.status_code == 200, answer.text
    (row,) = served.rows()
    assert answer.json() == {"status": "stored", "id": row.id, "duplicate": False}
    assert (row.source, row.connection, row.kind, row.status) == ("gumroad", "shop", "sale", "received")
    assert row.dedupe_key == "gumroad:sale:FO8TXN-dbxYaBdahG97Y-Q=="
    assert row.payload["email"] == "jose.nunez@example.com"
    assert served.notified  # the deriver was told


def test_duplicates_retries_and_the_json_form_are_stored_once(served: Served, http: httpx.Client) -> None:
    sends = ["sale.txt", "sale.txt", "sale_retry_2.txt", "sale.json"]
    answers = []
    for name in sends:
        body, content_type = gumroad_body(name)
        answers.append(http.post(served.gumroad_url(), content=body, headers={"Content-Type": content_type}))
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.json()["duplicate"] for a in answers] == [False, True, True, True]
    assert len({a.json()["id"] for a in answers}) == 1
    assert served.keys() == ["gumroad:sale:FO8TXN-dbxYaBdahG97Y-Q=="]
    assert len(served.notified) == 1  # duplicates do not wake the deriver


def test_every_kind_of_post_is_stored(served: Served, http: httpx.Client) -> None:
    names = ["cancellation.txt", "subscription_updated.json", "refund.txt", "dispute.txt", "test_ping.txt",
             "subscription_ended.txt", "subscription_restarted.txt"]
    for name in names:
        body, content_type = gumroad_body(name)
        answer = http.post(served.gumroad_url(), content=body, headers={"Content-Type": content_type})
        assert answer.status_code == 200, (name, answer.text)
    assert len(served.rows()) == len(names)


def test_a_wrong_secret_looks_exactly_like_an_unknown_path(served: Served, http: httpx.Client) -> None:
    body, content_type = gumroad_body("sale.txt")
    headers = {"Content-Type": content_type}
    wrong = [
        http.post(served.gumroad_url(SECRET[:-1]), content=body, headers=headers),
        http.post(served.gumroad_url(SECRET + "x"), content=body, headers=headers),
        http.post(served.gumroad_url("%C3%A9" * 40), content=body, headers=headers),
    ]
    unknown = [
        http.post(f"{served.url}/hooks/gumroad/", content=body, headers=headers),
        http.post(f"{served.url}/no/such/path", content=body, headers=headers),
        http.get(f"{served.url}/nothing-here"),
    ]
    reference = unknown[0]
    for answer in wrong + unknown:
        assert answer.status_code == 404
        assert answer.content == reference.content
        assert answer.headers["content-type"] == reference.headers["content-type"]
    assert served.rows() == []


def test_a_sale_for_another_seller_is_refused_with_400(served: Served, http: httpx.Client) -> None:
    # OTHER_SECRET belongs to connection "other", whose seller is not the one in the body.
    answer = http.post(served.gumroad_url(OTHER_SECRET), content=sale_form("s1"),
                       headers={"Content-Type": FORM})
    assert answer.status_code == 400
    assert "another seller" in answer.json()["error"]
    assert served.rows() == []


MALFORMED = [
    (b"", FORM),
    (b"resource_name=sale", FORM),
    (b"card[visual=1&sale_id=2", FORM),
    (b"a=%ff%fe", FORM),
    (b"{\"sale_id\": ", "application/json"),
    (b"[]", "application/json"),
    (b"resource_name=nonsense&sale_id=1", FORM),
]


def test_malformed_bodies_get_400_and_nothing_is_stored(served: Served, http: httpx.Client) -> None:
    for body, content_type in MALFORMED:
        answer = http.post(served.gumroad_url(), content=body, headers={"Content-Type": content_type})
        assert answer.status_code == 400, body
        assert set(answer.json()) == {"error"} and answer.json()["error"]
        assert "Traceback" not in answer.text
    assert served.rows() == []


def test_an_unsupported_content_type_gets_415(served: Served, http: httpx.Client) -> None:
    body, _ = gumroad_body("sale.txt")
    for content_type in ["text/plain", "multipart/form-data; boundary=x", "application/xml"]:
        answer = http.post(served.gumroad_url(), content=body, headers={"Content-Type": content_type})
        assert answer.status_code == 415, content_type
    assert served.rows() == []


def test_a_missing_content_type_is_sniffed(served: Served, http: httpx.Client) -> None:
    body, _ = gumroad_body("sale.json")
    answer = http.post(served.gumroad_url(), content=body, headers={"Content-Type": ""})
    assert answer.status_code == 200, answer.text


def _padded_json_ping(size: int) -> bytes:
    body, _ = gumroad_body("sale.json")
    body = body.rstrip()
    assert len(body) < size
    return body + b" " * (size - len(body))  # trailing whitespace keeps it valid JSON


def test_the_body_limit_is_inclusive_and_one_byte_more_is_413(served: Served, http: httpx.Client) -> None:
    json_type = {"Content-Type": "application/json"}
    at_limit = http.post(served.gumroad_url(), content=_padded_json_ping(LIMIT), headers=json_type)
    assert at_limit.status_code == 200, at_limit.text
    over = _padded_json_ping(LIMIT + 1).replace(b"FO8TXN", b"OVER01")
    assert http.post(served.gumroad_url(), content=over, headers=json_type).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for i in range(0, len(over), 1000):
            yield over[i:i + 1000]

    streamed = http.post(served.gumroad_url(), content=chunks(), headers=json_type)
    assert streamed.status_code == 413
    assert served.keys() == ["gumroad:sale:FO8TXN-dbxYaBdahG97Y-Q=="]


def test_a_huge_declared_length_is_refused_without_reading(served: Served) -> None:
    with httpx.Client(timeout=5) as client:
        answer = client.post(served.gumroad_url(), content=b"x" * (10 * LIMIT),
                             headers={"Content-Type": FORM})
    assert answer.status_code == 413
    assert served.rows() == []


# ---- Snapshots ------------------------------------------------------------------------------------------


def test_a_signed_webhook_is_stored_and_a_replay_is_answered_200_once_stored(
    served: Served, http: httpx.Client
) -> None:
    body = snapshots_body("wh_42")
    first = http.post(served.snapshots_url, content=body, headers=signature(body))
    replay = http.post(served.snapshots_url, content=body, headers=signature(body))
    assert (first.status_code, replay.status_code) == (200, 200)
    assert (first.json()["duplicate"], replay.json()["duplicate"]) == (False, True)
    (row,) = served.rows()
    assert (row.source, row.connection, row.kind) == ("snapshots", "snap", "LocationUpdate")
    assert row.dedupe_key == "snapshots:webhook:wh_42"
    assert row.payload["name"] == "Studio Zürich"


def _unsigned_or_forged(case: str) -> tuple[bytes, dict[str, str]]:
    body = snapshots_body("wh_bad")
    headers = signature(body)
    if case == "wrong key":
        headers = signature(body, WRONG_KEY)
    elif case == "altered body":
        body = body.replace(b"Studio", b"Studi0")
    elif case == "no signature":
        del headers["X-GHL-Signature"]
    elif case == "garbage signature":
        headers["X-GHL-Signature"] = "not-base64!"
    elif case == "stale":
        body = snapshots_body("wh_bad", timestamp=datetime.now(UTC) - ReceiverLimits().max_age - timedelta(seconds=5))
        headers = signature(body)
    elif case == "future":
        body = snapshots_body("wh_bad", timestamp=datetime.now(UTC) + timedelta(minutes=2))
        headers = signature(body)
    return body, headers


def test_each_signature_failure_gets_401_and_stores_nothing(served: Served, http: httpx.Client) -> None:
    for case in ["wrong key", "altered body", "no signature", "garbage signature", "stale", "future"]:
        body, headers = _unsigned_or_forged(case)
        answer = http.post(served.snapshots_url, content=body, headers=headers)
        assert answer.status_code == 401, case
        assert answer.json()["error"]
    assert served.rows() == []


def test_a_rejected_webhook_does_not_spend_its_id(served: Served, http: httpx.Client) -> None:
    body = snapshots_body("wh_once")
    forged = http.post(served.snapshots_url, content=body, headers=signature(body, WRONG_KEY))
    genuine = http.post(served.snapshots_url, content=body, headers=signature(body))
    assert (forged.status_code, genuine.status_code) == (401, 200)
    assert genuine.json()["duplicate"] is False


def test_a_malformed_body_with_a_valid_signature_gets_400(served: Served, http: httpx.Client) -> None:
    for body in [b"{\"type\": \"Nonsense\"}", b"[1]", b"\xff\xfe", b"{\"type\": \"LocationUpdate\"}"]:
        answer = http.post(served.snapshots_url, content=body, headers=signature(body))
        assert answer.status_code == 400, body
        assert "Traceback" not in answer.text
    assert served.rows() == []


def test_snapshots_wants_json(served: Served, http: httpx.Client) -> None:
    body = snapshots_body("wh_type")
    for content_type in ["text/plain", FORM, None]:
        headers = signature(body)
        if content_type is None:
            del headers["Content-Type"]
        else:
            headers["Content-Type"] = content_type
        assert http.post(served.snapshots_url, content=body, headers=headers).status_code == 415, content_type
    assert served.rows() == []


def test_snapshots_body_limit(served: Served, http: httpx.Client) -> None:
    def padded(size: int, webhook_id: str) -> bytes:
        body = snapshots_body(webhook_id)
        return body + b" " * (size - len(body))

    at_limit = padded(LIMIT, "wh_at")
    over = padded(LIMIT + 1, "wh_over")
    assert http.post(served.snapshots_url, content=at_limit, headers=signature(at_limit)).status_code == 200
    assert http.post(served.snapshots_url, content=over, headers=signature(over)).status_code == 413
    assert served.keys() == ["snapshots:webhook:wh_at"]


# ---- the store cannot commit ------------------------------------------------------------------------------


def _short_busy_timeout(engine: Engine) -> None:
    """Fail a locked SQLite write in 50 ms instead of the engine's 5 s, so the test is quick."""

    def pragma(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=50")

    sa.event.listen(engine, "connect", pragma)
    engine.dispose()  # pooled connections were opened with the longer timeout


@pytest.fixture
def outage(migrated: Engine, tmp_path: Path) -> Iterator[tuple[Served, Store, Iterator[None]]]:
    """An app whose store cannot commit, and a way to end the outage (SQLite only) or not (PostgreSQL)."""
    if is_sqlite(migrated):
        _short_busy_timeout(migrated)
        path = migrated.url.database
        assert path is not None
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock

        def end() -> Iterator[None]:
            holder.execute("ROLLBACK")
            holder.close()
            yield

        with serve(migrated, tmp_path) as made:
            yield made, made.store, end()
        return
    # PostgreSQL that is not there: nothing listens on port 9 of loopback.
    down = Store(open_engine("postgresql://postgres@127.0.0.1:9/test?connect_timeout=2"))
    with serve(migrated, tmp_path, store=down) as made:
        yield made, down, iter(())


def test_when_the_store_cannot_commit_gumroad_gets_503_and_snapshots_429(
    outage: tuple[Served, Store, Iterator[None]], http: httpx.Client
) -> None:
    served, _store, end = outage
    body, content_type = gumroad_body("sale.txt")
    signed = snapshots_body("wh_down")
    gumroad = http.post(served.gumroad_url(), content=body, headers={"Content-Type": content_type})
    snapshots = http.post(served.snapshots_url, content=signed, headers=signature(signed))
    assert gumroad.status_code == 503
    assert snapshots.status_code == 429 and int(snapshots.headers["Retry-After"]) > 0
    assert "Traceback" not in gumroad.text + snapshots.text
    assert served.notified == []
    for _ in end:  # SQLite: the lock is released; the senders' retries now commit
        again = http.post(served.gumroad_url(), content=body, headers={"Content-Type": content_type})
        resent = http.post(served.snapshots_url, content=signed, headers=signature(signed))
        assert (again.status_code, resent.status_code) == (200, 200)
        assert (again.json()["duplicate"], resent.json()["duplicate"]) == (False, False)
    expected = [] if not is_sqlite(served.engine) else [
        "gumroad:sale:FO8TXN-dbxYaBdahG97Y-Q==", "snapshots:webhook:wh_down"]
    assert served.keys() == expected


def test_a_full_backlog_is_answered_at_once_and_a_slow_commit_still_lands(
    migrated: Engine, tmp_path: Path, http: httpx.Client
) -> None:
    limits = ReceiverLimits(max_backlog=1, commit_timeout_seconds=4)
    with serve(migrated, tmp_path, limits=limits) as served, ThreadPoolExecutor(1) as pool:
        with write_lock(migrated):
            first = pool.submit(http.post, served.gumroad_url(), content=sale_form("slot"),
                                headers={"Content-Type": FORM})
            wait_for(lambda: served.committer.stats.backlog == 1, what="the first post to wait on the lock")
            body = snapshots_body("wh_busy")
            second = http.post(served.snapshots_url, content=body, headers=signature(body))
            third = http.post(served.gumroad_url(), content=sale_form("later"),
                              headers={"Content-Type": FORM})
        assert second.status_code == 429 and second.headers["Retry-After"]
        assert third.status_code == 503
        assert first.result(10).status_code == 200  # it waited for the lock, then committed
        assert served.keys() == ["gumroad:sale:slot"]


# ---- group commit --------------------------------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as made:
        yield made


async def test_200_concurrent_posts_make_200_rows_in_fewer_transactions(
    served: Served, client: httpx.AsyncClient
) -> None:
    async def post(i: int) -> httpx.Response:
        if i % 2:
            body = snapshots_body(f"wh_{i}")
            return await client.post(served.snapshots_url, content=body, headers=signature(body))
        return await client.post(served.gumroad_url(), content=sale_form(f"sale-{i}"),
                                 headers={"Content-Type": FORM})

    answers = await asyncio.gather(*(post(i) for i in range(200)))
    assert [a.status_code for a in answers] == [200] * 200
    assert len({a.json()["id"] for a in answers}) == 200
    assert len(served.rows()) == 200
    assert served.store.insert_calls < 200
    assert served.committer.stats.batches == served.store.insert_calls
    assert served.committer.stats.largest_batch > 1


def test_health(served: Served, http: httpx.Client) -> None:
    answer = http.get(f"{served.url}/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_no_log_line_holds_a_secret_or_a_guessed_one(
    served: Served, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = "canary-guess-0123456789abcdefghijklmnopqrstuvwxyz"
    body, content_type = gumroad_body("sale.txt")
    headers = {"Content-Type": content_type}
    assert http.post(served.gumroad_url(), content=body, headers=headers).status_code == 200
    assert http.post(served.gumroad_url(canary), content=body, headers=headers).status_code == 404
    assert http.post(served.gumroad_url(), content=b"garbage=1", headers=headers).status_code == 400
    plain = {"Content-Type": "text/plain"}
    assert http.post(served.gumroad_url(), content=body, headers=plain).status_code == 415
    # The server side only: the test's own HTTP client logs the URLs it calls.
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("snapbridge", "uvicorn")))
    assert "action=hook_stored" in logged and "action=hook_rejected" in logged
    assert SECRET not in logged and canary not in logged


# JSON bodies holding NaN or ±Infinity: PostgreSQL cannot store such a payload, and one used to fail its whole
# group commit.

# How each reaches Python's JSON reader: the three names it accepts, and a number too large for a float.
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999"]


def _with_number(body: bytes, token: str, where: str = "rating") -> bytes:
    """`body` (a JSON object) with `"where": {"score": [1.5, token]}` added, spelled as the sender wrote it."""
    assert body.endswith(b"}")
    return body[:-1] + f', "{where}": {{"score": [1.5, {token}]}}}}'.encode()


@pytest.mark.parametrize("token", NON_FINITE)
def test_snapshots_refuses_a_non_finite_number_and_stores_the_next_webhook(
    served: Served, http: httpx.Client, token: str
) -> None:
    bad = _with_number(snapshots_body("wh_nan"), token)
    refused = http.post(served.snapshots_url, content=bad, headers=signature(bad))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"].startswith(f"webhook body holds {token.replace('1e999', 'Infinity')}")
    good = _with_number(snapshots_body("wh_fine"), "2.5e3")
    assert http.post(served.snapshots_url, content=good, headers=signature(good)).status_code == 200
    (row,) = served.rows()
    assert row.dedupe_key == "snapshots:webhook:wh_fine" and row.payload["rating"] == {"score": [1.5, 2500.0]}


@pytest.mark.parametrize("token", NON_FINITE)
def test_a_gumroad_json_body_with_a_non_finite_number_is_refused(
    served: Served, http: httpx.Client, token: str
) -> None:
    body = _with_number((GUMROAD_DATA / "sale.json").read_bytes().strip(), token)
    for content_type in ("application/json", None):  # declared, or sniffed from the leading "{"
        headers = {"Content-Type": content_type} if content_type else {}
        answer = http.post(served.gumroad_url(), content=body, headers=headers)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"].endswith("which is not a JSON number")
    assert served.rows() == []


def test_a_refused_body_does_not_fail_the_webhooks_sent_with_it(served: Served) -> None:
    # Sent at once, so they share group commits; each good one is answered 200 and stored.
    bodies = [snapshots_body(f"wh_{n}") for n in range(12)]
    bodies.insert(5, _with_number(snapshots_body("wh_nan"), "NaN"))

    def send(body: bytes) -> int:
        with httpx.Client(timeout=10) as client:
            return client.post(served.snapshots_url, content=body, headers=signature(body)).status_code

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        statuses = list(pool.map(send, bodies))
    assert statuses == [200] * 5 + [400] + [200] * 7
    assert sorted(served.keys()) == sorted(f"snapshots:webhook:wh_{n}" for n in range(12))
    assert all(json.dumps(row.payload, allow_nan=False) for row in served.rows())
