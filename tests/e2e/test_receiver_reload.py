"""A connection stored by another process (`snapbridge connect`, another receiver process's API) is accepted
without a restart: an unknown Gumroad secret or an unverified Snapshots signature waits for a read of the stored
connections begun after it arrived before the answer is 404 or 401; a removed connection stops being accepted
once they are reread. The timing rules themselves: tests/unit/test_rereads.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_api_support import Served, serve_app
from test_receiver_support import (
    FORM,
    SELLER,
    SIGNING_KEY,
    public_b64,
    sale_form,
    signature,
    snapshots_body,
    wait_for,
)

from snapbridge.runtime import new_webhook_secret
from snapbridge.sandbox import Sandboxes
from snapbridge.security import Secret, Vault
from snapbridge.store import ConnectionRecord, ConnectionStore
from snapbridge.web import rereads


@pytest.fixture
def served(tmp_path: Path, sandboxes: Sandboxes) -> Iterator[Served]:
    with serve_app(tmp_path, sandboxes) as app:
        yield app


def _store_connection(served: Served, name: str, app: str, webhook_key: str, options: dict[str, object]) -> None:
    """What `snapbridge connect` does in its own process: the record, its secrets sealed by the same vault."""
    vault = Vault.open(served.settings.home / "key")
    ConnectionStore(served.store.engine).save(ConnectionRecord(
        name=name, app=app, base_url="http://127.0.0.1:9", options=options,
        credential=vault.encrypt(Secret("token-of-" + name), bound_to=f"{name}:credential"),
        webhook_key=vault.encrypt(Secret(webhook_key), bound_to=f"{name}:webhook_key")))


def test_a_gumroad_connection_stored_elsewhere_is_accepted_at_once(served: Served) -> None:
    secret = new_webhook_secret().reveal()
    with httpx.Client(base_url=served.base_url) as client:
        unknown = client.post(f"/hooks/gumroad/{secret}", content=sale_form("s-1"), headers={"Content-Type": FORM})
        assert unknown.status_code == 404
        _store_connection(served, "gumroad-2", "gumroad", secret, {"seller_id": SELLER})
        # The miss above read the connections a moment ago: this one waits for a read begun after it arrived
        # (Gumroad does not retry a 404, so the first webhook of a new connection must be accepted).
        answer = client.post(f"/hooks/gumroad/{secret}", content=sale_form("s-2"), headers={"Content-Type": FORM})
        assert answer.status_code == 200, answer.text
    assert [e.connection for e in served.store.pending_events(10)] == ["gumroad-2"]


def test_a_snapshots_key_stored_elsewhere_verifies_at_once(served: Served) -> None:
    _store_connection(served, "snapshots-2", "snapshots", public_b64(SIGNING_KEY), {"company_id": "comp_1"})
    body = snapshots_body("wh-reload")
    with httpx.Client(base_url=served.base_url) as client:
        answer = client.post("/hooks/snapshots", content=body, headers=signature(body))
    assert answer.status_code == 200, answer.text
    assert [e.connection for e in served.store.pending_events(10)] == ["snapshots-2"]


def test_a_connection_removed_elsewhere_stops_being_accepted(served: Served,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    secret = new_webhook_secret().reveal()
    _store_connection(served, "gumroad-3", "gumroad", secret, {"seller_id": SELLER})
    monkeypatch.setattr(rereads, "STALE_SECONDS", 0.0)  # every webhook rereads them in the background
    url = f"/hooks/gumroad/{secret}"
    with httpx.Client(base_url=served.base_url) as client:
        assert client.post(url, content=sale_form("r-1"), headers={"Content-Type": FORM}).status_code == 200
        ConnectionStore(served.store.engine).remove("gumroad-3")
        numbers = iter(range(2, 1000))
        wait_for(lambda: client.post(url, content=sale_form(f"r-{next(numbers)}"),
                                     headers={"Content-Type": FORM}).status_code == 404,
                 what="the removed connection's secret to be refused")
