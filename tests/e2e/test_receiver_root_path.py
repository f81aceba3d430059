"""Behind a proxy that mounts snapbridge under a prefix (uvicorn's root_path: the ASGI path then starts with
it), the webhook endpoints answer as
they do at the root: the web guard does not treat them as dashboard requests (no 403 for a cross-site header,
their own 413 for a chunked body over the limit)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from test_receiver_support import LIMIT, SIGNING_KEY, public_b64, signature, snapshots_body

from snapbridge.config import Settings
from snapbridge.runtime import ReceiverConfig
from snapbridge.sandbox import ServerThread
from snapbridge.store import Store
from snapbridge.web import create_app

PREFIX = "/snapbridge"


@pytest.fixture
def base_url(migrated: Engine, tmp_path: Path) -> Iterator[str]:
    store = Store(migrated)
    config = ReceiverConfig.from_values(snapshots={"hl": public_b64(SIGNING_KEY)})
    settings = Settings(home=tmp_path, database_url=str(migrated.url), max_body_bytes=LIMIT)
    server = ServerThread(create_app(settings, store, config), root_path=PREFIX).start()
    try:
        yield server.base_url  # what the proxy forwards to: the prefix stripped, named by root_path
    finally:
        server.stop()
        store.close()


def test_a_webhook_with_a_cross_site_header_is_not_refused_as_a_form_post(base_url: str) -> None:
    body = snapshots_body("wh-prefix")
    headers = {**signature(body), "Sec-Fetch-Site": "cross-site", "Origin": "https://elsewhere.example"}
    answer = httpx.post(f"{base_url}/hooks/snapshots", content=body, headers=headers)
    assert answer.status_code == 200, answer.text


def test_a_chunked_body_over_the_limit_gets_the_endpoints_own_413(base_url: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(LIMIT // 1000 + 2):
            yield b"x" * 1000

    answer = httpx.post(f"{base_url}/hooks/snapshots", content=chunks(),
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 413, answer.text
    assert f"larger than {LIMIT} bytes" in answer.json()["error"]
