"""Snapshots sandbox: signed webhooks on location create/update and customer update, retried only on 429."""

from __future__ import annotations

import base64
import itertools
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from test_snapshots_sandbox_support import Served, auth, serving, wait_for

from snapbridge.sandbox import ServerThread, SnapshotsSandbox
from snapbridge.sandbox.snapshots import SandboxKey, WebhookDelivery


@dataclass
class Receiver:
    """One webhook endpoint that answers from a script of statuses (the last one repeats)."""

    url: str
    script: list[int]
    bodies: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: bytes, headers: dict[str, str]) -> int:
        with self.lock:
            self.bodies.append((body, headers))
            return self.script[min(len(self.bodies), len(self.script)) - 1]

    def count(self) -> int:
        with self.lock:
            return len(self.bodies)


class Hub:
    """A tiny receiver app on loopback, serving any number of scripted endpoints under /hook/{name}."""

    def __init__(self) -> None:
        self._receivers: dict[str, Receiver] = {}
        self._names = itertools.count()
        self.server = ServerThread(Starlette(routes=[Route("/hook/{name}", self._hook, methods=["POST"])]))

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        status = self._receivers[request.path_params["name"]].answer(body, dict(request.headers))
        return Response(status_code=status)

    def receiver(self, *script: int) -> Receiver:
        name = f"r{next(self._names)}"
        made = Receiver(f"{self.server.base_url}/hook/{name}", list(script))
        self._receivers[name] = made
        return made


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    made = Hub()
    made.server.start()
    yield made
    made.server.stop()


@pytest.fixture(scope="module")
def box() -> Iterator[Served]:
    # Scaled time, and a 10 s interval: retries come 10 ms apart.
    with serving(time_factor=0.001) as served:
        served.sandbox.set_webhook_retry_interval(10)
        yield served


@pytest.fixture(autouse=True)
def fresh_subscribers(box: Served) -> Iterator[None]:
    box.sandbox.unsubscribe_all()
    yield
    settled(box)
    box.sandbox.unsubscribe_all()


@pytest.fixture
def client(box: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=box.url, timeout=10) as c:
        yield c


@pytest.fixture
def key(box: Served) -> SandboxKey:
    return box.roomy_key()


def sent_to(box: Served, url: str) -> list[WebhookDelivery]:
    return [d for d in box.sandbox.webhook_deliveries() if d.url == url]


def settled(box: Served) -> None:
    wait_for(lambda: box.sandbox.pending_webhooks() == 0, what="webhook deliveries to settle")


def verify(public_key_b64: str, body: bytes, signature_b64: str) -> None:
    Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64)).verify(base64.b64decode(signature_b64),
                                                                                 body)


def test_location_create_is_signed_and_verifies_with_the_public_key(
    hub: Hub, box: Served, client: httpx.Client, key: SandboxKey
) -> None:
    hook = hub.receiver(200)
    box.sandbox.subscribe(hook.url)
    made = client.post("/locations", headers=auth(key),
                       json={"name": "Hooked — Tromsø", "timezone": "Arctic/Longyearbyen"})
    settled(box)
    (body, headers), = hook.bodies
    verify(box.sandbox.webhook_public_key, body, headers["x-ghl-signature"])
    with pytest.raises(InvalidSignature):
        verify(box.sandbox.webhook_public_key, body.replace(b"Troms", b"Tromz"), headers["x-ghl-signature"])
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    location = made.json()["location"]
    assert payload == {"type": "LocationCreate", "webhookId": payload["webhookId"],
                       "timestamp": payload["timestamp"], "companyId": box.sandbox.company_id, **location}
    sent = datetime.fromisoformat(payload["timestamp"])
    assert abs(datetime.now(UTC) - sent) < timedelta(minutes=1)
    # Byte-exact: compact JSON, UTF-8, non-ASCII not escaped, the envelope first.
    assert body == json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert "Tromsø".encode() in body


def test_location_update_fires_only_on_a_change(hub: Hub, box: Served, client: httpx.Client, key: SandboxKey
                                                ) -> None:
    made = client.post("/locations", headers=auth(key), json={"name": "Quiet"})
    loc = made.json()["location"]["location_id"]
    hook = hub.receiver(200)
    box.sandbox.subscribe(hook.url)
    client.put(f"/locations/{loc}", headers=auth(key), json={"name": "Quiet"})
    client.put(f"/locations/{loc}", headers=auth(key), json={"onboarding_status": "active"})
    settled(box)
    assert hook.count() == 1
    payload = json.loads(hook.bodies[0][0])
    assert payload["type"] == "LocationUpdate" and payload["location_id"] == loc
    assert payload["onboarding_status"] == "active"


def test_customer_update_fires_on_a_change_not_on_create(hub: Hub, box: Served, client: httpx.Client,
                                                         key: SandboxKey) -> None:
    hook = hub.receiver(200)
    box.sandbox.subscribe(hook.url)
    client.put("/customers/cus_hook", headers=auth(key), json={"email": "h@example.com"})
    client.put("/customers/cus_hook", headers=auth(key), json={"tags": ["vip"]})
    settled(box)
    assert hook.count() == 1
    payload = json.loads(hook.bodies[0][0])
    assert payload["type"] == "CustomerUpdate" and payload["customer_id"] == "cus_hook"
    assert payload["tags"] == ["vip"] and payload["companyId"] == box.sandbox.company_id


