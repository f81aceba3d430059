"""`serve --worker-processes N`: jobs are delivered by N processes of their own, not by the serving process; they
see new jobs without the deriver's in-process wake-up (SQLite: a watch on commits; PostgreSQL: NOTIFY); SIGTERM
stops them with the service; one that dies stops the service with its reason; one whose serve is killed stops
by itself. SQLite allows one such process (its rate limiter lives in memory)."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from test_crash import sandbox_events
from test_pipeline_support import (
    FORM,
    Service,
    Setup,
    connect_all,
    fresh_database,
    run_cli,
    sale_ping,
    wait_for,
)
from test_receiver_processes import _alive, _children

from snapbridge.sandbox import Sandboxes, start_sandboxes

PINGS = 60
_DELIVERED = re.compile(r"\[(\d+)\] action=job\.succeeded")


@pytest.fixture
def boxes() -> Iterator[Sandboxes]:
    started = start_sandboxes(seed=12, time_factor=0.01)
    try:
        yield started
    finally:
        started.stop()


@contextmanager
def _serving(boxes: Sandboxes, tmp_path: Path, engine_name: str, log_level: str | None = "INFO"
             ) -> Iterator[tuple[Service, Setup, int]]:
    """`serve --worker-processes 1` on a fresh database, once its worker process is up; killed at the end."""
    with fresh_database(engine_name, tmp_path) as database_url:
        setup = connect_all(tmp_path, database_url, boxes, verify_by_fetch=False)
        if log_level is not None:
            setup.env["SNAPBRIDGE_LOG_LEVEL"] = log_level
        service = Service(setup, "--worker-processes", "1", "--no-pollers", log=tmp_path / "serve.log")
        service.start()
        try:
            assert service.proc is not None
            pid = service.proc.pid
            (child,) = wait_for(lambda: _children(pid), timeout=30, what="the worker process")
            yield service, setup, child
        finally:
            service.reap()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("engine_name", ["sqlite", "postgresql"])
def test_a_worker_process_delivers_what_serve_receives(engine_name: str, boxes: Sandboxes, tmp_path: Path) -> None:
    with _serving(boxes, tmp_path, engine_name) as (service, setup, child):
        assert service.proc is not None
        with httpx.Client(timeout=10) as client:
            for n in range(PINGS):
                ping = sale_ping(setup.seller_id, f"wp-{engine_name}-{n:04d}", f"buyer{n % 12}@wp.example", n)
                answer = client.post(setup.hook_url, content=ping, headers={"Content-Type": FORM})
                assert answer.status_code == 200, answer.text
        company = setup.snapshots_key.company_id
        expected = {f"gumroad-sale-wp-{engine_name}-{n:04d}" for n in range(PINGS)}
        wait_for(lambda: expected <= set(sandbox_events(boxes, company)), timeout=90,
                 what="every ping's event in the Snapshots sandbox", every=0.2)
        delivered_by = {int(pid) for pid in _DELIVERED.findall(service.tail_all())}
        assert delivered_by == {child}, service.tail()  # not the serving process
        assert "workers: 1 worker process(es)" in service.tail_all()
        assert service.stop() == 0, service.tail()
        wait_for(lambda: not _alive(child), timeout=10, what="the worker process to exit")


@pytest.mark.timeout(120)
def test_a_worker_process_that_dies_stops_the_service_with_its_reason(boxes: Sandboxes, tmp_path: Path) -> None:
    with _serving(boxes, tmp_path, "sqlite") as (service, _setup, child):
        assert service.proc is not None
        os.kill(child, signal.SIGKILL)
        code = service.proc.wait(timeout=60)
    assert code != 0
    log = service.tail()
    assert f"action=worker_process_ended number=1 pid={child} signal=SIGKILL" in log
    assert "the service stopped because its worker processes ended before the service was stopped" in log
    assert "Traceback" not in log


@pytest.mark.timeout(120)
def test_a_sigterm_to_the_worker_process_alone_stops_the_service_and_says_so(boxes: Sandboxes,
                                                                             tmp_path: Path) -> None:
    with _serving(boxes, tmp_path, "sqlite", log_level=None) as (service, _setup, child):  # the default level
        assert service.proc is not None
        os.kill(child, signal.SIGTERM)
        code = service.proc.wait(timeout=60)
    assert code == 0  # a request to stop, not a failure
    log = service.tail()
    assert f"action=worker_process_stopped number=1 pid={child} signal=SIGTERM: stopping the service" in log
    assert "Traceback" not in log


@pytest.mark.timeout(120)
def test_a_worker_process_stops_when_its_serve_is_killed(boxes: Sandboxes, tmp_path: Path) -> None:
    with _serving(boxes, tmp_path, "sqlite") as (service, _setup, child):
        service.kill()  # SIGKILL: the parent runs no shutdown code, the child must notice by itself
        wait_for(lambda: not _alive(child), timeout=30, what="the worker process to exit")
    assert "action=parent_gone" in service.tail_all()


@pytest.mark.parametrize(("args", "said"), [
    (("--worker-processes", "2"), "--worker-processes above 1 needs PostgreSQL"),
    (("--worker-processes", "1", "--no-workers"), "contradict each other"),
])
def test_worker_processes_that_cannot_work_are_refused(boxes: Sandboxes, tmp_path: Path, args: tuple[str, ...],
                                                       said: str) -> None:
    with fresh_database("sqlite", tmp_path) as database_url:
        setup = connect_all(tmp_path, database_url, boxes, verify_by_fetch=False)
        done = run_cli(setup.env, "serve", "--port", "0", *args)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr
