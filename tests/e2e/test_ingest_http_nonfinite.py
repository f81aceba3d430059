"""JSON bodies holding NaN or ±Infinity are refused with 400 on both webhook endpoints, over real HTTP on both
engines: PostgreSQL cannot store such a payload, and one of them used to fail its whole group commit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from test_receiver_support import GUMROAD_DATA, Served, serve, signature, snapshots_body

# How each reaches Python's JSON reader: the three names it accepts, and a number too large for a float.
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999"]


@pytest.fixture
def served(migrated: Engine, tmp_path: Path) -> Iterator[Served]:
    with serve(migrated, tmp_path) as made:
        yield made


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


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