def test_a_429_is_retried_with_the_same_bytes_until_a_200(hub: Hub, box: Served, client: httpx.Client,
                                                          key: SandboxKey) -> None:
    hook = hub.receiver(429, 429, 200)
    box.sandbox.subscribe(hook.url)
    client.post("/locations", headers=auth(key), json={"name": "Retry me"})
    settled(box)
    assert hook.count() == 3
    assert len({body for body, _ in hook.bodies}) == 1
    assert len({h["x-ghl-signature"] for _, h in hook.bodies}) == 1
    log = sent_to(box, hook.url)
    assert [(d.attempt, d.status) for d in log] == [(1, 429), (2, 429), (3, 200)]
    gaps = [(b.sent_at - a.sent_at).total_seconds() for a, b in itertools.pairwise(log)]
    assert all(gap >= 0.009 for gap in gaps)  # 10 s x 0.001


def test_a_429_forever_gives_up_after_six_retries(hub: Hub, box: Served, client: httpx.Client, key: SandboxKey
                                                  ) -> None:
    hook = hub.receiver(429)
    box.sandbox.subscribe(hook.url)
    client.post("/locations", headers=auth(key), json={"name": "Never"})
    settled(box)
    assert hook.count() == 7
    assert [d.attempt for d in sent_to(box, hook.url)] == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("status", [500, 503, 404, 410])
def test_any_other_answer_is_final(hub: Hub, box: Served, client: httpx.Client, key: SandboxKey, status: int
                                   ) -> None:
    hook = hub.receiver(status, 200)
    box.sandbox.subscribe(hook.url)
    client.post("/locations", headers=auth(key), json={"name": f"Final {status}"})
    settled(box)
    assert hook.count() == 1
    assert [(d.attempt, d.status) for d in sent_to(box, hook.url)] == [(1, status)]


def test_an_unreachable_receiver_is_not_retried(box: Served, client: httpx.Client, key: SandboxKey) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    box.sandbox.subscribe(url)
    client.post("/locations", headers=auth(key), json={"name": "Nobody home"})
    settled(box)
    delivery, = sent_to(box, url)
    assert delivery.status is None and delivery.error and delivery.attempt == 1


def test_every_subscriber_gets_each_event(hub: Hub, box: Served, client: httpx.Client, key: SandboxKey
                                          ) -> None:
    one, two = hub.receiver(200), hub.receiver(200)
    assert client.post("/_sandbox/webhooks", json={"url": one.url}).status_code == 201
    assert client.post("/_sandbox/webhooks", json={"url": two.url}).status_code == 201
    client.post("/locations", headers=auth(key), json={"name": "Twice"})
    settled(box)
    assert one.bodies[0][0] == two.bodies[0][0]
    listed = [d for d in client.get("/_sandbox/webhooks/deliveries").json()["deliveries"]
              if d["url"] in {one.url, two.url}]
    assert {d["url"] for d in listed} == {one.url, two.url} and len(listed) == 2
    assert all(json.loads(d["body"])["type"] == "LocationCreate" for d in listed)
    assert base64.b64decode(listed[0]["body_base64"]) == listed[0]["body"].encode()
    assert client.delete("/_sandbox/webhooks").json()["subscribers"] == []


def test_webhook_control_rejects_bad_input(client: httpx.Client) -> None:
    for bad in ({}, {"url": "ftp://x"}, {"url": 5}, {"retry_interval_seconds": -1}, {"nope": 1}):
        r = client.post("/_sandbox/webhooks", json=bad)
        assert r.status_code == 422 and isinstance(r.json()["message"], list), bad
    r = client.post("/_sandbox/webhooks", json={"retry_interval_seconds": 30})
    assert r.status_code == 201 and r.json()["retry_interval_seconds"] == 30
    assert client.post("/_sandbox/webhooks", json={"retry_interval_seconds": 10}).status_code == 201


def test_a_replayed_write_sends_no_second_webhook(hub: Hub, box: Served, client: httpx.Client, key: SandboxKey
                                                  ) -> None:
    hook = hub.receiver(200)
    box.sandbox.subscribe(hook.url)
    headers = auth(key, Idempotency_Key="create-once")
    for _ in range(2):
        client.post("/locations", headers=headers, json={"name": "Once"})
    settled(box)
    assert hook.count() == 1


def test_the_key_pair_and_ids_follow_the_seed() -> None:
    a, b, c = SnapshotsSandbox(seed=3), SnapshotsSandbox(seed=3), SnapshotsSandbox(seed=4)
    assert a.webhook_public_key == b.webhook_public_key != c.webhook_public_key
    assert len(base64.b64decode(a.webhook_public_key)) == 32
    seeded = [[k.key for k in keys] for keys in (a.keys(), b.keys(), c.keys())]
    assert seeded[0] == seeded[1] != seeded[2]
    assert a.company_id == b.company_id != c.company_id
