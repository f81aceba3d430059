"""A sender that dies mid-body (SIGKILL) leaves nothing behind: no write, no answer kept under its key."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import httpx

from snapbridge.sandbox import Sandboxes

SCOPES = ["saas/location.read", "saas/location.write"]


def test_a_request_cut_mid_body_is_dropped_and_its_key_stays_free(sandboxes: Sandboxes) -> None:
    key = sandboxes.snapshots.create_key(SCOPES).key
    body = json.dumps({"name": "Cut Off Studio", "external_id": "cut-off@example.com"}).encode()
    idem = f"cut-{time.monotonic_ns()}"
    url = urlsplit(sandboxes.snapshots_url)
    head = (f"POST /locations HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {key}\r\n"
            f"Version: 2021-07-28\r\nIdempotency-Key: {idem}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=5) as raw:
        raw.sendall(head + body[: len(body) // 2])  # the sender dies here
    whole = httpx.post(f"{sandboxes.snapshots_url}/locations", content=body, headers={
        "Authorization": f"Bearer {key}", "Version": "2021-07-28", "Idempotency-Key": idem,
        "Content-Type": "application/json"})
    assert whole.status_code == 201, whole.text
    assert whole.headers.get("Idempotent-Replayed") is None
    assert [e.status for e in sandboxes.snapshots.journal.entries(path="/locations") if e.idempotency_key == idem] \
        == [201]
