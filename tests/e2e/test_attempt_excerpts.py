"""What a failed call leaves behind: attempt excerpts, errors, last_error, dead-letter reasons and log lines
hold no part of the API key, whatever the API echoed, and stay bounded, however much it said.

A real Worker on both databases sends over real HTTP to a tiny asyncio server on 127.0.0.1 that answers each
path as the test says, with the request's own API key pasted into the answer wherever `{key}` stands.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from test_worker_support import first_step, make_worker, queue_single_steps, run_workers, save_connection

from snapbridge.runtime import Worker
from snapbridge.security import Vault
from snapbridge.store import (
    AttemptOutcome,
    JobStatus,
    StepDetail,
    Store,
)

CONNECTION = "snap"
REDACTED = "****"
# What the stored text may hold at most: the API's own words 300 characters (then "…") in an error of a few
# words more; an excerpt 500 (then "…"). The worker adds the operation and status around the error.
API_WORDS = 300
ERROR_LIMIT = 450
EXCERPT_LIMIT = 501


# ---- the server -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: str  # "{key}" becomes the request's API key
    content_type: str = "application/json"


@dataclass
class EchoServer:
    """Answers `METHOD path` with its queued answers in turn (the last one repeats); 404 for anything else."""

    answers: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    served: list[tuple[str, str, int]] = field(default_factory=list)
    url: str = ""
    _server: asyncio.Server | None = None

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.answers[(method, path)] = list(answers)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            if length:
                await reader.readexactly(length)
            key = headers.get("authorization", "").partition(" ")[2]
            path = target.split("?", 1)[0]
            queued = self.answers.get((method, path))
            answer = (queued.pop(0) if len(queued) > 1 else queued[0]) if queued else Answer(404, "{}")
            self.served.append((method, path, answer.status))
            body = answer.body.replace("{key}", key).encode()
            writer.write(f"HTTP/1.1 {answer.status} X\r\nContent-Type: {answer.content_type}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


# ---- the rig ----------------------------------------------------------------------------------------------


@dataclass
class Rig:
    store: Store
    server: EchoServer
    vault: Vault
    key: str = field(default_factory=lambda: f"sk-{uuid.uuid4().hex}")
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    def worker(self) -> Worker:
        return make_worker(self.store, self.vault, "w1", idle_seconds=0.1,
                           base_delay=timedelta(milliseconds=10), max_delay=timedelta(milliseconds=50))

    def enqueue(self, jobs: Sequence[tuple[str, dict[str, object]]]) -> list[int]:
        """One single-step run per (action, input), each its own ordering key; returns the run ids."""
        ordered = [(action, values, f"o-{self.tag}-{index}") for index, (action, values) in enumerate(jobs)]
        return [q.run_id for q in queue_single_steps(self.store, ordered, key_prefix=f"test-{self.tag}")]

    def customer(self, suffix: str) -> str:
        return f"c-{self.tag}-{suffix}"

    def step(self, run_id: int) -> StepDetail:
        return first_step(self.store, run_id)

    def parts_of_key(self, text: str) -> list[str]:
        """The pieces of the key (6 characters or more) that `text` holds."""
        return [self.key[i:i + 6] for i in range(len(self.key) - 5) if self.key[i:i + 6] in text]


@pytest.fixture
async def rig(migrated: Engine, tmp_path: Path) -> AsyncIterator[Rig]:
    store = Store(migrated)
    server = EchoServer()
    url = await server.start()
    made = Rig(store, server, Vault.open(tmp_path / "secret.key"))
    save_connection(store, made.vault, url, made.key)
    try:
        yield made
    finally:
        await server.stop()
        store.close()


def finished(rig: Rig, runs: Sequence[int]) -> Callable[[], bool]:
    ended = {JobStatus.SUCCEEDED, JobStatus.DEAD}
    return lambda: all(rig.step(run).status in ended for run in runs)


def upsert(customer: str) -> tuple[str, dict[str, object]]:
    return ("snapshots.customers.upsert", {"customer_id": customer, "plan": "pro"})


def event(event_id: str) -> tuple[str, dict[str, object]]:
    return ("snapshots.events.create", {"event_id": event_id, "type": "purchase",
                                        "timestamp": "2025-03-01T12:00:00Z"})


def customer_answer(customer: str) -> Answer:
    return Answer(200, json.dumps({"customer": {"customer_id": customer, "plan": "pro"}}))


# ---- the key never stays ----------------------------------------------------------------------------------

PADDING = "x" * 480  # with what comes before, puts the key across the 500-character cut of an excerpt
ECHOES: dict[str, Answer] = {
    "200 html": Answer(200, "<html>upstream error for client {key}</html>", "text/html"),
    "200 json of another shape": Answer(200, '{"client": "{key}", "ok": true}'),
    "200 json not an object": Answer(200, '["{key}"]'),
    "200 html, the key across the excerpt's cut": Answer(200, "<p>" + PADDING + "{key}" + "x" * 5000,
                                                         "text/html"),
    "200 json, the key across the excerpt's cut": Answer(200, '{"note": "' + PADDING + '{key}"}'),
    "401 message": Answer(401, '{"statusCode": 401, "message": "Invalid token {key}"}'),
    "422 message, the key across the message's cut": Answer(
        422, '{"statusCode": 422, "message": "' + "y" * 290 + '{key}"}'),
    "500 html": Answer(500, "<html>upstream error for client {key}</html>", "text/html"),
}


async def test_an_answer_that_echoes_the_key_leaves_no_part_of_it(rig: Rig,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    names = list(ECHOES)
    customers = [rig.customer(str(i)) for i in range(len(names))]
    for name, customer in zip(names, customers, strict=True):
        later = [customer_answer(customer)] if name.startswith("500") else []
        rig.server.on("PUT", f"/customers/{customer}", ECHOES[name], *later)
    runs = rig.enqueue([upsert(c) for c in customers])
    await run_workers([rig.worker()], finished(rig, runs))

    for name, run in zip(names, runs, strict=True):
        step = rig.step(run)
        first = step.attempt_log[0]
        assert first.outcome in (AttemptOutcome.DEAD, AttemptOutcome.RETRY), name
        assert REDACTED in first.response_excerpt + first.error, name
        stored = [first.request_excerpt, first.response_excerpt, first.error, step.last_error or ""]
        assert rig.parts_of_key("\n".join(stored)) == [], (name, stored)
        if name.startswith("500"):
            assert step.status is JobStatus.SUCCEEDED, name
        else:
            assert step.status is JobStatus.DEAD and step.attempts == 1, name
    reasons = "\n".join(dead.reason for dead in rig.store.dead_letters())
    assert rig.parts_of_key(reasons) == []
    assert rig.parts_of_key("\n".join(record.getMessage() for record in caplog.records)) == []


async def test_a_batch_member_refused_with_the_key_in_its_error_leaves_no_part_of_it(rig: Rig) -> None:
    good, bad = f"e-{rig.tag}-good", f"e-{rig.tag}-bad"
    results = [{"event_id": good, "status": "created", "error": None},
               {"event_id": bad, "status": "error", "error": "key {key} refused " + "z" * 100_000,
                "echo": "{key}"}]
    rig.server.on("POST", "/events/batch", Answer(200, json.dumps({"results": results})))
    runs = rig.enqueue([event(good), event(bad)])
    await run_workers([rig.worker()], finished(rig, runs))

    assert [m for m in rig.server.served if m[1] == "/events/batch"] == [("POST", "/events/batch", 200)]
    assert rig.step(runs[0]).status is JobStatus.SUCCEEDED
    step = rig.step(runs[1])
    assert step.status is JobStatus.DEAD
    (attempt,) = step.attempt_log
    assert f"event {bad} refused" in attempt.error and REDACTED in attempt.error
    stored = [attempt.response_excerpt, attempt.error, step.last_error or ""]
    assert rig.parts_of_key("\n".join(stored)) == [], stored
    assert len(attempt.error) <= ERROR_LIMIT and "z" * API_WORDS not in attempt.error
    assert len(step.last_error or "") <= ERROR_LIMIT
    assert len(attempt.response_excerpt) <= EXCERPT_LIMIT


# ---- what the API says is bounded -------------------------------------------------------------------------


async def test_a_megabyte_of_error_message_is_stored_and_logged_bounded(rig: Rig,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    retried, refused = rig.customer("retried"), rig.customer("refused")
    big = Answer(503, json.dumps({"statusCode": 503, "message": "m" * 1_000_000}))
    rig.server.on("PUT", f"/customers/{retried}", big, big, customer_answer(retried))
    listed = Answer(422, json.dumps({"statusCode": 422, "message": [f"field{i} is wrong" for i in range(60_000)]}))
    rig.server.on("PUT", f"/customers/{refused}", listed)
    runs = rig.enqueue([upsert(retried), upsert(refused)])
    await run_workers([rig.worker()], finished(rig, runs))

    first = rig.step(runs[0])
    assert first.status is JobStatus.SUCCEEDED
    assert [a.outcome for a in first.attempt_log] == [AttemptOutcome.RETRY, AttemptOutcome.RETRY,
                                                      AttemptOutcome.SUCCEEDED]
    second = rig.step(runs[1])
    assert second.status is JobStatus.DEAD
    failed = [*first.attempt_log[:2], *second.attempt_log]
    for attempt in failed:
        assert len(attempt.error) <= ERROR_LIMIT and "…" in attempt.error
        assert len(attempt.response_excerpt) <= EXCERPT_LIMIT
    for attempt in first.attempt_log[:2]:  # the API's words at the limit, not one character more
        assert f"temporary failure: {'m' * API_WORDS}… (HTTP 503)" in attempt.error
    assert "the API refused the input: field0 is wrong; field1 is wrong" in second.attempt_log[0].error
    assert len(second.last_error or "") <= ERROR_LIMIT
    assert max(len(record.getMessage()) for record in caplog.records) < 2 * ERROR_LIMIT
