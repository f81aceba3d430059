"""`serve --receivers 2`: two processes answer webhooks on one port; what either stores is derived and delivered
by the serving process; SIGTERM stops both; a receiver process that dies stops the service with a clear error.
On SQLite and PostgreSQL. The pings are forged for the connected seller (`--no-verify-by-fetch`)."""

from __future__ import annotations

import contextlib
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

from snapbridge.sandbox import Sandboxes, bind_socket, start_sandboxes

PINGS = 120
_STORED = re.compile(r"\[(\d+)\] action=hook_stored source=gumroad")


@pytest.fixture
def boxes() -> Iterator[Sandboxes]:
    started = start_sandboxes(seed=11, time_factor=0.01)
    try:
        yield started
    finally:
        started.stop()


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    found: list[int] = []
    for task in tasks.iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


@contextmanager
def _serving(boxes: Sandboxes, tmp_path: Path, engine_name: str, receivers: int,
             **env: str) -> Iterator[tuple[Service, Setup, list[int]]]:
    """`serve --receivers N` on a fresh database, once its N-1 receiver processes are up; killed at the end."""
    with fresh_database(engine_name, tmp_path) as database_url:
        setup = connect_all(tmp_path, database_url, boxes, verify_by_fetch=False)
        setup.env.update(env)
        service = Service(setup, "--receivers", str(receivers), "--no-pollers", log=tmp_path / "serve.log")
        service.start()
        try:
            assert service.proc is not None
            pid = service.proc.pid
            children = wait_for(lambda: len(_children(pid)) == receivers - 1 and _children(pid), timeout=30,
                                what="the receiver processes")
            yield service, setup, children
        finally:
            service.reap()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("engine_name", ["sqlite", "postgresql"])
def test_two_receiver_processes_share_the_port_and_everything_is_delivered(
    engine_name: str, boxes: Sandboxes, tmp_path: Path
) -> None:
    with _serving(boxes, tmp_path, engine_name, 2, SNAPBRIDGE_LOG_LEVEL="INFO") as (service, setup, children):
        assert service.proc is not None
        # A new connection per ping: the kernel spreads connections, not requests, over the two sockets.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(limits=no_reuse, timeout=10) as client:
            for n in range(PINGS):
                ping = sale_ping(setup.seller_id, f"rp-{engine_name}-{n:04d}", f"buyer{n % 30}@rp.example", n)
                answer = client.post(setup.hook_url, content=ping, headers={"Content-Type": FORM})
                assert answer.status_code == 200, answer.text
        stored_by = {int(pid) for pid in _STORED.findall(service.tail_all())}
        assert stored_by == {service.proc.pid, children[0]}, service.tail()

        company = setup.snapshots_key.company_id
        expected = {f"gumroad-sale-rp-{engine_name}-{n:04d}" for n in range(PINGS)}
        wait_for(lambda: expected <= set(sandbox_events(boxes, company)), timeout=90,
                 what="every ping's event in the Snapshots sandbox", every=0.2)

        assert service.stop() == 0, service.tail()
        wait_for(lambda: not _alive(children[0]), timeout=10, what="the receiver process to exit")


@pytest.mark.timeout(120)
def test_a_receiver_process_that_dies_stops_the_service_with_its_reason(boxes: Sandboxes, tmp_path: Path) -> None:
    with _serving(boxes, tmp_path, "sqlite", 2) as (service, _setup, children):
        assert service.proc is not None
        os.kill(children[0], signal.SIGKILL)
        code = service.proc.wait(timeout=60)
    assert code != 0
    log = service.tail()
    assert f"action=receiver_process_ended number=2 pid={children[0]} signal=SIGKILL" in log
    assert "the service stopped because its receiver processes ended before the service was stopped" in log
    assert "Traceback" not in log


@pytest.mark.timeout(120)
def test_receiver_processes_stop_when_their_serve_is_killed(boxes: Sandboxes, tmp_path: Path) -> None:
    with _serving(boxes, tmp_path, "sqlite", 3) as (service, _setup, children):
        service.kill()  # SIGKILL: the parent runs no shutdown code, the children must notice by themselves
        wait_for(lambda: not any(_alive(c) for c in children), timeout=30, what="the receiver processes to exit")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("told", ["sigterm-to-the-receiver", "ctrl-c-to-both"])
def test_a_receiver_told_to_stop_stops_the_service_cleanly(boxes: Sandboxes, tmp_path: Path, told: str) -> None:
    with _serving(boxes, tmp_path, "sqlite", 2) as (service, _setup, children):
        assert service.proc is not None
        if told == "ctrl-c-to-both":  # a terminal's Ctrl+C reaches every process of the foreground group
            os.kill(service.proc.pid, signal.SIGINT)
            os.kill(children[0], signal.SIGINT)
        else:
            os.kill(children[0], signal.SIGTERM)
        code = service.proc.wait(timeout=60)
    assert code == 0, service.tail()
    assert "snapbridge stopped" in service.tail() and "service_part_failed" not in service.tail()


def test_a_port_another_program_shares_is_refused_not_joined(boxes: Sandboxes, tmp_path: Path) -> None:
    # SO_REUSEPORT would let `serve --receivers 2` listen beside any program of the same user that opts in too,
    # and that program would get part of the webhooks.
    with fresh_database("sqlite", tmp_path) as database_url:
        setup = connect_all(tmp_path, database_url, boxes, verify_by_fetch=False)
        with contextlib.closing(bind_socket("127.0.0.1", setup.port, reuse_port=True)):
            done = run_cli(setup.env, "serve", "--receivers", "2", "--port", str(setup.port), timeout=60)
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{setup.port}: address already in use" in done.stderr.lower()
    assert "Traceback" not in done.stderr
